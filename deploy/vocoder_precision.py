"""Which precision the CPU vocoder runs in: FP32 (ONNX Runtime) or BF16 (torch, BF16 convolutions).

The export writes the BF16 vocoder only when asked (`python -m export ... --cpu-bf16-vocoder`), next to
the FP32 ONNX file, with a quality record. A deployment then picks, per model repository:

    python -m deploy.repository EXPORT_DIR --target cpu --vocoder-precision auto|fp32|bf16

"auto" (the default) picks BF16 only where it holds, which means all of:
1. this CPU computes BF16 natively (`avx512_bf16` or `amx_bf16` in /proc/cpuinfo); elsewhere BF16 is
   emulated and slower than FP32;
2. every voice of the export has a BF16 vocoder, and its quality record, measured by the export on the
   voice's own vocoder, shows a re-analysed log-mel L1 between the BF16 and the FP32 output of at most
   serving.contract.MAX_L1_VS_FP32 on every check sentence (export.vocoder_bf16.CHECK_SENTENCES);
3. the BF16 scheme (export.vocoder_bf16) keeps a real vocoder's distance to real speech within
   serving.contract.MAX_DISTANCE_RISE of FP32's: that needs trained weights and recorded speech, so it is measured on the
   universal HiFi-GAN V1 by tests/test_vocoder_precision.py and bench/precision.py
   (results/precision.md), not per voice.
Otherwise "auto" is FP32, and the reason is printed. An explicit "bf16" is honoured when the files are
there, whatever the quality record says (a warning is printed when it does not hold).
No torch here: this runs where the model repository is generated.
"""

from __future__ import annotations

from pathlib import Path

from serving.contract import BF16, FP32, VOCODER_BF16, VOCODER_BF16_CHECK, BF16Check

AUTO = "auto"
CHOICES = (AUTO, FP32, BF16)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


class PrecisionError(ValueError):
    """The vocoder precision asked for cannot be served from this export on this machine."""


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (empty where there is no such file)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def choose(export_dir: Path, voices: list[str], requested: str, flags: set[str]) -> tuple[str, str]:
    """(precision, why) for the CPU vocoder of `voices` in `export_dir`, given the CPU's `flags`."""
    if requested not in CHOICES:
        raise PrecisionError(f"unknown vocoder precision {requested!r}: use one of {', '.join(CHOICES)}")
    if requested == FP32:
        return FP32, "asked for"
    missing = [v for v in voices if not (Path(export_dir) / v / VOCODER_BF16).is_file()
               or not (Path(export_dir) / v / VOCODER_BF16_CHECK).is_file()]
    native = any(flag in flags for flag in BF16_CPU_FLAGS)
    if requested == BF16:
        if missing:
            raise PrecisionError(f"the export has no BF16 vocoder for {', '.join(missing)}: export again with "
                                 "python -m export MODEL_DIR --out DIR --cpu-bf16-vocoder")
        checks = {v: BF16Check.read(Path(export_dir) / v) for v in voices}
        notes = [f"{v}: {c.summary()} does not hold" for v, c in checks.items() if not c.holds]
        if not native:
            notes.append(f"this CPU has none of {', '.join(BF16_CPU_FLAGS)}: BF16 runs emulated, slower than FP32")
        return BF16, "asked for" + ("; warning: " + "; ".join(notes) if notes else "")
    if not native:
        return FP32, f"this CPU has none of {', '.join(BF16_CPU_FLAGS)}"
    if missing:
        return FP32, f"the export has no BF16 vocoder for {', '.join(missing)} (python -m export ... --cpu-bf16-vocoder)"
    checks = {v: BF16Check.read(Path(export_dir) / v) for v in voices}
    failing = [f"{v}: {c.summary()}" for v, c in checks.items() if not c.holds]
    if failing:
        return FP32, "the quality bound does not hold for " + "; ".join(failing)
    return BF16, "the CPU computes BF16 natively and every voice holds the bound: " + "; ".join(
        f"{v}: {c.summary()}" for v, c in checks.items())
