"""Hybrid retrieval: weighted reciprocal-rank fusion of several retrievers.

RRF needs no score calibration between BM25 and cosine similarity: a chunk earns
w / (k + rank) from every list it appears in (Cormack et al., 2009).
"""

from __future__ import annotations

from collections.abc import Sequence

from lectern.protocols import Retriever
from lectern.types import Chunk, ScoredChunk, SearchFilter


class HybridRetriever:
    def __init__(
        self,
        retrievers: Sequence[tuple[Retriever, float]],
        rrf_k: int = 60,
        candidates: int = 50,
    ) -> None:
        if not retrievers:
            raise ValueError("HybridRetriever needs at least one retriever")
        if any(w < 0 for _, w in retrievers) or not any(w > 0 for _, w in retrievers):
            weights = [w for _, w in retrievers]
            raise ValueError(f"weights must be >= 0 with one > 0, got {weights}")
        if rrf_k < 1 or candidates < 1:
            raise ValueError(f"rrf_k and candidates must be positive, got {rrf_k}, {candidates}")
        self.retrievers = [(r, w) for r, w in retrievers if w > 0]
        self.rrf_k = rrf_k
        self.candidates = candidates

    def retrieve(
        self, query: str, top_k: int, filters: SearchFilter | None = None
    ) -> list[ScoredChunk]:
        if top_k < 1:
            return []
        fused: dict[int, float] = {}
        chunks: dict[int, Chunk] = {}
        depth = max(self.candidates, top_k)
        for retriever, weight in self.retrievers:
            # Each list is filtered before its ranks are counted, so a kept-out chunk
            # neither appears nor pushes an allowed one down a rank.
            for rank, hit in enumerate(retriever.retrieve(query, depth, filters), start=1):
                fused[hit.chunk.id] = fused.get(hit.chunk.id, 0.0) + weight / (self.rrf_k + rank)
                chunks[hit.chunk.id] = hit.chunk
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
        return [ScoredChunk(chunks[cid], score) for cid, score in best]
