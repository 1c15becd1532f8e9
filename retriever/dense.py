"""Dense retrieval: embed the query, search FAISS, fetch the chunks from the store."""

from __future__ import annotations

import numpy as np

from lectern.protocols import DocumentStore, Embedder
from lectern.types import ScoredChunk, SearchFilter
from retriever.faiss_index import FaissIndex


class DenseRetriever:
    def __init__(self, embedder: Embedder, index: FaissIndex, store: DocumentStore) -> None:
        self.embedder = embedder
        self.index = index
        self.store = store

    def retrieve(
        self, query: str, top_k: int, filters: SearchFilter | None = None
    ) -> list[ScoredChunk]:
        if top_k < 1 or not len(self.index):
            return []
        exclude, only = self._chunk_ids(filters)
        ids, scores = self.index.search(self.embedder.embed_query(query), top_k, exclude, only)
        score_of = dict(zip(ids.tolist(), scores.tolist(), strict=True))
        chunks = self.store.get_chunks(ids.tolist())
        if filters is not None:
            # The index searched by the ids the store gave a moment before; a document
            # re-ingested in between has new chunk ids, so its chunks are checked again.
            chunks = [c for c in chunks if filters.allows(c.document_id)]
        return [ScoredChunk(c, score_of[c.id]) for c in chunks]

    def _chunk_ids(
        self, filters: SearchFilter | None
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(chunk ids to keep out, the only chunk ids allowed or None) for the index."""
        if filters is None or not filters.restricts:
            return None, None
        exclude = (
            self.store.chunk_ids_of(filters.exclude_documents)
            if filters.exclude_documents
            else None
        )
        only = (
            None
            if filters.only_documents is None
            else self.store.chunk_ids_of(filters.only_documents)
        )
        return exclude, only
