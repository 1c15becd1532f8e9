"""The Retriever contract, run against every implementation."""

from collections.abc import Callable

import pytest

from lectern.protocols import Retriever
from retriever.bm25 import BM25Retriever
from retriever.dense import DenseRetriever
from retriever.faiss_index import FaissIndex
from retriever.hybrid import HybridRetriever
from tests.fakes import HashEmbedder

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


@pytest.fixture
def corpus_service(service, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in PASSAGES.items():
        (folder / (name.rsplit(".", 1)[0] + ".txt")).write_text(text + "\n")
    assert not service.ingest([folder]).failed
    return service


@pytest.fixture(params=list(IMPLEMENTATIONS))
def retriever(request, corpus_service) -> Retriever:
    return IMPLEMENTATIONS[request.param](corpus_service)


def test_is_a_retriever(retriever):
    assert isinstance(retriever, Retriever)


@pytest.mark.parametrize("k", [1, 3, 100])
def test_top_k_is_respected_and_scores_are_sorted(retriever, k):
    hits = retriever.retrieve("student fee for the semester", k)
    assert 1 <= len(hits) <= min(k, len(PASSAGES))
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert len({h.chunk.id for h in hits}) == len(hits)


def test_zero_top_k_gives_nothing(retriever):
    assert retriever.retrieve("fee", 0) == []


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


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_empty_index_gives_empty_result(service, name):
    assert IMPLEMENTATIONS[name](service).retrieve("anything at all", 5) == []


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

        def retrieve(self, query, top_k):
            return [ScoredChunk(chunk(i), 1.0 / (n + 1)) for n, i in enumerate(self.order)][:top_k]

    lists = [(Fixed([1, 2, 3]), 1.0), (Fixed([3, 2, 4]), 1.0)]
    fused = HybridRetriever(lists, rrf_k=1).retrieve("q", 4)
    # 2 is second in both lists: 1/3 + 1/3 beats 1 (1/2) and 3 (1/2 + 1/4 = 0.75)
    assert [h.chunk.id for h in fused] == [3, 2, 1, 4]
    assert [round(h.score, 4) for h in fused] == [0.75, 0.6667, 0.5, 0.25]
    weighted = HybridRetriever([(Fixed([1]), 3.0), (Fixed([2]), 1.0)], rrf_k=1).retrieve("q", 2)
    assert [h.chunk.id for h in weighted] == [1, 2]


def test_hash_embedder_is_deterministic():
    a, b = HashEmbedder(16), HashEmbedder(16)
    assert (a.embed_query("same words") == b.embed_query("same words")).all()
