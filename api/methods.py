"""The methods a path answers: HEAD wherever GET is, and an `Allow` header that lists them.

FastAPI routes answer only the methods they declare, so HEAD (which RFC 9110 expects of
every GET resource, and which monitors and link checkers send) was a 405; and a 405 named
only the first route on the path (`Allow: GET` for /api/v1/documents, which takes POST
too). OPTIONS stays a 405 except as a CORS preflight on a public route (api.origins).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


class HeadAsGet:
    """Answers HEAD as the GET of the same path would, without its body.

    The headers are the GET's (Content-Length included, as RFC 9110 allows for HEAD);
    the handler runs as for GET, which for every GET route here is cheap or a file read.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route answers on this request's path, HEAD with GET.

    Each method is tried against the routes (FastAPI nests included routers, so their
    routes are not a flat list to read methods from).
    """
    routes = list(routes)
    methods = {
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    }
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
