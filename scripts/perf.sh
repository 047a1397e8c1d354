#!/usr/bin/env bash
# perf_analyzer sweep against the `tts` ensemble (gRPC and HTTP); see scripts/perf.py for options.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
exec "$ROOT/.venv/bin/python" "$ROOT/scripts/perf.py" "$@"
