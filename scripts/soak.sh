#!/usr/bin/env bash
# Soak the Triton server: 10 minutes at concurrency 16 (8 gRPC + 8 HTTP threads), mixed text lengths, no cache:
#   scripts/soak.sh [--minutes 10] [--model-dir DIR | --repository DIR] [--note TEXT]   (all options: --help)
# Checks zero failures, every response's length (frames x hop + pauses), audio vs in-process synthesis and
# RSS growth < 10% from minute 2 to the end. Writes results/soak/{soak.json,summary.md,soak.png}; exit 1 on a failed check.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$ROOT/.triton/env.sh" ] || "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m bench.soak "$@"
