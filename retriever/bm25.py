"""Sparse retrieval: BM25 (bm25s, sparse matrices) over the chunks' context text."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from lectern.optional import require
from lectern.protocols import DocumentStore
from lectern.types import Chunk, ScoredChunk


class BM25Retriever:
    """BM25 over English-stemmed tokens with stopwords removed.

    bm25s indexes are immutable, so `sync()` rebuilds from the store; that takes well
    under a second for tens of thousands of chunks.
    """

    def __init__(self, store: DocumentStore, k1: float = 1.2, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.store = store
        self.k1 = k1
        self.b = b
        self._index = None
        self._tok = None
        self._vocab: dict[str, int] = {}
        self._chunks: list[Chunk] = []
        self._lock = threading.Lock()

    def _tokenizer(self):  # noqa: ANN202 - bm25s.tokenization.Tokenizer
        stemmer = require("Stemmer", "retrieval").Stemmer("english")
        tokenization = require("bm25s.tokenization", "retrieval")
        return tokenization.Tokenizer(stopwords="en", stemmer=stemmer.stemWord)

    def sync(self) -> None:
        self.build(self.store.all_chunks())

    def build(self, chunks: Sequence[Chunk]) -> None:
        bm25s = require("bm25s", "retrieval")
        chunks = list(chunks)
        index, tokenizer, vocab = None, None, {}
        if chunks:
            tokenizer = self._tokenizer()
            ids = tokenizer.tokenize([c.context_text for c in chunks], show_progress=False)
            index = bm25s.BM25(k1=self.k1, b=self.b)
            vocab = tokenizer.get_vocab_dict()
            index.index((ids, vocab), show_progress=False)
        with self._lock:
            self._index, self._tok, self._vocab, self._chunks = index, tokenizer, vocab, chunks

    def __len__(self) -> int:
        return len(self._chunks)

    def retrieve(self, query: str, top_k: int) -> list[ScoredChunk]:
        with self._lock:
            index, tok, vocab, chunks = self._index, self._tok, self._vocab, self._chunks
        if index is None or top_k < 1:
            return []
        terms = [
            t
            for t in tok.tokenize(
                [query], update_vocab=False, return_as="string", show_progress=False
            )[0]
            if t in vocab
        ]
        if not terms:
            return []
        scores = index.get_scores(terms)
        k = min(top_k, len(chunks))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [ScoredChunk(chunks[i], float(scores[i])) for i in top if scores[i] > 0]
