#!/usr/bin/env bash
# Benchmark the Triton server against the eager PyTorch baseline (one request at a time), side by side:
#   scripts/bench.sh [--model-dir DIR] [--requests 32] [--profile] [--note TEXT]   (all options: --help)
# Writes results/bench/{results.json,summary.md,throughput.png,latency.png}. Run it on a quiet machine.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$ROOT/.triton/env.sh" ] || "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m bench.run "$@"
