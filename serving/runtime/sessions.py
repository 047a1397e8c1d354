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
