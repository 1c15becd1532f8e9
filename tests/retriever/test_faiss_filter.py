"""IdFilter (the ids a filtered FAISS search may return) and FaissIndex's filtered paths."""

from __future__ import annotations

import numpy as np
import pytest

from retriever.faiss_filter import IdFilter
from retriever.faiss_index import FaissIndex

HELD = np.array([3, 5, 8, 13, 21], dtype=np.int64)  # ascending, as FaissIndex keeps them


def test_nothing_kept_out_is_no_filter():
    assert IdFilter.of(HELD, None, None) is None
    assert IdFilter.of(HELD, np.array([4, 99], dtype=np.int64), None) is None  # none held
    assert IdFilter.of(HELD, None, np.array([21, 3, 5, 8, 13, 40])) is None  # all allowed


def test_an_exclusion_counts_only_the_ids_the_index_holds():
    f = IdFilter.of(HELD, np.array([13, 4, 3, 3]), None)
    assert f is not None and f.negate and f.ids.tolist() == [3, 13] and f.count == 3
    assert f.allows(np.array([3, 5, 13, 21])).tolist() == [False, True, False, True]


def test_an_allow_list_minus_the_exclusion():
    f = IdFilter.of(HELD, np.array([5]), np.array([8, 5, 99, 21]))
    assert f is not None and not f.negate and f.ids.tolist() == [8, 21] and f.count == 2
    assert f.allows(np.array([5, 8, 21, 3])).tolist() == [False, True, True, False]
    empty = IdFilter.of(HELD, None, np.zeros(0, dtype=np.int64))
    assert empty is not None and empty.count == 0


def unit_vectors(n: int, d: int = 8) -> np.ndarray:
    v = np.random.default_rng(1).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def flat() -> tuple[FaissIndex, np.ndarray]:
    index = FaissIndex(8, "enc", "flat")
    vectors = unit_vectors(40)
    index.build(np.arange(100, 140), vectors)
    return index, vectors


def test_a_flat_search_keeps_out_the_ids_and_still_returns_k(flat):
    index, vectors = flat
    query = vectors[0]
    ids, _ = index.search(query, 5)
    out = ids[:3]
    got, scores = index.search(query, 5, exclude=out)
    assert len(got) == 5 and not set(got.tolist()) & set(out.tolist())
    order = np.argsort(-(vectors @ query), kind="stable") + 100
    assert got.tolist() == [i for i in order.tolist() if i not in out.tolist()][:5]
    assert scores.tolist() == sorted(scores.tolist(), reverse=True)
    assert index.search(query, 5, only=np.arange(100, 140))[0].tolist() == ids.tolist()
    assert len(index.search(query, 5, exclude=np.arange(100, 140))[0]) == 0


def test_the_gpu_path_post_filters_a_search_deep_enough_for_k(flat, monkeypatch):
    # faiss's GPU indexes take no IDSelector; the CPU flat index stands in for one here.
    index, vectors = flat
    query = vectors[7]
    out = index.search(query, 12)[0][:10]
    on_cpu = index.search(query, 6, exclude=out)
    monkeypatch.setattr(index, "_on_gpu", True)
    on_gpu = index.search(query, 6, exclude=out)
    assert on_gpu[0].tolist() == on_cpu[0].tolist() and len(on_gpu[0]) == 6
    only = np.array([101, 117, 130])
    assert sorted(index.search(query, 6, only=only)[0].tolist()) == only.tolist()
