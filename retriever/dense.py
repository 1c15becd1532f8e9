"""Dense retrieval: embed the query, search FAISS, fetch the chunks from the store."""

from __future__ import annotations

from lectern.protocols import DocumentStore, Embedder
from lectern.types import ScoredChunk
from retriever.faiss_index import FaissIndex


class DenseRetriever:
    def __init__(self, embedder: Embedder, index: FaissIndex, store: DocumentStore) -> None:
        self.embedder = embedder
        self.index = index
        self.store = store

    def retrieve(self, query: str, top_k: int) -> list[ScoredChunk]:
        if top_k < 1 or not len(self.index):
            return []
        ids, scores = self.index.search(self.embedder.embed_query(query), top_k)
        score_of = dict(zip(ids.tolist(), scores.tolist(), strict=True))
        return [ScoredChunk(c, score_of[c.id]) for c in self.store.get_chunks(ids.tolist())]
