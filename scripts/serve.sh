#!/usr/bin/env bash
# Serve a Sambert-HifiGan model on a local CPU tritonserver (HTTP 8000, gRPC 8001, metrics 8002) and the HTTP
# gateway in front of it (8080: /api/tts, the WebUI, ...), on 127.0.0.1, each port plus --port-offset.
#   scripts/serve.sh [--model-dir DIR | --model ID] [--voice NAME]... [--port-offset N] [--no-gateway]
# --model downloads a ModelScope model (e.g. iic/speech_sambert-hifigan_tts_zh-cn_16k) into the modelscope cache.
# Without either it serves the full-size fixture (random weights: it speaks noise). Gateway settings: TTS_GATEWAY_*.
# Each instance works in its own directory, build/serve-<port offset>/: the export, the model repository,
# tritonserver.log and admin.key (the key of Triton's admin APIs, generated on the first start).
# Exits non-zero, with the end of the log, when tritonserver dies (and stops the gateway with it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
MODEL_DIR=""; MODEL_ID=""; VOICES=(); OFFSET=0; GATEWAY=1
while [ $# -gt 0 ]; do
  case "$1" in
    --model-dir) MODEL_DIR=$2; shift 2 ;;
    --model) MODEL_ID=$2; shift 2 ;;
    --no-gateway) GATEWAY=0; shift ;;
    --voice) VOICES+=(--voice "$2"); shift 2 ;;
    --port-offset) OFFSET=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$OFFSET" =~ ^[0-9]+$ ]] || { echo "error: --port-offset must be a number, not $OFFSET" >&2; exit 2; }
[ -n "$MODEL_DIR" ] && [ -n "$MODEL_ID" ] && { echo "error: give --model-dir or --model, not both" >&2; exit 2; }
[ -f "$ROOT/.triton/env.sh" ] || "$ROOT/scripts/setup.sh"
cd "$ROOT"
if [ -n "$MODEL_ID" ]; then
  MODEL_DIR=$("$PY" -m models.hub "$MODEL_ID") || exit   # with its status and its one-line error
fi
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
"$PY" -m deploy.launcher "$WORK/model_repository" \
  --http-port $((8000 + OFFSET)) --grpc-port $((8001 + OFFSET)) --metrics-port $((8002 + OFFSET)) \
  --log "$WORK/tritonserver.log" --admin-key-file "$WORK/admin.key" --cache-config=local,size=268435456 \
  --model-control-mode=explicit --load-model=tts --load-model=tts_stream &  # explicit: a model whose process died can be reloaded (README)
PIDS=($!)
if [ "$GATEWAY" = 1 ]; then
  "$PY" -m gateway --port-offset "$OFFSET" &   # it answers 503 until Triton is ready
  PIDS+=($!)
fi
# Both run until either exits or we are told to stop. Told to stop: both stop, and we exit as the launcher
# does (0 after a clean shutdown). One exits by itself: the other stops, and we exit with the first's status.
set +e
stop_all() { kill -TERM "${PIDS[@]}" 2>/dev/null; wait "${PIDS[0]}"; local status=$?; wait "${PIDS[@]}" 2>/dev/null; exit "$status"; }
trap stop_all TERM INT
wait -n "${PIDS[@]}"
status=$?
trap - TERM INT
kill -TERM "${PIDS[@]}" 2>/dev/null; wait "${PIDS[@]}" 2>/dev/null
exit "$status"
