#!/usr/bin/env bash
# Benchmark streaming synthesis (tts_stream) beside the whole-answer ensemble (tts), side by side:
#   scripts/stream_bench.sh [--model-dir DIR] [--concurrency 1 4 8 16] [--repeats 2] [--note TEXT]   (all options: --help)
# Writes results/stream/{results.json,summary.md,stream.png}. Run it on a quiet machine.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$ROOT/.triton/env.sh" ] || "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m bench.stream "$@"
