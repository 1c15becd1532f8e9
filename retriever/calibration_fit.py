"""Fit a corpus's retrieval settings on questions written for its own chunks.

A default tuned on one corpus can lose to BM25 on the next, so each store is fitted by
itself (`lectern calibrate retrieval`): a seeded sample of its chunks gets one synthetic
question each (retriever.questions), and every configuration below is scored on
them by nDCG@10 of the question's own chunk:

- the first stage: BM25 alone, the encoder alone, or their reciprocal-rank fusion with
  k in RRF_KS and the encoder's weight in DENSE_WEIGHTS (BM25's is 1);
- each of those with and without the reranker over its top `rerank_candidates`, the
  reranker's prior weight in cross_encoder.PRIOR_WEIGHTS.

The rule, fixed before any corpus was fitted: the one-standard-error rule toward the
configuration with fewer moving parts (level 0: BM25 alone; 1: one addition, the encoder
or the reranker; 2: both). The lowest level holding a configuration within one standard
error (of the paired per-question difference) of the best one is taken, and within it
the best-scoring such configuration. A question is kept when BM25 or the encoder ranks
its chunk in the top 20: the union, so neither side is favoured by the filter.

Questions are paraphrases of one sentence, so they share more words with their chunk
than a user's would; the rule's lean toward BM25 is the safer error for that reason too.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from lectern.protocols import Generator, Retriever
from lectern.reporting import mean_se
from lectern.settings import RetrievalSettings
from lectern.types import Chunk, ScoredChunk, SearchFilter
from retriever.calibration import CandidateScore, Choice, RetrievalCalibration
from retriever.cross_encoder import PRIOR_WEIGHTS, fuse
from retriever.hybrid import HybridRetriever
from retriever.metrics import ndcg_at_k
from retriever.questions import (
    QuestionWriter,
    SyntheticQuestion,
    check_retrievable,
    opened_prefix,
)

RRF_KS = (10, 20, 60)
DENSE_WEIGHTS = (0.5, 0.75, 1.0, 1.5, 2.0)  # BM25's weight stays 1


@dataclass(frozen=True, slots=True)
class Ranked:
    """One question's own chunk and the two lists the hybrid fuses."""

    chunk_id: int
    bm25: list[ScoredChunk]
    dense: list[ScoredChunk]


class FixedList:
    """A retriever that returns a list computed beforehand."""

    def __init__(self, hits: list[ScoredChunk]) -> None:
        self.hits = hits

    def retrieve(
        self, query: str, top_k: int, filters: SearchFilter | None = None
    ) -> list[ScoredChunk]:
        hits = self.hits if filters is None else [
            h for h in self.hits if filters.allows(h.chunk.document_id)
        ]
        return hits[:top_k]


RULE = (
    "nDCG@10 of each question's own chunk; the one-standard-error rule (paired differences "
    "to the best) toward fewer moving parts: BM25 alone, then one of encoder or reranker, "
    "then both"
)
# Chunks (query, chunk texts) -> one reranker logit per chunk.
Score = Callable[[str, Sequence[Chunk]], np.ndarray]


def _ndcg10(ids: Sequence[int], target: int) -> float:
    return ndcg_at_k([str(i) for i in ids], {str(target): 1.0}, 10)


def fusions() -> list[Choice]:
    """Every first stage the fit tries (rerank off)."""
    out = [Choice(dense_weight=0.0, rerank=False), Choice(bm25_weight=0.0, rerank=False)]
    out += [Choice(rrf_k=k, dense_weight=w, rerank=False) for k in RRF_KS for w in DENSE_WEIGHTS]
    return out


def level(choice: Choice) -> int:
    """Moving parts beyond BM25: the encoder, the reranker."""
    return int(choice.dense_weight > 0) + int(choice.rerank)


@dataclass(frozen=True, slots=True)
class Fit:
    chosen: Choice
    candidates: list[CandidateScore]
    reason: str


def score_choices(
    questions: Sequence[str],
    ranked: Sequence[Ranked],
    candidates: int,
    score: Score | None,
) -> dict[Choice, np.ndarray]:
    """Per-question nDCG@10 of every configuration (with the reranker when `score`)."""
    depth = max(max(len(r.bm25), len(r.dense)) for r in ranked)
    out: dict[Choice, list[float]] = {}
    for question, r in zip(questions, ranked, strict=True):
        logits: dict[int, float] = {}  # each (question, chunk) pair is scored once
        for first in fusions():
            sides = [(FixedList(r.bm25), first.bm25_weight),
                     (FixedList(r.dense), first.dense_weight)]
            hits = HybridRetriever(sides, rrf_k=first.rrf_k, candidates=depth).retrieve(
                "", max(10, candidates)
            )
            ids = [h.chunk.id for h in hits]
            out.setdefault(first, []).append(_ndcg10(ids, r.chunk_id))
            if score is None:
                continue
            top = hits[:candidates]
            new = [h.chunk for h in top if h.chunk.id not in logits]
            if new:
                logits.update(zip((c.id for c in new), score(question, new).tolist(), strict=True))
            raw = np.array([logits[h.chunk.id] for h in top], dtype=np.float32)
            for w in PRIOR_WEIGHTS:
                fused = fuse(raw, w)
                order = sorted(range(len(top)), key=lambda i: (-float(fused[i]), i))
                reranked = [ids[i] for i in order] + ids[len(top):]
                choice = first.model_copy(update={"rerank": True, "rerank_prior_weight": w})
                out.setdefault(choice, []).append(_ndcg10(reranked, r.chunk_id))
    return {c: np.array(v) for c, v in out.items()}


def choose(per_choice: dict[Choice, np.ndarray], default_prior: float | None = None) -> Fit:
    """The configuration the module's rule picks from per-question scores."""
    if not per_choice:
        raise ValueError("no configurations to choose from")
    default = Choice(rerank_prior_weight=default_prior)

    def preference(c: Choice) -> tuple[float, bool, bool]:
        # Ties go to the default fusion, then to the reranker's own prior weight.
        same_fusion = (c.rrf_k, c.bm25_weight, c.dense_weight) == (
            default.rrf_k, default.bm25_weight, default.dense_weight)
        return (float(per_choice[c].mean()), same_fusion, c.rerank_prior_weight == default_prior)

    best = max(per_choice, key=preference)
    scores = []
    for c, values in per_choice.items():
        mean, se = mean_se(values.tolist())
        gap, gap_se = mean_se((per_choice[best] - values).tolist())
        scores.append(CandidateScore(
            choice=c, level=level(c), mean=round(mean, 4),
            se=round(math.inf if se is None else se, 4),
            gap=round(gap, 4), gap_se=round(math.inf if gap_se is None else gap_se, 4),
        ))
    scores.sort(key=lambda s: (s.level, -s.mean))
    near = [s for s in scores if s.gap <= s.gap_se]  # the best itself has gap 0
    lowest = min(s.level for s in near)
    pick = max((s for s in near if s.level == lowest), key=lambda s: preference(s.choice))
    top = next(s for s in scores if s.choice == best)
    if pick.choice == best:
        reason = (f"{best.name} scored best (nDCG@10 {top.mean} ± {top.se}) and nothing with "
                  "fewer moving parts came within one standard error of it")
    else:
        reason = (f"{pick.choice.name} (nDCG@10 {pick.mean}) is within one standard error "
                  f"({pick.gap} ≤ {pick.gap_se}) of the best, {best.name} ({top.mean}), with "
                  "fewer moving parts")
    return Fit(pick.choice, scores, reason)


def sample_chunks(chunks: Sequence[Chunk], seed: int) -> list[Chunk]:
    """The chunks in a seeded order: questions are written down it until enough are kept."""
    order = list(chunks)
    random.Random(seed).shuffle(order)
    return order


def write_questions(
    writer: QuestionWriter,
    chunks: Sequence[Chunk],
    first_stage: Retriever,
    wanted: int,
    deadline: float,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[SyntheticQuestion]:
    """Kept questions, at most `wanted`, until time.monotonic() passes `deadline` (or
    `should_stop()`, checked between batches).

    `first_stage` keeps a question when it ranks its chunk in its top 40 (the union of
    BM25's and the encoder's top 20).
    """
    kept = 0
    if wanted < 1:
        return
    for q in check_retrievable(writer.write(chunks), first_stage, top_k=40):
        if should_stop():
            raise InterruptedError("calibration stopped before its questions were written")
        if q.kept:
            kept += 1
            yield q
        if kept >= wanted or time.monotonic() > deadline:
            return


def per_chunk(questions: int, chunks: int) -> int:
    """Questions asked per chunk: about a third of a 135M model's replies are usable
    questions, so a small corpus gets up to five sentences of each chunk asked about."""
    return max(1, min(5, math.ceil(3 * questions / max(chunks, 1))))


def calibrate(
    chunks: Sequence[Chunk],
    bm25: Retriever,
    dense: Retriever,
    generator: Generator,
    *,
    encoder: str,
    retrieval: RetrievalSettings,
    score: Score | None = None,
    reranker: str | None = None,
    default_prior: float | None = None,
    questions: int = 300,
    max_minutes: float = 10.0,
    seed: int = 0,
    log: Callable[[str], Any] = lambda _: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> RetrievalCalibration:
    """Write questions for `chunks`, score every configuration, choose by the rule."""
    if not chunks:
        raise ValueError("the corpus has no chunks to calibrate on")
    start = time.monotonic()
    union = HybridRetriever([(bm25, 1.0), (dense, 1.0)], candidates=20)
    # 48 prompts a batch: on 2 CPU cores twice the questions a second of batches of 16.
    writer = QuestionWriter(
        generator, batch_size=48, per_chunk=per_chunk(questions, len(chunks)), seed=seed,
        prefix=opened_prefix,
    )
    found = list(write_questions(
        writer, sample_chunks(chunks, seed), union, questions, start + 60 * max_minutes,
        should_stop,
    ))
    log(f"{len(found)} questions kept of {writer.asked} written "
        f"({time.monotonic() - start:.0f} s)")
    if len(found) < 2:
        raise ValueError(
            f"only {len(found)} usable questions were written for {len(chunks)} chunks "
            f"in {max_minutes:g} minutes; too few to calibrate on"
        )
    depth = max(retrieval.candidates, retrieval.rerank_candidates)
    texts = [q.question for q in found]
    ranked = [
        Ranked(q.chunk_id, bm25.retrieve(q.question, depth), dense.retrieve(q.question, depth))
        for q in found
    ]
    fit = choose(score_choices(texts, ranked, retrieval.rerank_candidates, score), default_prior)
    log(f"chosen: {fit.chosen.name}: {fit.reason}")
    return RetrievalCalibration(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        encoder=encoder,
        reranker=reranker,
        chunks=len(chunks),
        max_chunk_id=max(c.id for c in chunks),
        questions=len(found),
        questions_written=writer.asked,
        seconds=round(time.monotonic() - start, 1),
        rule=RULE,
        chosen=fit.chosen,
        reason=fit.reason,
        candidates=fit.candidates,
    )
