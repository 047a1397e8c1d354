"""The streaming model's Triton glue (model_repository/tts_stream/1/model.py), beside serving.adapter.

The model is decoupled: execute() hands each request to the engine and returns; the engine's threads
answer through the request's response sender, chunk by chunk, running the vocoder step in this process
or calling the vocoder model through BLS (serving.stream.vocoder).
"""

from __future__ import annotations

import numpy as np

from serving.adapter import ModelArgs, error_response, request_tensors
from serving.contract import AUDIO, SAMPLE_RATE, TTS_STREAM, VOCODER, WAV
from serving.limits import MAX_STREAM_TEXT_CHARS
from serving.steps import ModelFailedError
from serving.steps.acoustic import AcousticStep
from serving.steps.frontend import FrontendStep
from serving.steps.vocoder import VocoderStep
from serving.stream.engine import VOCODER_LANES, StreamEngine
from serving.stream.policy import StreamPolicy
from serving.stream.vocoder import IN_PROCESS, Vocode, chunk_request, in_process


class ResponseSender:
    """serving.stream.engine.Sender over a decoupled request's response sender: AUDIO chunks, then the final flag."""

    def __init__(self, pb_utils, request, sample_rate: int):
        self.pb = pb_utils
        self.sender = request.get_response_sender()
        self.sample_rate = np.array([[sample_rate]], dtype=np.int32)

    def send(self, audio: np.ndarray, final: bool) -> None:
        response = self.pb.InferenceResponse([self.pb.Tensor(AUDIO.name, np.ascontiguousarray(audio[None])),
                                              self.pb.Tensor(SAMPLE_RATE.name, self.sample_rate)])
        self.sender.send(response, flags=self.pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0)

    def close(self, error: Exception | None = None) -> None:
        if error is None:
            self.sender.send(flags=self.pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        else:
            self.sender.send(error_response(self.pb, error, TTS_STREAM.name), flags=self.pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def is_cancelled(self) -> bool:
        return self.sender.is_cancelled()


def vocoder_model(pb_utils) -> Vocode:
    """The `vocoder` model called through BLS, one chunk per request (serving.stream.vocoder)."""

    def vocode(voice: int, mel: np.ndarray, noise_seed: int) -> np.ndarray:
        inputs = [pb_utils.Tensor(name, value) for name, value in chunk_request(voice, mel, noise_seed).items()]
        request = pb_utils.InferenceRequest(model_name=VOCODER.name, inputs=inputs, requested_output_names=[WAV.name])
        response = request.exec()
        if response.has_error():
            raise ModelFailedError(f"the {VOCODER.name} model failed: {response.error().message()}")
        return pb_utils.get_output_tensor_by_name(response, WAV.name).as_numpy()[0, 0]

    return vocode


class StreamMetrics:
    """The streaming model's own metrics on Triton's metrics endpoint: streams per decoder step, active
    streams, and the mel frames vocoded as audio and as context."""

    STEP_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

    def __init__(self, pb_utils):
        labels = {"model": TTS_STREAM.name}
        self._families = [
            pb_utils.MetricFamily(name="tts_stream_decoder_step_streams", kind=pb_utils.MetricFamily.HISTOGRAM,
                                  description="Streams advanced together by one decoder step"),
            pb_utils.MetricFamily(name="tts_stream_active_streams", kind=pb_utils.MetricFamily.GAUGE,
                                  description="Requests the streaming model is working on"),
            pb_utils.MetricFamily(name="tts_stream_vocoded_frames", kind=pb_utils.MetricFamily.COUNTER,
                                  description="Mel frames sent to the vocoder: part=audio (the chunks) or "
                                              "part=context (vocoded again around them)"),
        ]
        self._steps = self._families[0].Metric(labels=labels, buckets=list(self.STEP_BUCKETS))
        self._active = self._families[1].Metric(labels=labels)
        self._audio = self._families[2].Metric(labels={**labels, "part": "audio"})
        self._context = self._families[2].Metric(labels={**labels, "part": "context"})
        self._last_active = None

    def decoder_step(self, streams: int) -> None:
        self._steps.observe(streams)

    def active_streams(self, streams: int) -> None:
        if streams != self._last_active:
            self._active.set(streams)
            self._last_active = streams

    def vocoded(self, audio_frames: int, context_frames: int) -> None:
        self._audio.increment(audio_frames)
        self._context.increment(context_frames)


def stream_engine(pb_utils, args: ModelArgs) -> StreamEngine:
    """The streaming model's engine: the acoustic graphs in its own folder, the vocoder model through BLS,
    the chunk policy of its config's parameters (deploy/targets/*.yaml)."""
    config = args.export_config
    p = args.parameters
    policy = StreamPolicy(int(p["first_chunk_frames"]), int(p["max_chunk_frames"]), float(p["chunk_growth"]),
                          float(p["max_lead_s"]), int(p["max_streams"]), p["vocoder"])
    if policy.vocoder == IN_PROCESS:  # the vocoder model's own step, files and runtime, in this process
        vocode = in_process([VocoderStep(config, args.files, args.runtime_options(), p["runtime"],
                                         bucket_frames=int(p["bucket_frames"])) for _ in range(VOCODER_LANES)])
    else:
        vocode = vocoder_model(pb_utils)
    return StreamEngine(config, FrontendStep(config, MAX_STREAM_TEXT_CHARS, args.noise_seed()),
                        AcousticStep(config, args.files, args.runtime_options()).runtimes, vocode,
                        policy, StreamMetrics(pb_utils), log=pb_utils.Logger.log_error)


def submit_stream(pb_utils, engine: StreamEngine, request) -> None:
    engine.submit(request_tensors(pb_utils, TTS_STREAM, request),
                  ResponseSender(pb_utils, request, engine.sample_rate))
