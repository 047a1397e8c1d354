"""Front-end step: validate one request and turn its text into one id row per sentence."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from serving.export_config import ExportConfig
from serving.frontend import FrontEnd, FrontEndError
from serving.frontend.pipeline import DEFAULT_EMOTION
from serving.limits import MAX_BATCH_SIZE, MAX_SENTENCE_CHARS, SPEED_RANGE


class RequestError(ValueError):
    """A user mistake; its message goes back to the client as INVALID_ARG (HTTP 400)."""


@dataclass
class SentenceRows:
    ids: np.ndarray             # int64 [S, T_max, 6], padded with zeros past each row's token count
    tokens: np.ndarray          # int32 [S, 1]
    voice_index: np.ndarray     # int32 [S, 1]
    duration_scale: np.ndarray  # float32 [S, 1]
    pause: np.ndarray           # float32 [S, 1], seconds of silence after each sentence


def decode_utf8(value: bytes | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(f"{name} is not valid UTF-8 (byte {e.start}): send UTF-8 encoded text") from None


class FrontendStep:
    def __init__(self, config: ExportConfig):
        self.config = config
        self.voice_names = config.voice_names()
        self.frontends = {name: FrontEnd(config.voices[name].vocabulary(), max_sentence_chars=MAX_SENTENCE_CHARS)
                          for name in self.voice_names}

    def catalog(self) -> dict:
        """The voices and emotions clients may ask for (published as the frontend model's `voices` parameter)."""
        return {
            "default_voice": self.config.default_voice,
            "sample_rate": self.config.audio.sample_rate,
            "voices": {name: {"emotions": fe.emotions(), "default_emotion": DEFAULT_EMOTION}
                       for name, fe in self.frontends.items()},
        }

    def process(self, text: bytes | None, voice: bytes | None = None, emotion: bytes | None = None,
                speed: float | None = None) -> SentenceRows:
        if text is None:
            raise RequestError("the TEXT input is missing: send the text to read as TEXT (BYTES, shape [1, 1])")
        text_str = decode_utf8(text, "TEXT")
        voice_str = decode_utf8(voice, "VOICE") or self.config.default_voice
        emotion_str = decode_utf8(emotion, "EMOTION") or None
        if voice_str not in self.frontends:
            raise RequestError(f"unknown VOICE {voice_str!r}; available: {', '.join(self.voice_names)}")
        speed = 1.0 if speed is None else float(speed)
        if not (math.isfinite(speed) and SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]):
            raise RequestError(f"SPEED {speed} is out of range: use {SPEED_RANGE[0]} to {SPEED_RANGE[1]} (1.0 is normal)")
        try:
            sentences = self.frontends[voice_str](text_str, emotion_str)
        except FrontEndError as e:
            raise RequestError(str(e)) from None
        if len(sentences) > MAX_BATCH_SIZE:
            raise RequestError(f"TEXT has {len(sentences)} sentences, at most {MAX_BATCH_SIZE} fit one request: "
                               "split it into several requests")
        count = len(sentences)
        longest = max(len(s.ids) for s in sentences)
        ids = np.zeros((count, longest, sentences[0].ids.shape[1]), dtype=np.int64)
        for row, sentence in enumerate(sentences):
            ids[row, : len(sentence.ids)] = sentence.ids
        column = lambda values, dtype: np.asarray(values, dtype=dtype).reshape(count, 1)
        return SentenceRows(
            ids=ids,
            tokens=column([len(s.ids) for s in sentences], np.int32),
            voice_index=column([self.voice_names.index(voice_str)] * count, np.int32),
            duration_scale=column([1.0 / speed] * count, np.float32),
            pause=column([s.pause_after for s in sentences], np.float32),
        )
