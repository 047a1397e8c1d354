"""From a checked request to audio bytes: a whole file, or a stream that starts with the first audio.

Streams come from Triton's streaming model `tts_stream` when the server has it ready; otherwise the
whole `tts` result is cut into chunks of `stream_chunk_s`. Formats that cannot be sent before the audio
is complete (flac, mp3, opus) are encoded whole and then sent in pieces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np

from gateway import audio
from gateway.audio import AudioFormat
from gateway.triton import STREAM_MODEL, Speech, Synthesis, Triton

PIECE_BYTES = 64 * 1024  # pieces of an already encoded file, sent as one stream


@dataclass(frozen=True)
class EncodedAudio:
    body: bytes
    format: AudioFormat
    sample_rate: int
    duration_s: float


async def whole(triton: Triton, speech: Speech, fmt: AudioFormat) -> EncodedAudio:
    result = await triton.synthesize(speech)
    body = await asyncio.to_thread(audio.encode, result.samples, result.sample_rate, fmt)
    return EncodedAudio(body, fmt, result.sample_rate, audio.duration_s(result.samples, result.sample_rate))


async def chunks(triton: Triton, speech: Speech, chunk_s: float) -> AsyncIterator[Synthesis]:
    """Float PCM chunks as they are made (streaming model) or cut from the whole synthesis."""
    if await triton.model_ready(STREAM_MODEL):
        async for chunk in triton.stream(speech):
            yield chunk
        return
    result = await triton.synthesize(speech)
    step = max(1, int(chunk_s * result.sample_rate))
    for start in range(0, len(result.samples), step):
        yield Synthesis(result.samples[start:start + step], result.sample_rate)


@dataclass
class AudioStream:
    """A stream whose first chunk is already made: errors before any audio still get a proper status."""

    format: AudioFormat
    sample_rate: int
    body: AsyncIterator[bytes]


async def open_stream(triton: Triton, speech: Speech, fmt: AudioFormat, chunk_s: float,
                      on_audio: Callable[[float], None]) -> AudioStream:
    """on_audio(seconds) is called for the audio of each chunk as it is sent."""
    if not fmt.streams_as_made:
        encoded = await whole(triton, speech, fmt)
        on_audio(encoded.duration_s)
        return AudioStream(fmt, encoded.sample_rate, _pieces(encoded.body))
    source = chunks(triton, speech, chunk_s)
    try:
        first = await anext(source)
    except StopAsyncIteration:  # no audio at all: an empty stream, still well formed
        catalogue = await triton.catalogue()
        first = Synthesis(np.zeros(0, dtype=np.float32), catalogue.sample_rate)

    async def body() -> AsyncIterator[bytes]:
        try:
            yield audio.stream_start(first.sample_rate, fmt)
            yield _pcm(first, on_audio)
            async for chunk in source:
                yield _pcm(chunk, on_audio)
        finally:
            await source.aclose()

    return AudioStream(fmt, first.sample_rate, body())


def _pcm(chunk: Synthesis, on_audio: Callable[[float], None]) -> bytes:
    on_audio(audio.duration_s(chunk.samples, chunk.sample_rate))
    return audio.to_int16(chunk.samples).tobytes()


async def _pieces(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), PIECE_BYTES):
        yield body[start:start + PIECE_BYTES]
