"""Triton adapter for serving.steps.vocoder: the CPU vocoder, or on a GPU host the TensorRT engine model."""

import triton_python_backend_utils as pb_utils

from serving import adapter
from serving.steps.vocoder import VocoderStep


class TritonPythonModel:
    def initialize(self, args):
        model = adapter.ModelArgs(args)
        self.step = VocoderStep(model.export_config, model.files, model.runtime_options(), model.parameters["runtime"],
                                adapter.engine_call(pb_utils, model), int(model.parameters["bucket_frames"]))

    def execute(self, requests):
        return adapter.execute(pb_utils, self.step, requests)
