"""Held-out measurement of a trained reranker: the install rule and the prior weight."""

import pytest

from retriever.cross_encoder import PRIOR_WEIGHTS
from retriever.train.reranker_validation import improves, one_standard_error


def test_a_reranker_that_loses_to_bm25_is_not_installed():
    def report(bm25, reranked, questions=10):
        return {"overall": {"questions": questions, "bm25": {"mrr@10": bm25},
                            "fused": {"mrr@10": reranked}}}

    assert improves(report(0.6, 0.7))
    assert not improves(report(0.6, 0.6))
    assert not improves(report(0.6, 0.15))
    assert not improves(report(0.0, 0.0, questions=0))


def test_a_reranker_that_loses_to_the_compared_one_is_not_installed():
    def report(bm25, fused, rival):
        return {"overall": {"questions": 10, "bm25": {"mrr@10": bm25},
                            "fused": {"mrr@10": fused}},
                "compared": {"overall": {"questions": 10, "fused": {"mrr@10": rival}}}}

    assert improves(report(0.6, 0.7, 0.65))
    assert not improves(report(0.6, 0.7, 0.7))
    assert not improves(report(0.6, 0.65, 0.7))


def test_a_corpus_tuned_reranker_is_judged_on_the_corpus_questions_alone():
    def row(bm25, fused, questions=10):
        return {"questions": questions, "bm25": {"mrr@10": bm25},
                "fused": {"mrr@10": fused}}

    def report(overall, corpus, rival_overall, rival_corpus):
        return {"overall": overall, "per_source": {"corpus": corpus},
                "compared": {"overall": rival_overall, "per_source": {"corpus": rival_corpus}}}

    # Worse than the compared reranker overall, better on the corpus: installed.
    better_here = report(row(0.6, 0.62), row(0.5, 0.8), row(0.6, 0.65), row(0.5, 0.7))
    assert improves(better_here, "corpus") and not improves(better_here)
    worse_here = report(row(0.6, 0.7), row(0.5, 0.69), row(0.6, 0.65), row(0.5, 0.7))
    assert improves(worse_here) and not improves(worse_here, "corpus")
    below_bm25 = {"overall": row(0.6, 0.7), "per_source": {"corpus": row(0.5, 0.5)}}
    assert not improves(below_bm25, "corpus")
    no_corpus_questions = {"overall": row(0.6, 0.7), "per_source": {"corpus": row(0, 0, 0)}}
    assert not improves(no_corpus_questions, "corpus")
    assert not improves({"overall": row(0.6, 0.7), "per_source": {}}, "corpus")


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


class LookupReranker:
    """Scores a passage by a number written in its text."""

    def score(self, question, passages):
        import numpy as np

        return np.array([float(body.split()[-1]) for _, body in passages], dtype=np.float32)


def groups_where_the_logits_mislead_on_the_corpus():
    from lectern.types import Chunk
    from retriever.train.reranker_data import Group

    def group(source, n, logits, relevant_at):
        chunks = [Chunk(100 * n + i, f"d{n}-{i}", f"passage {v}", "s", "")
                  for i, v in enumerate(logits)]
        return Group(source, f"q{n}", chunks[:2], frozenset([chunks[relevant_at].id]), chunks)

    # Elsewhere the reranker is right and the first stage wrong; on the corpus the reverse.
    other = [group("coqa", n, [0, 0, 0, 0, 1], 4) for n in range(20)]
    corpus = [group("corpus", 50 + n, [0, 1, 1, 1, 1], 0) for n in range(20)]
    return {"coqa": other, "corpus": corpus}


def test_the_prior_weight_can_be_fitted_on_the_corpus_questions_alone():
    from retriever.train.reranker_validation import evaluate

    groups = groups_where_the_logits_mislead_on_the_corpus()
    pooled = evaluate(LookupReranker(), groups)
    corpus = evaluate(LookupReranker(), groups, fit_on="corpus")
    assert corpus["fitted_on"] == "corpus" and pooled["fitted_on"] == "all"
    assert corpus["prior_weight"] == max(PRIOR_WEIGHTS) > pooled["prior_weight"]
    on_corpus = corpus["per_source"]["corpus"]
    assert on_corpus["fused"]["mrr@10"] > pooled["per_source"]["corpus"]["fused"]["mrr@10"]
    assert on_corpus["reranked"]["mrr@10"] == 0.2  # the logits alone put it last of 5
    with pytest.raises(ValueError, match="no held-out questions of 'quac'"):
        evaluate(LookupReranker(), groups, fit_on="quac")
