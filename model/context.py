"""Context compression: keep the sentences of each passage that bear on the question.

Small generators answer better, and start sooner, from a short prompt: prefill time grows
with the prompt, and every unrelated sentence is one more thing to copy by mistake. The
sentences most similar to the question (by the retrieval encoder) are kept, in their
original order, within a token budget (an extractive compressor, as in RECOMP).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from lectern.protocols import Embedder
from lectern.sentences import passage_sentences
from lectern.types import Chunk


@dataclass(frozen=True, slots=True)
class Compressed:
    passages: list[Chunk]  # the same chunks, their text cut to the kept sentences
    best: tuple[int, str]  # (1-based passage number, its sentence closest to the question)
    relevance: float  # cosine of that sentence to the question


_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
_STOP = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "is",
     "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "will", "with",
     "you", "your"]
)
# Question words: in the question, never in the sentence that answers it.
_ASKING = frozenset(
    ["can", "do", "does", "how", "i", "my", "what", "when", "where", "which", "who", "why"]
)


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def _shortlist(question: str, flat: Sequence[str], limit: int) -> list[int]:
    """The `limit` sentences sharing most words with the question, in their order.

    Embedding every sentence of three passages costs 60-100 ms here, most of a
    first-token budget; a sentence that shares no word with the question is rarely the
    one that answers it, so only the likeliest few are embedded.
    """
    if len(flat) <= limit:
        return list(range(len(flat)))
    q = content_words(question) - _ASKING
    overlap = [len(q & content_words(s)) for s in flat]
    best = sorted(range(len(flat)), key=lambda i: (-overlap[i], i))[:limit]
    return sorted(best)


def _identifiers(text: str) -> set[str]:
    """Its words with a digit: course codes, years, room numbers."""
    return {w for w in content_words(text) if any(ch.isdigit() for ch in w)}


def _naming(question: str, passages: Sequence[Chunk]) -> set[int]:
    """Indexes of the passages whose text or headings name every identifier of the
    question; empty when the question has none or no passage names them."""
    wanted = _identifiers(question)
    if not wanted:
        return set()
    return {i for i, p in enumerate(passages) if wanted <= _identifiers(p.context_text)}


def _vectors(
    flat: list[str],
    owner: np.ndarray,
    row: np.ndarray,
    passages: Sequence[Chunk],
    split: list[list[str]],
    embedder: Embedder,
    stored: Mapping[int, np.ndarray],
) -> np.ndarray:
    """The vectors of the shortlisted sentences: the stored row where its passage has a
    stored matrix of one row per sentence, else embedded (all those in one call)."""
    found: list[np.ndarray | None] = []
    for o, r in zip(owner.tolist(), row.tolist(), strict=True):
        m = stored.get(passages[o].id)
        found.append(m[r] if m is not None and len(m) == len(split[o]) else None)
    todo = [i for i, v in enumerate(found) if v is None]
    if todo:
        for i, v in zip(todo, embedder.embed_passages([flat[i] for i in todo]), strict=True):
            found[i] = v
    return np.stack(found)


def compress(
    question: str,
    passages: Sequence[Chunk],
    embedder: Embedder,
    budget_tokens: int = 160,
    per_passage: int = 3,
    shortlist: int = 5,
    stored: Mapping[int, np.ndarray] | None = None,
) -> Compressed:
    """The passages cut down to their best sentences, within the budget.

    Sentences are taken best first across all passages, so a long table row in the
    third passage cannot crowd out a short answer in the first. The single best sentence
    is always kept, even over budget; passages left with no sentence are dropped, and
    the others keep their order, ids and (renumbered) place in the prompt.

    stored: sentence vectors by chunk id, a row per lectern.sentences.passage_sentences
    entry, as the store keeps them under the embedder's sentence_key; a passage without
    them (or whose rows do not match its sentences) has its sentences embedded here.
    """
    if not passages:
        raise ValueError("compress needs at least one passage")
    split = [passage_sentences(p) for p in passages]
    owner = np.repeat(np.arange(len(split)), [len(g) for g in split])
    row = np.concatenate([np.arange(len(g)) for g in split])
    flat = [s for group in split for s in group]
    picked = _shortlist(question, flat, shortlist)
    owner, row, flat = owner[picked], row[picked], [flat[i] for i in picked]
    q = embedder.embed_query(question)
    scores = _vectors(flat, owner, row, passages, split, embedder, stored or {}) @ q
    # A question (an FAQ heading) is never the sentence that answers.
    answerable = np.array([not s.rstrip().endswith("?") for s in flat])
    penalty = np.where(answerable, 0.0, 2.0)
    # Nor, when some passage names all of the question's identifiers (a course code, a
    # year), is a sentence of a passage that does not: "Prerequisites: at least 120
    # ECTS ..." under CSC 390 is close to "prerequisites for CSC 340?" by cosine, and a
    # small model copies the closest sentence it is shown.
    naming = _naming(question, passages)
    if naming:
        penalty = penalty + np.array([0.0 if o in naming else 1.0 for o in owner.tolist()])
    ranked = np.argsort(-(scores - penalty), kind="stable")
    kept: set[int] = set()
    per: dict[int, int] = {}
    used = 0
    # And then the passages that do not name them are left out: with "Prerequisites: at
    # least 120 ECTS" (CSC 390's) still in the prompt, the model answered with it, last
    # in rank or not (bench/results/answers-heldout-identifier-rule.md).
    named_only = bool(naming) and any(o in naming for o in owner.tolist())
    for i in ranked.tolist():
        if named_only and int(owner[i]) not in naming:
            continue
        cost = embedder.count_tokens(flat[i])
        if kept and (used + cost > budget_tokens or per.get(owner[i], 0) >= per_passage):
            continue
        kept.add(i)
        per[owner[i]] = per.get(owner[i], 0) + 1
        used += cost
    top = int(ranked[0])
    out: list[Chunk] = []
    number: dict[int, int] = {}
    for p, passage in enumerate(passages):
        mine = [i for i in np.flatnonzero(owner == p).tolist() if i in kept]
        if mine:
            number[p] = len(out) + 1
            out.append(replace(passage, text=" ".join(flat[i] for i in mine)))
    return Compressed(out, (number[int(owner[top])], flat[top]), float(scores[top]))
