"""Held-out measurement of a trained reranker: the install rule and the prior weight."""

from retriever.cross_encoder import PRIOR_WEIGHTS
from retriever.reranker_validation import improves, one_standard_error


def test_a_reranker_that_loses_to_bm25_is_not_installed():
    def report(bm25, reranked, questions=10):
        return {"overall": {"questions": questions, "bm25": {"mrr_at_10": bm25},
                            "fused": {"mrr_at_10": reranked}}}

    assert improves(report(0.6, 0.7))
    assert not improves(report(0.6, 0.6))
    assert not improves(report(0.6, 0.15))
    assert not improves(report(0.0, 0.0, questions=0))


def test_a_reranker_that_loses_to_the_compared_one_is_not_installed():
    def report(bm25, fused, rival):
        return {"overall": {"questions": 10, "bm25": {"mrr_at_10": bm25},
                            "fused": {"mrr_at_10": fused}},
                "compared": {"overall": {"fused": {"mrr_at_10": rival}}}}

    assert improves(report(0.6, 0.7, 0.65))
    assert not improves(report(0.6, 0.7, 0.7))
    assert not improves(report(0.6, 0.65, 0.7))


def test_prior_weight_is_the_heaviest_withinone_standard_error_of_the_best():
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.choice([1.0, 0.5, 0.0], size=400)
    noisy = {w: base.copy() for w in PRIOR_WEIGHTS}
    up, down = np.flatnonzero(base == 0.0)[:10], np.flatnonzero(base == 1.0)[:8]
    noisy[0.25][up], noisy[0.25][down] = 1.0, 0.0  # best by a hair: +10 -8 questions
    assert one_standard_error(noisy, 0.25) == max(PRIOR_WEIGHTS)

    clear = {w: base.copy() for w in PRIOR_WEIGHTS}
    for w in PRIOR_WEIGHTS:
        if w > 0.5:
            clear[w][:200] = 0.0  # heavy priors lose half the questions
    clear[0.5][:] = 1.0
    assert one_standard_error(clear, 0.5) == 0.5
