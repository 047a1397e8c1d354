"""Triton adapter for serving.stream: a decoupled model that answers each request with its audio chunk by chunk."""

import triton_python_backend_utils as pb_utils

from serving.stream import adapter


class TritonPythonModel:
    def initialize(self, args):
        self.engine = adapter.stream_engine(pb_utils, adapter.ModelArgs(args))

    def execute(self, requests):
        for request in requests:  # the engine's threads answer through each request's response sender
            adapter.submit_stream(pb_utils, self.engine, request)

    def finalize(self):
        self.engine.close()
