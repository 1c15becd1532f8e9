"""FaissIndex's parameters: settings mapping, defaults, bounds, training thresholds, sizes."""

from __future__ import annotations

import numpy as np
import pytest

from lectern.settings import RetrievalSettings
from retriever.faiss_index import _HEADER_SIZE_BYTES, _MAGIC, FaissIndex, _sample


class VectorStore:
    def __init__(self, vectors: np.ndarray) -> None:
        self.data = {i: v for i, v in enumerate(vectors)}

    def chunk_ids(self) -> np.ndarray:
        return np.array(sorted(self.data), dtype=np.int64)

    def vectors(self, ids, encoder):
        return np.stack([self.data[int(i)] for i in ids]) if len(ids) else np.zeros((0, 8))


def unit(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_from_settings_passes_every_retrieval_setting_on():
    r = RetrievalSettings(
        index_type="ivfpq", hnsw_m=16, hnsw_ef_search=99, ivf_nlist=7, ivf_nprobe=5,
        pq_m=4, pq_nbits=6, pq_refine="sq8", pq_refine_factor=3,
    )
    index = FaissIndex.from_settings(8, "enc-v2", r, use_gpu=False)
    assert (index.dimension, index.encoder, index.kind) == (8, "enc-v2", "ivfpq")
    assert (index.hnsw_m, index.hnsw_ef_search, index.ivf_nlist, index.ivf_nprobe) == (
        16, 99, 7, 5
    )
    assert (index.pq_m, index.pq_nbits, index.pq_refine, index.pq_refine_factor) == (
        4, 6, "sq8", 3
    )
    assert index.use_gpu is False


def test_defaults():
    index = FaissIndex(16, "enc")
    assert index.kind == "auto"
    assert (index.hnsw_m, index.hnsw_ef_search, index.ivf_nlist, index.ivf_nprobe) == (
        32, 64, 0, 16
    )
    assert (index.pq_m, index.pq_nbits, index.pq_refine, index.pq_refine_factor) == (
        2, 8, "flat", 8
    )
    assert index.use_gpu is False and index.search_threads == 1
    assert index.memory_budget is not None and index.memory_budget > 0
    assert FaissIndex(16, "enc", memory_budget=123).memory_budget == 123
    assert len(index) == 0 and index.ids.size == 0 and index.active_kind is None
    assert index.ids.dtype == np.int64


@pytest.mark.parametrize("nbits", [4, 8])
def test_pq_nbits_bounds_are_inclusive(nbits):
    assert FaissIndex(8, "enc", "ivfpq", pq_nbits=nbits).pq_nbits == nbits


@pytest.mark.parametrize("nbits", [3, 9])
def test_pq_nbits_outside_4_to_8_are_refused(nbits):
    with pytest.raises(ValueError, match=rf"^pq_nbits must be between 4 and 8, got {nbits}$"):
        FaissIndex(8, "enc", "ivfpq", pq_nbits=nbits)


def test_a_negative_pq_m_is_refused_and_a_divisor_is_kept():
    with pytest.raises(ValueError, match=r"^pq_m \(-2\) must divide the dimension \(8\)$"):
        FaissIndex(8, "enc", "ivfpq", pq_m=-2)
    assert FaissIndex(8, "enc", "ivfpq", pq_m=8).pq_m == 8


@pytest.mark.parametrize(
    "bad", [{"pq_refine_factor": 0}, {"hnsw_ef_search": 0}, {"ivf_nprobe": 0}]
)
def test_search_parameters_must_each_be_positive(bad):
    args = {"pq_refine_factor": 1, "hnsw_ef_search": 1, "ivf_nprobe": 1, **bad}
    with pytest.raises(ValueError) as e:
        FaissIndex(8, "enc", **args)
    assert str(e.value) == (
        f"pq_refine_factor ({args['pq_refine_factor']}), hnsw_ef_search "
        f"({args['hnsw_ef_search']}) and ivf_nprobe ({args['ivf_nprobe']}) must be positive"
    )
    ones = FaissIndex(8, "enc", pq_refine_factor=1, hnsw_ef_search=1, ivf_nprobe=1)
    assert (ones.pq_refine_factor, ones.hnsw_ef_search, ones.ivf_nprobe) == (1, 1, 1)


def test_an_unknown_kind_or_refine_names_the_choices():
    with pytest.raises(ValueError) as e:
        FaissIndex(8, "enc", "lsh")
    assert str(e.value) == "unknown index type 'lsh'; use auto, flat, hnsw, ivf, ivfpq"
    with pytest.raises(ValueError) as e:
        FaissIndex(8, "enc", pq_refine="exact")
    assert str(e.value) == "unknown pq_refine 'exact'; use flat, sq8 or none"
    with pytest.raises(ValueError) as e:
        FaissIndex(-1, "enc")
    assert str(e.value) == "dimension must be positive, got -1"


def test_training_thresholds_per_kind():
    assert FaissIndex(8, "enc", pq_nbits=4).min_train_count("ivfpq") == 39 * 16
    assert FaissIndex(8, "enc", pq_nbits=8).min_train_count("ivfpq") == 39 * 256
    assert FaissIndex(8, "enc").min_train_count("ivf") == 39 * 4
    assert FaissIndex(8, "enc").min_train_count("flat") == 0
    assert FaissIndex(8, "enc").min_train_count("hnsw") == 0
    ivf = FaissIndex(8, "enc", "ivf")
    assert (ivf.target_kind(155), ivf.target_kind(156)) == ("flat", "ivf")
    assert FaissIndex(8, "enc", "hnsw").target_kind(1) == "hnsw"


def test_set_search_params_changes_only_what_is_given_and_checks_each():
    index = FaissIndex(8, "enc", "ivf", ivf_nprobe=3, hnsw_ef_search=5, pq_refine_factor=2)
    index.set_search_params()
    assert (index.hnsw_ef_search, index.ivf_nprobe, index.pq_refine_factor) == (5, 3, 2)
    index.set_search_params(hnsw_ef_search=7)
    index.set_search_params(pq_refine_factor=9)
    assert (index.hnsw_ef_search, index.ivf_nprobe, index.pq_refine_factor) == (7, 3, 9)
    for name in ("hnsw_ef_search", "ivf_nprobe", "pq_refine_factor"):
        with pytest.raises(ValueError, match=rf"^{name} must be positive, got -1$"):
            index.set_search_params(**{name: -1})
    index.set_search_params(ivf_nprobe=1)  # one is the smallest allowed
    assert index.ivf_nprobe == 1


def test_ivf_nprobe_is_capped_at_the_lists_built():
    import faiss

    index = FaissIndex(8, "enc", "ivf", ivf_nlist=4, ivf_nprobe=3)
    index.sync(VectorStore(unit(400)))
    ivf = faiss.extract_index_ivf(index._index)
    assert (ivf.nlist, ivf.nprobe) == (4, 3)
    index.set_search_params(ivf_nprobe=50)
    assert ivf.nprobe == 4
    # Default lists: about 4 * sqrt(n), at most one per 39 vectors.
    auto = FaissIndex(8, "enc", "ivf")
    auto.sync(VectorStore(unit(400)))
    assert faiss.extract_index_ivf(auto._index).nlist == 10  # min(4 * 20, 400 // 39)


def test_build_checks_the_vector_count_and_sorts_ids():
    index = FaissIndex(8, "enc", "flat")
    with pytest.raises(ValueError, match=r"^3 ids but 2 vectors$"):
        index.build(np.array([1, 2, 3]), unit(2))
    vectors = unit(3)
    index.build(np.array([30, 10, 20]), vectors)
    assert index.ids.tolist() == [10, 20, 30] and len(index) == 3
    ids, scores = index.search(vectors[0], 10)  # k above the count: every vector once
    assert sorted(ids.tolist()) == [10, 20, 30] and ids[0] == 30
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert index.search(vectors[0], 0)[0].size == 0
    assert index.search(vectors[0], 1)[0].tolist() == [30]


def test_sync_reports_what_it_added_and_removed():
    vectors = unit(10)
    store = VectorStore(vectors)
    index = FaissIndex(8, "enc", "flat")
    assert index.sync(store) == (10, 0)
    assert index.sync(store) == (0, 0)
    del store.data[3], store.data[4]
    store.data[10] = vectors[3]
    assert index.sync(store) == (1, 2)
    assert index.ids.tolist() == [0, 1, 2, 5, 6, 7, 8, 9, 10]
    assert index.search(vectors[3], 1)[0].tolist() == [10]


def test_a_sample_is_all_vectors_when_few_else_a_seeded_sorted_subset():
    vectors = unit(50)
    assert _sample(vectors, 50) is vectors
    part = _sample(vectors, 20)
    assert part.shape == (20, 8) and part.flags["C_CONTIGUOUS"]
    rows = [int(np.flatnonzero((vectors == row).all(axis=1))[0]) for row in part]
    assert rows == sorted(rows) and len(set(rows)) == 20
    assert np.array_equal(part, _sample(vectors, 20))


def test_serialized_bytes_is_what_a_save_writes_after_its_header(tmp_path):
    import json

    index = FaissIndex(8, "enc", "flat")
    assert index.serialized_bytes() == 0
    index.sync(VectorStore(unit(20)))
    size = index.serialized_bytes()
    assert size > 20 * 8 * 4  # the vectors themselves, and the ids
    index.save(tmp_path)
    meta = json.dumps(index._meta()).encode()
    saved = (tmp_path / "vectors.faiss").stat().st_size
    assert saved == len(_MAGIC) + _HEADER_SIZE_BYTES + len(meta) + size
    raw = (tmp_path / "vectors.faiss").read_bytes()
    assert raw.startswith(_MAGIC)
    assert int.from_bytes(raw[len(_MAGIC):len(_MAGIC) + 4], "little") == len(meta)
    assert index._meta() == {
        "dimension": 8, "encoder": "enc", "kind": "flat", "active": "flat",
        "structure": {}, "count": 20,
    }


def test_an_unbuilt_index_saves_nothing(tmp_path):
    FaissIndex(8, "enc").save(tmp_path / "idx")
    assert (tmp_path / "idx").is_dir() and not FaissIndex.saved(tmp_path / "idx")


def test_the_structure_saved_names_what_each_kind_was_built_with():
    index = FaissIndex(8, "enc", hnsw_m=12, pq_m=4, pq_nbits=5, pq_refine="sq8")
    assert index._structure("hnsw") == {"hnsw_m": 12}
    assert index._structure("ivfpq") == {"pq_m": 4, "pq_nbits": 5, "pq_refine": "sq8"}
    assert index._structure("flat") == {} and index._structure("ivf") == {}
    assert index._structure(None) == {}


def test_which_kinds_would_go_to_a_gpu():
    # Decided without a GPU: faiss has no GPU HNSW, and GPU IVF-PQ wants 8-bit codes.
    gpu = FaissIndex(8, "enc", use_gpu=True, pq_nbits=8)
    assert [gpu._gpu_for(k) for k in ("flat", "hnsw", "ivf", "ivfpq")] == [True, False, True, True]
    assert FaissIndex(8, "enc", use_gpu=True, pq_nbits=4)._gpu_for("ivfpq") is False
    assert not any(FaissIndex(8, "enc")._gpu_for(k) for k in ("flat", "hnsw", "ivf", "ivfpq"))
    import faiss

    hnsw = faiss.IndexIDMap2(faiss.IndexHNSWFlat(8, 4, faiss.METRIC_INNER_PRODUCT))
    assert gpu._on_device(hnsw, "hnsw") is hnsw  # stays on the CPU: no GPU is asked for


def test_ids_of_any_integer_type_are_stored_as_int64():
    index = FaissIndex(8, "enc", "flat")
    vectors = unit(3)
    index.build(np.array([7, 8, 9], dtype=np.int32), vectors)
    assert index.ids.dtype == np.int64
    assert index.search(vectors[1], 1)[0].tolist() == [8]


def test_load_says_what_it_loaded_and_why_it_did_not(tmp_path, caplog):
    import logging

    index = FaissIndex(8, "enc", "flat")
    index.sync(VectorStore(unit(5)))
    index.save(tmp_path)
    with caplog.at_level(logging.INFO, logger="retriever.faiss_index"):
        assert FaissIndex(8, "enc", "flat").load(tmp_path)
    assert caplog.records[-1].getMessage() == "FAISS index flat: loaded 5 vectors as flat"
    raw = (tmp_path / "vectors.faiss").read_bytes()
    (tmp_path / "vectors.faiss").write_bytes(raw[:-9])  # cut short
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="retriever.faiss_index"):
        assert not FaissIndex(8, "enc", "flat").load(tmp_path)
    message = caplog.records[-1].getMessage()
    assert message.startswith(f"FAISS index in {tmp_path} not loaded (")
    assert message.endswith("): rebuilt from the store")


def _load_warning(tmp_path, caplog, index: FaissIndex | None = None) -> str:
    import logging

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="retriever.faiss_index"):
        assert not (index or FaissIndex(8, "enc", "flat")).load(tmp_path)
    return caplog.records[-1].getMessage()


def test_load_names_why_a_header_is_refused(tmp_path, caplog):
    # A header that promises more meta than the file holds.
    (tmp_path / "vectors.faiss").write_bytes(_MAGIC + (1000).to_bytes(4, "little") + b"{}")
    assert "(the header is cut short)" in _load_warning(tmp_path, caplog)
    meta = b"[1, 2]"  # JSON, but not an object
    (tmp_path / "vectors.faiss").write_bytes(_MAGIC + len(meta).to_bytes(4, "little") + meta)
    assert "(the meta is a list, not an object)" in _load_warning(tmp_path, caplog)


def test_load_refuses_data_beyond_the_parts_the_meta_names(tmp_path, caplog):
    index = FaissIndex(8, "enc", "flat")
    index.sync(VectorStore(unit(5)))
    index.save(tmp_path)
    with (tmp_path / "vectors.faiss").open("ab") as f:
        f.write(b"x")  # one byte more
    message = _load_warning(tmp_path, caplog)
    assert "(the data disagrees with its meta: data beyond the parts the meta names)" in message


def test_load_without_a_save_is_false(tmp_path):
    assert FaissIndex(8, "enc", "flat").load(tmp_path) is False
    assert FaissIndex(8, "enc", "flat").load(tmp_path / "missing") is False


def test_disagreement_names_a_refine_store_of_other_ids_or_not_by_id():
    import faiss

    from retriever.faiss_index import _disagreement

    def by_id(ids):
        store = faiss.IndexIDMap2(faiss.IndexFlatIP(8))
        store.add_with_ids(unit(len(ids)), np.array(ids, dtype=np.int64))
        return store

    index = by_id([1, 2])
    assert _disagreement(index, by_id([1, 2]), "flat", 2, False) is None
    assert _disagreement(index, by_id([1, 3]), "flat", 2, False) == (
        "a refine store holding other ids than the index"
    )
    bare = faiss.IndexFlatIP(8)  # not keyed by id: named by its own type
    assert _disagreement(index, bare, "flat", 2, False) == (
        "a refine store of type IndexFlatIP, not flat"
    )
    assert _disagreement(index, None, "flat", 2, True) == "data beyond the parts the meta names"


def test_loaded_ids_are_int64_for_id_maps_and_ivf_lists(tmp_path):
    for kind, n in (("flat", 5), ("ivf", 200)):
        index = FaissIndex(8, "enc", kind)
        index.sync(VectorStore(unit(n)))
        index.save(tmp_path / kind)
        loaded = FaissIndex(8, "enc", kind)
        assert loaded.load(tmp_path / kind) and loaded.active_kind == kind
        assert loaded.ids.dtype == np.int64 and loaded.ids.tolist() == list(range(n))


def test_an_empty_search_has_the_dtypes_of_a_full_one():
    ids, scores = FaissIndex(8, "enc", "flat").search(unit(1)[0], 5)
    assert (ids.shape, ids.dtype, scores.shape, scores.dtype) == ((0,), np.int64, (0,), np.float32)


def test_from_settings_passes_use_gpu_on():
    assert FaissIndex.from_settings(8, "enc", RetrievalSettings(), use_gpu=True).use_gpu is True


def test_an_hnsw_index_stays_on_the_cpu_even_when_a_gpu_is_asked_for(tmp_path):
    # No GPU here: moving an index to one would fail, so building and loading must not try.
    vectors = unit(20)
    index = FaissIndex(8, "enc", "hnsw", use_gpu=True)
    index.sync(VectorStore(vectors))
    assert index.active_kind == "hnsw" and index._on_gpu is False
    assert index.search(vectors[4], 1)[0].tolist() == [4]
    index.save(tmp_path)
    loaded = FaissIndex(8, "enc", "hnsw", use_gpu=True)
    assert loaded.load(tmp_path) and loaded._on_gpu is False
    assert loaded.search(vectors[4], 1)[0].tolist() == [4]


def test_one_ivf_list_when_asked_for():
    import faiss

    index = FaissIndex(8, "enc", "ivf", ivf_nlist=1)
    index.sync(VectorStore(unit(200)))
    assert faiss.extract_index_ivf(index._index).nlist == 1


def _ivfpq(n: int, **kw) -> FaissIndex:  # 4-bit codes: trained from 39 * 16 = 624 vectors
    index = FaissIndex(8, "enc", "ivfpq", pq_nbits=4, **kw)
    index.sync(VectorStore(unit(n)))
    assert index.active_kind == "ivfpq"
    return index


def test_ivfpq_builds_a_pq_index_and_a_refine_store_only_when_asked():
    import faiss

    index = _ivfpq(700)
    assert isinstance(index._index, faiss.IndexIVFPQ) and index._refine is not None
    assert _ivfpq(700, pq_refine="none")._refine is None


def test_ivfpq_trains_on_enough_vectors_for_its_codebooks(monkeypatch):
    import retriever.faiss_index as module

    sizes, real = [], module._sample

    def sample(vectors, size):
        sizes.append(size)
        return real(vectors, size)

    monkeypatch.setattr(module, "_sample", sample)
    _ivfpq(1000, ivf_nlist=4)  # 48 points per list would be 192, too few for 16 centroids
    assert sizes == [624]


def test_ivfpq_search_re_ranks_enough_candidates_and_returns_float32():
    vectors = unit(700)
    index = _ivfpq(700, pq_refine_factor=2, ivf_nprobe=64)
    ids, scores = index.search(vectors[3].astype(np.float64), 100)  # 200 candidates
    assert len(ids) == 100 and len(set(ids.tolist())) == 100
    assert scores.dtype == np.float32 and ids[0] == 3


def test_a_trained_index_is_retrained_when_the_corpus_more_than_doubles():
    import faiss

    vectors = unit(1500)
    for kind, first, same, grown in (("ivf", 200, 400, 401), ("ivfpq", 700, 1400, 1401)):
        store = VectorStore(vectors[:first])
        index = FaissIndex(8, "enc", kind, pq_nbits=4)
        index.sync(store)
        lists = faiss.extract_index_ivf(index._index).nlist
        store.data.update({i: vectors[i] for i in range(first, same)})
        index.sync(store)  # exactly doubled: lists kept, the new vectors added in place
        assert faiss.extract_index_ivf(index._index).nlist == lists, kind
        index.sync(VectorStore(vectors[:first]))  # back to the first corpus, in place
        store = VectorStore(vectors[:grown])
        index.sync(store)  # more than doubled: retrained, with more lists
        assert faiss.extract_index_ivf(index._index).nlist > lists, kind
        assert len(index) == grown


def test_a_dimension_of_one_is_allowed():
    index = FaissIndex(1, "enc", "flat")
    index.build(np.array([5, 6]), np.array([[1.0], [-1.0]], dtype=np.float32))
    assert index.search(np.array([1.0]), 1)[0].tolist() == [5]


def test_ivfpq_searches_the_lists_asked_for():
    import faiss

    index = _ivfpq(700, ivf_nprobe=3)
    assert faiss.extract_index_ivf(index._index).nprobe == 3
    index.set_search_params(ivf_nprobe=5)
    assert faiss.extract_index_ivf(index._index).nprobe == 5


def test_auto_weighs_hnsw_by_its_memory_budget_and_links():
    # 30k 8-d vectors as HNSW: about 2.5 MB with 4 links a node, 9.9 MB with 32.
    assert FaissIndex(8, "enc", memory_budget=1_000).target_kind(30_000) == "ivfpq"
    assert FaissIndex(8, "enc", memory_budget=10**9).target_kind(30_000) == "hnsw"
    assert FaissIndex(8, "enc", memory_budget=5_000_000, hnsw_m=4).target_kind(30_000) == "hnsw"
    assert FaissIndex(8, "enc", memory_budget=5_000_000).target_kind(30_000) == "ivfpq"
