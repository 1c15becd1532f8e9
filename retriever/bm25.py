"""Sparse retrieval: BM25 (bm25s, sparse matrices) over the chunks' context text."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lectern.optional import require
from lectern.protocols import DocumentStore
from lectern.threads import PerThread
from lectern.types import Chunk, ScoredChunk, SearchFilter

# PyStemmer: "The algorithm has internal state, so must not be called concurrently",
# so every thread stems with a Stemmer of its own.
_STEMMERS: PerThread[Any] = PerThread(
    lambda: require("Stemmer", "retrieval").Stemmer("english")
)


def stem(word: str) -> str:
    """`word`'s English (Snowball) stem, by this thread's own PyStemmer Stemmer."""
    return _STEMMERS.get().stemWord(word)


def tokenizer() -> Any:  # bm25s.tokenization.Tokenizer
    """A new bm25s Tokenizer as Lectern's BM25 tokenizes: lower-cased words of two or more
    letters or digits, English stopwords removed, the rest English-stemmed (by `stem`).

    Tokenizing grows the Tokenizer's vocabulary and caches, so one Tokenizer must not be
    shared between threads; the stemmer it calls may be.
    """
    return require("bm25s.tokenization", "retrieval").Tokenizer(stopwords="en", stemmer=stem)


@dataclass(frozen=True, slots=True)
class _Built:
    """One build's index and what reads it; never changed once built."""

    index: Any  # bm25s.BM25
    vocab: Mapping[str, int]  # stem -> term id, as indexed
    chunks: list[Chunk]
    lower: bool
    split: Callable[[str], list[str]]  # a compiled regex's findall
    stopwords: frozenset[str]
    stem: Callable[[str], str]
    rows_of: Mapping[str, np.ndarray]  # document id -> the rows of its chunks

    def terms(self, query: str) -> list[str]:
        """The query's stems that the index holds, in order (a repeated word repeats).

        The stems bm25s's Tokenizer.tokenize(update_vocab=False) gives, read without it:
        tokenizing a query with the Tokenizer writes every new word into its caches (a
        race between request threads, and a cache that grows with every word ever asked).
        Unlike it, a query with no indexed word has no terms, rather than the empty token
        that would score the chunks with no words at all.
        """
        text = query.lower() if self.lower else query
        found = (self.stem(w) for w in self.split(text) if w not in self.stopwords)
        return [s for s in found if s in self.vocab]

    def weights(self, filters: SearchFilter) -> np.ndarray:
        """1 for each chunk `filters` allows, 0 for the rest: bm25s's `weight_mask`.

        Built from the filter's documents, not by testing every chunk: a probe that keeps
        out one document costs a copy of the ones, not a Python loop over the corpus.
        """
        none = np.zeros(0, dtype=np.int64)
        if filters.only_documents is None:
            mask = np.ones(len(self.chunks), dtype=np.float32)
        else:
            mask = np.zeros(len(self.chunks), dtype=np.float32)
            for doc in filters.only_documents:
                mask[self.rows_of.get(doc, none)] = 1.0
        for doc in filters.exclude_documents:
            mask[self.rows_of.get(doc, none)] = 0.0
        return mask


class BM25Retriever:
    """BM25 over English-stemmed tokens with stopwords removed.

    bm25s indexes are immutable, so `sync()` rebuilds from the store; that takes well
    under a second for tens of thousands of chunks. `retrieve` is safe from any number of
    threads at once, also while a rebuild replaces the index: it reads one build's
    immutable state and stems with the thread's own stemmer.
    """

    def __init__(
        self, store: DocumentStore | None = None, k1: float = 1.2, b: float = 0.75
    ) -> None:
        """`store`: what `sync()` rebuilds from; without one, only `build(chunks)` fills it."""
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.store = store
        self.k1 = k1
        self.b = b
        self._built: _Built | None = None
        self._lock = threading.Lock()

    def sync(self) -> None:
        if self.store is None:
            raise ValueError("this BM25 index has no store to sync from; use build(chunks)")
        self.build(self.store.all_chunks())

    def build(self, chunks: Sequence[Chunk]) -> None:
        bm25s = require("bm25s", "retrieval")
        chunks = list(chunks)
        built = None
        if chunks:
            tok = tokenizer()
            ids = tok.tokenize([c.context_text for c in chunks], show_progress=False)
            index = bm25s.BM25(k1=self.k1, b=self.b)
            vocab = tok.get_vocab_dict()
            index.index((ids, vocab), show_progress=False)
            built = _Built(index, vocab, chunks, tok.lower, tok.splitter,
                           frozenset(tok.stopwords), tok.stemmer, _rows_of(chunks))
        with self._lock:
            self._built = built

    def _current(self) -> _Built | None:
        with self._lock:
            return self._built

    def __len__(self) -> int:
        built = self._current()
        return 0 if built is None else len(built.chunks)

    def terms(self, query: str) -> list[str]:
        """The query's terms as `retrieve` scores them: its indexed stems, in order."""
        built = self._current()
        return [] if built is None else built.terms(query)

    def retrieve(
        self, query: str, top_k: int, filters: SearchFilter | None = None
    ) -> list[ScoredChunk]:
        built = self._current()
        if built is None or top_k < 1:
            return []
        terms = built.terms(query)
        if not terms:
            return []
        # A kept-out chunk scores 0 before the top k are taken, and only chunks scoring
        # above 0 are returned: the k come from the allowed chunks.
        mask = built.weights(filters) if filters is not None and filters.restricts else None
        scores = built.index.get_scores(terms, weight_mask=mask)
        k = min(top_k, len(built.chunks))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [ScoredChunk(built.chunks[i], float(scores[i])) for i in top if scores[i] > 0]


def _rows_of(chunks: Sequence[Chunk]) -> dict[str, np.ndarray]:
    rows: dict[str, list[int]] = {}
    for row, chunk in enumerate(chunks):
        rows.setdefault(chunk.document_id, []).append(row)
    return {doc: np.array(r, dtype=np.int64) for doc, r in rows.items()}
