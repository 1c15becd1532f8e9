"""Readiness for load balancers and docker-compose."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import ServiceDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(response: Response, svc: ServiceDep) -> Health:
    """`ready` (200) once the encoder, indexes and generator are loaded; else 503."""
    if not svc.ready:
        response.status_code = 503
        return Health(status="starting")
    c = svc.counts()
    return Health(status="ready", documents=c.documents, chunks=c.chunks)
