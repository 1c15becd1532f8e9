"""Generator adapters (bearer token): which can serve, and switching without a restart."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from api.deps import ServiceDep, admin
from api.schemas import AdapterList, AdapterOut, ErrorOut, UseAdapterRequest
from api.service import Lectern

router = APIRouter(
    prefix="/api/v1/admin/adapters",
    tags=["adapters"],
    dependencies=[Depends(admin)],
    responses={401: {"model": ErrorOut}},
)
_SWITCH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "a body that cannot be read (e.g. not UTF-8)"},
    404: {"model": ErrorOut, "description": "no adapter of that name"},
    422: {"model": ErrorOut, "description": "the adapter does not fit the base model (the "
          "serving one is unchanged), or a body without `name`"},
}


def _listed(svc: Lectern) -> AdapterList:
    adapters = svc.adapters()
    return AdapterList(
        active=next((a.name for a in adapters if a.active), None),
        refused=svc.adapter_refused,
        adapters=[
            AdapterOut(
                name=a.name, path=svc.shown_source(str(a.path)), active=a.active, record=a.record,
                abstain_threshold=a.abstain_threshold,
            )
            for a in adapters
        ],
    )


@router.get("", response_model=AdapterList)
def list_adapters(svc: ServiceDep) -> AdapterList:
    """The shipped, configured and trained adapters; which one serves."""
    return _listed(svc)


@router.put("/active", response_model=AdapterList, responses=_SWITCH_ERRORS)
def use_adapter(body: UseAdapterRequest, svc: ServiceDep) -> AdapterList:
    """Serve another adapter (null: the base model) from the next question on."""
    svc.use_adapter(body.name)
    return _listed(svc)
