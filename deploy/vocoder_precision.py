"""Which precision the CPU vocoder runs in: OpenVINO in FP32 or in BF16, from the same vocoder.onnx.

The export records, per voice, how the vocoder fares in BF16 against FP32 (export.bf16_check). A
deployment then picks, per model repository:

    python -m deploy.repository EXPORT_DIR --target cpu --vocoder-precision auto|fp32|bf16

"auto" (the default) picks BF16 only where it holds, which means all of:
1. this CPU computes BF16 natively (`avx512_bf16` or `amx_bf16` in /proc/cpuinfo); elsewhere OpenVINO
   would run FP32 anyway;
2. every voice's quality record, measured by the export in BF16 on the voice's own vocoder, shows a
   re-analysed log-mel L1 between the BF16 and the FP32 output of at most serving.contract.MAX_L1_VS_FP32
   on every check sentence (export.bf16_check.CHECK_SENTENCES);
3. BF16 keeps a real vocoder's distance to real speech within serving.contract.MAX_DISTANCE_RISE of
   FP32's: that needs trained weights and recorded speech, so it is measured on the universal HiFi-GAN V1
   by tests/test_vocoder_precision.py and bench/precision.py (results/precision.md), not per voice.
Otherwise "auto" is FP32, and the reason is printed. An explicit "bf16" is honoured whatever the
quality record says (a warning is printed when it does not hold).
No OpenVINO here: this runs where the model repository is generated.
"""

from __future__ import annotations

from pathlib import Path

from serving.contract import BF16, FP32, VOCODER_BF16_CHECK, BF16Check

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
    native = any(flag in flags for flag in BF16_CPU_FLAGS)
    missing = [v for v in voices if not (Path(export_dir) / v / VOCODER_BF16_CHECK).is_file()]
    checks = {v: BF16Check.read(Path(export_dir) / v) for v in voices if v not in missing}
    if requested == BF16:
        notes = [f"{v}: {c.summary()} does not hold" for v, c in checks.items() if not c.holds]
        notes += [f"{v}: no BF16 quality record" for v in missing]
        if not native:
            notes.append(f"this CPU has none of {', '.join(BF16_CPU_FLAGS)}: OpenVINO will run FP32")
        return BF16, "asked for" + ("; warning: " + "; ".join(notes) if notes else "")
    if not native:
        return FP32, f"this CPU has none of {', '.join(BF16_CPU_FLAGS)}"
    if missing:
        return FP32, (f"the export has no BF16 quality record for {', '.join(missing)}: export again "
                      "(python -m export MODEL_DIR --out DIR)")
    failing = [f"{v}: {c.summary()}" for v, c in checks.items() if not c.holds]
    if failing:
        return FP32, "the quality bound does not hold for " + "; ".join(failing)
    return BF16, "the CPU computes BF16 natively and every voice holds the bound: " + "; ".join(
        f"{v}: {c.summary()}" for v, c in checks.items())
