"""Which web pages may call the API from a browser (CORS): the widget's, on public routes.

The chat widget is embedded on the institution's own site (www.uni.example) and calls the
server on another origin, so the public routes (ask, stream, document files, health)
answer the origins in `api.cors_origins`; by default none but the server's own, which
needs no CORS. The admin routes never answer a cross-origin request, whatever is
configured: the admin page is served by the server itself, and a page elsewhere that holds
the token has no business deleting documents. `null` (sandboxed frames, file:// pages,
some redirects) is any page at all, so `*` does not include it; it is allowed only when
listed as `null`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_json

PUBLIC_METHODS = ("GET", "HEAD", "POST")


class _WidgetCorsPolicy(CORSMiddleware):
    """Starlette's CORS, with `null` a literal only and refusals in the API's JSON shape."""

    def is_allowed_origin(self, origin: str) -> bool:
        if origin == "null":
            return "null" in self.allow_origins
        return super().is_allowed_origin(origin)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        # No access-control-allow-* on a refusal: a browser reads none of it as a grant.
        # (A middleware's response: the exception handlers of api.errors are inside it.)
        reason = bytes(response.body).decode()
        return error_json(
            400,
            "cross_origin_refused",
            f"{reason} (origin {request_headers['origin']!r} asking for "
            f"{request_headers['access-control-request-method']})",
            {"Vary": "Origin"},
        )


class WidgetCors:
    """CORS on the public routes for the configured origins; none on any other route."""

    def __init__(
        self, app: ASGIApp, public_routes: Iterable[BaseRoute], origins: Sequence[str]
    ) -> None:
        self.app = app
        self.public_routes = tuple(public_routes)
        self.null_allowed = "null" in origins
        self.policy = _WidgetCorsPolicy(
            app,
            allow_origins=tuple(origins),
            allow_methods=PUBLIC_METHODS,
            # Content-Type only: the public routes take no credentials, so a widget has
            # no reason to send Authorization.
            allow_headers=("Content-Type",),
            expose_headers=("Retry-After",),  # so the widget can say how long to wait
        )

    def _public(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is not Match.NONE for route in self.public_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._public(scope):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if headers.get("origin") == "null" and not self.null_allowed and not preflight:
            # Starlette answers `*` to every origin once `*` is configured, `null` included.
            await self.app(scope, receive, send)
            return
        await self.policy(scope, receive, send)
