"""The corpus's own synthetic questions as one more reranker training source.

`lectern train encoder` writes a question for a sentence of each ingested chunk and keeps
it when BM25 finds the chunk (see retriever.questions). The reranker trained on the
four reading-comprehension sets has never seen this corpus's kind of text or question;
adding these pairs adapts it the way the encoder is adapted. Only the documents are read: the
questions are the generator's, never an evaluation set's.

The corpus's documents are split into training and held-out ones like every other
source's (reranker_data.is_validation), so the questions that decide whether the tuned
reranker is installed come from documents it never trained on.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lectern.errors import ConfigError
from lectern.types import Chunk
from retriever.questions import SyntheticQuestion
from retriever.train.reranker_data import Example, SourceData

NAME = "corpus"


@dataclass(frozen=True, slots=True)
class CorpusQuestions:
    """The store's chunks and a questions file written for them."""

    chunks: Sequence[Chunk]
    questions: Sequence[SyntheticQuestion]
    path: Path  # the questions file, for the record

    def __post_init__(self) -> None:
        known = {c.id for c in self.chunks}
        strangers = {q.chunk_id for q in self.questions if q.kept} - known
        if strangers:
            raise ConfigError(
                f"{self.path}: {len(strangers)} kept questions name chunks this store does not "
                f"have (e.g. chunk {min(strangers)}); the file was written for another store"
            )
        if not any(q.kept for q in self.questions):
            raise ConfigError(f"{self.path}: no kept questions to train on")


def corpus_source(corpus: CorpusQuestions, first_id: int) -> SourceData:
    """The corpus as a SourceData: its chunks renumbered from `first_id` (ids are unique
    across sources), one example per kept question.

    Every chunk of the question's document counts as relevant, as in the evaluation,
    where a document ranks where its best chunk ranks: a neighbouring chunk of the same
    document may hold the answer too and must never be a negative.
    """
    renumbered = {c.id: dataclasses.replace(c, id=first_id + n)
                  for n, c in enumerate(corpus.chunks)}
    by_doc: dict[str, set[int]] = {}
    for c in renumbered.values():
        by_doc.setdefault(c.document_id, set()).add(c.id)
    data = SourceData(NAME, len(by_doc), list(renumbered.values()), [], len(corpus.questions))
    seen: set[tuple[int, str]] = set()
    dropped: Counter[str] = Counter()
    for q in corpus.questions:
        if not q.kept:
            dropped[f"not kept: {q.status}"] += 1
            continue
        chunk = renumbered[q.chunk_id]
        if (chunk.id, q.question.lower()) in seen:
            dropped["duplicate question"] += 1
            continue
        seen.add((chunk.id, q.question.lower()))
        data.examples.append(Example(NAME, chunk.document_id, q.question, chunk.id,
                                     frozenset(by_doc[chunk.document_id])))
    data.dropped = dropped
    return data
