"""Which FAISS index a corpus gets when `retrieval.index_type` is `auto`, by its size.

Pure functions of the vector count and dimension, so the rule can be tested and read on
its own; `FaissIndex` applies it on every build and sync.
"""

from __future__ import annotations

import os
from typing import Literal

IndexKind = Literal["flat", "hnsw", "ivf", "ivfpq"]  # what `auto` and fallbacks resolve to

# Thresholds from bench/results/faiss_scale.md (synthetic clustered 384-d vectors, one
# query at a time on a busy 2-core machine, recall@10 against exact search):
# - flat: exact and free to build, but a single-threaded scan took 1.8 ms at 20k vectors,
#   9.6 ms at 50k and 25 ms at 100k. HNSW at 20k: recall 0.99 at 0.4 ms, built in 5 CPU s.
# - HNSW (ef 64): recall 0.99 at 100k and 0.98 at 500k in 0.35 ms. It cannot delete: every
#   removal rebuilds it, 30 CPU s at 100k, 157 at 500k, 350 at 1M, where ef 64 also fell
#   to 0.93 recall.
# - IVF-PQ (nprobe 16, re-ranked x8 with the exact vectors): recall 0.98 at 500k and at 1M
#   in 0.5 / 0.8 ms, built in 110 / 210 CPU s, deleting in place; with `pq_refine="sq8"`
#   0.97 at 1M in a third of the memory (434 MiB against 1.5-1.7 GB).
AUTO_FLAT_MAX = 20_000
AUTO_HNSW_MAX = 500_000

_RANK: dict[str, int] = {"flat": 0, "hnsw": 1, "ivfpq": 2}


def hnsw_bytes(count: int, dimension: int, hnsw_m: int = 32) -> int:
    """Estimated HNSW memory: the float vectors, 2*M level-0 links and the upper levels."""
    return int(count * (4 * dimension + 4 * 2 * hnsw_m * 1.1 + 16))


def auto_kind(
    count: int,
    dimension: int,
    *,
    current: IndexKind | None = None,
    memory_budget: int | None = None,
    hnsw_m: int = 32,
) -> IndexKind:
    """The index kind `auto` uses for `count` vectors: flat, then HNSW, then IVF-PQ.

    HNSW gives way to IVF-PQ early when its estimated size exceeds `memory_budget` bytes.
    The `current` kind is kept while the corpus is at least half the size that would pick
    it, so a corpus hovering at a threshold does not rebuild on every sync.
    """

    def pick(n: int) -> IndexKind:
        if n < AUTO_FLAT_MAX:
            return "flat"
        fits = memory_budget is None or hnsw_bytes(n, dimension, hnsw_m) <= memory_budget
        return "hnsw" if n < AUTO_HNSW_MAX and fits else "ivfpq"

    chosen = pick(count)
    if (
        current in _RANK
        and _RANK[current] > _RANK[chosen]
        and pick(2 * count) == current
    ):
        return current
    return chosen


def default_pq_m(dimension: int) -> int:
    """IVF-PQ sub-quantizers: one per 8 dimensions (48 bytes a vector at 384-d, 8 bits).

    The largest divisor of the dimension up to dimension/8, since each sub-quantizer
    takes an equal slice.
    """
    target = max(1, dimension // 8)
    return max(m for m in range(1, target + 1) if dimension % m == 0)


def default_memory_budget() -> int | None:
    """Half of physical memory: the rest is the models', the store's and the OS's."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (AttributeError, ValueError, OSError):
        return None
