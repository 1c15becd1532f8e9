from unittest import mock

import numpy as np
import pytest

from retriever.faiss_index import FaissIndex


class VectorStore:
    """Just the part of DocumentStore the index reads."""

    def __init__(self, vectors: dict[int, np.ndarray]) -> None:
        self.data = vectors

    def chunk_ids(self) -> np.ndarray:
        return np.array(sorted(self.data), dtype=np.int64)

    def vectors(self, ids, encoder):
        return np.stack([self.data[int(i)] for i in ids]) if len(ids) else np.zeros((0, 8))


def unit(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_sync_adds_and_removes_and_search_finds_exact_vectors(kind):
    rng = np.random.default_rng(0)
    vecs = unit(rng, 200)
    store = VectorStore({i + 10: vecs[i] for i in range(200)})
    index = FaissIndex(8, "enc", kind, ivf_nprobe=64)
    assert index.sync(store) == (200, 0)
    ids, scores = index.search(vecs[5], 3)
    assert ids[0] == 15 and scores[0] == pytest.approx(1.0, abs=1e-4)
    assert list(scores) == sorted(scores, reverse=True)

    for i in range(10, 60):
        del store.data[i]
    store.data[500] = vecs[0]
    assert index.sync(store) == (1, 50)
    assert len(index) == 151
    assert set(index.ids.tolist()) == set(store.data)
    assert index.search(vecs[0], 1)[0][0] == 500  # id 10 held the same vector; it is gone
    assert index.sync(store) == (0, 0)


def test_empty_index_and_bad_arguments():
    index = FaissIndex(8, "enc")
    assert index.search(np.ones(8), 5)[0].size == 0
    index.sync(VectorStore({}))
    assert len(index) == 0 and index.search(np.ones(8), 5)[0].size == 0
    with pytest.raises(ValueError, match="unknown index type 'lsh'"):
        FaissIndex(8, "enc", "lsh")
    with pytest.raises(ValueError, match="dimension must be positive, got 0"):
        FaissIndex(0, "enc")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_roundtrip(tmp_path, kind):
    rng = np.random.default_rng(1)
    store = VectorStore({i: v for i, v in enumerate(unit(rng, 120))})
    index = FaissIndex(8, "enc", kind)
    index.sync(store)
    index.save(tmp_path)
    loaded = FaissIndex(8, "enc", kind)
    assert loaded.load(tmp_path)
    assert np.array_equal(np.sort(loaded.ids), store.chunk_ids())
    q = store.data[7]
    assert loaded.search(q, 1)[0][0] == index.search(q, 1)[0][0] == 7
    assert not FaissIndex(8, "other-encoder", kind).load(tmp_path)
    assert not FaissIndex(16, "enc", kind).load(tmp_path)


def test_a_crash_during_save_leaves_the_previous_index(tmp_path):
    rng = np.random.default_rng(2)
    store = VectorStore({i: v for i, v in enumerate(unit(rng, 20))})
    index = FaissIndex(8, "enc")
    index.sync(store)
    index.save(tmp_path)
    store.data[99] = unit(rng, 1)[0]
    index.sync(store)
    with (
        mock.patch("retriever.faiss_index.os.replace", side_effect=OSError("disk full")),
        pytest.raises(OSError, match="disk full"),
    ):
        index.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.faiss", "vectors.json"]
    previous = FaissIndex(8, "enc")
    assert previous.load(tmp_path) and len(previous) == 20
    previous.sync(store)  # and the next sync catches up with the store
    assert len(previous) == 21


@pytest.mark.gpu
def test_gpu_index_matches_cpu():
    import faiss

    if faiss.get_num_gpus() == 0:
        pytest.skip("needs faiss-gpu and a CUDA device")
    rng = np.random.default_rng(3)
    store = VectorStore({i: v for i, v in enumerate(unit(rng, 100))})
    gpu, cpu = FaissIndex(8, "enc", use_gpu=True), FaissIndex(8, "enc")
    gpu.sync(store)
    cpu.sync(store)
    assert gpu.search(store.data[3], 5)[0].tolist() == cpu.search(store.data[3], 5)[0].tolist()
