"""Requests to speak: the JSON bodies the gateway accepts, checked against the served voice catalogue.

Checked here, before Triton sees them, so that every mistake gets a message naming the field and the
accepted values: empty or too long text, unknown voice, emotion, speaker or format, speed or seed out of
range. Triton
checks again (text it cannot read, SSML errors) and its INVALID_ARGUMENT messages come back as 400 too.
"""

from __future__ import annotations

import json
import math

from pydantic import BaseModel, Field, ValidationError

from gateway.audio import DEFAULT_FORMAT, FORMATS, AudioFormat
from gateway.errors import EXAMPLE_BODY, ApiError, from_validation_error
from gateway.project import MAX_SEED, SPEED_RANGE
from gateway.settings import Settings
from gateway.triton import Catalogue, Speech


class SpeakRequest(BaseModel):
    """POST /api/tts, /tts, /api/tts/stream, /api/tts/async."""

    text: str = Field(strict=True)
    voice: str | None = Field(default=None, strict=True)
    emotion: str | None = Field(default=None, strict=True)
    speed: float = Field(default=1.0, strict=True)
    speaker: str | None = Field(default=None, strict=True)
    seed: int | None = Field(default=None, strict=True)
    format: str = Field(default=DEFAULT_FORMAT, strict=True)


def parse_body(body: bytes, model: type[BaseModel]):
    """The request body as `model`; any mistake is a 400 that says what to send."""
    if not body.strip():
        raise ApiError(400, f"the request body is empty: send a JSON object such as {EXAMPLE_BODY}")
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8: send JSON text encoded as UTF-8") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"the request body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}): "
                            f"send a JSON object such as {EXAMPLE_BODY}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object such as {EXAMPLE_BODY}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise from_validation_error(e) from None


def audio_format(name: str) -> AudioFormat:
    fmt = FORMATS.get(name.lower())
    if fmt is None:
        raise ApiError(400, f"unknown format {name!r}: use one of {', '.join(FORMATS)}")
    return fmt


def check_text(text: str, max_chars: int, field: str = "text") -> str:
    if not text.strip():
        raise ApiError(400, f"'{field}' is empty: give the text to speak")
    if len(text) > max_chars:
        raise ApiError(400, f"'{field}' has {len(text)} characters, at most {max_chars} are accepted: "
                            "split it into several requests")
    return text


def check_speed(speed: float) -> float:
    low, high = SPEED_RANGE
    if not (math.isfinite(speed) and low <= speed <= high):
        raise ApiError(400, f"'speed' {speed:g} is out of range: use {low:g} to {high:g} (1.0 is normal)")
    return float(speed)


def resolve(catalogue: Catalogue, text: str, voice: str | None, emotion: str | None, speed: float,
            settings: Settings, text_field: str = "text", speaker: str | None = None, seed: int | None = None,
            max_text_chars: int | None = None) -> Speech:
    """A complete request for Triton: defaults filled in from the catalogue, every value checked (speaker and
    seed left to the server's defaults when not given; the text at most max_text_chars, else the setting's)."""
    voice = voice or catalogue.default_voice
    if voice not in catalogue.voices:
        raise ApiError(400, f"unknown voice {voice!r}: use one of {', '.join(catalogue.voices)} (GET /api/voices)")
    emotions = catalogue.voices[voice].emotions
    emotion = emotion or catalogue.voices[voice].default_emotion
    if emotion not in emotions:
        raise ApiError(400, f"voice {voice!r} has no emotion {emotion!r}: use one of {', '.join(emotions)}")
    speakers = catalogue.voices[voice].speakers
    if speaker is not None and speaker not in speakers:
        raise ApiError(400, f"voice {voice!r} has no speaker {speaker!r}: use one of {', '.join(speakers)}")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ApiError(400, f"'seed' {seed} is out of range: use 0 to {MAX_SEED}")
    text = check_text(text, max_text_chars or settings.max_text_chars, text_field)
    return Speech(text, voice, emotion, check_speed(speed), speaker, seed)
