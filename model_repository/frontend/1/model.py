"""Triton adapter for serving.steps.frontend: text in, one row of symbol ids per sentence out."""

import triton_python_backend_utils as pb_utils

from serving import adapter
from serving.steps.frontend import FrontendStep


class TritonPythonModel:
    def initialize(self, args):
        model = adapter.ModelArgs(args)
        self.step = FrontendStep(model.export_config, noise_seed=model.noise_seed())

    def execute(self, requests):
        return adapter.execute(pb_utils, self.step, requests)
