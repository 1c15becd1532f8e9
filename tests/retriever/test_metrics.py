"""Ranking metrics against cases computed by hand."""

import math

import pytest

from lectern.types import Chunk, ScoredChunk
from retriever.metrics import (
    MRR,
    distinct,
    first_relevant_rank,
    mean_scores,
    mean_se_scores,
    mrr_at_k,
    ndcg_at_k,
    ranked_items,
    recall_at_k,
    score_rank,
    score_ranking,
)

ONE = {"a": 1.0}


def test_relevant_at_rank_three():
    ranked = ["x", "y", "a", "z"]
    assert mrr_at_k(ranked, ONE, 10) == pytest.approx(1 / 3)
    assert ndcg_at_k(ranked, ONE, 10) == pytest.approx(0.5)  # 1 / log2(4)
    assert recall_at_k(ranked, ONE, 2) == 0.0
    assert recall_at_k(ranked, ONE, 3) == 1.0


def test_relevant_first_is_perfect():
    assert mrr_at_k(["a", "x"], ONE, 1) == 1.0
    assert ndcg_at_k(["a", "x"], ONE, 1) == 1.0
    assert recall_at_k(["a", "x"], ONE, 1) == 1.0


def test_cutoff_excludes_a_later_hit():
    ranked = ["x", "y", "a"]
    assert mrr_at_k(ranked, ONE, 2) == 0.0
    assert ndcg_at_k(ranked, ONE, 2) == 0.0
    assert recall_at_k(ranked, ONE, 2) == 0.0


def test_graded_ndcg_with_two_relevant_items():
    qrels = {"a": 2.0, "b": 1.0}
    # DCG = 1/log2(2) + 2/log2(4) = 2; ideal = 2/log2(2) + 1/log2(3) = 2.6309
    expected = 2 / (2 + 1 / math.log2(3))
    assert ndcg_at_k(["b", "x", "a"], qrels, 10) == pytest.approx(expected)
    assert ndcg_at_k(["b", "x", "a"], qrels, 10) == pytest.approx(0.76018, abs=1e-5)
    assert ndcg_at_k(["a", "b"], qrels, 10) == pytest.approx(1.0)
    # The swapped order loses: the higher grade belongs first.
    assert ndcg_at_k(["b", "a"], qrels, 10) < 1.0
    # MRR is binary: any grade > 0 counts.
    assert mrr_at_k(["x", "b", "a"], qrels, 10) == pytest.approx(0.5)


def test_ideal_dcg_is_cut_at_k():
    qrels = {"a": 1.0, "b": 1.0, "c": 1.0}
    assert ndcg_at_k(["a"], qrels, 1) == 1.0  # the ideal top 1 holds one relevant item
    # DCG = 1 + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3) + 1/log2(4) = 2.1309
    assert ndcg_at_k(["a", "x", "b"], qrels, 3) == pytest.approx(1.5 / (1.5 + 1 / math.log2(3)))


def test_recall_with_several_relevant_items():
    qrels = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}
    ranked = ["a", "x", "c", "y", "z"]
    assert recall_at_k(ranked, qrels, 1) == 0.25
    assert recall_at_k(ranked, qrels, 3) == 0.5
    assert recall_at_k(ranked, qrels, 5) == 0.5
    assert recall_at_k(ranked, qrels, 100) == 0.5  # k beyond the ranking is fine


def test_empty_results_score_zero():
    assert recall_at_k([], ONE, 5) == 0.0
    assert mrr_at_k([], ONE, 5) == 0.0
    assert ndcg_at_k([], ONE, 5) == 0.0


def test_nothing_relevant_scores_zero_without_dividing_by_zero():
    for qrels in ({}, {"a": 0.0}, {"a": -1.0}):
        assert recall_at_k(["a"], qrels, 5) == 0.0
        assert mrr_at_k(["a"], qrels, 5) == 0.0
        assert ndcg_at_k(["a"], qrels, 5) == 0.0


def test_judged_non_relevant_counts_as_a_miss():
    for grade in (0.0, -1.0):  # BEIR qrels may carry 0; a negative grade must not subtract
        qrels = {"a": grade, "b": 1.0}
        assert mrr_at_k(["a", "b"], qrels, 10) == 0.5
        assert recall_at_k(["a", "b"], qrels, 1) == 0.0
        assert ndcg_at_k(["a", "b"], qrels, 10) == pytest.approx(1 / math.log2(3))


@pytest.mark.parametrize("metric", [recall_at_k, mrr_at_k, ndcg_at_k])
def test_k_below_one_is_refused(metric):
    with pytest.raises(ValueError, match="got 0"):
        metric(["a"], ONE, 0)


def _hit(chunk_id: int, source: str) -> ScoredChunk:
    return ScoredChunk(Chunk(chunk_id, source, f"text {chunk_id}", source, "t"), 1.0 / chunk_id)


def test_chunks_collapse_to_distinct_items_at_their_best_rank():
    hits = [_hit(1, "p1"), _hit(2, "p2"), _hit(3, "p1"), _hit(4, "p3"), _hit(5, "p2")]
    ranked = ranked_items(hits, lambda h: h.chunk.source)
    assert ranked == ["p1", "p2", "p3"]
    # p3 is the third item, though its chunk was fourth.
    assert mrr_at_k(ranked, {"p3": 1.0}, 10) == pytest.approx(1 / 3)
    assert ranked_items([], lambda h: h.chunk.source) == []
    assert distinct([3, 1, 3, 2, 1]) == [3, 1, 2]


def test_score_ranking_and_mean():
    one = score_ranking(["x", "a"], ONE, [1, 5], 10)
    assert one == pytest.approx(
        {"recall@1": 0.0, "recall@5": 1.0, "mrr@10": 0.5, "ndcg@10": 1 / math.log2(3)}
    )
    two = score_ranking(["a"], ONE, [1, 5], 10)
    mean = mean_scores([one, two])
    assert mean["recall@1"] == 0.5
    assert mean["mrr@10"] == 0.75
    assert mean_scores([]) == {}


@pytest.mark.parametrize("rank", [None, 1, 2, 5, 6, 10, 11, 500])
def test_score_rank_gives_score_ranking_s_numbers_for_one_relevant_item(rank):
    ranked = [f"x{i}" for i in range(1, 600)]
    if rank is not None:
        ranked[rank - 1] = "a"
    listed = score_ranking(ranked, ONE, [1, 5], 10)
    del listed["ndcg@10"]
    assert score_rank(rank, [1, 5], 10) == pytest.approx(listed)
    assert set(score_rank(rank, [1, 5], 10)) == {"recall@1", "recall@5", "mrr@10"}


def test_score_rank_refuses_a_rank_below_one():
    with pytest.raises(ValueError, match="rank must be at least 1, got 0"):
        score_rank(0, [1], 10)


def test_mrr_is_the_key_the_metrics_write_and_training_decides_on():
    assert MRR == "mrr@10"
    assert set(score_rank(3, (), 10)) == {MRR}
    assert MRR in score_ranking(["a"], ONE, (1,), 10)
    from retriever.train import encoder, reranker_validation

    assert encoder.MRR is MRR and reranker_validation.MRR is MRR, "one constant, imported"


def test_first_relevant_rank_looks_past_every_cutoff():
    ranked = [f"x{i}" for i in range(30)] + ["a", "b"]
    assert first_relevant_rank(ranked, {"b": 1.0, "a": 1.0}) == 31
    assert first_relevant_rank(["b", "a"], {"a": 1.0}) == 2
    # A judged non-relevant item (grade 0) is not a hit; nothing relevant: None.
    assert first_relevant_rank(["a", "b"], {"a": 0.0, "b": 2.0}) == 2
    assert first_relevant_rank(["x", "y"], ONE) is None
    assert first_relevant_rank([], ONE) is None


def test_standard_error_beside_each_mean():
    per_query = [{"ndcg@10": 1.0, "recall@1": 1.0}, {"ndcg@10": 0.5, "recall@1": 0.0},
                 {"ndcg@10": 0.0, "recall@1": 0.0}]
    se = mean_se_scores(per_query)
    # sample sd of (1, .5, 0) is .5; of (1, 0, 0) is sqrt(1/3); each over sqrt(3)
    assert se["ndcg@10"] == pytest.approx(0.5 / math.sqrt(3))
    assert se["recall@1"] == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3))
    assert mean_se_scores([{"ndcg@10": 0.7}]) == {"ndcg@10": None}  # one query: no spread
    assert mean_se_scores([]) == {}
