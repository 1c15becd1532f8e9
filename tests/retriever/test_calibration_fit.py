"""The calibration's rule on fixtures whose right answer is known (retriever.calibration_fit)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pytest

from lectern.settings import RetrievalSettings
from lectern.types import Chunk, ScoredChunk
from retriever.bm25 import BM25Retriever
from retriever.calibration import Choice
from retriever.calibration_fit import (
    Ranked,
    calibrate,
    choose,
    fusions,
    level,
    score_choices,
)

N_CHUNKS = 200


def chunk(i: int) -> Chunk:
    return Chunk(i, f"doc-{i}", f"text {i}", f"src-{i}", f"Title {i}")


def listed(ids: Sequence[int]) -> list[ScoredChunk]:
    return [ScoredChunk(chunk(i), 1.0 / (r + 1)) for r, i in enumerate(ids)]


def others(rng: random.Random, target: int, n: int) -> list[int]:
    pool = [i for i in range(N_CHUNKS) if i != target]
    return rng.sample(pool, n)


def with_target_at(rng: random.Random, target: int, rank: int | None, n: int = 30) -> list[int]:
    ids = others(rng, target, n)
    if rank is not None:
        ids.insert(rank - 1, target)
    return ids[:n]


def questions(n: int) -> list[str]:
    return [f"question {i}" for i in range(n)]


def test_bm25_alone_when_the_dense_side_is_noise() -> None:
    rng = random.Random(0)
    ranked = [
        Ranked(t, listed(with_target_at(rng, t, 1 + (t % 3 == 0))), listed(others(rng, t, 30)))
        for t in range(80)
    ]
    fit = choose(score_choices(questions(80), ranked, 20, None))
    assert fit.chosen.dense_weight == 0 and not fit.chosen.rerank
    assert level(fit.chosen) == 0
    assert "BM25" in fit.reason or "bm25" in fit.reason


def test_the_fusion_when_it_helps() -> None:
    rng = random.Random(1)
    ranked = []
    for t in range(80):
        if t % 2:  # BM25 finds it, the encoder has it lower
            ranked.append(Ranked(t, listed(with_target_at(rng, t, 1)),
                                 listed(with_target_at(rng, t, 3))))
        else:  # only the encoder finds it
            ranked.append(Ranked(t, listed(with_target_at(rng, t, None)),
                                 listed(with_target_at(rng, t, 1))))
    per = score_choices(questions(80), ranked, 20, None)
    fit = choose(per)
    assert fit.chosen.dense_weight > 0 and fit.chosen.bm25_weight > 0
    assert not fit.chosen.rerank  # no reranker was given
    bm25 = per[Choice(dense_weight=0.0, rerank=False)].mean()
    assert per[fit.chosen].mean() > bm25 + 0.2


def _scores(logit_of: dict[tuple[str, int], float]):
    def score(query: str, chunks: Sequence[Chunk]) -> np.ndarray:
        return np.array([logit_of[(query, c.id)] for c in chunks], dtype=np.float32)
    return score


def test_no_rerank_when_the_reranker_is_noise() -> None:
    rng = random.Random(2)
    qs = questions(80)
    ranked = [Ranked(t, listed(with_target_at(rng, t, 1)), listed(others(rng, t, 30)))
              for t in range(80)]
    noise = {(q, i): rng.gauss(0, 1) for q in qs for i in range(N_CHUNKS)}
    fit = choose(score_choices(qs, ranked, 20, _scores(noise)), default_prior=1.0)
    assert not fit.chosen.rerank


def test_the_reranker_when_it_knows() -> None:
    rng = random.Random(3)
    qs = questions(80)
    ranked = [Ranked(t, listed(with_target_at(rng, t, 4)), listed(others(rng, t, 30)))
              for t in range(80)]
    knows = {(q, i): (5.0 if i == t else rng.gauss(0, 1)) for t, q in enumerate(qs)
             for i in range(N_CHUNKS)}
    fit = choose(score_choices(qs, ranked, 20, _scores(knows)), default_prior=1.0)
    assert fit.chosen.rerank and fit.chosen.dense_weight == 0  # the encoder is noise here
    assert fit.chosen.rerank_prior_weight is not None


def test_every_candidate_is_reported_with_its_gap() -> None:
    rng = random.Random(4)
    ranked = [Ranked(t, listed(with_target_at(rng, t, 2)), listed(with_target_at(rng, t, 2)))
              for t in range(20)]
    fit = choose(score_choices(questions(20), ranked, 20, None))
    assert len(fit.candidates) == len(fusions())
    best = max(fit.candidates, key=lambda s: s.mean)
    assert best.gap == 0 and all(s.gap >= 0 for s in fit.candidates)


def test_levels_count_the_moving_parts() -> None:
    assert level(Choice(dense_weight=0, rerank=False)) == 0
    assert level(Choice(dense_weight=0, rerank=True)) == 1
    assert level(Choice(rerank=False)) == 1
    assert level(Choice(rerank=True)) == 2


def test_choose_needs_something_to_choose() -> None:
    with pytest.raises(ValueError, match="no configurations"):
        choose({})


class AskingGenerator:
    """Asks about the two things a fixture sentence names ("The volcano near the glacier
    ..." -> "Who studied the volcano by the glacier?")."""

    def generate(self, messages: Sequence[dict[str, str]]) -> str:
        said = messages[-1]["content"].removeprefix("Statement:").split()
        return f"Who studied the {said[1]} by the {said[4]}?"

    def stream(self, messages: Sequence[dict[str, str]]):
        yield self.generate(messages)


class WordRetriever:
    """A stand-in encoder that ranks by a chunk's id parity: noise for these questions."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = chunks

    def retrieve(self, query: str, top_k: int, filters=None) -> list[ScoredChunk]:
        order = sorted(self.chunks, key=lambda c: (hash((query, c.id)) % 97, c.id))
        return [ScoredChunk(c, 1.0) for c in order[:top_k]]


def test_calibrate_writes_questions_and_records_the_choice() -> None:
    topics = ["volcano", "glacier", "harbour", "orchard", "meteor", "lantern", "falcon",
              "canyon", "violin", "marble", "compass", "quartz"]
    chunks = [
        Chunk(i, f"doc-{i}", f"The {a} near the {b} was studied by students in {1900 + i}.",
              f"src-{i}", f"Notes {i}")
        for i, (a, b) in enumerate((a, b) for a in topics for b in topics if a != b)
    ]
    bm25 = BM25Retriever()
    bm25.build(chunks)
    record = calibrate(
        chunks, bm25, WordRetriever(chunks), AskingGenerator(),
        encoder="fake-encoder", retrieval=RetrievalSettings(), questions=40, max_minutes=1,
    )
    assert record.questions == 40 and record.questions_written >= 40
    assert record.chunks == len(chunks) and record.max_chunk_id == len(chunks) - 1
    assert record.chosen.dense_weight == 0  # the stand-in encoder is noise
    assert record.encoder == "fake-encoder" and record.rule


def test_within_one_standard_error_the_fewer_moving_parts_win() -> None:
    rng = np.random.default_rng(5)
    bm25 = rng.uniform(0.3, 0.9, 100)
    n = np.arange(100)
    # Each a little better than BM25 on average (+0.005, +0.004), but by ±0.1 a question:
    # well within one standard error (about 0.0095).
    hybrid_scores = bm25 + np.where(n % 2 == 0, 0.1, -0.09)
    both_scores = bm25 + np.where(n % 4 < 2, 0.1, -0.092)
    alone, hybrid, both = (Choice(dense_weight=0.0, rerank=False), Choice(rerank=False),
                           Choice(rerank=True, rerank_prior_weight=1.0))
    fit = choose({alone: bm25, hybrid: hybrid_scores, both: both_scores})
    best = max(fit.candidates, key=lambda s: s.mean)
    bm25_row = next(s for s in fit.candidates if s.choice == alone)
    assert best.choice != alone and 0 < bm25_row.gap <= bm25_row.gap_se
    assert fit.chosen == alone and "within one standard error" in fit.reason
    # One level up when that level is clearly better, not the best of the top level.
    clear = bm25 + 0.1 + rng.normal(0, 0.01, 100)
    fit = choose({alone: bm25, hybrid: clear, both: clear + rng.normal(0.002, 0.05, 100)})
    assert fit.chosen == hybrid
    fit = choose({alone: bm25, hybrid: bm25 + rng.normal(0, 0.01, 100), both: clear})
    assert fit.chosen == both and "scored best" in fit.reason
