#!/usr/bin/env bash
# perf_analyzer sweep against the `tts` ensemble (gRPC and HTTP); see bench/perf.py for options.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m bench.perf "$@"
