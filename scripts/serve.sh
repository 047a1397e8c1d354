#!/usr/bin/env bash
# Serve a Sambert-HifiGan model on a local CPU tritonserver: HTTP 8000, gRPC 8001, metrics 8002 on 127.0.0.1.
#   scripts/serve.sh [--model-dir DIR] [--voice NAME]... [--port-offset N]
# Without --model-dir it serves the full-size fixture (random weights: it speaks noise).
# Exports the model (build/export) and generates the repository (build/model_repository) when needed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
MODEL_DIR=""; VOICES=(); OFFSET=0
while [ $# -gt 0 ]; do
  case "$1" in
    --model-dir) MODEL_DIR=$2; shift 2 ;;
    --voice) VOICES+=(--voice "$2"); shift 2 ;;
    --port-offset) OFFSET=$2; shift 2 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -f "$ROOT/.triton/env.sh" ] || "$ROOT/scripts/setup.sh"
cd "$ROOT"
if [ -z "$MODEL_DIR" ]; then
  MODEL_DIR="$ROOT/build/fixture_model"
  [ -f "$MODEL_DIR/configuration.json" ] || "$PY" -m models.fixtures "$MODEL_DIR" --size full
fi
MODEL_DIR=$(cd "$MODEL_DIR" && pwd)
EXPORT_DIR="$ROOT/build/export"
# Export again when the model directory or the voices differ from the last export, or this code cannot
# read it (an export of an older format).
STAMP="$MODEL_DIR ${VOICES[*]:-}"
if [ "$(cat "$EXPORT_DIR/.source" 2>/dev/null)" != "$STAMP" ] \
   || ! "$PY" -c 'import sys; from serving.contract import ExportConfig; ExportConfig.read(sys.argv[1])' "$EXPORT_DIR" 2>/dev/null; then
  rm -rf "$EXPORT_DIR"
  # The BF16 CPU vocoder too: the repository's `auto` precision uses it where the CPU and its quality allow.
  "$PY" -m export "$MODEL_DIR" --out "$EXPORT_DIR" --cpu-bf16-vocoder "${VOICES[@]}"
  echo "$STAMP" > "$EXPORT_DIR/.source"
fi
"$PY" -m deploy.repository "$EXPORT_DIR" --target cpu --out "$ROOT/build/model_repository"
exec "$PY" -m deploy.launcher "$ROOT/build/model_repository" \
  --http-port $((8000 + OFFSET)) --grpc-port $((8001 + OFFSET)) --metrics-port $((8002 + OFFSET)) \
  --log "$ROOT/build/tritonserver.log" --cache-config=local,size=268435456 \
  --model-control-mode=explicit --load-model=tts   # explicit: a model whose process died can be reloaded (README)
