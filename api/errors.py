"""One place that maps the project's errors to HTTP status codes and JSON bodies."""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.methods import allowed_methods
from lectern import errors

STATUS: list[tuple[type[errors.LecternError], int]] = [
    (errors.UnauthorizedError, 401),
    (errors.DocumentNotFoundError, 404),
    (errors.AdapterNotFoundError, 404),
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


def code_of(exc: Exception) -> str:
    name = type(exc).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def error_json(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def status_of(exc: errors.LecternError) -> int:
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


def response_of(exc: errors.LecternError) -> JSONResponse:
    """The JSON error response for `exc`: the handler's, and the body-limit middleware's."""
    headers = None
    if isinstance(exc, errors.RetryLaterError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, errors.UnauthorizedError):
        headers = {"WWW-Authenticate": "Bearer"}
    return error_json(status_of(exc), code_of(exc), str(exc), headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.LecternError)
    async def lectern_error(_: Request, exc: errors.LecternError) -> JSONResponse:
        return response_of(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return error_json(422, "invalid_request", "; ".join(parts))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names the first route on the path only; RFC 9110 wants them all.
            allow = ", ".join(allowed_methods(request.app.routes, request.scope))
            headers = {**(headers or {}), "Allow": allow}
        return error_json(exc.status_code, code, str(exc.detail), headers)
