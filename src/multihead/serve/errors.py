"""Errors in OpenAI's JSON shape, ``{"error": {"message", "type", "param", "code"}}``, for every failure.

``APIError`` is raised by the routes; the handlers here turn it, request validation errors (400 for a body
that is not JSON, 422 for a bad field, the field named), the project's own errors and anything unexpected
(500, details only in the log) into that shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from multihead.errors import LimitError, MultiheadError, QueueFullError

__all__ = ["APIError", "error_body", "install_error_handlers", "overloaded", "validation_error"]

log = logging.getLogger("multihead.serve")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 405: "invalid_request_error", 408: "timeout_error",
          413: "invalid_request_error", 422: "invalid_request_error", 503: "server_error", 504: "timeout_error"}


class APIError(Exception):
    """An error answer: HTTP ``status``, one-line ``message``, the request field it concerns (``param``) and a
    machine-readable ``code``."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


def overloaded(message: str, retry_after: int) -> APIError:
    """503 with ``Retry-After``: a queue is full."""
    return APIError(503, message, code="queue_full", headers={"Retry-After": str(retry_after)})


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error" if status >= 500
                                                              else "invalid_request_error"),
                      "param": param, "code": code}}


def _response(error: APIError) -> JSONResponse:
    return JSONResponse(error_body(error.status, error.message, param=error.param, code=error.code),
                        status_code=error.status, headers=error.headers)


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location if part != "body"]
    return ".".join(parts) or "body"


def validation_error(problems: Sequence[Mapping[str, Any]]) -> APIError:
    """400 for a body that is not JSON, else 422 naming the first bad field (pydantic's error list)."""
    first = problems[0] if problems else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        position = first.get("ctx", {}).get("error", "")
        return APIError(400, f"the request body is not valid JSON ({position})".replace(" ()", ""), code="json_invalid")
    name = _field(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = "field required"
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return APIError(422, f"{name}: {message}{more}", param=name, code=str(first.get("type") or "invalid_value"))


def install_error_handlers(app: FastAPI, *, retry_after: int) -> None:
    """Answer every error of ``app`` in OpenAI's shape."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return _response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _response(validation_error(error.errors()))

    @app.exception_handler(ValidationError)
    async def invalid_body(request: Request, error: ValidationError) -> JSONResponse:
        return _response(validation_error(error.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = str(error.detail) if error.status_code != 404 else f"no route {request.url.path[:100]}"
        return _response(APIError(error.status_code, message, headers=error.headers))

    @app.exception_handler(QueueFullError)
    async def queue_full(request: Request, error: QueueFullError) -> JSONResponse:
        return _response(overloaded(str(error), retry_after))

    @app.exception_handler(MultiheadError)
    async def bad_input(request: Request, error: MultiheadError) -> JSONResponse:
        code = "limit_exceeded" if isinstance(error, LimitError) else "invalid_value"
        return _response(APIError(400, str(error), code=code))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return _response(APIError(500, "internal server error; the server log has the details", code="internal"))
