"""The gateway's only way to Triton: tritonclient's asyncio gRPC client, with Triton's errors as ApiErrors.

Triton's verdicts map to HTTP: INVALID_ARGUMENT (the caller's mistake) -> 400 with Triton's message;
unreachable, not ready or model not loaded -> 503; past the timeout -> 504; anything else -> 502.

Several Triton replicas: gRPC sends every call of a connection to one server, so a URL that names one
balanced address pins the gateway to one replica. The channel balances calls round-robin across every
address the URL resolves to (a Kubernetes headless Service resolves to each ready pod; `ipv4:a:p,b:q` lists
them), and every `refresh_s` the gateway connects afresh, resolving the URL again, so that replicas added
since get calls too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, InferInput, InferRequestedOutput, KeepAliveOptions
from tritonclient.utils import InferenceServerException

from gateway.errors import ApiError
from gateway.project import (
    AUDIO,
    CATALOGUE_MODEL,
    CATALOGUE_PARAMETER,
    EMOTION,
    SAMPLE_RATE,
    SEED,
    SPEAKER,
    SPEED,
    TEXT,
    TTS,
    TTS_STREAM,
    VOICE,
)

log = logging.getLogger("gateway.triton")

MODEL = TTS.name
STREAM_MODEL = TTS_STREAM.name  # the decoupled model with the inputs and outputs of `tts`, one response per chunk
# Asks Triton to end a stream that fails with the gRPC status of the error (INVALID_ARGUMENT, ...), as unary
# calls do; without it a stream's errors are bare messages.
STREAM_ERROR_HEADERS = {"triton_grpc_error": "true"}

TRANSPORT_RETRIES = 2
# gRPC's words for a connection that went away mid-call (a replica killed, a balancer's backend gone), as
# opposed to an answer from Triton (a mistake, a full queue), which is never sent again.
_TRANSPORT_FAILURES = ("Stream removed", "Socket closed", "Connection reset", "failed to connect", "GOAWAY")

_STATUS = {
    "StatusCode.INVALID_ARGUMENT": 400,
    "StatusCode.UNAVAILABLE": 503,
    "StatusCode.NOT_FOUND": 503,
    "StatusCode.DEADLINE_EXCEEDED": 504,
}


@dataclass(frozen=True)
class Speech:
    """One validated synthesis request, in Triton's terms."""

    text: str
    voice: str
    emotion: str
    speed: float
    speaker: str | None = None  # the voice's own when None
    seed: int | None = None  # an NSF voice's noise: the server's default when None


@dataclass(frozen=True)
class Voice:
    emotions: tuple[str, ...]
    default_emotion: str
    speakers: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    default_voice: str
    sample_rate: int
    voices: dict[str, Voice]

    @classmethod
    def from_json(cls, text: str) -> "Catalogue":
        data = json.loads(text)
        voices = {name: Voice(tuple(v["emotions"]), v["default_emotion"], tuple(v["speakers"]))
                  for name, v in data["voices"].items()}
        return cls(data["default_voice"], int(data["sample_rate"]), voices)


@dataclass(frozen=True)
class Synthesis:
    samples: np.ndarray  # float32 PCM in [-1, 1]
    sample_rate: int


def channel_args() -> list[tuple[str, object]]:
    """tritonclient's own channel settings, with calls balanced round-robin over the URL's addresses."""
    keepalive = KeepAliveOptions()
    return [("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
            ("grpc.lb_policy_name", "round_robin")]


class Triton:
    def __init__(self, url: str, timeout_s: float, catalogue_ttl_s: float, refresh_s: float = 0.0):
        self.url = url
        self.timeout_s = timeout_s
        self.catalogue_ttl_s = catalogue_ttl_s
        self.refresh_s = refresh_s  # 0: one connection for the gateway's life
        self._client = self._connect()
        self._retiring: set[asyncio.Task] = set()
        self._catalogue: Catalogue | None = None
        self._catalogue_read_at = 0.0

    def _connect(self) -> grpcaio.InferenceServerClient:
        self._connected_at = time.monotonic()
        return grpcaio.InferenceServerClient(self.url, channel_args=channel_args())

    @property
    def client(self) -> grpcaio.InferenceServerClient:
        """The connection for a new call: a fresh one every refresh_s (the old one is closed once the calls
        already on it are past timeout_s)."""
        if self.refresh_s and time.monotonic() - self._connected_at > self.refresh_s:
            task = asyncio.get_running_loop().create_task(self._close_later(self._client))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            self._client = self._connect()
        return self._client

    async def _close_later(self, client: grpcaio.InferenceServerClient) -> None:
        await asyncio.sleep(self.timeout_s)
        await client.close()

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        await self._client.close()

    async def catalogue(self) -> Catalogue:
        """The served voices, read from Triton and reused for catalogue_ttl_s."""
        if self._catalogue is None or time.monotonic() - self._catalogue_read_at > self.catalogue_ttl_s:
            response = await self._call(self.client.get_model_config(CATALOGUE_MODEL.name, as_json=True,
                                                                      client_timeout=self.timeout_s))
            try:
                catalogue = Catalogue.from_json(response["config"]["parameters"][CATALOGUE_PARAMETER]["string_value"])
            except (KeyError, ValueError, TypeError) as e:
                raise ApiError(502, f"Triton at {self.url} has no valid voice catalogue in model "
                                    f"{CATALOGUE_MODEL.name!r} ({e}): is this the Sambert TTS server?") from None
            self._catalogue, self._catalogue_read_at = catalogue, time.monotonic()
        return self._catalogue

    async def model_ready(self, model: str) -> bool:
        """False when Triton cannot be reached or the model is not loaded; never raises."""
        try:
            return await self.client.is_model_ready(model, client_timeout=self.timeout_s)
        except InferenceServerException:
            return False

    async def server_live(self) -> bool:
        try:
            return await self.client.is_server_live(client_timeout=self.timeout_s)
        except InferenceServerException:
            return False

    async def synthesize(self, speech: Speech) -> Synthesis:
        """The whole audio; a call lost in transport (its replica went away) is sent again, up to
        TRANSPORT_RETRIES times: a synthesis has no side effects, and the next call may reach another replica."""
        for attempt in range(TRANSPORT_RETRIES + 1):
            try:
                result = await self.client.infer(MODEL, _inputs(speech), outputs=_outputs(),
                                                 client_timeout=self.timeout_s)
                return _synthesis(result, MODEL)
            except InferenceServerException as e:
                if attempt == TRANSPORT_RETRIES or not lost_in_transport(e):
                    raise _api_error(e) from None
                log.warning("a call to Triton was lost in transport (%s); sending it again", e.message())

    async def stream(self, speech: Speech) -> AsyncIterator[Synthesis]:
        """The audio of the streaming model, chunk by chunk; the gRPC stream is cancelled if the caller stops early."""

        async def one_request():
            yield {"model_name": STREAM_MODEL, "inputs": _inputs(speech), "outputs": _outputs()}

        # Our request iterator ends after one request, so Triton closes the stream after its last response.
        responses = self.client.stream_infer(one_request(), stream_timeout=self.timeout_s,
                                              headers=STREAM_ERROR_HEADERS)
        try:
            while True:
                try:
                    result, error = await anext(responses)
                except StopAsyncIteration:
                    return
                except grpc.RpcError as e:
                    raise _api_error(InferenceServerException(msg=e.details(), status=str(e.code()))) from None
                if error is not None:
                    raise _api_error(error)
                chunk = _synthesis(result, STREAM_MODEL, allow_empty=True)
                if len(chunk.samples):
                    yield chunk
        finally:
            responses.cancel()

    async def _call(self, call):
        try:
            return await call
        except InferenceServerException as e:
            raise _api_error(e) from None


def lost_in_transport(error: InferenceServerException) -> bool:
    message = error.message() or ""
    return any(words in message for words in _TRANSPORT_FAILURES)


def _api_error(error: InferenceServerException) -> ApiError:
    status = _STATUS.get(error.status() or "", 502)
    message = error.message() or str(error)
    if status == 503:
        message = f"the TTS server (Triton) is unavailable: {message}; try again shortly"
    elif status == 504:
        message = "the TTS server did not finish in time: send a shorter text or raise the gateway's triton-timeout-s"
    elif status == 502:
        message = f"the TTS server failed: {message}"
    if status >= 500:
        log.warning("Triton error %s: %s", error.status(), error.message())
    return ApiError(status, message)


def _bytes_input(name: str, value: str) -> InferInput:
    tensor = InferInput(name, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[value.encode("utf-8")]], dtype=np.object_))
    return tensor


def _inputs(speech: Speech) -> list[InferInput]:
    speed = InferInput(SPEED.name, [1, 1], "FP32")
    speed.set_data_from_numpy(np.array([[speech.speed]], dtype=np.float32))
    inputs = [_bytes_input(TEXT.name, speech.text), _bytes_input(VOICE.name, speech.voice),
              _bytes_input(EMOTION.name, speech.emotion), speed]
    if speech.speaker is not None:
        inputs.append(_bytes_input(SPEAKER.name, speech.speaker))
    if speech.seed is not None:
        seed = InferInput(SEED.name, [1, 1], "INT64")
        seed.set_data_from_numpy(np.array([[speech.seed]], dtype=np.int64))
        inputs.append(seed)
    return inputs


def _outputs() -> list[InferRequestedOutput]:
    return [InferRequestedOutput(AUDIO.name), InferRequestedOutput(SAMPLE_RATE.name)]


def _synthesis(result, model: str, allow_empty: bool = False) -> Synthesis:
    audio, sample_rate = result.as_numpy(AUDIO.name), result.as_numpy(SAMPLE_RATE.name)
    if audio is None or sample_rate is None:
        if allow_empty:  # the streaming model's final response carries no tensors
            return Synthesis(np.zeros(0, dtype=np.float32), 0)
        raise ApiError(502, f"model {model!r} did not return AUDIO and SAMPLE_RATE: is this the Sambert TTS server?")
    return Synthesis(np.asarray(audio, dtype=np.float32).reshape(-1), int(sample_rate.flat[0]))
