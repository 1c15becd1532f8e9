"""FastAPI dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.service import Lectern


def service(request: Request) -> Lectern:
    return request.app.state.service


def admin(request: Request) -> None:
    request.app.state.auth(request)


ServiceDep = Annotated[Lectern, Depends(service)]
