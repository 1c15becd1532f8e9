"""The Retriever contract's document filter, held against every implementation.

BM25, dense retrieval on each FAISS index kind, the hybrid and the fixed-list retriever
the fusion fit uses all search one corpus of 20 documents x 32 chunks (enough to train
IVF and 4-bit IVF-PQ), embedded by the hash embedder. The HNSW's efSearch and the IVF's
nprobe are set low, so a filter keeping out most of what they visit leaves them short
and their exhaustive fallback is what fills top_k. Corpus.search is tested at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest

from ingest.sqlite_store import SQLiteDocumentStore
from lectern.protocols import DocumentStore, Retriever
from lectern.settings import Settings
from lectern.types import Chunk, DocumentInfo, SearchFilter
from retriever.bm25 import BM25Retriever
from retriever.calibration_fit import FixedList
from retriever.corpus import MODES, Corpus
from retriever.dense import DenseRetriever
from retriever.faiss_index import FaissIndex
from retriever.hybrid import HybridRetriever
from tests.fakes import HashEmbedder, OverlapReranker

DOCS = [f"doc{d:02d}" for d in range(20)]
PER_DOC = 32
VOCAB = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "sigma",
    "omega", "tuition", "fee", "housing", "library", "loan", "exam", "retake", "course",
    "credit", "semester", "campus", "desk", "grant",
]
QUERY = "fenmoor alpha gamma tuition library"
EMBEDDER = HashEmbedder(32, "hash-32")


def fill(store: DocumentStore, embedder: HashEmbedder = EMBEDDER) -> None:
    """DOCS x PER_DOC chunks of "fenmoor" and six words each: every chunk matches QUERY."""
    rng = np.random.default_rng(7)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    for doc in DOCS:
        info = DocumentInfo(doc, f"/docs/{doc}.md", doc.title(), f"hash-{doc}",
                            "text/markdown", 100, PER_DOC, when)
        chunks = [
            Chunk(-1, doc, "fenmoor " + " ".join(rng.choice(VOCAB, 6)), info.source,
                  info.title, None, None, i)
            for i in range(PER_DOC)
        ]
        vectors = embedder.embed_passages([c.model_text for c in chunks])
        store.upsert_document(info, chunks, vectors, embedder.fingerprint)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    made = SQLiteDocumentStore(tmp_path_factory.mktemp("contract") / "store.sqlite3")
    fill(made)
    yield made
    made.close()


def bm25(store: DocumentStore) -> Retriever:
    r = BM25Retriever(store)
    r.sync()
    return r


def dense(kind: str, **knobs: int) -> Callable[[DocumentStore], Retriever]:
    def make(store: DocumentStore) -> Retriever:
        index = FaissIndex(EMBEDDER.dimension, EMBEDDER.fingerprint, kind, **knobs)
        index.sync(store)
        assert index.active_kind == kind, "the corpus is too small for this kind"
        return DenseRetriever(EMBEDDER, index, store)

    return make


def hybrid(store: DocumentStore) -> Retriever:
    return HybridRetriever([(bm25(store), 1.0), (dense("flat")(store), 1.0)], candidates=8)


def fixed(store: DocumentStore) -> Retriever:
    return FixedList(bm25(store).retrieve(QUERY, len(DOCS) * PER_DOC))


IMPLEMENTATIONS: dict[str, Callable[[DocumentStore], Retriever]] = {
    "bm25": bm25,
    "dense-flat": dense("flat"),
    "dense-hnsw": dense("hnsw", hnsw_ef_search=16),
    "dense-ivf": dense("ivf", ivf_nprobe=1),
    "dense-ivfpq": dense("ivfpq", ivf_nprobe=1, pq_nbits=4),
    "hybrid": hybrid,
    "fixed-list": fixed,
}
EXACT = {"bm25", "dense-flat", "fixed-list"}  # their filtered ranking is known exactly


@pytest.fixture(scope="module", params=list(IMPLEMENTATIONS))
def named(request, store) -> tuple[str, Retriever]:
    return request.param, IMPLEMENTATIONS[request.param](store)


@pytest.fixture
def retriever(named) -> Retriever:
    return named[1]


def docs_of(hits) -> list[str]:
    return [h.chunk.document_id for h in hits]


def test_is_a_retriever(retriever):
    assert isinstance(retriever, Retriever)


@pytest.mark.parametrize("k", [1, 10, 100])
def test_an_excluded_document_never_appears_and_top_k_is_still_filled(retriever, k):
    top_doc = docs_of(retriever.retrieve(QUERY, 1))[0]  # the one the filter must displace
    hits = retriever.retrieve(QUERY, k, SearchFilter(exclude_documents=frozenset({top_doc})))
    assert top_doc not in docs_of(hits)
    assert len(hits) == k
    assert len({h.chunk.id for h in hits}) == k
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("k", [10, 32, 50])
def test_top_k_is_filled_from_the_allowed_chunks_when_most_are_kept_out(retriever, k):
    keep = "doc13"
    hits = retriever.retrieve(QUERY, k, SearchFilter(frozenset(DOCS) - {keep}))
    assert set(docs_of(hits)) == {keep}
    assert len(hits) == min(k, PER_DOC)


def test_only_documents_is_an_allow_list_and_exclusion_still_applies(retriever):
    hits = retriever.retrieve(QUERY, 40, SearchFilter(only_documents=frozenset({"doc03", "doc11"})))
    assert set(docs_of(hits)) == {"doc03", "doc11"} and len(hits) == 40
    both = SearchFilter(frozenset({"doc03"}), frozenset({"doc03", "doc11"}))
    hits = retriever.retrieve(QUERY, 40, both)
    assert set(docs_of(hits)) == {"doc11"} and len(hits) == PER_DOC


def test_a_filter_that_keeps_nothing_out_changes_nothing(retriever):
    plain = retriever.retrieve(QUERY, 12)
    assert len(plain) == 12
    for same in (
        None,
        SearchFilter(),
        SearchFilter(exclude_documents=frozenset({"not-a-document"})),
        SearchFilter(only_documents=frozenset(DOCS)),
    ):
        assert retriever.retrieve(QUERY, 12, same) == plain


@pytest.mark.parametrize(
    "everything",
    [
        SearchFilter(exclude_documents=frozenset(DOCS)),
        SearchFilter(only_documents=frozenset()),
        SearchFilter(only_documents=frozenset({"not-a-document"})),
        SearchFilter(frozenset({"doc05"}), frozenset({"doc05"})),
    ],
)
def test_keeping_every_document_out_returns_nothing(retriever, everything):
    assert retriever.retrieve(QUERY, 10, everything) == []


@pytest.mark.parametrize("name", sorted(EXACT))
def test_an_exact_retriever_returns_the_allowed_head_of_its_full_ranking(store, name):
    retriever = IMPLEMENTATIONS[name](store)
    full = retriever.retrieve(QUERY, len(DOCS) * PER_DOC)
    assert len(full) == len(DOCS) * PER_DOC
    keep_out = SearchFilter(frozenset(DOCS[::2]))
    allowed = [h for h in full if keep_out.allows(h.chunk.document_id)]
    hits = retriever.retrieve(QUERY, 15, keep_out)
    # Scores, not ids: chunks with equal scores may come in either order.
    assert [h.score for h in hits] == pytest.approx([h.score for h in allowed[:15]])
    assert {h.chunk.id for h in hits} <= {h.chunk.id for h in allowed}


def test_dense_flat_unfiltered_is_the_brute_force_ranking(store):
    retriever = dense("flat")(store)
    ids = store.chunk_ids()
    scores = store.vectors(ids, EMBEDDER.fingerprint) @ EMBEDDER.embed_query(QUERY)
    hits = retriever.retrieve(QUERY, 10)
    assert [h.score for h in hits] == pytest.approx(np.sort(scores)[::-1][:10].tolist(), abs=1e-5)


# -- Corpus.search passes the filter down --------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    made = SQLiteDocumentStore(folder / "store.sqlite3")
    fill(made)
    found = Corpus(Settings(data_dir=folder, _env_file=None), made, EMBEDDER, OverlapReranker())
    found.warm_up()
    yield found
    made.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rerank", [False, True])
def test_corpus_search_keeps_the_filtered_documents_out_in_every_mode(corpus, mode, rerank):
    top_doc = docs_of(corpus.search(QUERY, 1, mode, rerank))[0]
    keep_out = SearchFilter(frozenset({top_doc}))
    hits = corpus.search(QUERY, 25, mode, rerank, filters=keep_out)
    assert len(hits) == 25 and top_doc not in docs_of(hits)
    timed, _ = corpus.search_timed(QUERY, 25, mode, rerank, filters=keep_out)
    assert timed == hits
    assert corpus.search(QUERY, 5, mode, rerank, filters=SearchFilter(frozenset(DOCS))) == []
