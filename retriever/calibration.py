"""A corpus's own retrieval settings, fitted on questions written for its chunks.

`lectern calibrate retrieval` (retriever.train.calibrate) chooses the fusion (RRF k and
each side's weight, BM25 alone included), whether to rerank and the reranker's prior
weight for one store and one encoder, and records the choice here. Serving and
evaluation read it back; a setting the operator set explicitly (in the environment or
the settings file) wins over it, field by field.

The record is kept per encoder (its fingerprint), under the data dir: a different
encoder ranks differently and needs its own fit.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from lectern.errors import ConfigError
from lectern.records import Record
from lectern.settings import RetrievalSettings, Settings

log = logging.getLogger(__name__)

# What a calibration may set; the operator's explicit value of any of them wins. The
# fusion's three are one choice: applied together, or not at all when the operator set
# any of them (a calibrated weight beside the operator's could leave both at 0).
FUSION = ("rrf_k", "bm25_weight", "dense_weight")
CALIBRATED = (*FUSION, "rerank", "rerank_prior_weight")


class Choice(BaseModel):
    """One retrieval configuration: the fusion, and the reranker with its prior weight."""

    model_config = ConfigDict(frozen=True)

    rrf_k: int = Field(60, ge=1)
    bm25_weight: float = Field(1.0, ge=0)
    dense_weight: float = Field(1.0, ge=0)
    rerank: bool = True
    # None: the weight recorded with the reranker (retriever.cross_encoder)
    rerank_prior_weight: float | None = Field(None, ge=0, le=10)

    @property
    def name(self) -> str:
        """A short label: "bm25", "dense", "hybrid k60 1:1.5", each "+rerank w1.0"."""
        if self.dense_weight == 0:
            first = "bm25"
        elif self.bm25_weight == 0:
            first = "dense"
        else:
            first = f"hybrid k{self.rrf_k} {self.bm25_weight:g}:{self.dense_weight:g}"
        if not self.rerank:
            return first
        w = "" if self.rerank_prior_weight is None else f" w{self.rerank_prior_weight:g}"
        return f"{first} +rerank{w}"


class CandidateScore(BaseModel):
    """One configuration's score on the calibration questions."""

    choice: Choice
    level: int  # moving parts: 0 BM25 alone, 1 one addition, 2 fusion and reranking
    mean: float  # nDCG@10 over the questions
    se: float  # standard error of the mean
    gap: float  # the best configuration's mean minus this one's
    gap_se: float  # standard error of that paired difference


class RetrievalCalibration(Record):
    """retrieval-calibration.json: what the fit chose for this corpus and encoder, and why."""

    FILE: ClassVar[str] = "retrieval-calibration.json"
    VERSION: ClassVar[int] = 1

    version: int = VERSION
    created: str
    encoder: str  # the fingerprint of the encoder it was fitted with
    reranker: str | None = None  # the reranker's folder name; None: there was none
    chunks: int  # in the store when it was fitted
    max_chunk_id: int  # the highest chunk id then: ids only grow, so later ones are new
    questions: int  # the questions fitted on
    questions_written: int  # replies asked of the generator, kept or not
    seconds: float
    metric: str = "ndcg@10"
    rule: str
    chosen: Choice
    reason: str
    candidates: list[CandidateScore] = Field(default_factory=list)


def folder(settings: Settings, fingerprint: str) -> Path:
    """Where the calibration for this encoder is kept."""
    digest = hashlib.sha1(fingerprint.encode()).hexdigest()[:16]
    return settings.data_dir / "calibration" / digest


def reranker_id(reranker: object | None) -> str | None:
    """Which reranker a calibration was fitted with: its folder's name and when it was
    trained (the shipped and a locally trained one share a folder name); None: none."""
    if reranker is None:
        return None
    folder = getattr(reranker, "model_dir", None)
    if folder is None:
        return type(reranker).__name__
    record = getattr(reranker, "record", None)
    created = getattr(record, "created", None)
    return f"{Path(folder).name}@{created}" if created else Path(folder).name


def load(
    settings: Settings, fingerprint: str, reranker: str | None = None
) -> RetrievalCalibration | None:
    """The calibration recorded for the encoder and `reranker` (reranker_id); None when
    there is none.

    One that cannot be read, or was fitted with another encoder or reranker, is logged
    and counts as none: serving starts with the settings instead of refusing to, and a
    new fit is due.
    """
    try:
        record = RetrievalCalibration.load(folder(settings, fingerprint))
    except ConfigError as exc:
        log.warning("ignoring the retrieval calibration, so the settings apply: %s", exc)
        return None
    if record is not None and record.encoder != fingerprint:
        log.warning("ignoring a retrieval calibration fitted with encoder %s (serving %s)",
                    record.encoder, fingerprint)
        return None
    if record is not None and record.reranker != reranker:
        log.warning("ignoring a retrieval calibration fitted with reranker %s (serving %s)",
                    record.reranker, reranker)
        return None
    return record


def save(settings: Settings, record: RetrievalCalibration) -> Path:
    target = folder(settings, record.encoder)
    target.mkdir(parents=True, exist_ok=True)
    return record.save(target)


def applied(retrieval: RetrievalSettings, choice: Choice | None) -> RetrievalSettings:
    """`retrieval` with the calibrated choice for every field the operator left unset."""
    if choice is None:
        return retrieval
    mine = retrieval.model_fields_set
    fields = [f for f in CALIBRATED if f not in mine and not (f in FUSION and mine & set(FUSION))]
    update = {f: getattr(choice, f) for f in fields}
    return retrieval.model_copy(update=update) if update else retrieval


def changed_share(record: RetrievalCalibration, chunk_ids: Iterable[int]) -> float:
    """How much of the corpus changed since the fit: chunks added plus chunks removed,
    over the chunks it was fitted on (chunk ids only grow, so new ones lie above the
    recorded highest id)."""
    ids = [int(i) for i in chunk_ids]
    added = sum(1 for i in ids if i > record.max_chunk_id)
    kept = len(ids) - added
    removed = max(record.chunks - kept, 0)
    return (added + removed) / max(record.chunks, 1)
