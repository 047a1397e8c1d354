"""Triton adapter for serving.steps.join: one AUDIO and SAMPLE_RATE per request."""

import triton_python_backend_utils as pb_utils

from serving import adapter
from serving.steps.join import JoinStep


class TritonPythonModel:
    def initialize(self, args):
        self.step = JoinStep(adapter.ModelArgs(args).export_config)

    def execute(self, requests):
        return adapter.execute(pb_utils, self.step, requests)
