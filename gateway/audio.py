"""Audio encoding: float PCM from Triton to the bytes of a file format, whole or as a stream.

Every format starts from the same 16-bit samples (to_int16), so a streamed WAV or PCM response holds
exactly the samples of the whole-file WAV. soundfile's bundled libsndfile writes WAV, FLAC, MP3 and
Opus in Ogg; Opus takes 8, 12, 16, 24 or 48 kHz, so our 16 kHz audio needs no resampling.

Streams: `pcm` is raw 16-bit little-endian mono; `wav` is a RIFF header whose two size fields are
0xFFFFFFFF (the usual "length unknown, read to the end" mark of streamed WAV) followed by the same PCM.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import soundfile as sf

STREAMING_SIZE = 0xFFFFFFFF
BYTES_PER_SAMPLE = 2


@dataclass(frozen=True)
class AudioFormat:
    name: str
    media_type: str
    soundfile_format: str | None  # None: raw PCM, no container
    subtype: str | None
    streams_as_made: bool  # its bytes can be sent while later audio is still being made

    def content_type(self, sample_rate: int) -> str:
        return f"{self.media_type}; rate={sample_rate}" if self.soundfile_format is None else self.media_type


FORMATS = {
    "wav": AudioFormat("wav", "audio/wav", "WAV", "PCM_16", streams_as_made=True),
    "flac": AudioFormat("flac", "audio/flac", "FLAC", "PCM_16", streams_as_made=False),
    "mp3": AudioFormat("mp3", "audio/mpeg", "MP3", "MPEG_LAYER_III", streams_as_made=False),
    "opus": AudioFormat("opus", "audio/ogg", "OGG", "OPUS", streams_as_made=False),
    "pcm": AudioFormat("pcm", "audio/pcm", None, None, streams_as_made=True),  # s16le mono
}
DEFAULT_FORMAT = "wav"


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float PCM in [-1, 1] to 16-bit samples (clipped: out-of-range floats would wrap otherwise)."""
    return np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")


def encode(samples: np.ndarray, sample_rate: int, audio_format: AudioFormat) -> bytes:
    """The whole audio as the bytes of one file (or raw PCM)."""
    pcm = to_int16(samples)
    if audio_format.soundfile_format is None:
        return pcm.tobytes()
    buffer = io.BytesIO()
    sf.write(buffer, pcm, sample_rate, format=audio_format.soundfile_format, subtype=audio_format.subtype)
    return buffer.getvalue()


def streaming_wav_header(sample_rate: int) -> bytes:
    """A 44-byte PCM WAV header for one 16-bit channel whose RIFF and data sizes say 'unknown'."""
    byte_rate = sample_rate * BYTES_PER_SAMPLE
    return (b"RIFF" + struct.pack("<I", STREAMING_SIZE) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, byte_rate, BYTES_PER_SAMPLE, 16)
            + b"data" + struct.pack("<I", STREAMING_SIZE))


def stream_start(sample_rate: int, audio_format: AudioFormat) -> bytes:
    """What a stream sends before its first samples."""
    return streaming_wav_header(sample_rate) if audio_format.name == "wav" else b""


def duration_s(samples: np.ndarray, sample_rate: int) -> float:
    return len(samples) / sample_rate
