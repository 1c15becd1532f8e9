"""Fit the hybrid's reciprocal-rank fusion to a tuned encoder and its corpus.

RRF's k = 60 with equal weights suits many comparable runs (Cormack et al., 2009). With
one lexical and one dense list of unequal strength the best k and weights depend on the
corpus and the encoder (Bruch et al., 2023, "An Analysis of Fusion Functions for Hybrid
Retrieval"), and a tuned encoder shifts the balance. So `lectern train encoder` measures
a small grid on its held-out synthetic questions, which neither the encoder nor anything
else trained on, and records the choice beside the weights; whatever serves or evaluates
that encoder fuses with it (retriever.fusion), unless the operator set the fusion
settings themselves.

The synthetic questions were kept only where BM25 ranks their chunk in its top 20, which
flatters BM25; so the default is left only when a grid point beats it by more than one
standard error of the paired per-question differences (then the best point is taken).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lectern.protocols import Retriever
from lectern.settings import RetrievalSettings
from lectern.types import Chunk, ScoredChunk
from retriever.calibration_fit import DENSE_WEIGHTS, RRF_KS, FixedList, Ranked
from retriever.eval.metrics import MRR, mrr_at_k
from retriever.hybrid import HybridRetriever
from retriever.questions import SyntheticQuestion
from retriever.records import metric_keys


@dataclass(slots=True)
class FusionFit:
    rrf_k: int
    bm25_weight: float
    dense_weight: float
    questions: int
    mrr_at_10: float
    default_mrr_at_10: float
    standard_error: float  # of the paired differences, best grid point minus the default
    grid: list[dict[str, float]] = field(default_factory=list)  # each point's "mrr@10"

    def as_record(self) -> dict[str, Any]:
        """As the tuned encoder's record holds it, metrics keyed like metrics.score_ranking's."""
        return metric_keys(asdict(self))


def _mrr_at_10(hits: Sequence[ScoredChunk], chunk_id: int) -> float:
    return mrr_at_k([str(h.chunk.id) for h in hits], {str(chunk_id): 1.0}, 10)


def fit(ranked: Sequence[Ranked], default: RetrievalSettings | None = None) -> FusionFit:
    """The grid point to fuse with, chosen on `ranked` (see the module's rule)."""
    if not ranked:
        raise ValueError("no held-out questions to fit the fusion on")
    default = default or RetrievalSettings()
    base = (default.rrf_k, default.bm25_weight, default.dense_weight)
    points = sorted({base, *((k, 1.0, w) for k in RRF_KS for w in DENSE_WEIGHTS)})
    depth = max(max(len(r.bm25), len(r.dense)) for r in ranked)  # every hit is fused
    per_point: dict[tuple[int, float, float], np.ndarray] = {}
    for k, wb, wd in points:
        per_point[(k, wb, wd)] = np.array([
            _mrr_at_10(
                HybridRetriever(
                    [(FixedList(r.bm25), wb), (FixedList(r.dense), wd)], rrf_k=k, candidates=depth
                ).retrieve("", 10),
                r.chunk_id,
            )
            for r in ranked
        ])
    best = max(points, key=lambda p: (float(per_point[p].mean()), p == base))
    diff = per_point[best] - per_point[base]
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.inf
    chosen = best if diff.mean() > se else base
    return FusionFit(
        rrf_k=chosen[0],
        bm25_weight=chosen[1],
        dense_weight=chosen[2],
        questions=len(ranked),
        mrr_at_10=round(float(per_point[chosen].mean()), 4),
        default_mrr_at_10=round(float(per_point[base].mean()), 4),
        standard_error=round(se, 4),
        grid=[
            {"rrf_k": k, "bm25_weight": wb, "dense_weight": wd,
             MRR: round(float(per_point[(k, wb, wd)].mean()), 4)}
            for k, wb, wd in points
        ],
    )


def rank_held_out(
    questions: Sequence[SyntheticQuestion],
    chunks: dict[int, Chunk],
    bm25: Retriever,
    encode: Callable[[list[str]], np.ndarray],
    passages: np.ndarray,
    depth: int = 50,
) -> list[Ranked]:
    """Each question's BM25 and dense lists; `passages`: the chunks' vectors in id order."""
    ids = np.array(sorted(chunks), dtype=np.int64)
    if len(ids) != len(passages):
        raise ValueError(f"{len(passages)} passage vectors for {len(ids)} chunks")
    if not questions:
        return []
    scores = encode([q.question for q in questions]) @ passages.T
    out = []
    for q, row in zip(questions, scores, strict=True):
        top = np.argsort(-row, kind="stable")[:depth]
        dense = [ScoredChunk(chunks[int(ids[i])], float(row[i])) for i in top]
        out.append(Ranked(q.chunk_id, bm25.retrieve(q.question, depth), dense))
    return out
