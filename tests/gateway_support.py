"""Helpers for the gateway tests: a model repository with a stand-in streaming model, Triton model control.

The stand-in replaces the real `tts_stream` so that the gateway's tests see chunks far apart in time
whatever the machine's speed: a decoupled python model with the inputs of `tts` that calls the `tts`
ensemble (BLS) and sends its AUDIO in CHUNKS responses, CHUNK_DELAY_S apart, then a final empty response
flagged complete. Its chunks join to exactly what `tts` answers. (tests/test_stream_server.py tests the
real model.)
"""

from __future__ import annotations

import shutil
import textwrap
import urllib.request
from pathlib import Path

CHUNKS = 4
CHUNK_DELAY_S = 0.4

STREAM_MODEL = '''
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils

INPUTS = ("TEXT", "VOICE", "EMOTION", "SPEED")


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.chunks = int(parameters["chunks"]["string_value"])
        self.delay_s = float(parameters["chunk_delay_s"]["string_value"])

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            inputs = [t for t in (pb_utils.get_input_tensor_by_name(request, n) for n in INPUTS) if t is not None]
            whole = pb_utils.InferenceRequest(model_name="tts", inputs=inputs,
                                              requested_output_names=["AUDIO", "SAMPLE_RATE"]).exec()
            if whole.has_error():
                # BLS reports the ensemble's errors as INTERNAL; here they are the request's mistakes.
                error = pb_utils.TritonError(whole.error().message(), pb_utils.TritonError.INVALID_ARG)
                sender.send(pb_utils.InferenceResponse(error=error),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                continue
            audio = pb_utils.get_output_tensor_by_name(whole, "AUDIO").as_numpy().reshape(-1)
            rate = pb_utils.get_output_tensor_by_name(whole, "SAMPLE_RATE").as_numpy().reshape(1, 1)
            for index, piece in enumerate(np.array_split(audio, self.chunks)):
                if index:
                    time.sleep(self.delay_s)
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("AUDIO", piece[None, :].astype(np.float32)),
                                                        pb_utils.Tensor("SAMPLE_RATE", rate.astype(np.int32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
'''

STREAM_CONFIG = f'''
name: "tts_stream"
backend: "python"
max_batch_size: 1
model_transaction_policy {{ decoupled: true }}
input [
  {{ name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "VOICE" data_type: TYPE_STRING dims: [ 1 ] optional: true }},
  {{ name: "EMOTION" data_type: TYPE_STRING dims: [ 1 ] optional: true }},
  {{ name: "SPEED" data_type: TYPE_FP32 dims: [ 1 ] optional: true }}
]
output [
  {{ name: "AUDIO" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "SAMPLE_RATE" data_type: TYPE_INT32 dims: [ 1 ] }}
]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
parameters {{ key: "chunks" value {{ string_value: "{CHUNKS}" }} }}
parameters {{ key: "chunk_delay_s" value {{ string_value: "{CHUNK_DELAY_S}" }} }}
'''


def with_stream_model(repository: Path, out: Path) -> Path:
    """A copy of `repository` with the stand-in `tts_stream` in place of its own."""
    shutil.copytree(repository, out)
    shutil.rmtree(out / "tts_stream", ignore_errors=True)
    (out / "tts_stream" / "1").mkdir(parents=True)
    (out / "tts_stream" / "1" / "model.py").write_text(textwrap.dedent(STREAM_MODEL))
    (out / "tts_stream" / "config.pbtxt").write_text(STREAM_CONFIG)
    return out


def triton_model_control(server, model: str, action: str) -> None:
    """Load or unload a model of a TritonServer in explicit model control mode (an admin API: it takes the key)."""
    request = urllib.request.Request(f"http://{server.http_url}/v2/repository/models/{model}/{action}", data=b"",
                                     headers=server.admin_headers(), method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200

