#!/usr/bin/env bash
# The main job, from a fresh clone: set up, serve the default model on a CPU tritonserver, synthesise
# one sentence over gRPC and one over HTTP with the client, then stop the server.
#   scripts/demo.sh [--model-dir DIR]      (writes build/demo_grpc.wav and build/demo_http.wav)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/setup.sh"
mkdir -p "$ROOT/build"
"$ROOT/scripts/serve.sh" "$@" > "$ROOT/build/serve.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
echo "[demo] exporting and starting the server (log: build/serve.log)"
for _ in $(seq 1 600); do
  curl -sf http://127.0.0.1:8000/v2/health/ready >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { echo "[demo] the server did not start:"; tail -20 "$ROOT/build/serve.log"; exit 1; }
  sleep 1
done
CLIENT="$ROOT/.venv/bin/tts-client"
"$CLIENT" --list-voices
"$CLIENT" "欢迎使用语音合成服务，今天是2026年11月21日。" -o "$ROOT/build/demo_grpc.wav" --protocol grpc
"$CLIENT" "您可以向我询问户籍的办理。" -o "$ROOT/build/demo_http.wav" --protocol http
echo "[demo] done: build/demo_grpc.wav, build/demo_http.wav"
