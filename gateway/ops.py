"""What operators and the WebUI read: the voice catalogue, liveness, readiness, metrics, and the page itself."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from gateway import state
from gateway.audio import FORMATS
from gateway.errors import ApiError
from gateway.project import CATALOGUE_MODEL, SPEED_RANGE
from gateway.triton import MODEL, STREAM_MODEL

WEBUI_PAGE = Path(__file__).resolve().parent / "static" / "index.html"

router = APIRouter()


@router.get("/api/voices")
async def voices(request: Request) -> JSONResponse:
    gateway = state.of(request)
    catalogue = await gateway.triton.catalogue()
    return JSONResponse({
        "default_voice": catalogue.default_voice,
        "sample_rate": catalogue.sample_rate,
        "voices": {name: {"emotions": list(v.emotions), "default_emotion": v.default_emotion,
                          "speakers": list(v.speakers)}
                   for name, v in catalogue.voices.items()},
        "speed": {"min": SPEED_RANGE[0], "max": SPEED_RANGE[1], "default": 1.0},
        "max_text_chars": gateway.settings.max_text_chars,
        "max_stream_text_chars": gateway.settings.max_stream_text_chars,
        "formats": list(FORMATS),
        "streaming_model": await gateway.triton.model_ready(STREAM_MODEL),
    })


@router.get("/healthz")
async def healthz() -> JSONResponse:
    """The gateway process answers (whatever Triton's state: that is /readyz)."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when Triton answers and the models the API needs are loaded.

    Triton's own readiness is not used: with explicit model control it says "not ready" while any model is
    unloaded, even one the API does not need (such as the streaming model, which has a fallback).
    """
    triton = state.of(request).triton
    if not await triton.server_live():
        raise ApiError(503, f"the TTS server (Triton) at {triton.url} is not reachable")
    models = {name: await triton.model_ready(name) for name in (MODEL, CATALOGUE_MODEL.name, STREAM_MODEL)}
    missing = [name for name in (MODEL, CATALOGUE_MODEL.name) if not models[name]]
    if missing:
        raise ApiError(503, f"Triton at {triton.url} is up but model {', '.join(missing)} is not loaded")
    return JSONResponse({"status": "ready", "models": models})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    gateway_metrics = state.of(request).metrics
    return Response(gateway_metrics.exposition(), media_type=gateway_metrics.content_type)


@router.get("/")
async def webui() -> FileResponse:
    return FileResponse(WEBUI_PAGE, media_type="text/html; charset=utf-8")
