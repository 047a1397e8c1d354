#!/usr/bin/env bash
# Serve a Sambert-HifiGan model on a local CPU tritonserver: HTTP 8000, gRPC 8001, metrics 8002 on 127.0.0.1
# (each plus --port-offset).
#   scripts/serve.sh [--model-dir DIR] [--voice NAME]... [--port-offset N]
# Without --model-dir it serves the full-size fixture (random weights: it speaks noise).
# Each instance works in its own directory, build/serve-<port offset>/: the export, the model repository,
# tritonserver.log and admin.key (the key of Triton's admin APIs, generated on the first start).
# Exits non-zero, with the end of the log, when tritonserver dies.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
MODEL_DIR=""; VOICES=(); OFFSET=0
while [ $# -gt 0 ]; do
  case "$1" in
    --model-dir) MODEL_DIR=$2; shift 2 ;;
    --voice) VOICES+=(--voice "$2"); shift 2 ;;
    --port-offset) OFFSET=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$OFFSET" =~ ^[0-9]+$ ]] || { echo "error: --port-offset must be a number, not $OFFSET" >&2; exit 2; }
[ -f "$ROOT/.triton/env.sh" ] || "$ROOT/scripts/setup.sh"
cd "$ROOT"
WORK="$ROOT/build/serve-$OFFSET"
mkdir -p "$WORK"
if [ -z "$MODEL_DIR" ]; then
  MODEL_DIR="$ROOT/build/fixture_model"
  if [ ! -f "$MODEL_DIR/configuration.json" ]; then
    # Written aside and moved into place, so that two instances starting together never see half a fixture.
    PARTIAL=$(mktemp -d "$ROOT/build/fixture_model.XXXXXX")
    "$PY" -m models.fixtures "$PARTIAL/model" --size full
    mv -T "$PARTIAL/model" "$MODEL_DIR" 2>/dev/null || true
    rm -rf "$PARTIAL"
  fi
fi
scripts/build_repository.sh cpu "$MODEL_DIR" "$WORK" ${VOICES[@]+"${VOICES[@]}"}
exec "$PY" -m deploy.launcher "$WORK/model_repository" \
  --http-port $((8000 + OFFSET)) --grpc-port $((8001 + OFFSET)) --metrics-port $((8002 + OFFSET)) \
  --log "$WORK/tritonserver.log" --admin-key-file "$WORK/admin.key" --cache-config=local,size=268435456 \
  --model-control-mode=explicit --load-model=tts   # explicit: a model whose process died can be reloaded (README)
