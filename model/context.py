"""Context compression: keep the sentences of each passage that bear on the question.

Small generators answer better, and start sooner, from a short prompt: prefill time grows
with the prompt, and every unrelated sentence is one more thing to copy by mistake. The
sentences most similar to the question (by the retrieval encoder) are kept, in their
original order, within a token budget (an extractive compressor, as in RECOMP).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from lectern.protocols import Embedder
from lectern.types import Chunk

# Split after . ! ? ; : before a capital or digit, but not after a title ("Dr. Marrow").
_SENTENCE = re.compile(
    r"(?<!\bDr\.)(?<!\bMr\.)(?<!\bMs\.)(?<!\bSt\.)(?<!\bNo\.)(?<!\bMrs\.)(?<!\bProf\.)"
    r"(?<=[.!?;:])\s+(?=[A-Z0-9(\"'])|\n+"
)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


@dataclass(frozen=True, slots=True)
class Compressed:
    passages: list[Chunk]  # the same chunks, their text cut to the kept sentences
    best: tuple[int, str]  # (1-based passage number, its sentence closest to the question)
    relevance: float  # cosine of that sentence to the question


def compress(
    question: str,
    passages: Sequence[Chunk],
    embedder: Embedder,
    budget_tokens: int = 160,
    per_passage: int = 3,
) -> Compressed:
    """The passages cut down to their best sentences; order and ids are kept."""
    if not passages:
        raise ValueError("compress needs at least one passage")
    split = [sentences(p.text) or [p.text] for p in passages]
    flat = [s for group in split for s in group]
    q = embedder.embed_query(question)
    scores = embedder.embed_passages(flat) @ q
    # A question (an FAQ heading) is never the sentence that answers.
    answerable = np.array([not s.rstrip().endswith("?") for s in flat])
    top = int(np.argmax(np.where(answerable, scores, -np.inf))) if answerable.any() else 0
    owner = next(i for i, n in enumerate(np.cumsum([len(g) for g in split])) if top < n)
    best = (owner + 1, flat[top])
    relevance = float(scores[top])
    out, used, offset = [], 0, 0
    for passage, group in zip(passages, split, strict=True):
        local = scores[offset : offset + len(group)]
        offset += len(group)
        keep: list[int] = []
        for i in np.argsort(-local)[:per_passage]:
            cost = embedder.count_tokens(group[i])
            if keep and used + cost > budget_tokens:
                break
            keep.append(int(i))
            used += cost
        out.append(replace(passage, text=" ".join(group[i] for i in sorted(keep))))
        if used >= budget_tokens:
            break
    return Compressed(out, best, relevance)
