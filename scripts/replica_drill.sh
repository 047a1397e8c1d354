#!/usr/bin/env bash
# Replica drill: Triton replicas behind HAProxy (HTTP and gRPC), the gateway in front, one replica killed under
# load and restarted; reports sent / answered / failed, throughput before, during and after, and how fast the
# balancer reacted.   scripts/replica_drill.sh [--minutes 3] [--replicas 3] [--concurrency 16] (all: --help)
# Needs Debian's haproxy (apt-get install haproxy). Writes results/drill/{drill.json,summary.md,drill.png}.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$ROOT/.triton/env.sh" ] || "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m bench.replica_drill "$@"
