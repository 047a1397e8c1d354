"""Generate a Triton model repository for a target (cpu or gpu) from an export directory.

The templates and thin model.py adapters live in model_repository/; this fills in the numbers (from
export.json and serving.limits), copies the ONNX files (or the TensorRT engine) next to the models
that run them, and writes the warmup inputs. One source of truth for both targets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from string import Template

import numpy as np

from serving.export_config import ExportConfig, ExportConfigError
from serving.limits import MAX_BATCH_SIZE
from serving.steps.frontend import FrontendStep
from serving.symbols import STREAMS
from serving.vocoder_precision import AUTO, BF16, BF16_FILE, CHOICES, PrecisionError, choose, cpu_flags

TEMPLATES = Path(__file__).resolve().parent.parent / "model_repository"
ACOUSTIC_GRAPHS = ("encoder.onnx", "duration_step.onnx", "decoder_memory.onnx", "decoder_step.onnx", "postnet.onnx")
WARMUP_TOKENS = 16
WARMUP_FRAMES = 64

TARGETS = {
    "cpu": dict(device_kind="KIND_CPU", providers="CPUExecutionProvider", intra_op_threads=2,
                frontend_instances=1, acoustic_instances=1, vocoder_instances=1,
                frontend_queue_delay_us=0, acoustic_queue_delay_us=2000, vocoder_queue_delay_us=1000,
                vocoder_extra_inputs=('\n    input_map { key: "FRAMES" value: "frames" }'
                                      ' input_map { key: "VOICE_INDEX" value: "voice_index" }')),
    "gpu": dict(device_kind="KIND_GPU", providers="CUDAExecutionProvider,CPUExecutionProvider", intra_op_threads=4,
                frontend_instances=4, acoustic_instances=2, vocoder_instances=1,
                frontend_queue_delay_us=0, acoustic_queue_delay_us=2000, vocoder_queue_delay_us=1000,
                vocoder_extra_inputs=""),
}


class RepositoryError(ValueError):
    pass


def pbtxt_string(text: str) -> str:
    """Escape a string for a double-quoted protobuf text field."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render(template: Path, values: dict) -> str:
    return Template(template.read_text()).substitute(values)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise RepositoryError(f"{src} is missing: export the model again (python -m export MODEL_DIR --out ...)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def generate(export_dir: Path, out: Path, target: str, vocoder_precision: str = AUTO, log=print) -> Path:
    """vocoder_precision (CPU target only): fp32, bf16 or auto (serving.vocoder_precision.choose)."""
    if target not in TARGETS:
        raise RepositoryError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")
    export_dir, out = Path(export_dir), Path(out)
    config = ExportConfig.read(export_dir)
    voices = config.voice_names()
    catalog = FrontendStep(config).catalog()
    precision = "fp16"  # the GPU target serves the FP16 TensorRT engine
    if target == "cpu":
        try:
            precision, why = choose(export_dir, voices, vocoder_precision, cpu_flags())
        except PrecisionError as e:
            raise RepositoryError(str(e)) from None
        log(f"CPU vocoder precision: {precision} ({why})")
    values = dict(TARGETS[target], max_batch_size=MAX_BATCH_SIZE, streams=len(STREAMS), n_mels=config.audio.n_mels,
                  vocoder_precision=precision, warmup_tokens=WARMUP_TOKENS, warmup_frames=WARMUP_FRAMES,
                  voices_json=pbtxt_string(json.dumps(catalog, ensure_ascii=False)))
    if out.exists():
        shutil.rmtree(out)

    for model in ("frontend", "acoustic", "audio", "tts"):
        (out / model / "1").mkdir(parents=True)
        (out / model / "config.pbtxt").write_text(render(TEMPLATES / model / "config.pbtxt.in", values))
    (out / "vocoder" / "1").mkdir(parents=True)
    (out / "vocoder" / "config.pbtxt").write_text(render(TEMPLATES / "vocoder" / f"config.{target}.pbtxt.in", values))

    python_models = ("frontend", "acoustic", "audio") + (("vocoder",) if target == "cpu" else ())
    for model in python_models:
        copy(TEMPLATES / model / "1" / "model.py", out / model / "1" / "model.py")
        copy(export_dir / "export.json", out / model / "1" / "export.json")
    for voice in voices:
        for graph in ACOUSTIC_GRAPHS:
            copy(export_dir / voice / graph, out / "acoustic" / "1" / voice / graph)
    if target == "cpu":
        for voice in voices:
            vocoder_file = BF16_FILE if precision == BF16 else "vocoder.onnx"
            copy(export_dir / voice / vocoder_file, out / "vocoder" / "1" / voice / vocoder_file)
    else:
        # Triton's tensorrt backend runs one engine per model and an ensemble cannot route by voice.
        hashes = {v: sha256(export_dir / v / "vocoder.onnx") for v in voices}
        if len(set(hashes.values())) > 1:
            raise RepositoryError("the voices use different vocoders, but the GPU repository serves one TensorRT "
                                  "vocoder: export one voice (python -m export MODEL_DIR --voice NAME)")
        copy(export_dir / voices[0] / "vocoder.plan", out / "vocoder" / "1" / "model.plan")
        copy(export_dir / voices[0] / "vocoder.plan.json", out / "vocoder" / "1" / "model.plan.json")

    warmup = out / "acoustic" / "warmup"
    warmup.mkdir()
    np.array([WARMUP_TOKENS], dtype=np.int32).tofile(warmup / "tokens")
    np.array([1.0], dtype=np.float32).tofile(warmup / "duration_scale")
    if target == "cpu":
        (out / "vocoder" / "warmup").mkdir()
        np.array([WARMUP_FRAMES], dtype=np.int32).tofile(out / "vocoder" / "warmup" / "frames")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate a Triton model repository from an export directory.")
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--target", choices=sorted(TARGETS), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("build/model_repository"))
    parser.add_argument("--vocoder-precision", choices=CHOICES, default=AUTO,
                        help="CPU target: the vocoder's precision; auto picks BF16 where the CPU and the export's "
                             "quality record allow it (default auto)")
    args = parser.parse_args()
    try:
        out = generate(args.export_dir, args.out, args.target, args.vocoder_precision)
    except (RepositoryError, ExportConfigError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote the {args.target} model repository to {out}")


if __name__ == "__main__":
    main()
