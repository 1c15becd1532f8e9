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
from lectern.settings import RetrievalSettings, Settings
from lectern.timing import elapsed_ms
from lectern.types import ScoredChunk, SearchFilter
from retriever import calibration, reindex
from retriever.bm25 import BM25Retriever
from retriever.calibration import RetrievalCalibration
from retriever.dense import DenseRetriever
from retriever.faiss_index import FaissIndex
from retriever.hybrid import HybridRetriever

Mode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "bm25")


def rerank_top(
    reranker: Reranker,
    query: str,
    hits: Sequence[ScoredChunk],
    candidates: int,
    top_k: int,
    prior_weight: float | None = None,
) -> list[ScoredChunk]:
    """The first `candidates` hits in the reranker's order, the rest after them as they were.

    Beyond the candidates the first stage's order stands, so Recall@k past them stays
    comparable with the ranking that was not reranked.
    """
    best = reranker.rerank(
        query, hits[:candidates], min(top_k, candidates), prior_weight=prior_weight
    )
    return [*best, *hits[candidates:]][:top_k]


@dataclass(frozen=True, slots=True)
class Counts:
    documents: int
    chunks: int
    vectors: int
    indexed: int
    bm25: int


@dataclass(frozen=True, slots=True)
class _Serving:
    """What a search reads, swapped as one object so no search sees half a switch."""

    embedder: Embedder
    index: FaissIndex
    retrievers: dict[Mode, Retriever]
    # The retrieval settings searches follow: the operator's, with the corpus's
    # calibration for what the operator left unset.
    retrieval: RetrievalSettings
    calibration: RetrievalCalibration | None


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
        self._embedder = embedder  # until warm_up publishes the serving state
        self._reranker = reranker
        self._use_gpu = use_gpu
        self._bm25: BM25Retriever | None = None
        self._serving: _Serving | None = None
        self._write_lock = threading.Lock()
        self._warm_lock = threading.Lock()

    def _state(self) -> _Serving:
        serving = self._serving
        if serving is None:
            raise NotReadyError("corpus used before warm_up()")
        return serving

    @property
    def embedder(self) -> Embedder:
        serving = self._serving
        return serving.embedder if serving is not None else self._embedder

    @property
    def reranker(self) -> Reranker | None:
        return self._reranker

    @property
    def fusion(self) -> dict[str, float]:
        """The hybrid's RRF settings (rrf_k, bm25_weight, dense_weight) as served."""
        served = self._state().retrieval
        return {name: getattr(served, name) for name in calibration.FUSION}

    @property
    def retrieval(self) -> RetrievalSettings:
        """The retrieval settings as served: the operator's, then the calibration's."""
        return self._state().retrieval

    @property
    def calibration(self) -> RetrievalCalibration | None:
        """The corpus's calibration being served, if any."""
        return self._state().calibration

    def use_calibration(self, record: RetrievalCalibration) -> None:
        """Serve `record`'s choice from the next search on (no restart).

        A record fitted with another encoder is refused and the current settings stay.
        """
        with self._write_lock:
            serving = self._state()
            if record.encoder != serving.embedder.fingerprint:
                raise ValueError(
                    f"calibration fitted with encoder {record.encoder}, not the one serving "
                    f"({serving.embedder.fingerprint})"
                )
            if record.reranker != calibration.reranker_id(self._reranker):
                raise ValueError(f"calibration fitted with reranker {record.reranker}, not "
                                 f"the one serving ({calibration.reranker_id(self._reranker)})")
            self._serving = self._serving_for(serving.embedder, serving.index, record)

    @property
    def ready(self) -> bool:
        return self._serving is not None

    @property
    def index(self) -> FaissIndex:
        return self._state().index

    @property
    def bm25(self) -> BM25Retriever:
        if self._bm25 is None:
            raise NotReadyError("corpus used before warm_up()")
        return self._bm25

    def retriever(self, mode: Mode) -> Retriever:
        """The first-stage retriever of a search mode (no reranking)."""
        self.warm_up()
        found = self._state().retrievers.get(mode)
        if found is None:
            raise ValueError(f"unknown search mode {mode!r}; use {', '.join(MODES)}")
        return found

    def warm_up(self) -> None:
        if self._serving is not None:
            return
        with self._warm_lock:
            if self._serving is None:
                self._load()

    def _load(self) -> None:
        embedder = self._embedder
        embedder.warm_up()
        index = FaissIndex.from_settings(
            embedder.dimension, embedder.fingerprint, self.settings.retrieval,
            use_gpu=self._use_gpu,
        )
        index.load(self._index_dir(embedder))
        self._bm25 = BM25Retriever(self.store)
        warm = getattr(self._reranker, "warm_up", None)
        if warm is not None:
            warm()
        serving = self._serving_for(embedder, index)
        with self._write_lock:
            self._refresh(serving)
        self._serving = serving  # published last: `ready` means searchable

    def _serving_for(
        self, embedder: Embedder, index: FaissIndex, record: RetrievalCalibration | None = None
    ) -> _Serving:
        bm25 = self.bm25
        dense = DenseRetriever(embedder, index, self.store)
        record = record or calibration.load(
            self.settings, embedder.fingerprint, calibration.reranker_id(self._reranker)
        )
        r = calibration.applied(self.settings.retrieval, record.chosen if record else None)
        hybrid = HybridRetriever(
            [(bm25, r.bm25_weight), (dense, r.dense_weight)],
            rrf_k=r.rrf_k,
            candidates=r.candidates,
        )
        return _Serving(
            embedder,
            index,
            {"dense": dense, "bm25": bm25, "hybrid": hybrid},
            r,
            record,
        )

    def refresh(self) -> None:
        """Bring the indexes in line with the store (after writes, or a crash)."""
        with self._write_lock:
            self._refresh(self._state())

    def _refresh(self, serving: _Serving) -> None:
        """refresh() for `serving`, with the write lock held."""
        embedder, index = serving.embedder, serving.index
        missing = self.store.ids_without_vectors(embedder.fingerprint)
        # Chunks written by another encoder, or embedded from another passage text (see
        # embedder.PASSAGE_FORMAT): embed them for this one.
        if len(missing):
            texts = [c.model_text for c in self.store.get_chunks(missing.tolist())]
            self.store.add_vectors(missing, embedder.embed_passages(texts), embedder.fingerprint)
        reindex.embed_missing_sentences(self.store, embedder)
        added, removed = index.sync(self.store)
        folder = self._index_dir(embedder)
        if added or removed or not FaissIndex.saved(folder):
            index.save(folder)
        self.bm25.sync()

    def _index_dir(self, embedder: Embedder) -> Path:
        return reindex.index_dir(self.settings, embedder.fingerprint)

    @property
    def index_dir(self) -> Path:
        """Where the serving encoder's index is saved."""
        return self._index_dir(self.embedder)

    def delete(self, document_id: str) -> int:
        """Remove a document's chunks and vectors from the store and the indexes."""
        self.warm_up()
        with self._write_lock:
            removed = self.store.delete_document(document_id)
            self._refresh(self._state())
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
        restart serves `ref`, the new encoder's model reference) and the serving state is
        replaced in one assignment. Any failure before that leaves the old encoder
        serving. The old encoder's vectors stay in the store, so switching back needs no
        re-embedding.
        """
        self.warm_up()
        embedder.warm_up()
        batch = 8 * self.settings.ingest.embed_batch_size
        # The bulk of the work, without the write lock: ingests go on meanwhile.
        done = reindex.embed_missing(self.store, embedder, batch, on_progress)
        reindex.embed_missing_sentences(self.store, embedder, batch)
        with self._write_lock:
            done += reindex.embed_missing(self.store, embedder, batch)  # written meanwhile
            reindex.embed_missing_sentences(self.store, embedder, batch)
            folder = reindex.versioned_dir(self.settings, embedder.fingerprint)
            index = reindex.build_index(self.store, embedder, self._state().index, folder)
            active = reindex.record(self.settings, embedder, folder, ref)
            reindex.write_active(self.settings, active)  # the commit point
            self._serving = self._serving_for(embedder, index)
        return done

    def search(
        self,
        query: str,
        top_k: int | None = None,
        mode: Mode = "hybrid",
        rerank: bool | None = None,
        *,
        filters: SearchFilter | None = None,
    ) -> list[ScoredChunk]:
        """The best chunks for `query`, reranked when a reranker is loaded.

        rerank=None follows settings.retrieval.rerank. The reranker reorders the top
        `rerank_candidates`; beyond them (top_k larger) the fused order follows.
        filters: documents kept out of the search (see Retriever.retrieve).
        """
        return self.search_timed(query, top_k, mode, rerank, filters=filters)[0]

    def search_timed(
        self,
        query: str,
        top_k: int | None,
        mode: Mode,
        rerank: bool | None,
        candidates: int | None = None,
        *,
        filters: SearchFilter | None = None,
    ) -> tuple[list[ScoredChunk], float]:
        """The hits and the milliseconds spent reranking them.

        candidates: how many fused hits the reranker scores (default: the retrieval setting).
        """
        retriever = self.retriever(mode)
        served = self._state().retrieval
        k = top_k or served.top_k
        use = served.rerank if rerank is None else rerank
        if not use or self._reranker is None:
            return retriever.retrieve(query, k, filters), 0.0
        n = candidates or served.rerank_candidates
        hits = retriever.retrieve(query, max(k, n), filters)
        start = time.perf_counter()
        ranked = rerank_top(self._reranker, query, hits, n, k, served.rerank_prior_weight)
        return ranked, elapsed_ms(start)

    def counts(self) -> Counts:
        return Counts(
            documents=len(self.store.list_documents()),
            chunks=self.store.chunk_count(),
            vectors=self.store.vector_count(),
            indexed=len(self._serving.index) if self._serving is not None else 0,
            bm25=len(self._bm25) if self._bm25 is not None else 0,
        )
