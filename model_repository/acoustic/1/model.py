"""Triton adapter for serving.steps.acoustic: all sentences of the dynamic batch in one Sambert run."""

import triton_python_backend_utils as pb_utils

from serving import adapter
from serving.steps.acoustic import AcousticStep


class TritonPythonModel:
    def initialize(self, args):
        model = adapter.ModelArgs(args)
        self.step = AcousticStep(model.export_config, model.files, model.runtime_options(),
                                 int(model.parameters["max_sentence_frames"]))

    def execute(self, requests):
        return adapter.execute(pb_utils, self.step, requests)
