#!/usr/bin/env bash
# Build a Triton model repository from a ModelScope model directory, for one target:
#   scripts/build_repository.sh cpu|gpu MODEL_DIR WORK_DIR [--voice NAME]...   (VOICES="a b" works too)
# 1. export the voices (WORK_DIR/export; again only when the model directory or the voices changed, or the
#    export is of an older format);
# 2. gpu: check the vocoder in FP16 and build the TensorRT engines for this GPU (scripts/build_engines.sh);
# 3. generate the repository (WORK_DIR/model_repository).
# Used by scripts/serve.sh (cpu), the builder image (gpu: docker compose) and the Kubernetes init containers.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 3 ] || { echo "usage: scripts/build_repository.sh cpu|gpu MODEL_DIR WORK_DIR [--voice NAME]..." >&2; exit 2; }
TARGET=$1; MODEL_DIR=$2; WORK=$3; shift 3
case "$TARGET" in cpu|gpu) ;; *) echo "error: the target must be cpu or gpu, not $TARGET" >&2; exit 2 ;; esac
VOICE_ARGS=()
for voice in ${VOICES:-}; do VOICE_ARGS+=(--voice "$voice"); done
while [ $# -gt 0 ]; do
  case "$1" in
    --voice) VOICE_ARGS+=(--voice "$2"); shift 2 ;;
    *) echo "error: unknown argument $1 (see scripts/build_repository.sh)" >&2; exit 2 ;;
  esac
done
[ -d "$MODEL_DIR" ] || { echo "error: the model directory $MODEL_DIR does not exist" >&2; exit 2; }
PY=${PYTHON:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3)}
MODEL_DIR=$(cd "$MODEL_DIR" && pwd)
mkdir -p "$WORK"
EXPORT_DIR="$WORK/export"
cd "$ROOT"

STAMP="$TARGET $MODEL_DIR ${VOICE_ARGS[*]:-}"
if [ "$(cat "$EXPORT_DIR/.source" 2>/dev/null)" != "$STAMP" ] \
   || ! "$PY" -c 'import sys; from serving.contract import ExportConfig; ExportConfig.read(sys.argv[1])' "$EXPORT_DIR" 2>/dev/null; then
  rm -rf "$EXPORT_DIR"
  "$PY" -m export "$MODEL_DIR" --out "$EXPORT_DIR" ${VOICE_ARGS[@]+"${VOICE_ARGS[@]}"}
  if [ "$TARGET" = gpu ]; then
    PYTHON="$PY" scripts/build_engines.sh "$EXPORT_DIR"
  fi
  echo "$STAMP" > "$EXPORT_DIR/.source"
fi
"$PY" -m deploy.repository "$EXPORT_DIR" --target "$TARGET" --out "$WORK/model_repository"
