"""Triton adapter for serving.steps.audio: one AUDIO and SAMPLE_RATE per request."""

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from serving.export_config import ExportConfig
from serving.steps.audio import join_sentences


class TritonPythonModel:
    def initialize(self, args):
        self.audio = ExportConfig.read(Path(__file__).parent).audio

    def execute(self, requests):
        responses = []
        for request in requests:
            wav, frames, pause = (pb_utils.get_input_tensor_by_name(request, n).as_numpy()
                                  for n in ("WAV", "FRAMES", "PAUSE"))
            audio = join_sentences(wav, frames, pause, self.audio.hop_length, self.audio.sample_rate)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("AUDIO", audio),
                pb_utils.Tensor("SAMPLE_RATE", np.array([[self.audio.sample_rate]], dtype=np.int32)),
            ]))
        return responses
