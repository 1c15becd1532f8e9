"""The Retriever and DocumentStore contracts, each run against every implementation.

The retrievers search a corpus embedded by the real packaged MiniLM (integration), so
the dense and hybrid retrievers are tested on the vectors they serve, not a fake's.
The Embedder contract is in test_embedder.py and the Reranker's in test_reranker.py.
"""

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest

from api.components import build_embedder
from api.service import Lectern
from ingest.sqlite_store import SQLiteDocumentStore
from lectern.protocols import DocumentStore, Retriever
from lectern.settings import IngestSettings, Settings
from lectern.types import Chunk, DocumentInfo
from retriever.bm25 import BM25Retriever
from retriever.dense import DenseRetriever
from retriever.faiss_index import FaissIndex
from retriever.hybrid import HybridRetriever

PASSAGES = {
    "fees.md": "The international tuition fee for the MSc Data Science is EUR 16,800 per year.",
    "csc340.html": "CSC 340 Machine Learning requires CSC 210 and MAT 220 and carries 6 ECTS.",
    "housing.md": "Apply for student housing before 31 May for the autumn semester.",
    "library.md": "The loan period for library books is 28 days and can be renewed twice.",
    "desk.txt": "The Student Service Desk is open Monday to Thursday from 09:00 to 16:30.",
    "retakes.docx": "Each examination may be retaken at most twice within one academic year.",
}


def bm25(svc) -> Retriever:
    r = BM25Retriever(svc.store)
    r.sync()
    return r


def dense(kind: str) -> Callable:
    def make(svc) -> Retriever:
        index = FaissIndex(svc.embedder.dimension, svc.embedder.fingerprint, kind)
        index.sync(svc.store)
        return DenseRetriever(svc.embedder, index, svc.store)

    return make


def hybrid(svc) -> Retriever:
    return HybridRetriever([(bm25(svc), 1.0), (dense("flat")(svc), 1.0)], rrf_k=60, candidates=10)


IMPLEMENTATIONS = {
    "bm25": bm25,
    "dense-flat": dense("flat"),
    "dense-hnsw": dense("hnsw"),
    "dense-ivf": dense("ivf"),
    "dense-ivfpq": dense("ivfpq"),
    "dense-auto": dense("auto"),
    "hybrid": hybrid,
}


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """The packaged encoder as the service builds it by default (onnxruntime on a CPU)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("encoder"), _env_file=None)
    embedder = build_embedder(settings, "cpu")
    embedder.warm_up()
    return embedder


def open_service(folder, embedder) -> Lectern:
    settings = Settings(
        data_dir=folder,
        ingest=IngestSettings(chunk_tokens=64, chunk_overlap=8, min_section_tokens=8),
        _env_file=None,
    )
    settings.retrieval.rerank = False  # the retrievers are tested, not a reranker
    svc = Lectern(settings, embedder=embedder)
    svc.warm_up()
    assert svc.reranker is None
    return svc


@pytest.fixture(scope="module")
def corpus_service(tmp_path_factory, minilm):
    root = tmp_path_factory.mktemp("contract")
    folder = root / "corpus"
    folder.mkdir()
    for name, text in PASSAGES.items():
        (folder / (name.rsplit(".", 1)[0] + ".txt")).write_text(text + "\n")
    svc = open_service(root / "data", minilm)
    report = svc.ingest([folder])
    assert not report.failed and svc.store.chunk_count() == len(PASSAGES)
    yield svc
    svc.store.close()


@pytest.fixture
def empty_service(tmp_path, minilm):
    svc = open_service(tmp_path / "data", minilm)
    yield svc
    svc.store.close()


@pytest.fixture(params=list(IMPLEMENTATIONS))
def retriever(request, corpus_service) -> Retriever:
    return IMPLEMENTATIONS[request.param](corpus_service)


@pytest.mark.integration
def test_is_a_retriever(retriever):
    assert isinstance(retriever, Retriever)


@pytest.mark.integration
@pytest.mark.parametrize("k", [1, 3, 100])
def test_top_k_is_respected_and_scores_are_sorted(retriever, k):
    hits = retriever.retrieve("student fee for the semester", k)
    assert 1 <= len(hits) <= min(k, len(PASSAGES))
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert len({h.chunk.id for h in hits}) == len(hits)


@pytest.mark.integration
def test_hits_are_the_store_s_chunks(retriever, corpus_service):
    hits = retriever.retrieve("library books", 3)
    assert hits, "the library passage matches"
    assert [h.chunk for h in hits] == corpus_service.store.get_chunks([h.chunk.id for h in hits])


@pytest.mark.integration
def test_zero_top_k_gives_nothing(retriever):
    assert retriever.retrieve("fee", 0) == []


@pytest.mark.integration
@pytest.mark.parametrize(
    ("query", "source"),
    [
        ("CSC 340 prerequisites", "csc340.txt"),
        ("library loan period books", "library.txt"),
        ("international tuition fee MSc Data Science", "fees.txt"),
    ],
)
def test_the_matching_passage_ranks_first(retriever, query, source):
    assert retriever.retrieve(query, 3)[0].chunk.source.endswith(source)


@pytest.mark.integration
@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_empty_index_gives_empty_result(empty_service, name):
    assert IMPLEMENTATIONS[name](empty_service).retrieve("anything at all", 5) == []


def test_hybrid_rejects_bad_configuration():
    with pytest.raises(ValueError, match="at least one"):
        HybridRetriever([])
    with pytest.raises(ValueError, match=r"weights must be >= 0 with one > 0, got \[0.0\]"):
        HybridRetriever([(object(), 0.0)])


def test_hybrid_fuses_by_reciprocal_rank():
    from lectern.types import Chunk, ScoredChunk

    def chunk(i):
        return Chunk(i, "d", f"t{i}", "s", "t")

    class Fixed:
        def __init__(self, order):
            self.order = order

        def retrieve(self, query, top_k, filters=None):
            return [ScoredChunk(chunk(i), 1.0 / (n + 1)) for n, i in enumerate(self.order)][:top_k]

    lists = [(Fixed([1, 2, 3]), 1.0), (Fixed([3, 2, 4]), 1.0)]
    fused = HybridRetriever(lists, rrf_k=1).retrieve("q", 4)
    # 2 is second in both lists: 1/3 + 1/3 beats 1 (1/2) and 3 (1/2 + 1/4 = 0.75)
    assert [h.chunk.id for h in fused] == [3, 2, 1, 4]
    assert [round(h.score, 4) for h in fused] == [0.75, 0.6667, 0.5, 0.25]
    weighted = HybridRetriever([(Fixed([1]), 3.0), (Fixed([2]), 1.0)], rrf_k=1).retrieve("q", 2)
    assert [h.chunk.id for h in weighted] == [1, 2]



# -- the DocumentStore contract ----------------------------------------------------------


def sqlite_store(folder) -> DocumentStore:
    return SQLiteDocumentStore(folder / "store.sqlite3")


STORES = {"sqlite": sqlite_store}
# The Protocol's methods, read from the Protocol itself: a new one is checked too.
STORE_METHODS = sorted(
    name for name, value in vars(DocumentStore).items()
    if callable(value) and not name.startswith("_")
)


@pytest.fixture(params=list(STORES))
def store(request, tmp_path):
    made = STORES[request.param](tmp_path)
    yield made
    close = getattr(made, "close", None)
    if close is not None:
        close()


WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def doc(doc_id: str, n: int, content_hash: str | None = None) -> DocumentInfo:
    return DocumentInfo(doc_id, f"/docs/{doc_id}.md", doc_id.upper(),
                        content_hash or f"hash-{doc_id}", "text/markdown", 100, n, WHEN)


def passages(doc_id: str, n: int) -> list[Chunk]:
    return [Chunk(-1, doc_id, f"{doc_id} passage {i}", "", "", f"part {i}", i + 1, i)
            for i in range(n)]


def unit_rows(n: int, start: int = 0) -> np.ndarray:
    return np.eye(8, dtype=np.float32)[start : start + n]


def test_the_store_has_every_method_of_the_protocol(store):
    assert len(STORE_METHODS) == 19
    assert [m for m in STORE_METHODS if not callable(getattr(store, m, None))] == []


def test_a_new_store_is_empty(store):
    assert store.list_documents() == [] and store.all_chunks() == []
    assert store.chunk_ids().tolist() == [] and store.encoders() == set()
    assert store.chunk_count() == store.vector_count() == 0
    assert store.get_document("a") is None and store.find_by_hash("hash-a") is None
    assert store.find_by_source("/docs/a.md") is None
    assert store.get_chunks([]) == [] and store.get_chunks([1, 2]) == []
    assert store.delete_document("a") == 0


def test_an_upserted_document_comes_back_with_its_chunks_and_vectors(store):
    ids = store.upsert_document(doc("a", 3), passages("a", 3), unit_rows(3), "enc")
    assert len(ids) == len(set(ids)) == 3
    assert store.get_document("a") == doc("a", 3)
    assert store.find_by_hash("hash-a") == store.find_by_source("/docs/a.md") == doc("a", 3)
    got = store.get_chunks([ids[2], 10**9, ids[0]])  # the order asked; unknown ids left out
    assert got == [
        Chunk(ids[2], "a", "a passage 2", "/docs/a.md", "A", "part 2", 3, 2),
        Chunk(ids[0], "a", "a passage 0", "/docs/a.md", "A", "part 0", 1, 0),
    ]
    assert sorted(c.id for c in store.all_chunks()) == sorted(ids)
    assert sorted(store.chunk_ids().tolist()) == sorted(ids)
    np.testing.assert_array_equal(store.vectors([ids[1], ids[0]], "enc"), unit_rows(2)[::-1])
    assert store.encoders() == {"enc"}
    assert store.chunk_count() == store.vector_count() == 3


def test_upsert_replaces_a_document_and_delete_removes_it(store):
    old = store.upsert_document(doc("a", 3), passages("a", 3), unit_rows(3), "enc")
    b = store.upsert_document(doc("b", 2), passages("b", 2), unit_rows(2, 3), "enc")
    new = store.upsert_document(doc("a", 1, "hash-a2"), passages("a", 1), unit_rows(1, 5), "enc")
    assert len(new) == 1 and not set(new) & set(old), "a chunk id is never reused"
    assert store.get_document("a").content_hash == "hash-a2"
    assert store.find_by_hash("hash-a") is None
    assert sorted(store.chunk_ids().tolist()) == sorted([*b, *new])
    assert store.get_chunks(old) == []
    assert [d.id for d in sorted(store.list_documents(), key=lambda d: d.id)] == ["a", "b"]
    assert store.delete_document("a") == 1
    assert store.get_document("a") is None and store.get_chunks(new) == []
    assert sorted(store.chunk_ids().tolist()) == sorted(b)
    assert store.chunk_count() == store.vector_count() == 2
    assert store.delete_document("a") == 0


def test_a_failed_upsert_leaves_the_previous_version(store):
    ids = store.upsert_document(doc("a", 2), passages("a", 2), unit_rows(2), "enc")
    with pytest.raises(ValueError, match="3 chunks but 2 vectors"):
        store.upsert_document(doc("a", 3, "hash-a2"), passages("a", 3), unit_rows(2), "enc")
    assert store.get_document("a") == doc("a", 2)
    assert sorted(store.chunk_ids().tolist()) == sorted(ids)
    assert store.chunk_count() == store.vector_count() == 2


def test_vectors_are_kept_per_encoder(store):
    ids = store.upsert_document(doc("a", 2), passages("a", 2), unit_rows(2), "old")
    assert store.ids_without_vectors("old").tolist() == []
    assert sorted(store.ids_without_vectors("new").tolist()) == sorted(ids)
    with pytest.raises(KeyError, match="2 chunks have no new vector"):
        store.vectors(ids, "new")
    store.add_vectors(ids[:1], unit_rows(1, 6), "new")
    assert store.ids_without_vectors("new").tolist() == ids[1:]
    store.add_vectors(ids[1:], unit_rows(1, 7), "new")
    assert store.encoders() == {"old", "new"} and store.vector_count() == 4
    np.testing.assert_array_equal(store.vectors(ids, "new"), unit_rows(2, 6))
    np.testing.assert_array_equal(store.vectors(ids, "old"), unit_rows(2))
    store.add_vectors(ids[:1], unit_rows(1, 3), "new")  # replaces that chunk's vector
    np.testing.assert_array_equal(store.vectors(ids[:1], "new"), unit_rows(1, 3))
    assert store.vector_count() == 4
    assert store.delete_document("a") == 2
    assert store.vector_count() == 0 and store.encoders() == set()


def test_chunk_ids_of_gives_the_documents_chunks_ascending(store):
    a = store.upsert_document(doc("a", 3), passages("a", 3), unit_rows(3), "enc")
    b = store.upsert_document(doc("b", 2), passages("b", 2), unit_rows(2, 3), "enc")
    assert store.chunk_ids_of({"a"}).tolist() == sorted(a)
    assert store.chunk_ids_of(["b", "a", "b"]).tolist() == sorted([*a, *b])
    assert store.chunk_ids_of({"nope"}).tolist() == [] and store.chunk_ids_of(set()).tolist() == []
    assert store.chunk_ids_of({"a"}).dtype == np.int64
    store.delete_document("a")
    assert store.chunk_ids_of({"a", "b"}).tolist() == sorted(b)
    # More documents than SQLite binds in one statement.
    many = {f"d{i}" for i in range(2000)} | {"b"}
    assert store.chunk_ids_of(many).tolist() == sorted(b)


def test_sentence_vectors_per_key_cascade_and_skip_deleted_passages(store):
    ids = store.upsert_document(doc("a", 3), passages("a", 3), np.ones((3, 4)), "enc")
    assert store.ids_without_sentence_vectors("k").tolist() == ids
    mats = [np.arange(8, dtype=np.float32).reshape(2, 4), np.ones((1, 4)), np.eye(3, 4)]
    store.add_sentence_vectors(ids, mats, "k")
    got = store.sentence_vectors([ids[2], ids[0], 999], "k")
    assert sorted(got) == [ids[0], ids[2]]
    np.testing.assert_array_equal(got[ids[0]], mats[0])
    np.testing.assert_array_equal(got[ids[2]], np.eye(3, 4, dtype=np.float32))
    assert store.sentence_vectors(ids, "other") == {}
    assert store.ids_without_sentence_vectors("k").tolist() == []
    assert store.ids_without_sentence_vectors("other").tolist() == ids
    assert store.encoders() == {"enc"}, "sentence keys are not chunk-vector encoders"
    # Replaced documents and deletions take their sentence vectors with them.
    new = store.upsert_document(doc("a", 1, "hash-a2"), passages("a", 1), np.zeros((1, 4)), "enc")
    assert store.sentence_vectors(ids, "k") == {}
    assert store.ids_without_sentence_vectors("k").tolist() == new
    # Vectors for a chunk deleted while they were computed are dropped, not an error.
    store.add_sentence_vectors([ids[0], new[0]], [np.ones((1, 4)), np.ones((2, 4))], "k")
    assert list(store.sentence_vectors([ids[0], new[0]], "k")) == [new[0]]


def test_sentence_vectors_refuse_what_cannot_be_rows(store):
    ids = store.upsert_document(doc("a", 1), passages("a", 1), np.ones((1, 4)), "enc")
    with pytest.raises(ValueError, match="1 chunks but 2"):
        store.add_sentence_vectors(ids, [np.ones((1, 4))] * 2, "k")
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        store.add_sentence_vectors(ids, [np.ones(4)], "k")
    with pytest.raises(ValueError, match=r"shape \(0, 4\)"):
        store.add_sentence_vectors(ids, [np.ones((0, 4))], "k")
