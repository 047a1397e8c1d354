#!/usr/bin/env bash
# Set up (idempotent) and run every test: unit, numerical parity, and a real tritonserver over HTTP and gRPC.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec .venv/bin/python -m pytest -q "$@"
