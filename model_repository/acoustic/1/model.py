"""Triton adapter for serving.steps.acoustic: all requests of the dynamic batch in one Sambert run."""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from serving.export_config import ExportConfig
from serving.steps.acoustic import AcousticStep

INPUTS = ("IDS", "TOKENS", "VOICE_INDEX", "DURATION_SCALE")


class TritonPythonModel:
    def initialize(self, args):
        parameters = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        version_dir = Path(__file__).parent
        self.step = AcousticStep(ExportConfig.read(version_dir), version_dir,
                                 providers=parameters["providers"].split(","),
                                 intra_op_threads=int(parameters["intra_op_threads"]))

    def execute(self, requests):
        batch = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in INPUTS} for r in requests]
        return [pb_utils.InferenceResponse([pb_utils.Tensor("MEL", mel), pb_utils.Tensor("FRAMES", frames)])
                for mel, frames in self.step.process(batch)]
