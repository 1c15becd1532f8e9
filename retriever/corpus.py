"""The searchable corpus: a document store and the indexes derived from it, kept consistent.

The store is the source of truth; the FAISS and BM25 indexes are rebuilt from it as
needed (`refresh`), so a crash between a store commit and an index save is repaired on
the next start. Searches may run on many threads at once; writes (refresh, delete, an
encoder switch) take one lock, and a switch replaces the serving objects in one step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lectern.errors import NotReadyError
from lectern.protocols import DocumentStore, Embedder, Reranker, Retriever
from lectern.settings import Settings
from lectern.types import ScoredChunk
from retriever import fusion, reindex
from retriever.bm25 import BM25Retriever
from retriever.dense import DenseRetriever
from retriever.faiss_index import FaissIndex
from retriever.hybrid import HybridRetriever

Mode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "bm25")


def rerank_top(
    reranker: Reranker, query: str, hits: Sequence[ScoredChunk], candidates: int, top_k: int
) -> list[ScoredChunk]:
    """The first `candidates` hits in the reranker's order, the rest after them as they were.

    Beyond the candidates the first stage's order stands, so Recall@k past them stays
    comparable with the ranking that was not reranked.
    """
    best = reranker.rerank(query, hits[:candidates], min(top_k, candidates))
    return [*best, *hits[candidates:]][:top_k]


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


@dataclass(frozen=True, slots=True)
class Counts:
    documents: int
    chunks: int
    vectors: int
    indexed: int
    bm25: int


class Corpus:
    """Store, encoder, indexes, retrievers and (optionally) a reranker for one data dir.

    Cheap to construct; `warm_up()` loads the encoder and the indexes (idempotent).
    """

    def __init__(
        self,
        settings: Settings,
        store: DocumentStore,
        embedder: Embedder,
        reranker: Reranker | None = None,
        use_gpu: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self._embedder = embedder
        self._reranker = reranker
        self._use_gpu = use_gpu
        self._index: FaissIndex | None = None
        self._bm25: BM25Retriever | None = None
        self._retrievers: dict[Mode, Retriever] = {}
        self.fusion: dict[str, float] = {}  # the hybrid's RRF settings, once warmed up
        self._write_lock = threading.Lock()
        self._warm_lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    @property
    def reranker(self) -> Reranker | None:
        return self._reranker

    @property
    def ready(self) -> bool:
        return bool(self._retrievers)

    @property
    def index(self) -> FaissIndex:
        if self._index is None:
            raise NotReadyError("corpus used before warm_up()")
        return self._index

    @property
    def bm25(self) -> BM25Retriever:
        if self._bm25 is None:
            raise NotReadyError("corpus used before warm_up()")
        return self._bm25

    def retriever(self, mode: Mode) -> Retriever:
        """The first-stage retriever of a search mode (no reranking)."""
        self.warm_up()
        found = self._retrievers.get(mode)
        if found is None:
            raise ValueError(f"unknown search mode {mode!r}; use {', '.join(MODES)}")
        return found

    def warm_up(self) -> None:
        if self._retrievers:
            return
        with self._warm_lock:
            if not self._retrievers:
                self._load()

    def _load(self) -> None:
        self._embedder.warm_up()
        self._index = FaissIndex.from_settings(
            self._embedder.dimension, self._embedder.fingerprint, self.settings.retrieval,
            use_gpu=self._use_gpu,
        )
        self._index.load(self._index_dir())
        self._bm25 = BM25Retriever(self.store)
        warm = getattr(self._reranker, "warm_up", None)
        if warm is not None:
            warm()
        retrievers = self._retrievers_for(DenseRetriever(self._embedder, self._index, self.store))
        self.refresh()
        self._retrievers = retrievers  # published last: `ready` means searchable

    def _retrievers_for(self, dense: DenseRetriever) -> dict[Mode, Retriever]:
        if self._bm25 is None:
            raise NotReadyError("corpus used before warm_up()")
        # A tuned encoder carries the fusion fitted for it; a fake embedder has no folder.
        folder = getattr(dense.embedder, "folder", None)
        r = fusion.for_encoder(self.settings.retrieval, folder)
        self.fusion = {name: getattr(r, name) for name in fusion.FIELDS}
        return {
            "dense": dense,
            "bm25": self._bm25,
            "hybrid": HybridRetriever(
                [(self._bm25, r.bm25_weight), (dense, r.dense_weight)],
                rrf_k=r.rrf_k,
                candidates=r.candidates,
            ),
        }

    def refresh(self) -> None:
        """Bring the indexes in line with the store (after writes, or a crash)."""
        if self._index is None or self._bm25 is None:
            raise NotReadyError("corpus used before warm_up()")
        with self._write_lock:
            missing = self.store.ids_without_vectors(self._embedder.fingerprint)
            if len(missing):  # chunks written by another encoder: embed them for this one
                texts = [c.context_text for c in self.store.get_chunks(missing.tolist())]
                self.store.add_vectors(
                    missing, self._embedder.embed_passages(texts), self._embedder.fingerprint
                )
            added, removed = self._index.sync(self.store)
            folder = self._index_dir()
            if added or removed or not FaissIndex.saved(folder):
                self._index.save(folder)
            self._bm25.sync()

    def _index_dir(self) -> Path:
        return reindex.index_dir(self.settings, self._embedder.fingerprint)

    def delete(self, document_id: str) -> int:
        """Remove a document's chunks and vectors from the store and the indexes."""
        self.warm_up()
        removed = self.store.delete_document(document_id)
        self.refresh()
        return removed

    def switch_encoder(
        self,
        embedder: Embedder,
        ref: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Serve `embedder` instead of the current encoder; return the chunks embedded.

        Every chunk is embedded and a new index built and saved in its own folder while
        searches (and ingests) go on with the old one; then the switch is recorded (a
        restart serves `ref`, the new encoder's model reference) and the old objects are
        swapped out. Any failure before that leaves the old encoder serving. The old
        encoder's vectors stay in the store, so switching back needs no re-embedding.
        """
        self.warm_up()
        embedder.warm_up()
        batch = 8 * self.settings.ingest.embed_batch_size
        # The bulk of the work, without the write lock: ingests go on meanwhile.
        done = reindex.embed_missing(self.store, embedder, batch, on_progress)
        with self._write_lock:
            done += reindex.embed_missing(self.store, embedder, batch)  # written meanwhile
            folder = reindex.versioned_dir(self.settings, embedder.fingerprint)
            index = reindex.build_index(self.store, embedder, self._index, folder)
            active = reindex.record(self.settings, embedder, folder, ref)
            reindex.write_active(self.settings, active)  # the commit point
            retrievers = self._retrievers_for(DenseRetriever(embedder, index, self.store))
            self._embedder, self._index, self._retrievers = embedder, index, retrievers
        return done

    def search(
        self,
        query: str,
        top_k: int | None = None,
        mode: Mode = "hybrid",
        rerank: bool | None = None,
    ) -> list[ScoredChunk]:
        """The best chunks for `query`, reranked when a reranker is loaded.

        rerank=None follows settings.retrieval.rerank. The reranker reorders the top
        `rerank_candidates`; beyond them (top_k larger) the fused order follows.
        """
        return self.search_timed(query, top_k, mode, rerank)[0]

    def search_timed(
        self,
        query: str,
        top_k: int | None,
        mode: Mode,
        rerank: bool | None,
        candidates: int | None = None,
    ) -> tuple[list[ScoredChunk], float]:
        """The hits and the milliseconds spent reranking them.

        candidates: how many fused hits the reranker scores (default: the retrieval setting).
        """
        retriever = self.retriever(mode)
        k = top_k or self.settings.retrieval.top_k
        use = self.settings.retrieval.rerank if rerank is None else rerank
        if not use or self._reranker is None:
            return retriever.retrieve(query, k), 0.0
        n = candidates or self.settings.retrieval.rerank_candidates
        hits = retriever.retrieve(query, max(k, n))
        start = time.perf_counter()
        return rerank_top(self._reranker, query, hits, n, k), _ms(start)

    def counts(self) -> Counts:
        return Counts(
            documents=len(self.store.list_documents()),
            chunks=self.store.chunk_count(),
            vectors=self.store.vector_count(),
            indexed=len(self._index) if self._index is not None else 0,
            bm25=len(self._bm25) if self._bm25 is not None else 0,
        )
