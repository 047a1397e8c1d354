"""One ONNX graph loaded for inference, on ONNX Runtime or OpenVINO, behind one small interface.

The acoustic runtime picks a backend per graph (whichever is faster for that graph, measured by
`python -m bench.acoustic_backends`); the CPU vocoder runs on OpenVINO, in FP32 or BF16. Both runtimes
only need `run(feeds) -> outputs`, the graph's metadata and its input shapes.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

CPU = "CPUExecutionProvider"
ONNXRUNTIME, OPENVINO = "onnxruntime", "openvino"
BACKENDS = (ONNXRUNTIME, OPENVINO)
# OpenVINO inference precisions (its INFERENCE_PRECISION_HINT values)
OV_FP32, OV_BF16 = "f32", "bf16"


@dataclass(frozen=True)
class RuntimeOptions:
    """How a model instance runs its graphs: ONNX Runtime providers, threads (None: the library's default)
    and, per acoustic graph file, its backend (ONNX Runtime where none is named)."""

    providers: tuple[str, ...] = (CPU,)
    intra_op_threads: int | None = None
    backends: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_parameters(cls, parameters: dict[str, str]) -> "RuntimeOptions":
        """From a model config's parameters, as deploy.repository writes them (providers, threads, backends)."""
        return cls(tuple(parameters["providers"].split(",")), int(parameters["threads"]),
                   json.loads(parameters.get("backends", "{}")))


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
        options.inter_op_num_threads = 1
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


class OnnxRuntimeGraph:
    def __init__(self, path: str | Path, providers: tuple[str, ...] = (CPU,), threads: int | None = None):
        self.session = create_session(path, session_options(threads), list(providers))
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.input_shapes = {i.name: list(i.shape) for i in self.session.get_inputs()}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)


class OpenVinoGraph:
    """An ONNX file compiled by OpenVINO's CPU plugin with one stream of `threads` threads, unpinned (the
    server's other processes share the cores), at `precision` (OV_FP32 or OV_BF16).

    One compiled model runs one inference at a time, so calls from several threads take turns (its infer
    request is not safe to share); threads that must vocode at once need a graph each."""

    def __init__(self, path: str | Path, threads: int | None = None, precision: str = OV_FP32):
        model = _core().read_model(str(path))
        # OpenVINO keeps the ONNX metadata_props in the model's rt_info under "framework".
        framework = model.get_rt_info()["framework"] if model.has_rt_info(["framework"]) else {}
        self.metadata = {key: value.astype(str) for key, value in framework.items()}
        self.input_shapes = {i.get_any_name(): [d.get_length() if d.is_static else None for d in i.get_partial_shape()]
                             for i in model.inputs}
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                  "ENABLE_CPU_PINNING": False}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = _core().compile_model(model, "CPU", config)
        # What the plugin really runs: BF16 asked for on a CPU without it falls back to FP32.
        runs = str(self.compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
        self.precision = OV_BF16 if "bf16" in runs or "bfloat16" in runs else OV_FP32
        self.request = self.compiled.create_infer_request()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            results = self.request.infer(feeds)
            # The request's output buffers are reused by the next call: hand out copies.
            return [np.array(results[name]) for name in self.output_names]


def open_graph(path: str | Path, backend: str, options: RuntimeOptions):
    if backend == OPENVINO:
        return OpenVinoGraph(path, options.intra_op_threads)
    if backend == ONNXRUNTIME:
        return OnnxRuntimeGraph(path, options.providers, options.intra_op_threads)
    raise ValueError(f"unknown graph backend {backend!r}: use one of {', '.join(BACKENDS)}")


_CORE = None


def _core():
    """One OpenVINO Core per process (imported only where a graph runs on OpenVINO)."""
    global _CORE
    if _CORE is None:
        import openvino

        _CORE = openvino.Core()
    return _CORE
