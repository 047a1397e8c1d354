"""Triton adapter for serving.steps.vocoder (CPU target; a GPU host runs the TensorRT engine instead)."""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from serving.export_config import ExportConfig
from serving.steps.vocoder import VocoderStep

INPUTS = {"mel": "MEL", "FRAMES": "FRAMES", "VOICE_INDEX": "VOICE_INDEX"}


class TritonPythonModel:
    def initialize(self, args):
        parameters = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        version_dir = Path(__file__).parent
        self.step = VocoderStep(ExportConfig.read(version_dir), version_dir,
                                providers=parameters["providers"].split(","),
                                intra_op_threads=int(parameters["intra_op_threads"]),
                                precision=parameters["precision"])

    def execute(self, requests):
        batch = [{key: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name, key in INPUTS.items()}
                 for r in requests]
        return [pb_utils.InferenceResponse([pb_utils.Tensor("audio", wav)]) for wav in self.step.process(batch)]
