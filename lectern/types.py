"""The data that flows between ingestion, retrieval, generation and the API."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from lectern.headings import model_heading


@dataclass(frozen=True, slots=True)
class Chunk:
    """A passage of one document, with where it came from."""

    id: int
    document_id: str
    text: str
    source: str
    title: str
    section: str | None = None
    page: int | None = None
    position: int = 0

    @property
    def context_text(self) -> str:
        """The text BM25 indexes: the passage prefixed by its title and section path.

        A chunk deep inside a section rarely repeats the heading that gives it meaning
        ("International: EUR 18,000" under "MSc Data Science > Fees"), so BM25 sees the
        whole heading path too; the models read a bounded one (model_text).
        """
        head = (
            self.title
            if not self.section or self.section == self.title
            else (f"{self.title} > {self.section}")
        )
        return f"{head}\n{self.text}" if head else self.text

    @property
    def model_heading(self) -> str:
        """The heading the encoder and the reranker read: title and section, bounded.

        Their inputs have a fixed number of tokens; a URL title or a deep section path
        would take them from the passage (see lectern.headings).
        """
        return model_heading(self.title, self.section)

    @property
    def model_text(self) -> str:
        """The text the encoder embeds: the passage prefixed by its bounded heading."""
        head = self.model_heading
        return f"{head}\n{self.text}" if head else self.text


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    chunk: Chunk
    score: float


def _id_set(name: str, value: object) -> frozenset[str]:
    """`value` as a frozenset of document ids; a TypeError naming `name` otherwise."""
    # A plain string is iterable: frozenset("doc-1") would quietly mean six one-letter ids.
    if isinstance(value, str | bytes) or not isinstance(value, Collection):
        raise TypeError(f"{name} must be a set of document ids, got {value!r}")
    ids = frozenset(value)
    bad = [i for i in ids if not isinstance(i, str)]
    if bad:
        raise TypeError(f"{name} must hold document ids (str), got {bad[0]!r}")
    return ids


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Which documents a search may return: not the excluded ones and, when `only_documents`
    is given, none outside it. Every Retriever applies it before choosing its top k.
    """

    exclude_documents: frozenset[str] = frozenset()
    only_documents: frozenset[str] | None = None  # None: every document not excluded

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "exclude_documents", _id_set("exclude_documents", self.exclude_documents)
        )
        if self.only_documents is not None:
            object.__setattr__(
                self, "only_documents", _id_set("only_documents", self.only_documents)
            )

    def allows(self, document_id: str) -> bool:
        return document_id not in self.exclude_documents and (
            self.only_documents is None or document_id in self.only_documents
        )

    @property
    def restricts(self) -> bool:
        """Whether any document is kept out (False: the search runs as if unfiltered)."""
        return bool(self.exclude_documents) or self.only_documents is not None


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """One ingested document as the store records it."""

    id: str
    source: str
    title: str
    content_hash: str
    media_type: str
    size_bytes: int
    chunk_count: int
    ingested_at: datetime


@dataclass(frozen=True, slots=True)
class Citation:
    number: int
    chunk_id: int
    document_id: str
    source: str
    title: str
    section: str | None
    page: int | None
    snippet: str


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    citations: list[Citation] = field(default_factory=list)
    abstained: bool = False


@dataclass(slots=True)
class Timings:
    """Where an answer's time went, in milliseconds."""

    retrieve_ms: float = 0.0
    rerank_ms: float = 0.0  # 0 when no reranker is configured or trained
    generate_ms: float = 0.0
    total_ms: float = 0.0
    first_token_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """An earlier question of a conversation and the answer it got."""

    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens the generator read (its whole prompt: instructions, passages, earlier turns,
    the question) and wrote for one answer, counted with its own tokenizer."""

    prompt_tokens: int
    completion_tokens: int


NO_TOKENS = Usage(0, 0)  # an answer given without asking the generator


@dataclass(slots=True)
class AskResult:
    answer: Answer
    passages: list[Chunk]
    timings: Timings = field(default_factory=Timings)
    # What retrieval searched for: the question itself, or a follow-up rewritten with
    # the conversation's earlier turns so that it stands alone.
    standalone_question: str = ""
    answer_id: str = ""  # what feedback on this answer names; "" when it was not logged
    usage: Usage | None = None  # None: the serving generator cannot count its tokens


Rating = Literal["up", "down"]


@dataclass(frozen=True, slots=True)
class LoggedAnswer:
    """An answer as the answer log keeps it, with the feedback it got (if any).

    Nothing in it names who asked: no address, cookie or conversation id.
    """

    id: str
    created: datetime  # UTC
    question: str  # as asked
    standalone_question: str  # what retrieval searched for
    answer: str
    abstained: bool
    passage_ids: list[int]  # the chunks in the prompt, in their order
    cited_ids: list[int]  # the chunks the answer cites
    mode: str  # how retrieval ran, e.g. "hybrid+rerank"
    model: str  # the generator's reference
    adapter: str | None  # the adapter serving, None: the base model
    timings: dict[str, float | None]
    rating: Rating | None = None
    comment: str | None = None
    rated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """A piece of the answer as the generator writes it."""

    text: str


@dataclass(frozen=True, slots=True)
class AnswerEvent:
    """The last event of a stream: the checked answer, its citations and timings."""

    result: AskResult


StreamEvent = TokenEvent | AnswerEvent
