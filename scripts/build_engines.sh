#!/usr/bin/env bash
# Rebuild every voice's vocoder TensorRT engine for the GPU and TensorRT version at hand.
#
#   scripts/build_engines.sh [EXPORT_DIR] [--voice NAME]... [--memory-budget-gib G] [--precision fp16|fp32] [--bench]
#
# EXPORT_DIR (default build/export) is what `python -m export MODEL_DIR --out EXPORT_DIR` wrote. Per voice:
#   1. FP16 check (export.fp16_check): FP16 graph vs FP32 in ONNX Runtime, FP32 islands for the output tail and
#      any overflowing node; writes <voice>/vocoder_fp16.onnx and <voice>/fp16_check.json; stops on NaN/Inf
#      or a low SNR (then rebuild with --precision fp32);
#   2. build (export.trt_build, every voice in one call, which first checks that they share one vocoder):
#      strongly typed engine, one profile for any admitted sentence and as large a batch as fits
#      --memory-budget-gib of activations (default 2), the engine compared with FP32 again;
#      writes <voice>/vocoder.plan and <voice>/vocoder.plan.json;
# then checks every engine against this host as the server will (deploy.engine_check) and prints a summary.
#
# Runs inside the builder image (docker compose run builder, via scripts/build_repository.sh gpu) or on any host with
# the tensorrt Python module (or trtexec), nvidia-smi, and onnx, onnxruntime, onnxconverter-common.
# PYTHON selects the interpreter (default: python3). An engine only runs with the GPU model and TensorRT
# version that built it: rebuild after changing either (Dockerfile: TENSORRT_IMAGE and TRITON_IMAGE go together).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
EXPORT_DIR=build/export
BUILD_ARGS=()
SELECTED=()
PRECISION=fp16
while [ $# -gt 0 ]; do
  case "$1" in
    --voice) SELECTED+=("$2"); shift 2 ;;
    --memory-budget-gib) BUILD_ARGS+=(--memory-budget-gib "$2"); shift 2 ;;
    --precision) PRECISION=$2; shift 2 ;;
    --bench) BUILD_ARGS+=(--bench); shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) EXPORT_DIR=$1; shift ;;
  esac
done
case "$PRECISION" in fp16|fp32) ;; *) echo "error: --precision must be fp16 or fp32, not $PRECISION" >&2; exit 2 ;; esac
[ -d "$EXPORT_DIR" ] || { echo "error: export directory $EXPORT_DIR not found: run python -m export MODEL_DIR --out $EXPORT_DIR first" >&2; exit 1; }
EXPORT_DIR=$(cd "$EXPORT_DIR" && pwd)
cd "$ROOT"
START=$SECONDS
step() { printf '[build_engines %4ds] %s\n' $((SECONDS - START)) "$*"; }

step "checking the tools"
command -v nvidia-smi >/dev/null || { echo "error: nvidia-smi not found: run on a GPU host (docker compose run builder)" >&2; exit 1; }
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader | sed 's/^/    GPU: /'
"$PYTHON" -c "import onnx, onnxruntime, onnxconverter_common" 2>/dev/null \
  || { echo "error: $PYTHON lacks onnx, onnxruntime or onnxconverter-common: pip install -e '.[export]'" >&2; exit 1; }
if "$PYTHON" -c "import tensorrt" 2>/dev/null; then
  step "TensorRT $("$PYTHON" -c 'import tensorrt; print(tensorrt.__version__)') (Python API)"
elif command -v trtexec >/dev/null; then
  step "TensorRT Python module missing: building with $(command -v trtexec) (no engine-vs-FP32 check)"
else
  echo "error: neither the tensorrt Python module nor trtexec is available: use the builder image (docker compose run builder)" >&2
  exit 1
fi

if [ ${#SELECTED[@]} -gt 0 ]; then
  VOICES="${SELECTED[*]}"
else
  VOICES=$("$PYTHON" -c "import sys; from pathlib import Path; from serving.contract import ExportConfig; print(' '.join(ExportConfig.read(Path(sys.argv[1])).voice_names()))" "$EXPORT_DIR")
fi
step "export directory $EXPORT_DIR: voices $VOICES"

VOICE_ARGS=()
for voice in $VOICES; do
  VOICE_ARGS+=(--voice "$voice")
  if [ "$PRECISION" = fp16 ]; then
    step "$voice: FP16 check"
    "$PYTHON" -m export.fp16_check "$EXPORT_DIR" --voice "$voice" --save-fp16 --report "$EXPORT_DIR/$voice/fp16_check.json"
  fi
done
step "building the $PRECISION engine(s)"
"$PYTHON" -m export.trt_build "$EXPORT_DIR" "${VOICE_ARGS[@]}" --precision "$PRECISION" ${BUILD_ARGS[@]+"${BUILD_ARGS[@]}"}

step "checking the engines against this host (as the server will)"
PLANS=()
for voice in $VOICES; do PLANS+=("$EXPORT_DIR/$voice/vocoder.plan"); done
"$PYTHON" -m deploy.engine_check "${PLANS[@]}"
"$PYTHON" -m export.trt_build "$EXPORT_DIR" --summary
step "done: ${#PLANS[@]} engine(s) in $EXPORT_DIR"
