"""Triton adapter for serving.steps.frontend: tensors in, sentence rows out, user errors as INVALID_ARG."""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from serving.export_config import ExportConfig
from serving.steps.frontend import FrontendStep, RequestError


def optional_scalar(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    array = tensor.as_numpy()
    if array.size != 1:
        raise RequestError(f"{name} must hold exactly one value per request, got shape {list(array.shape)}")
    return array.reshape(-1)[0]


class TritonPythonModel:
    def initialize(self, args):
        self.step = FrontendStep(ExportConfig.read(Path(__file__).parent))

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                rows = self.step.process(optional_scalar(request, "TEXT"), optional_scalar(request, "VOICE"),
                                         optional_scalar(request, "EMOTION"), optional_scalar(request, "SPEED"))
            except RequestError as e:
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(e), pb_utils.TritonError.INVALID_ARG)))
                continue
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("IDS", rows.ids), pb_utils.Tensor("TOKENS", rows.tokens),
                pb_utils.Tensor("VOICE_INDEX", rows.voice_index),
                pb_utils.Tensor("DURATION_SCALE", rows.duration_scale), pb_utils.Tensor("PAUSE", rows.pause),
            ]))
        return responses
