"""Streaming synthesis in-process: the scheduler and the chunking against the in-process `tts` pipeline.

Exactness: a stream's chunks, joined, equal the pipeline's AUDIO for the same request, for causal and
non-causal vocoders and chunk policies from one frame a chunk to whole sentences, and for the other
families (24 kHz, NSF with a seed, personal voices). Real runtimes on the tiny fixtures' exports;
tests/test_stream_server.py does the same through tritonserver.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from deploy.repository import TargetSettings
from serving.contract import AUDIO, EMOTION, SEED, SPEED, TEXT, VOICE, ExportConfig
from serving.frontend.pipeline import FrontEnd
from serving.limits import MAX_STREAM_TEXT_CHARS, SPEED_RANGE
from serving.pipeline import Pipeline
from serving.runtime.sessions import RuntimeOptions
from serving.steps import RequestError, ServerBusyError
from serving.steps.frontend import FrontendStep
from serving.stream.engine import QUEUED_CHUNKS, StreamEngine
from serving.stream.policy import StreamPolicy, StreamPolicyError
from serving.stream.vocoder import IN_PROCESS, in_process

TOLERANCE = 1e-4  # FP32 vocoder: joined chunks against the tts pipeline's AUDIO
TEXTS = [
    "今天天气很好，我们去公园散步吧。",
    "欢迎使用语音合成服务。今天是2026年11月21日！我们明天见。",
    '<speak>你好<break time="300ms"/>世界。<break time="1s"/><break time="200ms"/>再见。</speak>',
    '<speak><emotion category="happy">谢谢你的帮助</emotion>。<break time="500ms"/></speak>',
]
POLICIES = {
    "one frame a chunk": StreamPolicy(1, 1, 1.0, 0, 16, IN_PROCESS),
    "small": StreamPolicy(3, 20, 2.0, 0, 16, IN_PROCESS),
    "deployed": TargetSettings.read("cpu").streaming,
    "whole sentences": StreamPolicy(10_000, 10_000, 1.0, 0, 16, IN_PROCESS),
}
LONG_TEXT = "".join(itertools.islice(itertools.cycle(["我们明天早上八点出发，请大家准时集合。", "银行就在路口的左边。",
                                                      "会议改到下午三点半。"]), 10_000))[:MAX_STREAM_TEXT_CHARS]


class Listener:
    """A Sender that keeps what it is sent; `cancel_after` chunks it behaves as a client that went away."""

    def __init__(self, cancel_after: int | None = None):
        self.chunks: list[np.ndarray] = []
        self.error: Exception | None = None
        self.final = False
        self.responses = 0
        self.cancel_after = cancel_after
        self.done = threading.Event()

    def send(self, audio: np.ndarray, final: bool) -> None:
        assert not self.done.is_set(), "a response after the final one"
        self.chunks.append(np.array(audio))
        self.responses += 1
        if final:
            self.final = True
            self.done.set()

    def close(self, error: Exception | None = None) -> None:
        assert not self.done.is_set(), "a response after the final one"
        self.error = error
        self.responses += 1
        self.done.set()

    def is_cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.chunks) >= self.cancel_after

    def audio(self) -> np.ndarray:
        assert self.done.wait(120), "the stream did not end"
        assert self.error is None, self.error
        return np.concatenate(self.chunks)


class Recorder:
    """Metrics kept in lists."""

    def __init__(self):
        self.steps: list[int] = []
        self.active: list[int] = []
        self.audio_frames = self.context_frames = 0

    def decoder_step(self, streams: int) -> None:
        self.steps.append(streams)

    def active_streams(self, streams: int) -> None:
        self.active.append(streams)

    def vocoded(self, audio_frames: int, context_frames: int) -> None:
        self.audio_frames += audio_frames
        self.context_frames += context_frames


def request(text: str, voice: str | None = None, emotion: str | None = None, speed: float | None = None) -> dict:
    tensors = {TEXT.name: np.array([[text.encode()]], dtype=object)}
    for tensor, value in ((VOICE, voice), (EMOTION, emotion)):
        if value is not None:
            tensors[tensor.name] = np.array([[value.encode()]], dtype=object)
    if speed is not None:
        tensors[SPEED.name] = np.array([[speed]], dtype=np.float32)
    return tensors


def pipeline_of(export_dir: Path) -> Pipeline:
    return Pipeline.load(ExportConfig.read(export_dir), export_dir, export_dir, RuntimeOptions(intra_op_threads=1))


@pytest.fixture(scope="module")
def pipeline(tiny_export) -> Pipeline:
    return pipeline_of(tiny_export)


def engine_of(pipeline: Pipeline, policy: StreamPolicy, vocode=None, metrics=None) -> StreamEngine:
    config = pipeline.frontend.config
    return StreamEngine(config, FrontendStep(config, MAX_STREAM_TEXT_CHARS), pipeline.acoustic.runtimes,
                        vocode or in_process([pipeline.vocoder]), policy, metrics or Recorder(), log=lambda _: None)


def stream(engine: StreamEngine, tensors: dict, listener: Listener | None = None) -> Listener:
    listener = listener or Listener()
    engine.submit(tensors, listener)
    return listener


def expected(pipeline: Pipeline, tensors: dict) -> np.ndarray:
    (result,) = pipeline.process([tensors])
    return result[AUDIO.name][0]


def assert_equal_audio(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOLERANCE


# -- exact by construction ---------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
@pytest.mark.parametrize("vocoder", ["causal", "non-causal"])
def test_joined_chunks_equal_the_pipelines_audio(vocoder, policy, pipeline, tiny_noncausal_export):
    pipeline = pipeline if vocoder == "causal" else pipeline_of(tiny_noncausal_export)
    left, right = pipeline.frontend.config.voices[pipeline.frontend.config.default_voice].vocoder_context_frames
    assert left > 0 and (right > 0) == (vocoder == "non-causal")
    engine = engine_of(pipeline, policy)
    try:
        for text, speed in zip(TEXTS, [1.0, 0.7, 1.6, 1.0]):
            tensors = request(text, speed=speed)
            listener = stream(engine, tensors)
            assert_equal_audio(listener.audio(), expected(pipeline, tensors))
            assert listener.final
    finally:
        engine.close()


@pytest.mark.parametrize("family", ["nsf24k", "multisp24k", "personal16k"])
def test_every_family_streams_the_pipelines_audio(family, family_export):
    """24 kHz and personal voices stream in chunks; an NSF voice's sentences go out whole (its source's phase
    and noise run over the sentence), with the noise of the same SEED as the `tts` pipeline's."""
    pipeline = pipeline_of(family_export(family))
    engine = engine_of(pipeline, POLICIES["small"])
    nsf = pipeline.frontend.config.nsf
    try:
        tensors = {**request(TEXTS[1]), SEED.name: np.array([[2026]], dtype=np.int64)}
        listener = stream(engine, tensors)
        assert_equal_audio(listener.audio(), expected(pipeline, tensors))
    finally:
        engine.close()
    hop = pipeline.frontend.config.audio.hop_length
    sizes = {len(chunk) // hop for chunk in listener.chunks if chunk.any()}
    assert (len(sizes) <= 3) == nsf  # three sentences, whole, or many chunks


def test_pauses_are_chunks_of_silence_and_chunks_follow_the_policy(pipeline):
    policy = POLICIES["small"]
    engine = engine_of(pipeline, policy)
    try:
        listener = stream(engine, request('<speak>你好<break time="300ms"/>世界。</speak>'))
        listener.audio()
    finally:
        engine.close()
    rate, hop = pipeline.frontend.config.audio.sample_rate, pipeline.frontend.config.audio.hop_length
    silent = [i for i, chunk in enumerate(listener.chunks) if not chunk.any()]
    # the pause, in pieces no longer than the largest chunk, between the two sentences' audio
    assert silent == list(range(silent[0], silent[-1] + 1)) and 0 < silent[0] and silent[-1] < len(listener.chunks) - 1
    assert sum(len(listener.chunks[i]) for i in silent) == round(0.3 * rate)
    assert len(listener.chunks[0]) == policy.first_frames * hop
    # at most max_frames, or less than first_frames more where that ends the sentence
    longest = (policy.max_frames + policy.first_frames - 1) * hop
    assert all(len(chunk) <= longest for chunk in listener.chunks)


def test_a_long_pause_is_sent_in_pieces(pipeline):
    """A request may ask for long silences (consecutive breaks add up): they go out paced, in pieces."""
    policy = POLICIES["small"]
    breaks = '<break time="10s"/>' * 3
    engine = engine_of(pipeline, policy)
    try:
        listener = stream(engine, request(f"<speak>你好{breaks}世界。</speak>"))
        audio = listener.audio()
    finally:
        engine.close()
    rate, hop = pipeline.frontend.config.audio.sample_rate, pipeline.frontend.config.audio.hop_length
    assert_equal_audio(audio, expected(pipeline, request(f"<speak>你好{breaks}世界。</speak>")))
    assert max(len(chunk) for chunk in listener.chunks) <= (policy.max_frames + policy.first_frames - 1) * hop
    assert sum(len(chunk) for chunk in listener.chunks if not chunk.any()) == 30 * rate


def test_requests_past_the_streams_limit_are_refused_and_the_others_go_on(pipeline):
    vocode = in_process([pipeline.vocoder])

    def slow_vocode(voice, mel, seed):
        time.sleep(0.02)
        return vocode(voice, mel, seed)

    policy = dataclasses.replace(POLICIES["small"], max_streams=2)
    engine = engine_of(pipeline, policy, slow_vocode)
    try:
        running = [stream(engine, request(TEXTS[1])), stream(engine, request(TEXTS[0]))]
        refused = stream(engine, request(TEXTS[0]))
        assert refused.done.wait(10) and isinstance(refused.error, ServerBusyError)
        assert "2 requests" in str(refused.error) and refused.responses == 1
        for listener, text in zip(running, [TEXTS[1], TEXTS[0]]):
            assert_equal_audio(listener.audio(), expected(pipeline, request(text)))
        time.sleep(0.1)
        after = stream(engine, request(TEXTS[0]))  # a place is free again
        assert_equal_audio(after.audio(), expected(pipeline, request(TEXTS[0])))
    finally:
        engine.close()


def test_streams_joining_and_leaving_share_decoder_steps_and_stay_exact(pipeline):
    """Four requests arrive while others run (a slow vocoder keeps them all in flight); each is exact."""
    vocode = in_process([pipeline.vocoder])

    def slow_vocode(voice, mel, seed):
        time.sleep(0.01)
        return vocode(voice, mel, seed)

    recorder = Recorder()
    engine = engine_of(pipeline, POLICIES["small"], slow_vocode, recorder)
    texts = [(TEXTS[1], 1.0), (TEXTS[0], 1.3), ("北京欢迎你。", 1.0), (TEXTS[2], 0.8)]
    try:
        listeners = []
        for text, speed in texts:
            listeners.append(stream(engine, request(text, speed=speed)))
            time.sleep(0.05)
        for listener, (text, speed) in zip(listeners, texts):
            assert_equal_audio(listener.audio(), expected(pipeline, request(text, speed=speed)))
    finally:
        engine.close()
    counts = np.bincount(recorder.steps)
    assert max(recorder.steps) >= 2, f"no decoder step advanced two streams at once: steps per count {counts}"
    assert min(recorder.steps) == 1 and recorder.active[-1] == 0, (counts, recorder.active[-5:])
    assert engine.stream_steps == sum(recorder.steps) and engine.steps == len(recorder.steps)


# -- cancellation, errors, long texts ----------------------------------------------------------


def test_a_cancelled_stream_stops_within_a_chunk(pipeline):
    recorder = Recorder()
    engine = engine_of(pipeline, POLICIES["small"], metrics=recorder)
    try:
        listener = stream(engine, request(LONG_TEXT[:500]), Listener(cancel_after=2))
        assert listener.done.wait(60)
        time.sleep(0.3)
        assert listener.error is None and not listener.final  # ended by an empty final response
        assert 2 <= len(listener.chunks) <= 2 + QUEUED_CHUNKS
        assert recorder.active[-1] == 0
        other = stream(engine, request(TEXTS[0]))  # the engine goes on serving
        assert_equal_audio(other.audio(), expected(pipeline, request(TEXTS[0])))
    finally:
        engine.close()


@pytest.mark.parametrize("tensors,message", [
    (request(""), "empty"),
    (request("你好", voice="nobody"), "unknown VOICE"),
    (request("你好", emotion="bored"), "unknown emotion"),
    (request("你好", speed=SPEED_RANGE[1] * 2), "out of range"),
    (request("。。！"), "nothing to read"),
    (request("<speak>你好<break time='x'/></speak>"), "time"),
    (request("好" * (MAX_STREAM_TEXT_CHARS + 1)), f"more than {MAX_STREAM_TEXT_CHARS}"),
    ({}, "TEXT input is missing"),
])
def test_a_bad_request_gets_one_error_and_nothing_else(pipeline, tensors, message):
    engine = engine_of(pipeline, POLICIES["deployed"])
    try:
        listener = stream(engine, tensors)
        assert listener.done.wait(10)
        time.sleep(0.1)
        assert isinstance(listener.error, RequestError) and message in str(listener.error)
        assert listener.responses == 1 and not listener.chunks
    finally:
        engine.close()


def test_a_failure_mid_stream_ends_that_stream_alone(pipeline):
    """The vocoder fails once while two streams run: the stream of that chunk gets the error after the
    chunks it had; the other finishes exactly, and so does a stream after it."""
    vocode = in_process([pipeline.vocoder])
    calls = itertools.count()

    def flaky_vocode(voice, mel, seed):
        if next(calls) == 4:
            raise RuntimeError("the vocoder failed")
        time.sleep(0.005)
        return vocode(voice, mel, seed)

    engine = engine_of(pipeline, POLICIES["small"], flaky_vocode)
    try:
        listeners = [stream(engine, request(TEXTS[1])), stream(engine, request(TEXTS[1], speed=1.2))]
        for listener in listeners:
            assert listener.done.wait(60)
        failed = [listener for listener in listeners if listener.error is not None]
        assert len(failed) == 1 and "the vocoder failed" in str(failed[0].error)
        assert not isinstance(failed[0].error, RequestError) and not failed[0].final and failed[0].chunks
        (ok,) = [listener for listener in listeners if listener.error is None]
        speed = 1.0 if ok is listeners[0] else 1.2
        assert_equal_audio(ok.audio(), expected(pipeline, request(TEXTS[1], speed=speed)))
        after = stream(engine, request(TEXTS[0]))
        assert_equal_audio(after.audio(), expected(pipeline, request(TEXTS[0])))
    finally:
        engine.close()


def test_a_long_text_is_read_as_it_is_reached_and_holds_bounded_state(pipeline, monkeypatch):
    """100,000 characters: the front end has read only a sentence or two past the one being synthesised,
    each stream holds at most its two sentences and QUEUED_CHUNKS chunks; then the client goes away."""
    read = []
    piece_sentences = FrontEnd._piece_sentences

    def counted(self, piece, emotion, speaker):
        for sentence in piece_sentences(self, piece, emotion, speaker):
            read.append(sentence)
            yield sentence

    monkeypatch.setattr(FrontEnd, "_piece_sentences", counted)
    engine = engine_of(pipeline, POLICIES["small"])
    held = []
    try:
        listener = stream(engine, request(LONG_TEXT), Listener(cancel_after=40))
        while not listener.done.wait(0.01):
            for s in list(engine._streams):
                held.append((s.queued, sum(x is not None for x in (s.current, s.upcoming))))
        time.sleep(0.3)
    finally:
        engine.close()
    assert len(LONG_TEXT) == MAX_STREAM_TEXT_CHARS and len(listener.chunks) >= 40
    sentences_sent = sum(1 for chunk in listener.chunks if len(chunk) and not chunk.any())  # pauses
    assert len(read) <= sentences_sent + 4
    assert held and max(q for q, _ in held) <= QUEUED_CHUNKS and max(n for _, n in held) <= 2


# -- the chunk policy --------------------------------------------------------------------------


def test_chunk_sizes_grow_with_the_listeners_buffer_and_never_shrink():
    policy = StreamPolicy(first_frames=12, max_frames=256, growth=2.0, max_lead_s=60, max_streams=16, vocoder=IN_PROCESS)
    assert policy.frames(0, 0, True, 500) == 12  # the first chunk, however busy the server
    assert policy.frames(12, 10, False, 500) == 20  # twice the buffered audio
    assert policy.frames(40, 10, False, 500) == 40  # never less than the one before
    assert policy.frames(40, 500, False, 1000) == 256  # at most max_frames
    assert policy.frames(40, -3, False, 1000) == 256  # behind the listener: the largest, which wastes least
    assert policy.frames(12, 10, True, 1000) == 256  # other streams' chunks first: the largest too
    assert policy.frames(12, 10, False, 25) == 25  # no tail shorter than first_frames
    assert policy.frames(0, 0, False, 5) == 5  # a sentence shorter than a chunk is one chunk
    assert policy.ahead(60.0) and not policy.ahead(59.9)
    assert not StreamPolicy(12, 256, 2.0, 0, 16, IN_PROCESS).ahead(10_000)


@pytest.mark.parametrize("values", [(0, 10, 2.0, 0, 1, IN_PROCESS), (20, 10, 2.0, 0, 1, IN_PROCESS),
                                    (5, 10, 0, 0, 1, IN_PROCESS), (5, 10, 2.0, -1, 1, IN_PROCESS),
                                    (5, 10, 2.0, 0, 0, IN_PROCESS), (5, 10, 2.0, 0, 1, "elsewhere")])
def test_chunk_policies_that_cannot_work_are_refused(values):
    with pytest.raises(StreamPolicyError):
        StreamPolicy(*values)
