"""TTSClient: text in, audio out, from the Sambert-HifiGan Triton server over gRPC or HTTP (KServe v2).

`synthesize` asks the `tts` model for the whole audio; `stream` (gRPC) asks the streaming model
`tts_stream` and yields the audio in chunks as the server makes them.

Thread safety: one TTSClient may be shared by many threads.
- gRPC: tritonclient's gRPC client is thread-safe, so every thread shares one channel.
- HTTP: tritonclient's HTTP client is not thread-safe at all (it runs on gevent, whose sockets
  belong to the thread that made them; its `concurrency=` pool only serves greenlets of one thread).
  So each thread gets its own HTTP client, made on its first request.
"""

from __future__ import annotations

import io
import json
import numbers
import queue
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import numpy as np
import soundfile as sf
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

MODEL = "tts"
STREAM_MODEL = "tts_stream"
# The model whose config carries the voice catalogue (a JSON string parameter named "voices"); the server's
# serving.contract owns these names, and this package, which installs on its own, repeats them.
CATALOGUE_MODEL = "frontend"
CATALOGUE_PARAMETER = "voices"
DEFAULT_URLS = {"grpc": "localhost:8001", "http": "localhost:8000"}
MAX_BACKOFF_S = 5.0


class TTSError(Exception):
    """A request failed; for errors the server reports, the message is the server's own."""


class TTSConnectionError(TTSError):
    """The server could not be reached, even after the configured retries."""


class _Unreachable(Exception):
    """Internal: one attempt could not reach the server (worth retrying)."""


@dataclass(frozen=True, eq=False)  # eq would compare arrays element-wise
class Synthesis:
    audio: np.ndarray  # float32 PCM in [-1, 1], one channel
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate

    def to_wav(self, path: str | Path) -> None:
        """Write a 16-bit PCM WAV file."""
        Path(path).write_bytes(self.wav_bytes())

    def wav_bytes(self) -> bytes:
        """The audio as the bytes of a 16-bit PCM WAV file."""
        buffer = io.BytesIO()
        # libsndfile wraps rather than clips float samples outside [-1, 1] when converting to 16 bit.
        sf.write(buffer, np.clip(self.audio, -1.0, 1.0), self.sample_rate, format="WAV", subtype="PCM_16")
        return buffer.getvalue()


class TTSClient:
    """Client for the `tts` model of a Triton server.

    url: "host:port" (default localhost:8001 for grpc, localhost:8000 for http).
    timeout_s: limit for each request (a long text takes longer to synthesize).
    retries: how many more times a request is tried when the server cannot be reached,
        waiting backoff_s, 2*backoff_s, ... (at most MAX_BACKOFF_S) in between. Errors the
        server reports (a bad voice, empty text) are never retried.
    """

    def __init__(self, url: str | None = None, protocol: str = "grpc", timeout_s: float = 60.0,
                 retries: int = 3, backoff_s: float = 0.5):
        if protocol not in DEFAULT_URLS:
            raise TTSError(f"unknown protocol {protocol!r}: use 'grpc' or 'http'")
        url = url or DEFAULT_URLS[protocol]
        if retries < 0:
            raise TTSError(f"retries must be 0 or more (got {retries})")
        if "://" in url:
            raise TTSError(f"give the server address as host:port, without a scheme (got {url!r})")
        self.url = url
        self.protocol = protocol
        self.retries = retries
        self.backoff_s = backoff_s
        if protocol == "grpc":
            self._transport = _GrpcTransport(url, timeout_s, max_reconnect_s=min(backoff_s * 2, MAX_BACKOFF_S))
        else:
            self._transport = _HttpTransport(url, timeout_s)

    def synthesize(self, text: str, voice: str | None = None, emotion: str | None = None,
                   speed: float = 1.0, speaker: str | None = None, seed: int | None = None) -> Synthesis:
        """Speak `text`. Voice, emotion, speed and speaker (of a multi-speaker voice) are checked by the server
        (see voices() and speakers()); `seed` fixes an NSF voice's random excitation (the same seed, the same audio)."""
        inputs = self._inputs(text, voice, emotion, speed, speaker, seed)
        module = self._transport.module
        outputs = [module.InferRequestedOutput("AUDIO"), module.InferRequestedOutput("SAMPLE_RATE")]
        result = self._with_retries(lambda: self._transport.infer(inputs, outputs))
        return _synthesis(result, MODEL, self.url)

    def stream(self, text: str, voice: str | None = None, emotion: str | None = None,
               speed: float = 1.0, speaker: str | None = None, seed: int | None = None) -> Iterator[Synthesis]:
        """Speak `text` with the streaming model, yielding the audio in chunks as they arrive (gRPC only).

        Joined, the chunks are the audio synthesize() returns; the sentences' pauses come as chunks of
        silence. `timeout_s` limits the wait for each chunk; retries apply until the first one arrives.
        Leaving the loop early (break, an exception, close()) cancels the request on the server.
        """
        if self.protocol != "grpc":
            raise TTSError("streaming needs the gRPC protocol: make the client with protocol='grpc' "
                           "(port 8001 by default)")
        inputs = self._inputs(text, voice, emotion, speed, speaker, seed)
        call = self._with_retries(lambda: self._transport.open_stream(inputs))
        try:
            for result in call:
                yield _synthesis(result, STREAM_MODEL, self.url)
        except _Unreachable as exc:  # after the first chunk a retry would repeat what was sent
            raise TTSConnectionError(f"lost the TTS server at {self.url} in the middle of the audio ({exc})") from None
        finally:
            call.close()

    def _inputs(self, text: str, voice: str | None, emotion: str | None, speed: float, speaker: str | None,
                seed: int | None) -> list:
        for name, value in (("text", text), ("voice", voice), ("emotion", emotion), ("speaker", speaker)):
            if value is not None and not isinstance(value, str):
                raise TTSError(f"{name} must be a str, got {type(value).__name__}")
        if not isinstance(speed, numbers.Real) or isinstance(speed, bool):
            raise TTSError(f"speed must be a number, got {speed!r}")
        module = self._transport.module
        inputs = [_bytes_input(module, "TEXT", text)]
        if voice is not None:
            inputs.append(_bytes_input(module, "VOICE", voice))
        if emotion is not None:
            inputs.append(_bytes_input(module, "EMOTION", emotion))
        if speaker is not None:
            inputs.append(_bytes_input(module, "SPEAKER", speaker))
        if seed is not None:
            if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
                raise TTSError(f"seed must be a whole number, got {seed!r}")
            seed_input = module.InferInput("SEED", [1, 1], "INT64")
            seed_input.set_data_from_numpy(np.array([[seed]], dtype=np.int64))
            inputs.append(seed_input)
        speed_input = module.InferInput("SPEED", [1, 1], "FP32")
        speed_input.set_data_from_numpy(np.array([[speed]], dtype=np.float32))
        inputs.append(speed_input)
        return inputs

    def voices(self) -> dict[str, list[str]]:
        """Voice name -> the emotions it can speak with."""
        return {name: list(voice["emotions"]) for name, voice in self._catalogue()["voices"].items()}

    def speakers(self) -> dict[str, list[str]]:
        """Voice name -> the speakers it can speak as (one but for the multi-speaker voices)."""
        return {name: list(voice["speakers"]) for name, voice in self._catalogue()["voices"].items()}

    @property
    def default_voice(self) -> str:
        return self._catalogue()["default_voice"]

    def is_ready(self) -> bool:
        """True if the server answers and the tts model is ready; never retries, never raises."""
        try:
            return self._transport.is_ready()
        except (TTSError, _Unreachable):
            return False

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> "TTSClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _catalogue(self) -> dict:
        config = self._with_retries(lambda: self._transport.model_config(CATALOGUE_MODEL))
        try:
            return json.loads(config["parameters"][CATALOGUE_PARAMETER]["string_value"])
        except (KeyError, json.JSONDecodeError) as exc:
            raise TTSError(f"model {CATALOGUE_MODEL!r} at {self.url} has no valid {CATALOGUE_PARAMETER!r} "
                           f"parameter ({exc}): is this the Sambert TTS server?") from None

    def _with_retries(self, call):
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                return call()
            except _Unreachable as exc:
                last = exc
                if attempt + 1 < attempts:
                    time.sleep(min(self.backoff_s * 2 ** attempt, MAX_BACKOFF_S))
        raise TTSConnectionError(
            f"cannot reach the TTS server at {self.url} over {self.protocol} after {attempts} "
            f"attempt{'s' if attempts > 1 else ''} ({last}); check that the server is running "
            "and that the URL and protocol are right") from None


def _synthesis(result, model: str, url: str) -> Synthesis:
    audio, sample_rate = result.as_numpy("AUDIO"), result.as_numpy("SAMPLE_RATE")
    if audio is None or sample_rate is None:
        raise TTSError(f"model {model!r} at {url} did not return AUDIO and SAMPLE_RATE: is this the Sambert TTS server?")
    # A copy: tritonclient's arrays are read-only views of the response buffer.
    return Synthesis(audio=np.array(audio[0], dtype=np.float32), sample_rate=int(sample_rate.flat[0]))


def _bytes_input(module, name: str, value: str):
    tensor = module.InferInput(name, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[value.encode("utf-8")]], dtype=np.object_))
    return tensor


class _GrpcTransport:
    module = grpcclient

    def __init__(self, url: str, timeout_s: float, max_reconnect_s: float):
        self._url, self._timeout_s = url, timeout_s
        self._errors = _TranslatedErrors(url, timeout_s)
        # Passing channel_args replaces all of tritonclient's defaults, so its message size limits are
        # restated. The reconnect backoff is capped so that a server which comes up during our retries
        # is connected to by the channel in time (gRPC's own backoff grows to 2 minutes).
        self._channel_args = [
            ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", max(100, int(max_reconnect_s * 1000))),
        ]
        self._client = grpcclient.InferenceServerClient(url, channel_args=self._channel_args)

    def infer(self, inputs, outputs):
        with self._errors:
            return self._client.infer(MODEL, inputs, outputs=outputs, client_timeout=self._timeout_s)

    def model_config(self, model: str) -> dict:
        with self._errors:
            return self._client.get_model_config(model, as_json=True, client_timeout=self._timeout_s)["config"]

    def is_ready(self) -> bool:
        with self._errors:
            return self._client.is_model_ready(MODEL, client_timeout=self._timeout_s)

    def open_stream(self, inputs) -> "_GrpcStream":
        """A request to the streaming model, once its first response has come (a failure to connect raises
        _Unreachable, so that it is retried)."""
        return _GrpcStream(grpcclient.InferenceServerClient(self._url, channel_args=self._channel_args),
                           inputs, self._errors, self._timeout_s)

    def close(self) -> None:
        self._client.close()


class _GrpcStream:
    """One request on its own gRPC bidirectional stream (tritonclient allows one stream per client)."""

    def __init__(self, client: grpcclient.InferenceServerClient, inputs, errors: "_TranslatedErrors", timeout_s: float):
        self._client, self._errors, self._timeout_s = client, errors, timeout_s
        self._responses: queue.Queue = queue.Queue()
        self._done = False
        try:
            client.start_stream(callback=lambda result, error: self._responses.put((result, error)))
            client.async_stream_infer(STREAM_MODEL, inputs, enable_empty_final_response=True)
            self._first = self._next()
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator:
        result = self._first
        while result is not None:
            if result.as_numpy("AUDIO") is not None:
                yield result
            if result.get_response().parameters["triton_final_response"].bool_param:
                self._done = True
                return
            result = self._next()

    def _next(self):
        try:
            result, error = self._responses.get(timeout=self._timeout_s)
        except queue.Empty:
            raise TTSError(f"no audio from the TTS server within {self._timeout_s:g} s (the timeout applies to "
                           "each chunk)") from None
        if error is not None:
            with self._errors:
                raise error
        return result

    def close(self) -> None:
        """End the stream; a request still running is cancelled on the server."""
        self._client.stop_stream(cancel_requests=not self._done)
        self._client.close()


class _HttpTransport:
    module = httpclient

    def __init__(self, url: str, timeout_s: float):
        self._url, self._timeout_s = url, timeout_s
        self._errors = _TranslatedErrors(url, timeout_s)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[tuple[weakref.ref, httpclient.InferenceServerClient]] = []

    def infer(self, inputs, outputs):
        with self._errors:
            return self._client().infer(MODEL, inputs, outputs=outputs)

    def model_config(self, model: str) -> dict:
        with self._errors:
            return self._client().get_model_config(model)

    def is_ready(self) -> bool:
        with self._errors:
            return self._client().is_model_ready(MODEL)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for _, client in clients:
            client.close()
        self._local = threading.local()

    def _client(self) -> httpclient.InferenceServerClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpclient.InferenceServerClient(self._url, connection_timeout=self._timeout_s,
                                                      network_timeout=self._timeout_s)
            self._local.client = client
            with self._lock:
                # Close the clients of threads that have ended, so a thread-per-task caller does not pile them up.
                kept = []
                for thread_ref, other in self._clients:
                    thread = thread_ref()
                    if thread is not None and thread.is_alive():
                        kept.append((thread_ref, other))
                    else:
                        other.close()
                self._clients = kept + [(weakref.ref(threading.current_thread()), client)]
        return client


class _TranslatedErrors:
    """Turns tritonclient and network exceptions into TTSError (final) or _Unreachable (retried)."""

    def __init__(self, url: str, timeout_s: float):
        self._url, self._timeout_s = url, timeout_s

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            return False
        timed_out = TTSError(f"no answer from the TTS server at {self._url} within {self._timeout_s:g} s "
                             "(a longer text needs a longer timeout)")
        if isinstance(exc, InferenceServerException):
            status = exc.status() or ""
            if status == "StatusCode.UNAVAILABLE":
                raise _Unreachable(exc.message()) from None
            if status == "StatusCode.DEADLINE_EXCEEDED":
                raise timed_out from None
            raise TTSError(exc.message() or str(exc)) from None
        if isinstance(exc, TimeoutError):
            raise timed_out from None
        if isinstance(exc, (OSError, HTTPException)):  # refused, reset, closed by the server, unknown host
            raise _Unreachable(str(exc) or type(exc).__name__) from None
        return False
