"""The gateway application: routes, error handlers and the guards around them, built from Settings."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException

from gateway import api, openai_api, ops
from gateway.errors import ApiError, describe_validation_errors, error_response
from gateway.metrics import Metrics, MetricsMiddleware
from gateway.security import API_KEY_HEADER, ApiKeyMiddleware, BodySizeMiddleware, ClientConcurrencyMiddleware
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.tasks import TaskStore
from gateway.triton import Triton

log = logging.getLogger("gateway")


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        triton = Triton(settings.triton_grpc_url, settings.triton_timeout_s, settings.catalogue_ttl_s,
                        settings.triton_refresh_s)
        tasks = TaskStore(settings.task_retention_s, settings.max_tasks)
        app.state.gateway = GatewayState(settings, triton, tasks, metrics)
        try:
            yield
        finally:
            await tasks.close()
            await triton.close()

    # No /docs pages: they load scripts from a CDN, and the API is small enough for the README.
    app = FastAPI(title="Sambert TTS gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    for router in (api.router, openai_api.router, ops.router):
        app.include_router(router)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        return error_response(400, describe_validation_errors(error.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        messages = {404: f"no such path {request.url.path!r}: see GET / for the WebUI and the README for the API",
                    405: f"{request.method} is not allowed on {request.url.path}"}
        return error_response(error.status_code, messages.get(error.status_code, str(error.detail)), error.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "the gateway failed on this request; see its log")

    # Outermost last: metrics see every answer; CORS answers preflights and labels errors before the guards run.
    app.add_middleware(BodySizeMiddleware, limit=settings.max_body_bytes,
                       limits={api.STREAM_PATH: settings.max_stream_body_bytes})
    app.add_middleware(ClientConcurrencyMiddleware, limit=settings.max_requests_per_client,
                       by_key=bool(settings.api_keys))
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys)
    if settings.cors_origin_list:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", API_KEY_HEADER],
                           expose_headers=["X-Sample-Rate", "X-Audio-Duration", "X-Voice", "Content-Disposition"])
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
