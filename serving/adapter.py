"""What every model_repository/*/1/model.py shares: a step's tensors in and out of Triton.

`pb_utils` (triton_python_backend_utils) exists only inside the Triton python stub, so the model.py
files pass it in. Every request gets its own response: its outputs, or its own error. (The streaming
model's own part is serving.stream.adapter.)
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path

from serving.contract import SOURCE, VOCODER_ENGINE, VOCODER_MEL, WAV, ExportConfig, Model
from serving.runtime.sessions import RuntimeOptions
from serving.runtime.vocoder_engine import EngineCall
from serving.steps import ModelFailedError, RequestError, ServerBusyError, Step, Tensors


class ModelArgs:
    """The `args` Triton gives a python model's initialize(): its files and its config's parameters."""

    def __init__(self, args: dict):
        self.files = Path(args["model_repository"]) / args["model_version"]  # where the generator put its files
        config = json.loads(args["model_config"])
        self.parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}

    @property
    def export_config(self) -> ExportConfig:
        return ExportConfig.read(self.files)

    def noise_seed(self) -> int | None:
        """The deployment's seed of NSF noise ("": none, each request draws its own)."""
        value = self.parameters.get("noise_seed", "")
        return int(value) if value else None

    def runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions.from_parameters(self.parameters)


def request_tensors(pb_utils, model: Model, request) -> Tensors:
    """The inputs of `model` that a request carries, by name."""
    tensors = {}
    for tensor in model.inputs:
        value = pb_utils.get_input_tensor_by_name(request, tensor.name)
        if value is not None:
            tensors[tensor.name] = value.as_numpy()
    return tensors


def error_response(pb_utils, error: Exception, model: str):
    """A client's mistake (RequestError) as INVALID_ARG with its message; a capacity limit (ServerBusyError)
    as UNAVAILABLE and a model it called that failed (ModelFailedError) as INTERNAL, each with its message;
    anything else as a short INTERNAL error of `model` (the details belong in the server log, not in a response)."""
    if isinstance(error, RequestError):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG))
    if isinstance(error, ServerBusyError):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), pb_utils.TritonError.UNAVAILABLE))
    if isinstance(error, ModelFailedError):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), pb_utils.TritonError.INTERNAL))
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(
        f"internal error in model '{model}' (the server log has the details)", pb_utils.TritonError.INTERNAL))


def execute(pb_utils, step: Step, requests: list) -> list:
    """Run one dynamic batch through `step`: each request's declared inputs in, its outputs or error out.

    A request's own mistake is its own INVALID_ARG; anything else is logged with its traceback and answered
    with a short INTERNAL error (no server paths in a response)."""
    try:
        results = step.process([request_tensors(pb_utils, step.model, request) for request in requests])
    except Exception as e:
        pb_utils.Logger.log_error(f"{step.model.name}: {traceback.format_exc()}")
        return [error_response(pb_utils, e, step.model.name) for _ in requests]
    responses = []
    for result in results:
        if isinstance(result, RequestError):
            responses.append(error_response(pb_utils, result, step.model.name))
        else:
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(name, value) for name, value in result.items()]))
    return responses


def engine_call(pb_utils, args: ModelArgs) -> EngineCall | None:
    """The TensorRT engine model, called through BLS, where the vocoder's parameters name one (GPU target)."""
    if "engine_max_batch_size" not in args.parameters:
        return None

    def infer(mel, source):
        inputs = [pb_utils.Tensor(VOCODER_MEL.name, mel)] + ([] if source is None else [pb_utils.Tensor(SOURCE.name, source)])
        request = pb_utils.InferenceRequest(model_name=VOCODER_ENGINE.name, inputs=inputs,
                                            requested_output_names=[WAV.name])
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{VOCODER_ENGINE.name}: {response.error().message()}")
        return pb_utils.get_output_tensor_by_name(response, WAV.name).as_numpy()

    return EngineCall(infer, int(args.parameters["engine_max_batch_size"]))

