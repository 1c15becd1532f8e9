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


def row(bm25, fused, questions=30):
    return {"questions": questions, "bm25": {"mrr@10": bm25}, "fused": {"mrr@10": fused}}


def test_against_a_compared_reranker_the_worst_domain_decides_not_the_average():
    def report(own, rival):
        """own/rival: domain -> (bm25, fused); pooled as a plain mean."""
        def measured(domains):
            mean = sum(f for _, f in domains.values()) / len(domains)
            return {"overall": row(0.5, mean),
                    "per_source": {d: row(b, f) for d, (b, f) in domains.items()}}
        return {**measured(own), "compared": measured(rival)}

    # The rival is better on average (news +0.30) but loses on reddit; the new one gains
    # at least +0.05 everywhere: its worst domain is better, so it installs.
    even = {"news": (0.5, 0.6), "reddit": (0.5, 0.55)}
    skewed = {"news": (0.5, 0.8), "reddit": (0.5, 0.52)}
    assert improves(report(even, skewed))
    assert not improves(report(skewed, even)), "the average's winner loses on its worst domain"
    from retriever.train.reranker_validation import rejection

    assert rejection(report(even, skewed)) is None
    assert rejection(report(skewed, even)) == (
        "worst domain reddit gains +0.0200 MRR@10 over BM25, the compared reranker's worst "
        "(reddit) +0.0500")
    assert not improves(report(even, even)), "a tie is not an improvement"
    # Below BM25 over all questions: never installed, whatever the domains say.
    below = report(even, skewed)
    below["overall"] = row(0.6, 0.55)
    assert not improves(below)


def test_a_domain_with_too_few_questions_is_not_judged():
    from retriever.train.reranker_config import MIN_JUDGED
    from retriever.train.reranker_validation import worst_domain

    report = {"per_source": {"tiny": row(0.9, 0.1, MIN_JUDGED - 1), "big": row(0.5, 0.6),
                             "small": row(0.5, 0.52, MIN_JUDGED)}}
    assert worst_domain(report) == ("small", 0.02)
    assert worst_domain({"per_source": {"tiny": row(0.9, 0.1, 3)}}) is None
    # Its only domain is too small to judge while the rival's is judged: not installed.
    no_domains = {"overall": row(0.5, 0.6), "per_source": {"tiny": row(0.5, 0.9, 3)},
                  "compared": {"overall": row(0.5, 0.55), "per_source": {"big": row(0.5, 0.51)}}}
    assert not improves(no_domains), "nothing judged: not installed over the compared one"
    judged = {**no_domains, "per_source": {"tiny": row(0.5, 0.9, 3), "big": row(0.5, 0.52)}}
    assert improves(judged), "the judged domain decides, the tiny one is ignored"


def test_the_config_refuses_too_few_questions_to_judge_a_domain(tmp_path):
    from lectern.errors import ConfigError
    from retriever.train.reranker_config import MIN_JUDGED, TrainConfig

    with pytest.raises(ConfigError, match=f"val_questions=5 \\(at least {MIN_JUDGED}"):
        TrainConfig(tmp_path, tmp_path, tmp_path, val_questions=5, compare_with=tmp_path)
    TrainConfig(tmp_path, tmp_path, tmp_path, val_questions=5)  # nothing compared: allowed
    TrainConfig(tmp_path, tmp_path, tmp_path, val_questions=5, compare_with=tmp_path,
                require_improvement=False)


def test_a_corpus_tuned_reranker_is_judged_on_the_corpus_questions_alone():
    def report(overall, corpus, rival_overall, rival_corpus):
        return {"overall": overall, "per_source": {"corpus": corpus},
                "compared": {"overall": rival_overall, "per_source": {"corpus": rival_corpus}}}

    # Worse than the compared reranker overall, better on the corpus: installed.
    better_here = report(row(0.6, 0.62), row(0.5, 0.8), row(0.6, 0.65), row(0.5, 0.7))
    better_here["per_source"]["news"] = row(0.5, 0.52)  # its worst domain, the rival's +0.1
    better_here["compared"]["per_source"]["news"] = row(0.5, 0.6)
    assert improves(better_here, "corpus") and not improves(better_here)
    # Better than the compared reranker on the worst (only) domain, worse on the corpus.
    worse_here = report(row(0.6, 0.7), row(0.5, 0.69), row(0.6, 0.65), row(0.5, 0.7))
    worse_here["per_source"]["news"] = row(0.5, 0.6)
    worse_here["compared"]["per_source"]["news"] = row(0.5, 0.55)
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
