"""The roles components play. Implementations satisfy these structurally."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np

from lectern.types import Chunk, DocumentInfo, LoggedAnswer, Rating, ScoredChunk, SearchFilter


@runtime_checkable
class Embedder(Protocol):
    """Turns text into unit-length vectors; queries and passages may be encoded apart."""

    @property
    def dimension(self) -> int: ...

    @property
    def fingerprint(self) -> str:
        """Identifies the weights; vectors from different fingerprints never mix."""
        ...

    def warm_up(self) -> None: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


@runtime_checkable
class Retriever(Protocol):
    def retrieve(
        self, query: str, top_k: int, filters: SearchFilter | None = None
    ) -> list[ScoredChunk]:
        """At most top_k chunks, best first (scores non-increasing).

        With `filters`, no returned chunk's document is one it keeps out, and the filter
        is applied before the top k are chosen: when top_k allowed chunks match, top_k
        come back (a short list filtered afterwards would return fewer). No filter, or
        one that keeps nothing out, gives the same results as none.
        """
        ...


@runtime_checkable
class Reranker(Protocol):
    def rerank(
        self,
        query: str,
        chunks: Sequence[ScoredChunk],
        top_k: int,
        *,
        prior_weight: float | None = None,
    ) -> list[ScoredChunk]:
        """The best `top_k` of `chunks` for `query`, best first.

        prior_weight: how much the incoming order counts beside the reranker's own score
        (a corpus's calibration sets it); None: the reranker's default.
        """
        ...


Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}


@runtime_checkable
class Generator(Protocol):
    """A chat model: a list of messages in, the assistant's reply out."""

    def warm_up(self) -> None: ...

    def generate(self, messages: Sequence[Message]) -> str: ...

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        """The reply as text pieces, in order; joined they equal generate()'s result."""
        ...

    def samples(self, messages: Sequence[Message], n: int) -> list[str]:
        """n replies, each drawn as generate() draws one (n equal replies when the
        sampling is greedy): the candidates best-of-n chooses among."""
        ...

    def close(self) -> None:
        """Stop any background work (a batching thread); idempotent."""
        ...


@runtime_checkable
class RewardModel(Protocol):
    def score(self, question: str, passages: Sequence[str], answer: str) -> float: ...


class DocumentStore(Protocol):
    """The source of truth for documents, chunks and their vectors.

    Indexes (FAISS, BM25) are derived from it and can always be rebuilt from it.
    """

    def upsert_document(
        self, info: DocumentInfo, chunks: Sequence[Chunk], vectors: np.ndarray, encoder: str
    ) -> list[int]:
        """Replace everything stored for info.id in one transaction; return new chunk ids."""
        ...

    def delete_document(self, document_id: str) -> int: ...

    def get_document(self, document_id: str) -> DocumentInfo | None: ...

    def find_by_hash(self, content_hash: str) -> DocumentInfo | None: ...

    def list_documents(self) -> list[DocumentInfo]: ...

    def get_chunks(self, ids: Sequence[int]) -> list[Chunk]: ...

    def all_chunks(self) -> list[Chunk]: ...

    def chunk_ids(self) -> np.ndarray: ...

    def chunk_ids_of(self, document_ids: Collection[str]) -> np.ndarray:
        """The ids of these documents' chunks, ascending; an unknown document has none."""
        ...

    def vectors(self, ids: Sequence[int], encoder: str) -> np.ndarray: ...

    def encoders(self) -> set[str]: ...

    def ids_without_vectors(self, encoder: str) -> np.ndarray:
        """Chunks that have no vector from `encoder` yet (after an encoder change)."""
        ...

    def add_vectors(self, ids: Sequence[int], vectors: np.ndarray, encoder: str) -> None: ...

    def ids_without_sentence_vectors(self, key: str) -> np.ndarray:
        """Chunks with no sentence vectors under `key` (lectern.sentences.sentence_key)."""
        ...

    def add_sentence_vectors(
        self, ids: Sequence[int], matrices: Sequence[np.ndarray], key: str
    ) -> None:
        """Keep each chunk's sentence vectors (a row per lectern.sentences.passage_sentences
        entry); a chunk deleted meanwhile is skipped."""
        ...

    def sentence_vectors(self, ids: Sequence[int], key: str) -> dict[int, np.ndarray]:
        """The sentence vectors of those of `ids` that have them under `key`."""
        ...

    def find_by_source(self, source: str) -> DocumentInfo | None: ...

    def chunk_count(self) -> int: ...

    def vector_count(self) -> int: ...


class AnswerLog(Protocol):
    """Every answer given, and the feedback on it: what the admin Questions view reads
    and what feedback is exported from. Safe to call from request threads at once."""

    def record(self, entry: LoggedAnswer) -> None:
        """Keep `entry` (its rating fields are ignored: feedback comes later)."""
        ...

    def get(self, answer_id: str) -> LoggedAnswer | None: ...

    def rate(self, answer_id: str, rating: Rating, comment: str | None) -> LoggedAnswer:
        """Attach feedback (replacing earlier feedback on it); AnswerNotFoundError when no
        answer has this id."""
        ...

    def recent(
        self, limit: int, since: datetime | None = None, *, missed_only: bool = False
    ) -> list[LoggedAnswer]:
        """The newest answers first; missed_only: those abstained on or rated down."""
        ...

    def purge(self, older_than: datetime) -> int:
        """Delete answers (and their feedback) created before `older_than`; how many."""
        ...

    def close(self) -> None: ...
