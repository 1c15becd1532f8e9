"""Ranking metrics: Recall@k, MRR@k and nDCG@k, for retrieval evaluation, the held-out
measurements of training (retriever.train) and a corpus's calibration, which use no other.

Every metric takes a ranked list of distinct item ids (best first) and the query's
relevance judgements {item id: grade}. A grade of 0 or less means "judged, not relevant"
(BEIR qrels carry such rows); binary judgements are simply all grade 1. nDCG uses the
linear gain of trec_eval and BEIR (gain = grade, discount = log2(rank + 1)), so the numbers
are comparable with published BEIR tables. Scores are keyed "recall@5", "mrr@10",
"ndcg@10".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

from lectern.reporting import mean_se
from lectern.types import ScoredChunk

Qrels = Mapping[str, float]
T = TypeVar("T", bound=Hashable)

# MRR@10's key: what training decides on (an encoder's tuning, a reranker's install and
# prior weight) and what the benchmarks report.
MRR = "mrr@10"


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def _relevant(qrels: Qrels) -> set[str]:
    return {item for item, grade in qrels.items() if grade > 0}


def recall_at_k(ranked: Sequence[str], qrels: Qrels, k: int) -> float:
    """Share of the relevant items found in the top k; 0 when nothing is relevant."""
    _check_k(k)
    relevant = _relevant(qrels)
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], qrels: Qrels, k: int) -> float:
    """1 / rank of the first relevant item within the top k, else 0."""
    _check_k(k)
    relevant = _relevant(qrels)
    for rank, item in enumerate(ranked[:k], start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def dcg(gains: Iterable[float]) -> float:
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


def ndcg_at_k(ranked: Sequence[str], qrels: Qrels, k: int) -> float:
    """DCG of the top k over the DCG of the ideal top k; 0 when nothing is relevant."""
    _check_k(k)
    ideal = dcg(sorted((g for g in qrels.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    # Negative grades count as 0: a judged non-relevant item must not lower the score
    # below that of an unjudged one.
    return dcg(max(qrels.get(item, 0.0), 0.0) for item in ranked[:k]) / ideal


def first_relevant_rank(ranked: Sequence[str], qrels: Qrels) -> int | None:
    """The rank (1 is first) of the first relevant item in the list; None if it has none.

    Written per query and configuration, so two configurations can be compared query by
    query and a failure read; it looks at the whole list, past any metric's cutoff.
    """
    relevant = _relevant(qrels)
    return next((rank for rank, item in enumerate(ranked, start=1) if item in relevant), None)


def distinct(ids: Iterable[T]) -> list[T]:
    """The ids in order of first appearance, each once."""
    return list(dict.fromkeys(ids))


def ranked_items(hits: Sequence[ScoredChunk], item_of: Callable[[ScoredChunk], str]) -> list[str]:
    """Chunks, best first, to the distinct items they belong to, best first.

    A long paragraph becomes several chunks; an item ranks where its best chunk ranks,
    and its later chunks do not push other items down.
    """
    return distinct(item_of(hit) for hit in hits)


def score_ranking(
    ranked: Sequence[str], qrels: Qrels, recall_ks: Sequence[int], cutoff: int
) -> dict[str, float]:
    """One query's metrics, keyed like "recall@5", "mrr@10", "ndcg@10"."""
    scores = {f"recall@{k}": recall_at_k(ranked, qrels, k) for k in recall_ks}
    scores[f"mrr@{cutoff}"] = mrr_at_k(ranked, qrels, cutoff)
    scores[f"ndcg@{cutoff}"] = ndcg_at_k(ranked, qrels, cutoff)
    return scores


_HIT, _MISS = "relevant", ""
_ONE_RELEVANT = {_HIT: 1.0}


def score_rank(rank: int | None, recall_ks: Sequence[int], cutoff: int) -> dict[str, float]:
    """Recall@k and MRR@cutoff of a query with one relevant item, found at `rank` (1 is
    first; None: not found), keyed as score_ranking keys them.

    For when the rank is known without the ranked list: dense retrieval over a whole
    corpus ranks the relevant chunk by counting the chunks that outscore it, which costs
    far less than sorting every chunk for every question. The numbers are
    recall_at_k's and mrr_at_k's of the equivalent list.
    """
    if rank is not None and rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}")
    depth = max([*recall_ks, cutoff])
    ranked = [_MISS] * (rank - 1) + [_HIT] if rank is not None and rank <= depth else []
    scores = {f"recall@{k}": recall_at_k(ranked, _ONE_RELEVANT, k) for k in recall_ks}
    scores[f"mrr@{cutoff}"] = mrr_at_k(ranked, _ONE_RELEVANT, cutoff)
    return scores


def mean_scores(per_query: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over the queries (macro average, as BEIR reports)."""
    if not per_query:
        return {}
    return {key: math.fsum(q[key] for q in per_query) / len(per_query) for key in per_query[0]}


def mean_se_scores(per_query: Sequence[Mapping[str, float]]) -> dict[str, float | None]:
    """The standard error of each metric's mean over the queries (None for one query).

    Beside every mean a table reports: two configurations a standard error apart on a
    few hundred questions are not yet known to differ.
    """
    if not per_query:
        return {}
    return {key: mean_se([q[key] for q in per_query])[1] for key in per_query[0]}
