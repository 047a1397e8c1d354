"""Prometheus metrics of the gateway, in a registry of its own (served at GET /metrics).

Requests are labelled by route template (`/api/tts/result/{task_id}`, not each id) and status; a path that
matches no route counts as "unmatched", so scanners cannot grow the label set.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
# Seconds: from a WebUI click on one short sentence to a long text under load.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("gateway_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("gateway_request_duration_seconds",
                                 "Time from request to the last byte of the response, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.audio_seconds = Counter("gateway_audio_seconds", "Seconds of audio sent to callers, by route",
                                     ["route"], registry=self.registry)
        self.in_flight = Gauge("gateway_requests_in_flight", "HTTP requests being answered",
                               registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", UNMATCHED)


class MetricsMiddleware:
    """Counts every HTTP request, whatever answered it (a route, an error handler or another middleware)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app fails before it starts a response
        start = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.in_flight.dec()
            route = route_of(scope)
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
