"""OpenAI-compatible speech: POST /v1/audio/speech, for the clients and SDKs that speak OpenAI's audio API.

Body: model (any name; one model serves), input, voice, response_format (mp3 by default, as OpenAI; wav,
flac, opus, pcm; aac is not offered), speed (our range, 0.5 to 2.0), stream_format ("audio" by default, or
"sse"), instructions (accepted, not used), and our own optional `emotion`.

- stream_format "audio": the file in the response body; pcm is sent as it is made, the other formats when
  the whole audio is encoded (so a wav carries its exact sizes).
- stream_format "sse": server-sent events `speech.audio.delta` (base64 of the next bytes of the chosen
  format; wav and pcm as they are made) and a last `speech.audio.done`, whose usage counts characters.

Voices: OpenAI's names map to ours (OPENAI_VOICES); our own names are accepted as they are. When the served
model lacks the voice a name maps to, its default voice speaks; the X-Voice header names the voice used.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from gateway import state, synthesis
from gateway.api import audio_response, stream_response
from gateway.audio import FORMATS
from gateway.errors import ApiError
from gateway.speech import audio_format, parse_body, resolve
from gateway.triton import Catalogue

# OpenAI voice -> ours, grouped by character: the female voices to zhitian_emo and zhiyan_emo, the male ones to
# zhizhe_emo, fable (a storyteller) to the child voice zhibei_emo (the four voices of the zh-cn 16k model).
OPENAI_VOICES = {
    "alloy": "zhitian_emo", "marin": "zhitian_emo", "coral": "zhitian_emo",
    "nova": "zhiyan_emo", "shimmer": "zhiyan_emo", "sage": "zhiyan_emo",
    "echo": "zhizhe_emo", "onyx": "zhizhe_emo", "ash": "zhizhe_emo", "ballad": "zhizhe_emo",
    "verse": "zhizhe_emo", "cedar": "zhizhe_emo",
    "fable": "zhibei_emo",
}
OPENAI_DEFAULT_FORMAT = "mp3"
NOT_OFFERED = {"aac": "aac is not offered: use mp3, opus, flac, wav or pcm"}

router = APIRouter()


class SpeechRequest(BaseModel):
    model: str = Field(strict=True)
    input: str = Field(strict=True)
    voice: str = Field(strict=True)
    instructions: str | None = Field(default=None, strict=True)
    response_format: str = Field(default=OPENAI_DEFAULT_FORMAT, strict=True)
    speed: float = Field(default=1.0, strict=True)
    stream_format: Literal["audio", "sse"] = "audio"
    emotion: str | None = Field(default=None, strict=True)


def our_voice(name: str, catalogue: Catalogue) -> str:
    if name in catalogue.voices:
        return name
    mapped = OPENAI_VOICES.get(name.lower())
    if mapped is None:
        raise ApiError(400, f"unknown voice {name!r}: use an OpenAI voice ({', '.join(OPENAI_VOICES)}) "
                            f"or one of ours ({', '.join(catalogue.voices)})")
    return mapped if mapped in catalogue.voices else catalogue.default_voice


@router.post("/v1/audio/speech")
async def speech(request: Request) -> Response:
    gateway = state.of(request)
    body = parse_body(await request.body(), SpeechRequest)
    if body.response_format.lower() in NOT_OFFERED:
        raise ApiError(400, NOT_OFFERED[body.response_format.lower()])
    fmt = audio_format(body.response_format)
    catalogue = await gateway.triton.catalogue()
    voice = our_voice(body.voice, catalogue)
    speech = resolve(catalogue, body.input, voice, body.emotion, body.speed, gateway.settings, text_field="input")
    counter = gateway.metrics.audio_seconds.labels(request.url.path)

    if body.stream_format == "audio" and fmt is not FORMATS["pcm"]:
        encoded = await synthesis.whole(gateway.triton, speech, fmt)
        counter.inc(encoded.duration_s)
        response = audio_response(encoded)
    else:
        stream = await synthesis.open_stream(gateway.triton, speech, fmt, gateway.settings.stream_chunk_s,
                                             counter.inc)
        if body.stream_format == "sse":
            response = StreamingResponse(server_sent_events(stream.body, len(body.input)),
                                         media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        else:
            response = stream_response(stream)
    response.headers["X-Voice"] = voice
    return response


def _event(data: dict) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


async def server_sent_events(audio_bytes: AsyncIterator[bytes], input_chars: int) -> AsyncIterator[bytes]:
    async for piece in audio_bytes:
        if piece:
            yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode("ascii")})
    usage = {"input_tokens": input_chars, "output_tokens": 0, "total_tokens": input_chars}
    yield _event({"type": "speech.audio.done", "usage": usage})
