#!/usr/bin/env bash
# Inside the triton image: refuse an engine built for another GPU or TensorRT version, then serve with
# Triton's admin APIs (model loading, shared memory, trace, logging) behind the admin key.
#   TRITON_ADMIN_KEY=... scripts/gpu_serve.sh MODEL_REPOSITORY [tritonserver args...]
set -euo pipefail
REPO=$1; shift
[ -n "${TRITON_ADMIN_KEY:-}" ] || { echo "error: set TRITON_ADMIN_KEY (the key of Triton's admin APIs)" >&2; exit 2; }
python -m deploy.engine_check "$REPO/vocoder_engine/1/model.plan"
RESTRICTED=$(python -c 'from deploy.launcher import RESTRICTED_APIS, ADMIN_KEY_HEADER as H; print(f"{RESTRICTED_APIS}:{H}")')
exec tritonserver --model-repository="$REPO" --cache-config=local,size=268435456 \
  --http-restricted-api="$RESTRICTED=$TRITON_ADMIN_KEY" --grpc-restricted-protocol="$RESTRICTED=$TRITON_ADMIN_KEY" "$@"
