"""One place that maps the project's errors to HTTP status codes and JSON bodies.

The OpenAI-compatible routes (/v1, api.routes.openai_compat) answer the same errors in
OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, and a request they
cannot take with 400 where the native routes say 422: OpenAI's clients and SDKs read
that shape (and raise BadRequestError on a 400).
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import Scope

from api.methods import allowed_methods
from lectern import errors

STATUS: list[tuple[type[errors.LecternError], int]] = [
    (errors.UnauthorizedError, 401),
    (errors.DocumentNotFoundError, 404),
    (errors.AdapterNotFoundError, 404),
    (errors.AnswerNotFoundError, 404),
    (errors.ConversationNotFoundError, 404),
    (errors.CalibrationRunningError, 409),
    (errors.FileTooLargeError, 413),
    (errors.RequestTooLargeError, 413),
    (errors.UnsupportedFileTypeError, 415),
    (errors.IngestError, 422),
    (errors.InvalidRequestError, 422),
    (errors.RateLimitedError, 429),
    (errors.NotReadyError, 503),
    (errors.OverloadedError, 503),
]


OPENAI_PREFIX = "/v1"
# OpenAI's codes where a client may act on them; every other error keeps the native code.
_OPENAI_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


def is_openai(scope: Scope) -> bool:
    """Whether a request is to the OpenAI-compatible routes (their errors in its shape)."""
    path = scope["path"].removeprefix(scope.get("root_path", ""))
    return path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/")


def _openai_type(status: int) -> str:
    """OpenAI's error type for a status (its SDKs pick the exception by the status)."""
    if status == 429:
        return "rate_limit_error"
    if status == 503:
        return "service_unavailable_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def openai_error(
    status: int, code: str, message: str, param: str | None = None
) -> dict[str, dict[str, str | None]]:
    """The body of an error on the OpenAI-compatible routes (also sent in-band in a stream)."""
    return {
        "error": {
            "message": message,
            "type": _openai_type(status),
            "param": param,
            "code": _OPENAI_CODES.get(status, code),
        }
    }


def code_of(exc: Exception) -> str:
    name = type(exc).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def error_json(
    status: int,
    code: str,
    message: str,
    headers: dict | None = None,
    *,
    openai: bool = False,
    param: str | None = None,
) -> JSONResponse:
    if openai:
        status = 400 if status == 422 else status  # OpenAI's status for a request refused
        return JSONResponse(openai_error(status, code, message, param), status, headers=headers)
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def status_of(exc: errors.LecternError) -> int:
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


def response_of(exc: errors.LecternError, openai: bool = False) -> JSONResponse:
    """The JSON error response for `exc`: the handler's, and the body-limit middleware's;
    openai: in OpenAI's shape."""
    headers = None
    if isinstance(exc, errors.RetryLaterError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, errors.UnauthorizedError):
        headers = {"WWW-Authenticate": "Bearer"}
    return error_json(status_of(exc), code_of(exc), str(exc), headers, openai=openai)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.LecternError)
    async def lectern_error(request: Request, exc: errors.LecternError) -> JSONResponse:
        return response_of(exc, is_openai(request.scope))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts, places = [], []
        for e in exc.errors():
            loc = [x for x in e.get("loc", ()) if x != "body"]
            where = ".".join(str(x) for x in loc)
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
            # OpenAI names the parameter as "messages.[0].content".
            places.append(".".join(f"[{x}]" if isinstance(x, int) else str(x) for x in loc))
        return error_json(
            422, "invalid_request", "; ".join(parts),
            openai=is_openai(request.scope), param=places[0] if places and places[0] else None,
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names the first route on the path only; RFC 9110 wants them all.
            allow = ", ".join(allowed_methods(request.app.routes, request.scope))
            headers = {**(headers or {}), "Allow": allow}
        return error_json(
            exc.status_code, code, str(exc.detail), headers, openai=is_openai(request.scope)
        )
