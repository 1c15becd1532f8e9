"""HybridRetriever: its configuration checks, the depth it asks for, and RRF's exact scores."""

from __future__ import annotations

import pytest

from lectern.types import Chunk, ScoredChunk, SearchFilter
from retriever.hybrid import HybridRetriever


def chunk(i: int) -> Chunk:
    return Chunk(i, "d", f"text {i}", "s", "t")


class Ranked:
    """Returns chunks in a fixed order and records the depth each call asked for."""

    def __init__(self, order: list[int]) -> None:
        self.order = order
        self.depths: list[int] = []
        self.filters: list[SearchFilter | None] = []

    def retrieve(
        self, query: str, top_k: int, filters: SearchFilter | None = None
    ) -> list[ScoredChunk]:
        self.depths.append(top_k)
        self.filters.append(filters)
        return [ScoredChunk(chunk(i), 1.0) for i in self.order][:top_k]


def test_an_empty_list_of_retrievers_is_refused_with_its_message():
    with pytest.raises(ValueError, match=r"^HybridRetriever needs at least one retriever$"):
        HybridRetriever([])


@pytest.mark.parametrize("weights", [[-1.0, 1.0], [0.0, 0.0]])
def test_negative_weights_or_no_positive_weight_are_refused(weights):
    pairs = [(Ranked([1]), w) for w in weights]
    with pytest.raises(ValueError, match=r"^weights must be >= 0 with one > 0, got \["):
        HybridRetriever(pairs)


def test_a_zero_weight_retriever_is_accepted_and_never_asked():
    muted, live = Ranked([1]), Ranked([2])
    hybrid = HybridRetriever([(muted, 0.0), (live, 1.0)])
    assert [r for r, _ in hybrid.retrievers] == [live]
    assert [h.chunk.id for h in hybrid.retrieve("q", 3)] == [2]
    assert muted.depths == []


def test_a_fractional_weight_below_one_is_accepted_and_scales_the_score():
    hybrid = HybridRetriever([(Ranked([7]), 0.5)], rrf_k=1)
    [hit] = hybrid.retrieve("q", 1)
    assert hit.chunk.id == 7
    assert hit.score == pytest.approx(0.5 / (1 + 1))


@pytest.mark.parametrize(("rrf_k", "candidates"), [(0, 5), (5, 0), (0, 0)])
def test_rrf_k_and_candidates_must_each_be_positive(rrf_k, candidates):
    with pytest.raises(
        ValueError,
        match=rf"^rrf_k and candidates must be positive, got {rrf_k}, {candidates}$",
    ):
        HybridRetriever([(Ranked([1]), 1.0)], rrf_k=rrf_k, candidates=candidates)


def test_the_smallest_rrf_k_and_candidates_are_accepted():
    retriever = Ranked([1, 2])
    hybrid = HybridRetriever([(retriever, 1.0)], rrf_k=1, candidates=1)
    assert (hybrid.rrf_k, hybrid.candidates) == (1, 1)
    assert [h.chunk.id for h in hybrid.retrieve("q", 1)] == [1]


def test_defaults_are_rrf_k_60_and_a_depth_of_50():
    retriever = Ranked([4, 5])
    hybrid = HybridRetriever([(retriever, 1.0)])
    hits = hybrid.retrieve("q", 2)
    # Cormack et al.'s k = 60: the first rank earns 1/61, the second 1/62.
    assert [h.score for h in hits] == [pytest.approx(1 / 61), pytest.approx(1 / 62)]
    assert retriever.depths == [50]


def test_each_retriever_is_asked_for_the_larger_of_candidates_and_top_k():
    a, b = Ranked(list(range(1, 20))), Ranked([3])
    hybrid = HybridRetriever([(a, 1.0), (b, 2.0)], candidates=5)
    assert len(hybrid.retrieve("q", 3)) == 3
    assert len(hybrid.retrieve("q", 12)) == 12
    assert a.depths == [5, 12]
    assert b.depths == [5, 12]


def test_equal_fused_scores_are_ordered_by_chunk_id():
    # 9 first in one list and 2 first in the other, equal weights: a tie broken by id.
    hybrid = HybridRetriever([(Ranked([9]), 1.0), (Ranked([2]), 1.0)], rrf_k=1)
    hits = hybrid.retrieve("q", 2)
    assert [h.chunk.id for h in hits] == [2, 9]
    assert hits[0].score == hits[1].score == pytest.approx(0.5)


def test_top_k_below_one_returns_nothing_without_asking():
    retriever = Ranked([1])
    assert HybridRetriever([(retriever, 1.0)]).retrieve("q", 0) == []
    assert retriever.depths == []


def test_a_chunk_in_several_lists_sums_its_weighted_reciprocal_ranks():
    hybrid = HybridRetriever([(Ranked([1, 2]), 2.0), (Ranked([2, 1]), 1.0)], rrf_k=2)
    hits = hybrid.retrieve("q", 2)
    assert [h.chunk.id for h in hits] == [1, 2]
    assert hits[0].score == pytest.approx(2.0 / 3 + 1.0 / 4)
    assert hits[1].score == pytest.approx(2.0 / 4 + 1.0 / 3)
    assert hits[0].chunk == chunk(1)


def test_the_filter_goes_to_every_retriever():
    a, b = Ranked([1, 2, 3]), Ranked([3, 1])
    keep_out = SearchFilter(exclude_documents=frozenset({"x"}))
    HybridRetriever([(a, 1.0), (b, 1.0)]).retrieve("q", 2, keep_out)
    HybridRetriever([(a, 1.0), (b, 1.0)]).retrieve("q", 2)
    assert a.filters == b.filters == [keep_out, None]
