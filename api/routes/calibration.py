"""The corpus's retrieval calibration (bearer token): what serves, and fitting anew."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends

from api.deps import ServiceDep, admin
from api.schemas import CalibrationStatus, ErrorOut, RetrievalServed
from api.service import Lectern

router = APIRouter(
    prefix="/api/v1/admin/calibration",
    tags=["calibration"],
    dependencies=[Depends(admin)],
    responses={401: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
_START: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "a calibration is already running"},
}


def _status(svc: Lectern) -> CalibrationStatus:
    svc.require_ready()
    corpus, calibrator = svc.corpus, svc.calibrator
    served = corpus.retrieval
    record = corpus.calibration
    started = calibrator.started
    return CalibrationStatus(
        running=calibrator.running,
        started=datetime.fromtimestamp(started, UTC) if started is not None else None,
        due=calibrator.due(),
        last_error=calibrator.last_error,
        serving=RetrievalServed(
            rrf_k=served.rrf_k, bm25_weight=served.bm25_weight,
            dense_weight=served.dense_weight, rerank=served.rerank,
            rerank_prior_weight=served.rerank_prior_weight,
        ),
        calibration=record.as_dict() if record is not None else None,
    )


@router.get("", response_model=CalibrationStatus)
def calibration_status(svc: ServiceDep) -> CalibrationStatus:
    """The retrieval settings serving, the calibration they come from, and any run."""
    return _status(svc)


@router.post("", response_model=CalibrationStatus, status_code=202, responses=_START)
def start_calibration(svc: ServiceDep) -> CalibrationStatus:
    """Fit the corpus anew in the background; the current settings serve until it is done."""
    svc.start_calibration()
    return _status(svc)
