"""Encoder tuning's training data: the held-out split, BM25 hard negatives, batches.

Questions are split by their source chunk, so a held-out chunk's questions never train
the encoder; each training question gets its own chunk and the hardest BM25 negatives
from other documents; batches never hold one chunk twice as a positive.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lectern.protocols import Retriever
from lectern.types import Chunk
from retriever.questions import SyntheticQuestion


@dataclass(frozen=True, slots=True)
class Example:
    question: str
    chunk_id: int
    positive: str
    negatives: tuple[str, ...]


def split_holdout(
    questions: Sequence[SyntheticQuestion], share: float, seed: int
) -> tuple[list[SyntheticQuestion], list[SyntheticQuestion]]:
    """(train, held out), split by source chunk so held-out chunks are never trained on."""
    chunk_ids = sorted({q.chunk_id for q in questions})
    held = set(random.Random(seed).sample(chunk_ids, round(len(chunk_ids) * share)))
    return (
        [q for q in questions if q.chunk_id not in held],
        [q for q in questions if q.chunk_id in held],
    )


def mine_examples(
    questions: Sequence[SyntheticQuestion],
    chunks: Mapping[int, Chunk],
    retriever: Retriever,
    negatives: int,
    depth: int,
    seed: int = 0,
) -> list[Example]:
    """Each question with its chunk and its hardest BM25 negatives.

    A negative is never from the question's own document: a neighbouring chunk of the
    same paragraph often answers the question too, and training it away would teach the
    encoder the wrong thing. Questions with too few BM25 negatives get random chunks
    from other documents, so every example has the same number of columns.
    """
    rng = random.Random(seed)
    pool = list(chunks.values())
    out = []
    for q in questions:
        own = chunks[q.chunk_id]
        picked: list[str] = []
        for hit in retriever.retrieve(q.question, depth):
            if len(picked) == negatives:
                break
            if hit.chunk.document_id != own.document_id:
                picked.append(hit.chunk.model_text)
        for _ in range(100 * negatives):
            if len(picked) == negatives:
                break
            other = rng.choice(pool)
            if other.document_id != own.document_id and other.model_text not in picked:
                picked.append(other.model_text)
        if len(picked) == negatives:
            out.append(Example(q.question, q.chunk_id, own.model_text, tuple(picked)))
    return out


def batches(examples: Sequence[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """Shuffled batches in which no chunk appears twice as a positive.

    Two questions about one chunk in a batch would each count the other's positive (their
    own chunk) as a negative.
    """
    pending = list(examples)
    rng.shuffle(pending)
    out: list[list[Example]] = []
    while pending:
        batch, seen, rest = [], set(), []
        for ex in pending:
            if len(batch) < size and ex.chunk_id not in seen:
                batch.append(ex)
                seen.add(ex.chunk_id)
            else:
                rest.append(ex)
        if len(batch) < 2:
            break  # a lone question has no in-batch negatives to learn from
        out.append(batch)
        pending = rest
    return out
