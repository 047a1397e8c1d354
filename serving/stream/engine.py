"""The streaming scheduler: many requests' sentences through one acoustic model per voice, a step at a time.

Two threads share the work:

- The acoustic thread loops: it takes in new requests, starts the sentences that streams have reached
  (encoder, duration loop and decoder memory, one batch per voice for the sentences that arrive
  together), plans every chunk whose frames the decoder has passed (serving.stream.sentence), and then
  advances the decoder by one step for every stream of a voice at once, each at its own step
  (AcousticRuntime.decode_step). A request joins at the next step and leaves after its last; nobody
  waits for a longer one. A stream stops advancing while QUEUED_CHUNKS of its chunks wait for the
  vocoder, or while it is `max_lead_s` ahead of its listener, so its memory does not grow with its text.
- The vocoder threads (VOCODER_LANES) take requests' first chunks first (one of them takes nothing else),
  then the chunk whose audio a listener will need first (earliest deadline: the time playback reaches it),
  vocode it and send it, with the sentence's pause as a chunk of silence after its last chunk. An NSF
  voice's sentences go out whole (serving.stream.sentence).

Every request gets its own responses: its chunks and a final one, or one error. A client that cancels
or goes away is noticed before each chunk is vocoded and at least every CANCEL_POLL_S while waiting;
its stream leaves the loop, so work stops within a chunk.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from serving.contract import ExportConfig
from serving.frontend import Sentence
from serving.runtime.acoustic import AcousticRuntime
from serving.steps import RequestError, ServerBusyError, Tensors
from serving.steps.frontend import FrontendStep, Reading
from serving.steps.join import pause_samples
from serving.stream.policy import StreamPolicy
from serving.stream.sentence import SentenceAudio, Window
from serving.stream.vocoder import Vocode

VOCODER_LANES = 2  # vocoder threads: one for any chunk, one for requests' first chunks only
QUEUED_CHUNKS = 2  # a stream's decoder waits while this many of its chunks wait for the vocoder
CANCEL_POLL_S = 0.1  # how often a waiting stream asks whether its client has gone
IDLE_WAIT_S = 0.05  # how long the acoustic thread sleeps when no stream can move (a lead bound may lift)
WARMUP_TEXT = "你好。"  # run through each voice's graphs at start, so the first request does not pay for their first run


class Sender(Protocol):
    """Where one request's responses go (serving.adapter wraps Triton's response sender)."""

    def send(self, audio: np.ndarray, final: bool) -> None: ...

    def close(self, error: Exception | None = None) -> None:
        """The final response: empty, or `error` (a RequestError is the client's mistake)."""

    def is_cancelled(self) -> bool: ...


class Metrics(Protocol):
    def decoder_step(self, streams: int) -> None: ...

    def active_streams(self, streams: int) -> None: ...

    def vocoded(self, audio_frames: int, context_frames: int) -> None:
        """A chunk went to the vocoder: its own frames and the context frames vocoded with them."""


class NoMetrics:
    def decoder_step(self, streams: int) -> None:
        pass

    def active_streams(self, streams: int) -> None:
        pass

    def vocoded(self, audio_frames: int, context_frames: int) -> None:
        pass


class Stream:
    """One request: its sentences as they are reached, the two it is working on, and what it has sent."""

    def __init__(self, reading: Reading, first: Sentence, sender: Sender, on_close: Callable[[], None]):
        self.voice, self.duration_scale = reading.voice_index, reading.duration_scale
        self._noise_seed = reading.noise_seed
        self._read = 0  # sentences handed out
        self._next: Sentence | None = first
        self._rest = reading.sentences
        self.sender = sender
        self.arrival = time.monotonic()
        self.current: SentenceAudio | None = None  # the sentence whose chunks are being planned
        self.upcoming: SentenceAudio | None = None  # the next, started when the current one is decoded
        self.last_chunk = 0  # frames of the last chunk planned (0: none yet)
        self.silence = 0  # samples of the pause after the last sentence planned, still to plan
        self.planned_s = 0.0  # seconds of audio planned, pauses included
        self.playback_start: float | None = None  # when the first response left
        self.queued = 0  # chunks waiting for (or in) the vocoder
        self.vocoding = False  # one of its chunks is in the vocoder
        self.closed = False  # the final response has gone
        self._on_close = on_close
        self.last_poll = self.arrival
        self._lock = threading.Lock()

    def next_sentence(self) -> tuple[Sentence, int, bool]:
        """The next sentence, the seed of its NSF noise (as the `tts` front end gives it) and whether it is the
        request's last (the front end reads one ahead)."""
        sentence, self._next = self._next, next(self._rest, None)
        self._read += 1
        return sentence, self._noise_seed(self._read - 1), self._next is None

    @property
    def wants_sentence(self) -> bool:
        return self._next is not None and (self.current is None or (self.upcoming is None and self.current.decoding.done))

    @property
    def exhausted(self) -> bool:
        """Every chunk planned: what is left is the vocoder's."""
        return self.current is None and self._next is None and not self.silence

    def buffered_s(self, now: float) -> float:
        """Seconds of audio the listener has that have not played yet (all of it before playback starts)."""
        return self.planned_s - (now - self.playback_start if self.playback_start is not None else 0.0)

    def send(self, audio: np.ndarray, final: bool) -> None:
        with self._lock:
            if self.closed:
                return
            if self.playback_start is None:
                self.playback_start = time.monotonic()
            if final:
                self._closed()
            self.sender.send(audio, final)

    def close(self, error: Exception | None = None) -> None:
        with self._lock:
            if not self.closed:
                self._closed()
                self.sender.close(error)

    def _closed(self) -> None:
        self.closed = True
        self._on_close()


@dataclass(order=True)
class Job:
    """A chunk for the vocoder thread (a window, or only silence or only the end). Requests' first chunks go
    first, then the earliest deadline: a stream that is already late must not hold back a new request's
    first audio (under load every running stream is late, so by deadline alone a newcomer would wait for all)."""

    later: bool  # not a request's first chunk
    deadline: float
    order: int
    stream: Stream = field(compare=False)
    window: Window | None = field(compare=False)
    silence: int = field(compare=False)  # samples
    final: bool = field(compare=False)

    @property
    def first(self) -> bool:
        """The request's first chunk: its listener is waiting for any audio at all."""
        return not self.later


class StreamEngine:
    """Streams of every voice of an export; `submit` answers a request through its Sender."""

    def __init__(self, config: ExportConfig, frontend: FrontendStep, runtimes: list[AcousticRuntime], vocode: Vocode,
                 policy: StreamPolicy, metrics: Metrics | None = None, log: Callable[[str], None] = print):
        self.frontend, self.runtimes, self.vocode, self.policy = frontend, runtimes, vocode, policy
        self.metrics, self.log = metrics or NoMetrics(), log
        self.contexts = [tuple(config.voices[name].vocoder_context_frames) for name in config.voice_names()]
        self.nsf = [config.voices[name].nsf is not None for name in config.voice_names()]
        self.hop, self.sample_rate = config.audio.hop_length, config.audio.sample_rate
        self.steps = self.stream_steps = 0  # decoder steps run, and streams advanced by them
        self._streams: list[Stream] = []  # the acoustic thread's
        self._inbox: list[Stream] = []
        self._jobs: list[Job] = []  # chunks waiting for the vocoder
        self._order = itertools.count()
        self._lock = threading.Condition()
        self._running = True
        self._urgent = 0  # requests' first chunks the vocoder is making
        self._open = 0  # requests taken and not yet answered in full
        for name, runtime in zip(config.voice_names(), runtimes):
            runtime.synthesize([sentence.ids for sentence in frontend.frontends[name](WARMUP_TEXT)], [1.0])
        self._threads = [threading.Thread(target=self._acoustic_loop, name="tts_stream acoustic", daemon=True),
                         threading.Thread(target=self._vocoder_loop, args=(False,), name="tts_stream vocoder", daemon=True),
                         threading.Thread(target=self._vocoder_loop, args=(True,), name="tts_stream first chunks",
                                          daemon=True)]
        for thread in self._threads:
            thread.start()

    def submit(self, request: Tensors, sender: Sender) -> None:
        """Check the request and read its first sentence here (a mistake is answered at once), then queue it."""
        with self._lock:
            busy = self._open >= self.policy.max_streams
            if not busy:
                self._open += 1
        if busy:
            sender.close(ServerBusyError(f"the streaming model is already streaming {self.policy.max_streams} requests, "
                                         "its limit: try again shortly"))
            return
        try:
            reading = self.frontend.read(request)
            first = next(reading.sentences)
        except RequestError as e:
            self._stream_closed()
            sender.close(e)
            return
        stream = Stream(reading, first, sender, self._stream_closed)
        with self._lock:
            self._inbox.append(stream)
            self._lock.notify_all()

    def _stream_closed(self) -> None:
        with self._lock:
            self._open -= 1

    def close(self) -> None:
        """Stop both threads; requests still running get an error."""
        with self._lock:
            self._running = False
            self._lock.notify_all()
        for thread in self._threads:
            thread.join()
        for stream in self._streams + self._inbox + [job.stream for job in self._jobs]:
            stream.close(RuntimeError("the streaming model is shutting down: send the request again"))

    # -- the acoustic thread -------------------------------------------------------------------

    def _acoustic_loop(self) -> None:
        while True:
            with self._lock:
                if not self._running:
                    return
                self._streams += self._inbox
                self._inbox.clear()
                # While the vocoder makes a request's first chunk, which its listener is waiting for, the
                # decoder leaves the cores to it (what it would decode is not due as soon).
                while self._urgent and self._running:
                    self._lock.wait()
            now = time.monotonic()
            self._poll_cancelled(now)
            busy = self._start_sentences(now)
            busy |= self._plan_chunks(now)
            busy |= self._decode(now)
            self._streams = [s for s in self._streams if not s.closed and not s.exhausted]
            self.metrics.active_streams(len(self._streams))
            if not busy:
                with self._lock:
                    if self._running and not self._inbox:
                        self._lock.wait(IDLE_WAIT_S)

    def _poll_cancelled(self, now: float) -> None:
        for stream in self._streams:
            if now - stream.last_poll >= CANCEL_POLL_S:
                stream.last_poll = now
                if stream.sender.is_cancelled():
                    stream.close()

    def _may_advance(self, stream: Stream, now: float) -> bool:
        return not stream.closed and stream.queued < QUEUED_CHUNKS and not self.policy.ahead(stream.buffered_s(now))

    def _start_sentences(self, now: float) -> bool:
        """The next sentence of every stream that has reached it, one encoder batch per voice."""
        by_voice: dict[int, list[tuple[Stream, Sentence, int, bool]]] = {}
        for stream in self._streams:
            if stream.wants_sentence and self._may_advance(stream, now):
                try:
                    by_voice.setdefault(stream.voice, []).append((stream, *stream.next_sentence()))
                except Exception as e:  # noqa: BLE001 - the front end failing on one request fails that request
                    self._fail([stream], e)
        for voice, group in by_voice.items():
            runtime = self.runtimes[voice]
            try:
                decodings = runtime.begin(runtime.predict_durations(
                    [s.ids for _, s, _, _ in group], [stream.duration_scale for stream, *_ in group]))
            except Exception as e:  # noqa: BLE001
                self._fail([stream for stream, *_ in group], e)
                continue
            for (stream, sentence, seed, last), decoding in zip(group, decodings):
                audio = SentenceAudio(runtime, decoding, self.contexts[voice], 0.0 if last else sentence.pause_after,
                                      last, seed, self.nsf[voice])
                if stream.current is None:
                    stream.current = audio
                else:
                    stream.upcoming = audio
        return bool(by_voice)

    def _plan_chunks(self, now: float) -> bool:
        planned = False
        for stream in self._streams:
            while self._may_advance(stream, now) and (stream.silence or stream.current is not None):
                if stream.silence:  # a pause, in pieces no longer than the largest chunk, paced like audio
                    piece = min(stream.silence, self.policy.max_frames * self.hop)
                    stream.silence -= piece
                    self._queue(stream, None, piece, False)
                    planned = True
                    continue
                sentence = stream.current
                remaining = sentence.frames - sentence.sent
                if remaining:
                    buffered = stream.buffered_s(now) * self.sample_rate / self.hop
                    contended = any(job.stream is not stream for job in self._jobs)  # others wait for the vocoder
                    end = sentence.frames if sentence.whole else \
                        sentence.sent + self.policy.frames(stream.last_chunk, buffered, contended, remaining)
                    if sentence.needs_decoder(end):
                        break
                    self._queue(stream, sentence.take(end), 0, sentence.finished and sentence.last)
                    planned = True
                elif sentence.last:  # a last sentence of no frames: only the end is left to send
                    self._queue(stream, None, 0, True)
                if sentence.finished:
                    stream.silence = 0 if sentence.last else pause_samples(sentence.pause_s, self.sample_rate)
                    stream.current, stream.upcoming = stream.upcoming, None
        return planned

    def _queue(self, stream: Stream, window: Window | None, silence: int, final: bool) -> None:
        deadline = (stream.playback_start or stream.arrival) + stream.planned_s
        first = window is not None and not stream.last_chunk
        if window is not None:
            stream.last_chunk = window.frames
            stream.planned_s += window.frames * self.hop / self.sample_rate
            self.metrics.vocoded(window.frames, len(window.mel) - window.frames)
        stream.planned_s += silence / self.sample_rate
        with self._lock:
            stream.queued += 1
            self._jobs.append(Job(not first, deadline, next(self._order), stream, window, silence, final))
            self._lock.notify_all()

    def _decode(self, now: float) -> bool:
        """One decoder step for every stream that may advance, batched per voice."""
        by_voice: dict[int, list[tuple[Stream, SentenceAudio]]] = {}
        for stream in self._streams:
            if not self._may_advance(stream, now):
                continue
            for sentence in (stream.current, stream.upcoming):
                if sentence is not None and not sentence.decoding.done:
                    by_voice.setdefault(stream.voice, []).append((stream, sentence))
                    break
        for voice, group in by_voice.items():
            try:
                self.runtimes[voice].decode_step([sentence.decoding for _, sentence in group])
            except Exception as e:  # noqa: BLE001
                self._fail([stream for stream, _ in group], e)
                continue
            self.steps += 1
            self.stream_steps += len(group)
            self.metrics.decoder_step(len(group))
        return bool(by_voice)

    def _fail(self, streams: list[Stream], error: Exception) -> None:
        if not isinstance(error, RequestError):
            self.log(f"tts_stream: {len(streams)} request(s) failed:\n{traceback.format_exc()}")
        for stream in streams:
            stream.close(error)

    # -- the vocoder thread --------------------------------------------------------------------

    def _next_job(self, first_only: bool) -> Job | None:
        """The job to do next (first chunks first, then the earliest deadline) of a stream that has none in the
        vocoder (a stream's chunks go out in order); `first_only`: requests' first chunks only."""
        ready = [job for job in self._jobs if not job.stream.vocoding and (job.first or not first_only)]
        return min(ready, default=None)

    def _vocoder_loop(self, first_only: bool) -> None:
        while True:
            with self._lock:
                while self._running and (job := self._next_job(first_only)) is None:
                    self._lock.wait()
                if not self._running:
                    return
                self._jobs.remove(job)
                job.stream.vocoding = True
                self._urgent += job.first
            stream = job.stream
            try:
                if not stream.closed and stream.sender.is_cancelled():
                    stream.close()
                if not stream.closed:
                    self._answer(job)
            except Exception as e:  # noqa: BLE001 - a failed chunk fails its request, not the others
                self._fail([stream], e)
            with self._lock:
                self._urgent -= job.first
                stream.vocoding = False
                stream.queued -= 1
                self._lock.notify_all()

    def _answer(self, job: Job) -> None:
        pieces = []
        if job.window is not None:
            audio = self.vocode(job.stream.voice, job.window.mel, job.window.noise_seed)
            pieces.append(audio[job.window.skip * self.hop : (job.window.skip + job.window.frames) * self.hop])
        if job.silence:
            pieces.append(np.zeros(job.silence, dtype=np.float32))
        if not pieces and job.final:
            job.stream.close()
        for i, piece in enumerate(pieces):
            job.stream.send(piece, job.final and i == len(pieces) - 1)
