"""Refuse a TensorRT engine built for another GPU or TensorRT version, before Triton loads it.

A TensorRT plan only runs on the GPU model and TensorRT version that built it. export.trt_build writes
`<plan>.json` beside each plan; `check_engine(plan)` compares it with this host:
- GPUs: `nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader` (every GPU must match);
- TensorRT: `tensorrt.__version__` where the module is importable, else the NGC images' `TRT_VERSION`
  environment variable, else the version in the name of libnvinfer.so.X.Y.Z (as in Triton's image).
The probe is injectable for tests. No torch or tensorrt import is needed to read the metadata.

    python -m deploy.engine_check PLAN [PLAN ...]
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from serving.contract import plan_metadata_path

REBUILD = "scripts/build_engines.sh EXPORT_DIR"
LIBNVINFER_GLOBS = ("/usr/lib/x86_64-linux-gnu/libnvinfer.so.*.*.*", "/usr/lib/aarch64-linux-gnu/libnvinfer.so.*.*.*",
                    "/usr/local/tensorrt/lib/libnvinfer.so.*.*.*", "/opt/tritonserver/lib/libnvinfer.so.*.*.*")
VERSION_PARTS = 3  # engines are tied to major.minor.patch; the build number may differ


class EngineCheckError(RuntimeError):
    """The engine cannot be checked (no metadata, no GPU, unknown TensorRT version)."""


class EngineMismatchError(EngineCheckError):
    """The engine was built for another GPU or TensorRT version."""


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: str  # "9.0"


@dataclass(frozen=True)
class Platform:
    gpus: list[Gpu]
    tensorrt_version: str | None


def probe_gpus() -> list[Gpu]:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        raise EngineCheckError(f"cannot list the GPUs (nvidia-smi: {e}): run on a GPU host with the NVIDIA driver")
    if done.returncode != 0:
        raise EngineCheckError(f"nvidia-smi failed: {done.stderr.strip() or done.stdout.strip()}")
    gpus = [Gpu(*(part.strip() for part in line.rsplit(",", 1))) for line in done.stdout.splitlines() if line.strip()]
    if not gpus:
        raise EngineCheckError("nvidia-smi lists no GPU")
    return gpus


def probe_tensorrt_version() -> str | None:
    try:
        import tensorrt

        return tensorrt.__version__
    except ImportError:
        pass
    if os.environ.get("TRT_VERSION"):
        return os.environ["TRT_VERSION"]
    for pattern in LIBNVINFER_GLOBS:
        for path in sorted(glob.glob(pattern)):
            match = re.search(r"libnvinfer\.so\.(\d+\.\d+\.\d+)$", path)
            if match:
                return match.group(1)
    return None


def probe_platform() -> Platform:
    return Platform(probe_gpus(), probe_tensorrt_version())


def same_version(a: str, b: str) -> bool:
    return a.split(".")[:VERSION_PARTS] == b.split(".")[:VERSION_PARTS]


def read_metadata(plan_path: Path) -> dict:
    path = plan_metadata_path(plan_path)
    if not path.is_file():
        raise EngineCheckError(f"{path} is missing, so {plan_path} cannot be checked: rebuild it with {REBUILD}")
    try:
        metadata = json.loads(path.read_text())
        _ = metadata["gpu_name"], metadata["compute_capability"], metadata["tensorrt_version"]
    except (ValueError, KeyError, TypeError) as e:
        raise EngineCheckError(f"{path} is not engine metadata ({e}): rebuild it with {REBUILD}") from None
    return metadata


def check_engine(plan_path: str | Path, probe: Callable[[], Platform] = probe_platform) -> dict:
    """The engine's metadata if it fits this host's GPUs and TensorRT; else EngineMismatchError saying what differs."""
    plan_path = Path(plan_path)
    metadata = read_metadata(plan_path)
    platform = probe()
    if platform.tensorrt_version is None:
        raise EngineCheckError("cannot tell this host's TensorRT version (no tensorrt module, no TRT_VERSION, "
                               "no libnvinfer.so.X.Y.Z): set TRT_VERSION")
    built = Gpu(metadata["gpu_name"], str(metadata["compute_capability"]))
    differences = []
    for index, gpu in enumerate(platform.gpus):
        if gpu != built:
            differences.append(f"GPU {index} is {gpu.name} (compute capability {gpu.compute_capability})")
    if not same_version(platform.tensorrt_version, metadata["tensorrt_version"]):
        differences.append(f"TensorRT is {platform.tensorrt_version}")
    if differences:
        raise EngineMismatchError(
            f"{plan_path} was built for {built.name} (compute capability {built.compute_capability}) with TensorRT "
            f"{metadata['tensorrt_version']}, but here {' and '.join(differences)}: rebuild the engines on this host "
            f"with {REBUILD}"
        )
    return metadata


def main(argv: list[str] | None = None) -> int:
    plans = argv if argv is not None else sys.argv[1:]
    if not plans:
        print("usage: python -m deploy.engine_check PLAN [PLAN ...]", file=sys.stderr)
        return 2
    try:
        for plan in plans:
            metadata = check_engine(plan)
            print(f"{plan}: fits this host ({metadata['gpu_name']}, TensorRT {metadata['tensorrt_version']})")
    except EngineCheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
