"""Measure a reranker on held-out questions of the training sources (never SQuAD).

Used by `lectern train reranker` after training: it reports BM25's order, the logits
alone and the logits fused with BM25's rank, and fits the prior weight that serving uses
(see cross_encoder.fuse) by the one-standard-error rule.
"""

from __future__ import annotations

import time
from typing import Any

from lectern.types import Chunk
from retriever.cross_encoder import PRIOR_WEIGHTS, CrossEncoderReranker, fuse, head_and_body
from retriever.metrics import MRR, mean_scores, score_rank
from retriever.train.reranker_config import MIN_JUDGED
from retriever.train.reranker_data import Group


def worst_domain(report: dict) -> tuple[str, float] | None:
    """The domain whose fused MRR@10 gains least over BM25's order, and that gain."""
    gains = {
        name: row["fused"][MRR] - row["bm25"][MRR]
        for name, row in report["per_source"].items()
        if row.get("questions", 0) >= MIN_JUDGED
    }
    if not gains:
        return None
    name = min(gains, key=lambda n: (gains[n], n))
    return name, round(gains[name], 4)


def rejection(validation: dict, source: str | None = None) -> str | None:
    """Why a new reranker should not replace what serves, in words; None: it should.

    The rule, fixed before any model is judged by it: serving's order (logits fused with
    BM25's rank) must beat BM25's own MRR@10 over all held-out questions; and when another
    reranker was measured on the same questions ("compared"), the new one's worst domain
    (see worst_domain: least gain over BM25) must gain more than the compared one's worst
    domain. A reranker serves corpora it never saw, so it is chosen by where it helps
    least, not by the average, which the domains with the most held-out questions decide
    (CoQA's seven give most of them).

    `source`: judge on that source's questions alone (the corpus a reranker was tuned
    for), beating BM25's and the compared reranker's fused MRR@10 there.
    """
    on = "the corpus's held-out questions" if source else "held-out questions"
    own = validation["overall"] if source is None else validation["per_source"].get(source, {})
    if not own.get("questions") or own["fused"][MRR] <= own["bm25"][MRR]:
        return f"MRR@10 on {on} no better than BM25's"
    if "compared" not in validation:
        return None
    rival = validation["compared"]
    if source is not None:
        theirs = rival["per_source"].get(source, {})
        # nothing to compare on counts as not beating it
        if theirs.get("questions") and own["fused"][MRR] > theirs["fused"][MRR]:
            return None
        return f"MRR@10 on {on} no better than the compared reranker's"
    mine, their_worst = worst_domain(validation), worst_domain(rival)
    if mine is None or their_worst is None:
        return f"no domain with {MIN_JUDGED}+ held-out questions to judge on"
    if mine[1] > their_worst[1]:
        return None
    return (f"worst domain {mine[0]} gains {mine[1]:+.4f} MRR@10 over BM25, the compared "
            f"reranker's worst ({their_worst[0]}) {their_worst[1]:+.4f}")


def improves(validation: dict, source: str | None = None) -> bool:
    """Whether a new reranker should replace what serves (see rejection for the rule)."""
    return rejection(validation, source) is None


def _ranking(ranked: list[Chunk], relevant: frozenset[int]) -> int | None:
    """Where the first chunk holding the answer ranks: a question is answered by one."""
    return next((r for r, c in enumerate(ranked, start=1) if c.id in relevant), None)


def _summary(ranks: list[int | None], depth: int) -> dict:
    """Mean per-question MRR@10 and recall@1, @5 and @depth (found among the candidates)."""
    ks = (1, 5, max(depth, 1))
    if not ranks:
        return dict.fromkeys(score_rank(None, ks, 10), 0.0)
    mean = mean_scores([score_rank(r, ks, 10) for r in ranks])
    return {key: round(value, 4) for key, value in mean.items()}


def one_standard_error(reciprocal: dict[float, Any], top: float) -> float:
    """The heaviest prior whose MRR@10 is within one standard error of the best weight's.

    The one-standard-error rule: with a few hundred held-out questions the curve over
    weights is flat within noise, and among equally good weights the one leaning most on
    the first stage is the safer bet for a small reranker (it is weakest exactly where
    exact terms decide, such as course codes). The error is that of the paired
    per-question differences.
    """
    import numpy as np

    best = reciprocal[top]
    if len(best) < 2:
        return top
    chosen = top
    for w in PRIOR_WEIGHTS:
        diff = best - reciprocal[w]
        if diff.mean() <= diff.std(ddof=1) / np.sqrt(len(diff)) and w > chosen:
            chosen = w
    return chosen


def evaluate(
    reranker: CrossEncoderReranker, groups: dict[str, list[Group]], fit_on: str | None = None
) -> dict:
    """Held-out metrics, and the prior weight that serving uses (see cross_encoder.fuse).

    `groups` are keyed by domain (a corpus's questions are one): "per_source" reports each.
    `fit_on`: fit the weight on that source's questions alone — the corpus a reranker
    was tuned for, whose first stage and questions it will serve — not on all of them.

    For BM25's top list of each held-out question: BM25's own order, the reranker's
    logits alone ("reranked"), and logits fused with BM25's rank at each weight in
    PRIOR_WEIGHTS; the weight is chosen by the one-standard-error rule over MRR@10
    ("fused" reports it, so that row is fitted on these questions; the evaluation sets
    never are).
    accuracy: share of questions whose positive outscores all of its own negatives (the
    hard and random ones training would have used).
    """
    import numpy as np

    depth = max((len(g.candidates) for gs in groups.values() for g in gs), default=0)
    runs: dict[str, dict[str, list]] = {}
    for source, gs in groups.items():
        run = runs[source] = {"bm25": [], "correct": [], "ms": [], "logits": [], "hits": []}
        for g in gs:
            scores = reranker.score(g.question, [head_and_body(c) for c in g.chunks])
            run["correct"].append(
                bool(scores[0] > scores[1:].max()) if len(scores) > 1 else True
            )
            hits = g.candidates
            run["bm25"].append(_ranking(hits, g.relevant))
            t = time.perf_counter()
            s = reranker.score(g.question, [head_and_body(c) for c in hits]) if hits else []
            run["ms"].append((time.perf_counter() - t) * 1000)
            run["logits"].append(np.asarray(s, dtype=np.float32))
            run["hits"].append((hits, g.relevant))

    def ranks(run: dict[str, list], weight: float) -> list[int | None]:
        out = []
        for s, (hits, relevant) in zip(run["logits"], run["hits"], strict=True):
            fused = fuse(s, weight)  # weight 0: the logits alone
            order = sorted(range(len(hits)), key=lambda i: (-float(fused[i]), i))
            out.append(_ranking([hits[i] for i in order], relevant))
        return out

    # Ranks under every weight, once; "reranked" is weight 0.
    ranked = {src: {w: ranks(run, w) for w in PRIOR_WEIGHTS} for src, run in runs.items()}

    def pooled(key: str) -> list:
        return [x for run in runs.values() for x in run[key]]

    def pooled_ranks(weight: float, only: str | None = None) -> list[int | None]:
        return [r for src, by_weight in ranked.items() if only in (None, src)
                for r in by_weight[weight]]

    if fit_on is not None and not ranked.get(fit_on, {}).get(0.0):
        raise ValueError(f"no held-out questions of {fit_on!r} to fit the prior weight on")
    reciprocal = {
        w: np.array([score_rank(r, (), 10)[MRR] for r in pooled_ranks(w, fit_on)])
        for w in PRIOR_WEIGHTS
    }
    grid = {w: round(float(rr.mean()), 4) if len(rr) else 0.0 for w, rr in reciprocal.items()}
    top = max(PRIOR_WEIGHTS, key=lambda w: (grid[w], -w))
    best = one_standard_error(reciprocal, top)
    report: dict[str, Any] = {"per_source": {}, "prior_weight": best, "fitted_on": fit_on or "all",
                              f"{MRR}_by_prior_weight": grid, "best_weight": top}
    for source, run in runs.items():
        report["per_source"][source] = {
            "questions": len(run["bm25"]),
            "bm25": _summary(run["bm25"], depth),
            "reranked": _summary(ranked[source][0.0], depth),
            "fused": _summary(ranked[source][best], depth),
            "accuracy": round(float(np.mean(run["correct"])), 4) if run["correct"] else None,
        }
    correct, ms = pooled("correct"), pooled("ms")
    worst = worst_domain(report)
    report["worst_domain"] = {"name": worst[0], f"{MRR}_gain": worst[1]} if worst else None
    report["overall"] = {
        "questions": len(pooled("bm25")),
        "candidates": depth,
        "bm25": _summary(pooled("bm25"), depth),
        "reranked": _summary(pooled_ranks(0.0), depth),
        "fused": _summary(pooled_ranks(best), depth),
        "accuracy": round(float(np.mean(correct)), 4) if correct else None,
        "rerank_ms_p50": round(float(np.median(ms)), 1) if ms else None,
    }
    return report
