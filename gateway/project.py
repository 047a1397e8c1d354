"""Everything the gateway takes from the rest of the project, in one place (when modules move, this file follows).

Names and bounds only: the gateway needs no model code, and runs wherever these light modules import.
"""

from deploy.launcher import Ports, free_port
from serving.contract import (
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
from serving.limits import MAX_STREAM_TEXT_CHARS, MAX_TEXT_CHARS, SPEED_RANGE
from serving.runtime.nsf import MAX_SEED

__all__ = ["Ports", "free_port", "AUDIO", "CATALOGUE_MODEL", "CATALOGUE_PARAMETER", "EMOTION", "SAMPLE_RATE",
           "SEED", "SPEAKER", "SPEED", "TEXT", "TTS", "TTS_STREAM", "VOICE", "MAX_SEED", "MAX_STREAM_TEXT_CHARS",
           "MAX_TEXT_CHARS", "SPEED_RANGE"]
