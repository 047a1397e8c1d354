#!/usr/bin/env bash
# Inside the builder image: export a ModelScope directory, build the TensorRT engines for this GPU,
# and generate the GPU model repository.   scripts/gpu_build.sh MODEL_DIR OUT_DIR
set -euo pipefail
MODEL_DIR=$1; OUT=$2
python -m export "$MODEL_DIR" --out "$OUT/export"
scripts/build_engines.sh "$OUT/export"
python -m deploy.repository "$OUT/export" --target gpu --out "$OUT/model_repository"
