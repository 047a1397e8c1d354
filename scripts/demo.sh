#!/usr/bin/env bash
# The main job, from a fresh clone: set up, serve the model on a CPU tritonserver with the HTTP gateway in
# front, synthesise one sentence over gRPC, one over HTTP and one streamed chunk by chunk with the client and one
# through the gateway with curl, then stop the server.
#   scripts/demo.sh [--model-dir DIR]      (writes build/demo_{grpc,http,stream,gateway}.wav)
# Without --model-dir it first tries to download the real model from the ModelScope hub (HUB_TIMEOUT_S,
# default 10 s, for the hub's first answer); when the hub cannot be reached it serves the full-size fixture.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HUB_MODEL=iic/speech_sambert-hifigan_tts_zh-cn_16k
"$ROOT/scripts/setup.sh"
mkdir -p "$ROOT/build"
SERVE_ARGS=("$@")
if [ $# -eq 0 ]; then
  echo "[demo] trying the ModelScope hub for $HUB_MODEL"
  set +e
  MODEL_DIR=$("$ROOT/.venv/bin/python" -m models.hub "$HUB_MODEL" --timeout-s "${HUB_TIMEOUT_S:-10}" 2>"$ROOT/build/hub.log")
  STATUS=$?
  set -e
  case $STATUS in
    0) SERVE_ARGS=(--model-dir "$MODEL_DIR") ;;
    3) echo "[demo] $(tail -1 "$ROOT/build/hub.log" | sed 's/^error: //'); serving the full-size fixture instead (random weights: it speaks noise)" ;;
    *) echo "[demo] $(tail -1 "$ROOT/build/hub.log")"; exit 1 ;;
  esac
fi
"$ROOT/scripts/serve.sh" "${SERVE_ARGS[@]}" > "$ROOT/build/serve.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
echo "[demo] exporting and starting the server (log: build/serve.log)"
for _ in $(seq 1 600); do
  curl -sf http://127.0.0.1:8000/v2/health/ready >/dev/null && curl -sf http://127.0.0.1:8080/readyz >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { echo "[demo] the server did not start:"; tail -20 "$ROOT/build/serve.log"; exit 1; }
  sleep 1
done
CLIENT="$ROOT/.venv/bin/tts-client"
"$CLIENT" --list-voices
"$CLIENT" "欢迎使用语音合成服务，今天是2026年11月21日。" -o "$ROOT/build/demo_grpc.wav" --protocol grpc
"$CLIENT" "您可以向我询问户籍的办理。" -o "$ROOT/build/demo_http.wav" --protocol http
"$CLIENT" "流式合成：第一段声音在整段文字合成完之前就到了。" -o "$ROOT/build/demo_stream.wav" --stream
curl -sSf http://127.0.0.1:8080/api/tts -d '{"text": "北京欢迎你，这段语音来自网关。"}' -o "$ROOT/build/demo_gateway.wav"
echo "[demo] done: build/demo_grpc.wav, build/demo_http.wav, build/demo_stream.wav, build/demo_gateway.wav"
echo "[demo] WebUI: http://127.0.0.1:8080/ (up while scripts/serve.sh runs; this demo stops the server now)"
