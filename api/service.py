"""The composition root: builds every component from Settings and keeps them consistent."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ingest.pipeline import FileResult, Ingestor, IngestReport, document_id
from ingest.sqlite_store import SQLiteDocumentStore
from lectern import device
from lectern.errors import DocumentNotFoundError, NotReadyError
from lectern.protocols import Embedder, Retriever
from lectern.settings import Settings
from lectern.types import DocumentInfo, ScoredChunk
from model import prepare
from retriever.bm25 import BM25Retriever
from retriever.dense import DenseRetriever
from retriever.embedder import SentenceTransformerEmbedder
from retriever.faiss_index import FaissIndex
from retriever.hybrid import HybridRetriever

Mode = Literal["hybrid", "dense", "bm25"]


@dataclass(frozen=True, slots=True)
class Counts:
    documents: int
    chunks: int
    vectors: int
    indexed: int
    bm25: int


class Lectern:
    """Store, embedder, indexes and retrievers for one data directory.

    Cheap to construct; `warm_up()` loads the encoder and the indexes (idempotent).
    """

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.store = SQLiteDocumentStore(settings.store_path)
        self._embedder = embedder
        self._index: FaissIndex | None = None
        self._bm25: BM25Retriever | None = None
        self._retrievers: dict[Mode, Retriever] = {}
        self._write_lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            raise NotReadyError("Lectern used before warm_up()")
        return self._embedder

    def warm_up(self) -> None:
        if self._retrievers:
            return
        plan = device.plan(device.probe(), self.settings.models.device, self.settings.models.dtype)
        if self._embedder is None:
            enc = prepare.encoder(self.settings)
            self._embedder = SentenceTransformerEmbedder(
                enc.folder,
                enc.fingerprint,
                device=plan.device,
                batch_size=self.settings.ingest.embed_batch_size,
            )
        self.embedder.warm_up()
        r = self.settings.retrieval
        self._index = FaissIndex(
            self.embedder.dimension,
            self.embedder.fingerprint,
            r.index_type,
            hnsw_m=r.hnsw_m,
            hnsw_ef_search=r.hnsw_ef_search,
            ivf_nlist=r.ivf_nlist,
            ivf_nprobe=r.ivf_nprobe,
            use_gpu=plan.faiss_gpu,
        )
        self._index.load(self.settings.index_dir)
        self._bm25 = BM25Retriever(self.store)
        dense = DenseRetriever(self.embedder, self._index, self.store)
        self._retrievers = {
            "dense": dense,
            "bm25": self._bm25,
            "hybrid": HybridRetriever(
                [(self._bm25, r.bm25_weight), (dense, r.dense_weight)],
                rrf_k=r.rrf_k,
                candidates=r.candidates,
            ),
        }
        self.refresh()

    def refresh(self) -> None:
        """Bring the indexes in line with the store (after writes, or a crash)."""
        if self._index is None or self._bm25 is None:
            raise NotReadyError("Lectern used before warm_up()")
        with self._write_lock:
            missing = self.store.ids_without_vectors(self.embedder.fingerprint)
            if len(missing):  # chunks written by another encoder: embed them for this one
                texts = [c.context_text for c in self.store.get_chunks(missing.tolist())]
                self.store.add_vectors(
                    missing, self.embedder.embed_passages(texts), self.embedder.fingerprint
                )
            added, removed = self._index.sync(self.store)
            if added or removed or not (self.settings.index_dir / "vectors.faiss").exists():
                self._index.save(self.settings.index_dir)
            self._bm25.sync()

    def ingestor(self) -> Ingestor:
        return Ingestor(self.store, self.embedder, self.settings.ingest)

    def ingest(
        self, paths: Iterable[Path], on_file: Callable[[FileResult], None] | None = None
    ) -> IngestReport:
        self.warm_up()
        report = self.ingestor().ingest_paths(paths, on_file)
        if report.changed:
            self.refresh()
        return report

    def resolve_document(self, key: str) -> DocumentInfo:
        """A document by id, by source as stored, or by a path that resolves to its source."""
        for candidate in (key, document_id(key), document_id(str(Path(key).resolve()))):
            info = self.store.get_document(candidate)
            if info is not None:
                return info
        raise DocumentNotFoundError(key)

    def delete(self, key: str) -> DocumentInfo:
        self.warm_up()
        info = self.resolve_document(key)
        self.store.delete_document(info.id)
        self.refresh()
        return info

    def documents(self) -> list[DocumentInfo]:
        return self.store.list_documents()

    def search(
        self, query: str, top_k: int | None = None, mode: Mode = "hybrid"
    ) -> list[ScoredChunk]:
        self.warm_up()
        if mode not in self._retrievers:
            raise ValueError(f"unknown search mode {mode!r}; use hybrid, dense or bm25")
        return self._retrievers[mode].retrieve(query, top_k or self.settings.retrieval.top_k)

    def counts(self) -> Counts:
        return Counts(
            documents=len(self.store.list_documents()),
            chunks=self.store.chunk_count(),
            vectors=self.store.vector_count(),
            indexed=len(self._index) if self._index is not None else 0,
            bm25=len(self._bm25) if self._bm25 is not None else 0,
        )
