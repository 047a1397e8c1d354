#!/usr/bin/env bash
# Inside the builder image: export a ModelScope directory, build the TensorRT engines for this GPU, and
# generate the GPU model repository.
#   scripts/gpu_build.sh MODEL_DIR OUT_DIR [--voice NAME]...     (VOICES="a b" in the environment works too)
# The voices built into one GPU repository must share one vocoder (it serves one engine): that is checked
# before any engine is built.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: scripts/gpu_build.sh MODEL_DIR OUT_DIR [--voice NAME]..." >&2; exit 2; }
MODEL_DIR=$1; OUT=$2; shift 2
VOICE_ARGS=()
for voice in ${VOICES:-}; do VOICE_ARGS+=(--voice "$voice"); done
while [ $# -gt 0 ]; do
  case "$1" in
    --voice) VOICE_ARGS+=(--voice "$2"); shift 2 ;;
    *) echo "error: unknown argument $1 (usage: scripts/gpu_build.sh MODEL_DIR OUT_DIR [--voice NAME]...)" >&2; exit 2 ;;
  esac
done
python -m export "$MODEL_DIR" --out "$OUT/export" ${VOICE_ARGS[@]+"${VOICE_ARGS[@]}"}
scripts/build_engines.sh "$OUT/export"
python -m deploy.repository "$OUT/export" --target gpu --out "$OUT/model_repository"
