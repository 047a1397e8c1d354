"""ONNX Runtime settings shared by the acoustic and vocoder runtimes."""

from __future__ import annotations

from dataclasses import dataclass

import onnxruntime as ort

CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how wide a model instance runs: its ONNX Runtime providers and intra-op threads (None: ORT's default)."""

    providers: tuple[str, ...] = (CPU,)
    intra_op_threads: int | None = None


def session_options(intra_op_threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Memory patterns are planned and kept per input shape; batch, phone and frame counts change with
    # every call, so the plans would pile up and the server's memory grow as long as new shapes arrive.
    options.enable_mem_pattern = False
    # The server's models run side by side on the same cores: idle threads sleep instead of spinning.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    return options


class ProviderUnavailableError(RuntimeError):
    """An execution provider the deployment asks for could not be loaded (ONNX Runtime falls back silently)."""


def create_session(path, options: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
    """An ONNX Runtime session that runs on every provider asked for, or an error saying which one is missing.

    ONNX Runtime quietly falls back to the CPU when, say, the CUDA provider's libraries do not load; a GPU
    deployment would then run at a fraction of its speed without a word."""
    session = ort.InferenceSession(str(path), options, providers=providers)
    missing = [p for p in providers if p != CPU and p not in session.get_providers()]
    if missing:
        raise ProviderUnavailableError(
            f"{path}: ONNX Runtime could not load {', '.join(missing)} (it has {', '.join(session.get_providers())}): "
            "install the onnxruntime-gpu build that matches this host's CUDA and cuDNN, or deploy the CPU target")
    return session
