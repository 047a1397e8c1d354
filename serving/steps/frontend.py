"""Front-end step: validate each request and turn its text into one row of symbol ids per sentence.

Each sentence also gets the seed of its NSF noise (NOISE_SEED): from the request's SEED, else the
deployment's seed, else a fresh one per request (unseeded, as ModelScope draws it).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from serving.contract import (
    DURATION_SCALE,
    EMOTION,
    FRONTEND,
    IDS,
    NOISE_SEED,
    PAUSE,
    SEED,
    SPEAKER,
    SPEED,
    TEXT,
    TOKENS,
    VOICE,
    VOICE_INDEX,
    ExportConfig,
)
from serving.frontend import FrontEnd, FrontEndError, Sentence
from serving.frontend.pipeline import DEFAULT_EMOTION
from serving.limits import MAX_AUDIO_S, MAX_BATCH_SIZE, MAX_SENTENCE_CHARS, MAX_TEXT_CHARS, SPEED_RANGE
from serving.runtime.nsf import MAX_SEED, sentence_seed
from serving.steps import RequestError, Tensors


def scalar(request: Tensors, name: str):
    """The one value of an optional input, or None where the request leaves it out."""
    array = request.get(name)
    if array is None:
        return None
    if array.size != 1:
        raise RequestError(f"{name} must hold exactly one value per request, got shape {list(array.shape)}")
    return array.reshape(-1)[0]


def decode_utf8(value, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise RequestError(f"{name} must be a string (BYTES), got {type(value).__name__}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(f"{name} is not valid UTF-8 (byte {e.start}): send UTF-8 encoded text") from None


@dataclass
class Reading:
    """A request checked and read: its voice, how its durations scale, the seed of its NSF noise, and its
    sentences as they are reached."""

    voice_index: int
    duration_scale: float
    seed: int
    sentences: Iterator[Sentence]

    def noise_seed(self, sentence: int) -> int:
        """The NOISE_SEED of the request's sentence at this position."""
        return sentence_seed(self.seed, sentence)


class FrontendStep:
    model = FRONTEND

    def __init__(self, config: ExportConfig, max_text_chars: int = MAX_TEXT_CHARS, noise_seed: int | None = None):
        """noise_seed: the deployment's seed for requests without SEED (None: a fresh one per request)."""
        self.config = config
        self.noise_seed = noise_seed
        self.voice_names = config.voice_names()
        self.frontends = {name: FrontEnd(config.voices[name].vocabulary(), max_sentence_chars=MAX_SENTENCE_CHARS,
                                         max_text_chars=max_text_chars)
                          for name in self.voice_names}

    def catalog(self) -> dict:
        """The voices and emotions clients may ask for (published as the frontend model's `voices` parameter)."""
        return {
            "default_voice": self.config.default_voice,
            "sample_rate": self.config.audio.sample_rate,
            "voices": {name: {"emotions": fe.emotions(), "default_emotion": DEFAULT_EMOTION,
                              "speakers": fe.speakers(), "default_speaker": fe.vocabulary.default_speaker}
                       for name, fe in self.frontends.items()},
        }

    def process(self, requests: list[Tensors]) -> list[Tensors | RequestError]:
        results = []
        for request in requests:
            try:
                results.append(self.sentence_rows(request))
            except RequestError as e:
                results.append(e)
        return results

    def read(self, request: Tensors) -> Reading:
        """Check a request's inputs (RequestError for a mistake) and read its text lazily (FrontEnd.sentences)."""
        text = decode_utf8(scalar(request, TEXT.name), TEXT.name)
        if text is None:
            raise RequestError("the TEXT input is missing: send the text to read as TEXT (BYTES, shape [1, 1])")
        voice = decode_utf8(scalar(request, VOICE.name), VOICE.name) or self.config.default_voice
        emotion = decode_utf8(scalar(request, EMOTION.name), EMOTION.name) or None
        speaker = decode_utf8(scalar(request, SPEAKER.name), SPEAKER.name) or None
        if voice not in self.frontends:
            raise RequestError(f"unknown VOICE {voice!r}; available: {', '.join(self.voice_names)}")
        speed = scalar(request, SPEED.name)
        speed = 1.0 if speed is None else float(speed)
        if not (math.isfinite(speed) and SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]):
            raise RequestError(f"SPEED {speed} is out of range: use {SPEED_RANGE[0]} to {SPEED_RANGE[1]} (1.0 is normal)")
        seed = self.request_seed(scalar(request, SEED.name))
        try:
            sentences = self.frontends[voice].sentences(text, emotion, speaker)
        except FrontEndError as e:
            raise RequestError(str(e)) from None
        return Reading(self.voice_names.index(voice), 1.0 / speed, seed, _user_errors(sentences))

    def sentence_rows(self, request: Tensors) -> Tensors:
        reading = self.read(request)
        sentences = list(reading.sentences)
        if len(sentences) > MAX_BATCH_SIZE:
            raise RequestError(f"TEXT has {len(sentences)} sentences, at most {MAX_BATCH_SIZE} fit one request: "
                               "split it into several requests")
        pauses = sum(s.pause_after for s in sentences)
        if pauses > MAX_AUDIO_S:
            raise RequestError(f"TEXT asks for {pauses:g} s of pauses, more than the {MAX_AUDIO_S:g} s of audio one request "
                               "may give: use shorter or fewer <break>s")
        count = len(sentences)
        ids = np.zeros((count, max(len(s.ids) for s in sentences), sentences[0].ids.shape[1]), dtype=np.int64)
        for row, sentence in enumerate(sentences):
            ids[row, : len(sentence.ids)] = sentence.ids

        def column(values, dtype) -> np.ndarray:
            return np.asarray(values, dtype=dtype).reshape(count, 1)

        return {
            IDS.name: ids,
            TOKENS.name: column([len(s.ids) for s in sentences], np.int32),
            VOICE_INDEX.name: column([reading.voice_index] * count, np.int32),
            DURATION_SCALE.name: column([reading.duration_scale] * count, np.float32),
            PAUSE.name: column([s.pause_after for s in sentences], np.float32),
            NOISE_SEED.name: column([reading.noise_seed(s) for s in range(count)], np.int64),
        }

    def request_seed(self, value) -> int:
        """The request's SEED, else the deployment's, else a fresh one."""
        if value is None:
            return secrets.randbelow(MAX_SEED + 1) if self.noise_seed is None else self.noise_seed
        if not (isinstance(value, np.integer) and 0 <= value <= MAX_SEED):
            raise RequestError(f"SEED must be a whole number from 0 to {MAX_SEED} (INT64), got {value!r}")
        return int(value)


def _user_errors(sentences: Iterator[Sentence]) -> Iterator[Sentence]:
    """The front end's sentences, its mistakes found on the way (nothing to read) as RequestError."""
    try:
        yield from sentences
    except FrontEndError as e:
        raise RequestError(str(e)) from None
