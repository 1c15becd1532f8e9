"""Limits before work: a request is judged on its headers before its body is read.

FastAPI reads a request's body (an upload's multipart parts spooled to temporary files)
before it runs any dependency, so a token checked in a dependency is checked after every
byte has arrived, and a broken body is a 400 before it is a 401. `BodyLimits` is pure ASGI
middleware in front of the app; before the app can call `receive()` it

- authenticates a request to an admin route with the routes' own `BearerAuth` (401);
- refuses a `Content-Length` over the route's cap (413);
- counts the body of a request without a length (chunked) and refuses it (413) as soon as
  it passes the cap, handing the app a disconnect so that it stops reading.

Each refusal, and any other response that starts before the body has all been read, says
`Connection: close`: a server keeping the connection alive (uvicorn) would otherwise read,
and throw away, the rest of the body first. FastAPI's own `max_body_size` counts bytes too,
but after routing to a handler that reads the body before authenticating, and it keeps the
connection open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import is_openai, response_of
from lectern.errors import LecternError, RequestTooLargeError
from lectern.settings import Settings

# A multipart part's boundary line and headers, with room for a long (folder) file name.
PART_OVERHEAD_BYTES = 16 * 1024


def upload_cap(settings: Settings) -> int:
    """The bytes an upload request may carry: the configured cap, or every file at its limit."""
    if settings.api.max_upload_request_mb is not None:
        return int(settings.api.max_upload_request_mb * 2**20)
    per_file = settings.ingest.max_file_bytes + PART_OVERHEAD_BYTES
    return settings.api.max_upload_files * per_file + PART_OVERHEAD_BYTES


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None  # the server refuses a malformed length; the streaming cap still holds
    return int(value)


def _refusal(exc: LecternError, scope: Scope) -> JSONResponse:
    response = response_of(exc, is_openai(scope))
    response.headers["Connection"] = "close"
    return response


class BodyLimits:
    """Authenticate admin routes and cap request bodies, from the headers alone.

    `admin_routes` are matched as the router would match them (path and method): a
    request to one must pass `auth`, and its body may hold up to `admin_max_bytes`; any
    other request's body up to `max_bytes`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        auth: Callable[[Request], None],
        admin_routes: Sequence[BaseRoute],
        admin_max_bytes: int,
        max_bytes: int,
    ) -> None:
        for name, value in (("admin_max_bytes", admin_max_bytes), ("max_bytes", max_bytes)):
            if value < 0:
                raise ValueError(f"{name} must be at least 0, got {value}")
        self.app = app
        self.auth = auth
        self.admin_routes = list(admin_routes)
        self.admin_max_bytes = admin_max_bytes
        self.max_bytes = max_bytes

    def _is_admin(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in self.admin_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        admin = self._is_admin(scope)
        limit = self.admin_max_bytes if admin else self.max_bytes
        length = _content_length(headers)
        try:
            if admin:
                self.auth(Request(scope))
            if length is not None and length > limit:
                raise RequestTooLargeError(limit)
        except LecternError as exc:
            await _refusal(exc, scope)(scope, receive, send)
            return
        has_body = bool(length) or "transfer-encoding" in headers
        await _Cycle(self.app, limit, has_body)(scope, receive, send)


class _Cycle:
    """One request: counts the body the app reads and stops it at the limit."""

    def __init__(self, app: ASGIApp, limit: int, has_body: bool) -> None:
        self.app = app
        self.limit = limit
        self.read = 0
        self.body_done = not has_body
        self.started = False  # the response has started, ours or the app's
        self.stopped = False  # past the limit: the app reads no more of the body
        self.refused = False  # the 413 went out: what the app sends after it goes nowhere

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def limited_receive() -> Message:
            if self.stopped:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] != "http.request":
                return message
            self.read += len(message.get("body", b""))
            self.body_done = not message.get("more_body", False)
            if self.read <= self.limit:
                return message
            self.stopped = True
            if not self.started:
                self.started = self.refused = True
                await _refusal(RequestTooLargeError(self.limit), scope)(scope, receive, send)
            # The app sees the client gone and stops reading; the server closes.
            return {"type": "http.disconnect"}

        async def closing_send(message: Message) -> None:
            if self.refused:
                return
            if message["type"] == "http.response.start":
                self.started = True
                headers = list(message.get("headers", []))
                if not self.body_done and all(k.lower() != b"connection" for k, _ in headers):
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, limited_receive, closing_send)
