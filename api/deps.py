"""FastAPI dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.service import Lectern

# Declares the scheme in OpenAPI only: auto_error=False leaves the checking, and the
# project's JSON 401, to app.state.auth (api.security.BearerAuth).
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="adminToken",
    description="the admin token: LECTERN_API__ADMIN_TOKEN, or the one generated in the "
    "data dir",
)


def service(request: Request) -> Lectern:
    return request.app.state.service


def admin(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> None:
    request.app.state.auth(request)


ServiceDep = Annotated[Lectern, Depends(service)]
