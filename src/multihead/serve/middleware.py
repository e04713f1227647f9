"""ASGI middleware of the server, outermost first: access log and request metrics, then the guard (``Host`` and
``Origin`` checks, the API key, the body size limit).

- Access log: one JSON line per request on the ``multihead.serve.access`` logger (method, path, status,
  milliseconds to the end of the answer, bytes sent, client, request id), and an ``X-Request-Id`` header.
- Host: a loopback server answers only requests addressed to a loopback name (or ``allowed_hosts``), so that a
  web page cannot reach it through a rebound DNS name (403).
- Origin: a browser request from another origin than the server's own (or ``allowed_origins``) gets 403.
- Key: with an API key, every path but ``/health`` and the page's static files needs ``Authorization: Bearer
  KEY`` (401).
- Body: more than ``max_body_bytes`` (by ``Content-Length`` or counted while reading) gets 413.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from multihead.serve.errors import APIError, error_body
from multihead.serve.metrics import ServerMetrics

__all__ = ["OPEN_PATHS", "AccessLog", "Guard", "route_label"]

access_log = logging.getLogger("multihead.serve.access")
OPEN_PATHS = ("/health",)
"""Paths answered without the API key; the page (``/`` and ``/static/``) holds no data and asks for the key."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
KNOWN_ROUTES = ("/", "/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions",
                "/v1/embeddings", "/v1/classify", "/v1/translate", "/v1/summarize", "/v1/answer", "/v1/attention")


def route_label(path: str) -> str:
    """A bounded label for metrics: the route, ``/static`` or ``other``."""
    if path in KNOWN_ROUTES:
        return path
    return "/static" if path.startswith("/static/") else "other"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class AccessLog:
    """Times each request to its last byte, counts it in the metrics and writes one JSON log line."""

    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = secrets.token_hex(6)
        state: dict[str, Any] = {"status": 500, "bytes": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        route = route_label(scope["path"])
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - started
            self.metrics.requests.labels(route, str(state["status"])).inc()
            self.metrics.latency.labels(route).observe(seconds)
            client = scope.get("client")
            access_log.info(json.dumps({
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "request_id": request_id, "method": scope["method"],
                "path": scope["path"][:200], "status": state["status"], "ms": round(seconds * 1000, 1),
                "bytes": state["bytes"], "client": f"{client[0]}:{client[1]}" if client else None,
            }))


class Guard:
    """Host, Origin, API key and body size checks, before the app reads anything."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int, loopback_only: bool,
                 allowed_hosts: tuple[str, ...], allowed_origins: tuple[str, ...],
                 on_reject: Callable[[str], None]) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.loopback_only = loopback_only
        self.allowed_hosts = tuple(host.lower() for host in allowed_hosts)
        self.allowed_origins = allowed_origins
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error = self._check(scope)
        if error is not None:
            self.on_reject(error.code or "rejected")
            body = error_body(error.status, error.message, param=error.param, code=error.code)
            await JSONResponse(body, status_code=error.status, headers=error.headers)(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _check(self, scope: Scope) -> APIError | None:
        host = _header(scope, b"host") or ""
        name = urlsplit(f"//{host}").hostname or ""
        if self.loopback_only and name not in LOOPBACK_HOSTS and host.lower() not in self.allowed_hosts \
                and name not in self.allowed_hosts:
            return APIError(403, f"Host {host[:100]!r} is not this loopback server's; start it with --allow-host "
                            "to accept that name", code="forbidden_host")
        origin = _header(scope, b"origin")
        if origin is not None and origin not in self.allowed_origins:  # "null" (sandboxed frames, files) too
            parts = urlsplit(origin)
            if origin == "null" or parts.netloc.lower() != host.lower():
                return APIError(403, f"requests from the web origin {origin[:100]!r} are not allowed; start the "
                                "server with --allow-origin to allow it", code="forbidden_origin")
        path = scope["path"]
        if self.api_key is not None and path not in OPEN_PATHS and not self._page(scope):
            given = _header(scope, b"authorization") or ""
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
                what = "no API key given" if not given else "the API key is not valid"
                return APIError(401, f"{what}; send the header 'Authorization: Bearer KEY'", code="invalid_api_key",
                                headers={"WWW-Authenticate": "Bearer"})
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return _too_large(self.max_body_bytes)
        return None

    @staticmethod
    def _page(scope: Scope) -> bool:
        return scope["method"] in ("GET", "HEAD") and (scope["path"] == "/" or scope["path"].startswith("/static/"))

    def _counting(self, receive: Receive) -> Receive:
        """``receive`` that raises 413 once the body passes the limit (for bodies sent without a length)."""
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    self.on_reject("body_too_large")
                    raise _too_large(self.max_body_bytes)
            return message

        return counted


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than the server's limit of {limit:,} bytes",
                    code="body_too_large")
