"""The HTTP API of the Flask-style services we replace: JSON in, audio out; streamed; or as an async task.

    POST /api/tts (and /tts)   {"text", "voice"?, "emotion"?, "speed"?, "speaker"?, "seed"?, "format"?} -> the audio file
    POST /api/tts/stream       the same body -> the audio as it is made (wav with a streaming header, or pcm)
    POST /api/tts/async        the same body -> 202 {"task_id", "result_url"}
    GET  /api/tts/result/{id}  202 while running, the audio when done, the task's error, or 404
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from gateway import state, synthesis
from gateway.audio import AudioFormat
from gateway.errors import ApiError
from gateway.speech import SpeakRequest, audio_format, parse_body, resolve
from gateway.synthesis import AudioStream, EncodedAudio
from gateway.triton import STREAM_MODEL, Speech

router = APIRouter()


async def read_request(request: Request, max_text_chars: int | None = None) -> tuple[Speech, AudioFormat]:
    """The checked request and its audio format (the text at most max_text_chars, else the setting's)."""
    gateway = state.of(request)
    body = parse_body(await request.body(), SpeakRequest)
    fmt = audio_format(body.format)  # before the catalogue: a wrong format needs no Triton to say so
    catalogue = await gateway.triton.catalogue()
    return resolve(catalogue, body.text, body.voice, body.emotion, body.speed, gateway.settings,
                   speaker=body.speaker, seed=body.seed, max_text_chars=max_text_chars), fmt


def audio_headers(fmt: AudioFormat, sample_rate: int, duration_s: float | None = None) -> dict[str, str]:
    headers = {"X-Sample-Rate": str(sample_rate), "Content-Disposition": f'inline; filename="speech.{fmt.name}"'}
    if duration_s is not None:
        headers["X-Audio-Duration"] = f"{duration_s:.3f}"
    return headers


def audio_response(encoded: EncodedAudio) -> Response:
    return Response(encoded.body, media_type=encoded.format.content_type(encoded.sample_rate),
                    headers=audio_headers(encoded.format, encoded.sample_rate, encoded.duration_s))


def stream_response(stream: AudioStream) -> StreamingResponse:
    return StreamingResponse(stream.body, media_type=stream.format.content_type(stream.sample_rate),
                             headers=audio_headers(stream.format, stream.sample_rate))


@router.post("/api/tts")
@router.post("/tts")
async def speak(request: Request) -> Response:
    gateway = state.of(request)
    speech, fmt = await read_request(request)
    encoded = await synthesis.whole(gateway.triton, speech, fmt)
    gateway.metrics.audio_seconds.labels(request.url.path).inc(encoded.duration_s)
    return audio_response(encoded)


STREAM_PATH = "/api/tts/stream"  # its body may be larger (Settings.max_stream_body_bytes)


@router.post(STREAM_PATH)
async def speak_streamed(request: Request) -> Response:
    gateway = state.of(request)
    # The streaming model reads a long text as it goes; without it the stream is cut from one `tts` result.
    streamed = await gateway.triton.model_ready(STREAM_MODEL)
    settings = gateway.settings
    speech, fmt = await read_request(request, settings.max_stream_text_chars if streamed else settings.max_text_chars)
    counter = gateway.metrics.audio_seconds.labels(request.url.path)
    stream = await synthesis.open_stream(gateway.triton, speech, fmt, gateway.settings.stream_chunk_s, counter.inc)
    return stream_response(stream)


@router.post("/api/tts/async", status_code=202)
async def submit(request: Request) -> JSONResponse:
    gateway = state.of(request)
    speech, fmt = await read_request(request)
    counter = gateway.metrics.audio_seconds.labels(request.url.path)

    async def work() -> EncodedAudio:
        encoded = await synthesis.whole(gateway.triton, speech, fmt)
        counter.inc(encoded.duration_s)
        return encoded

    task = gateway.tasks.submit(work)
    url = f"/api/tts/result/{task.id}"
    return JSONResponse({"task_id": task.id, "status": "running", "result_url": url}, status_code=202,
                        headers={"Location": url})


@router.get("/api/tts/result/{task_id}")
async def result(task_id: str, request: Request) -> Response:
    gateway = state.of(request)
    task = gateway.tasks.get(task_id)
    if task is None:
        raise ApiError(404, f"no task {task_id!r}: it never existed or its result expired (results are kept "
                            f"{gateway.settings.task_retention_s:g} s after they finish)")
    if task.running:
        return JSONResponse({"task_id": task.id, "status": "running"}, status_code=202, headers={"Retry-After": "1"})
    if task.error is not None:
        raise ApiError(task.error.status, f"task {task.id} failed: {task.error.message}")
    return audio_response(task.result)
