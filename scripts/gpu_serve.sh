#!/usr/bin/env bash
# Inside the triton image: refuse an engine built for another GPU or TensorRT version, then serve.
#   scripts/gpu_serve.sh MODEL_REPOSITORY [tritonserver args...]
set -euo pipefail
REPO=$1; shift
python -m deploy.engine_check "$REPO/vocoder_engine/1/model.plan"
exec tritonserver --model-repository="$REPO" --cache-config=local,size=268435456 "$@"
