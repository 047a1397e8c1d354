"""What guards the gateway on a network: API keys, a per-client cap on requests in flight, a body size cap.

Each is a small ASGI middleware that answers with the gateway's JSON error shape. The public paths (the
WebUI page, health probes and Prometheus scraping) need no key and are not capped: probes and scrapers
carry no keys, and the page asks for a key itself when the API needs one.
"""

from __future__ import annotations

import hmac
from collections import Counter

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import error_response

PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics"})
API_KEY_HEADER = "x-api-key"


def is_public(scope: Scope) -> bool:
    return scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["method"] == "OPTIONS"


def presented_key(headers: Headers) -> str | None:
    """The key of `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get(API_KEY_HEADER) or None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: frozenset[str]):
        self.app = app
        self.keys = keys

    def accepts(self, key: str | None) -> bool:
        # Compare with every key in constant time, so timing tells nothing about how much of a key matched.
        return key is not None and any(hmac.compare_digest(key.encode(), k.encode()) for k in self.keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.keys or is_public(scope) or self.accepts(presented_key(Headers(scope=scope))):
            await self.app(scope, receive, send)
            return
        message = ("a valid API key is required: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
                   if presented_key(Headers(scope=scope)) is None else "the API key is not valid")
        await error_response(401, message, {"WWW-Authenticate": "Bearer"})(scope, receive, send)


def client_id(scope: Scope, by_key: bool) -> str:
    """Who a request counts against: its API key where keys are required (so checked), else its address."""
    key = presented_key(Headers(scope=scope)) if by_key else None
    if key is not None:
        return "key:" + key
    client = scope.get("client")
    return "addr:" + (client[0] if client else "unknown")


class ClientConcurrencyMiddleware:
    """At most `limit` requests of one client in flight (a stream counts until its last byte)."""

    def __init__(self, app: ASGIApp, limit: int, by_key: bool):
        self.app = app
        self.limit = limit
        self.by_key = by_key
        self.in_flight: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_public(scope):
            await self.app(scope, receive, send)
            return
        client = client_id(scope, self.by_key)
        if self.in_flight[client] >= self.limit:
            await error_response(429, f"too many requests in flight from this client (at most {self.limit}): "
                                      "wait for one to finish, then retry", {"Retry-After": "1"})(scope, receive, send)
            return
        self.in_flight[client] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight[client] -= 1
            if not self.in_flight[client]:
                del self.in_flight[client]


class BodyTooLarge(Exception):
    pass


class BodySizeMiddleware:
    """Refuses a body over its path's limit (`limits`, else `limit` bytes): at once by its Content-Length, or as
    soon as a chunked body passes it."""

    def __init__(self, app: ASGIApp, limit: int, limits: dict[str, int] | None = None):
        self.app = app
        self.limit = limit
        self.limits = limits or {}

    @staticmethod
    def too_large(limit: int):
        return error_response(413, f"the request body is larger than {limit} bytes: send a shorter text")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.limit)
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self.too_large(limit)(scope, receive, send)
            return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if response_started:
                raise
            await self.too_large(limit)(scope, receive, send)
