"""Grounded answers: the prompt that numbers the passages, and citations mapped back.

A citation only ever points at a passage that was in the prompt; a number the model made
up is removed from the text and never shown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lectern.protocols import Message
from lectern.sentences import sentences
from lectern.types import Answer, Chunk, Citation, Turn
from model.context import content_words

IDK = "I don't know. The documents I have do not answer this question."
# The reply SYSTEM asks for when the passages do not answer; a tuned model is taught it.
ABSTAIN_REPLY = "I don't know."
SYSTEM = (
    "You answer questions for a university using only the numbered passages given. "
    "Answer in one or two sentences and put the number of the passage you used in square "
    "brackets, like [1]. If the passages do not contain the answer, reply exactly: "
    + ABSTAIN_REPLY
)
_CITE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
# "I don't know" as the reply's opening words ("Sorry, I don't know"): a small model also
# quotes the phrase from its instructions inside an answer, which is no abstention.
_IDK = re.compile(r"^\W*(?:[\w']+\W+){0,3}?I (?:do not|don't|dont) know\b", re.IGNORECASE)
def passage_header(chunk: Chunk, title_given: bool = False) -> str:
    """The document's title and the passage's own heading.

    The middle of a heading path ("Programme > Course descriptions > CSC 340") rarely
    tells the model anything the two ends do not, and every token of it delays the
    first token of the answer. For the same reason a title already given for an earlier
    passage is not repeated (`title_given`): passages of one page often fill the prompt.
    """
    where = (chunk.section or "").rsplit(" > ", 1)[-1].strip()
    if title_given:
        return where if where != chunk.title else ""
    return f"{chunk.title} > {where}" if where and where != chunk.title else chunk.title


# Of an earlier question or answer in the prompt: enough to say what was asked and
# answered (Lectern's answers are a sentence or two), so that a client's long history
# cannot crowd the passages and the instructions out of the generator's input.
TURN_WORDS = 60


_MARK = re.compile(r"\s*" + _CITE.pattern)


def uncited(text: str) -> str:
    """`text` without its citation marks (and the space before them), blanks collapsed."""
    return " ".join(_MARK.sub("", text).split())


def first_words(text: str, limit: int, more: str = "") -> str:
    """The first `limit` words of `text`, then `more` if some were left out."""
    kept = text.split()
    return " ".join(kept[:limit]) + (more if len(kept) > limit else "")


def is_abstention(text: str) -> bool:
    """Whether a reply says it does not know (in its opening words)."""
    return bool(_IDK.match(text))


def build_messages(
    question: str, passages: Sequence[Chunk], history: Sequence[Turn] = ()
) -> list[Message]:
    """The system prompt, the earlier turns as they were asked and answered, then the
    numbered passages and the question. An earlier answer's citation numbers pointed at
    that turn's passages, so they are dropped from it."""
    earlier: list[Message] = []
    for turn in history:
        earlier += [
            {"role": "user", "content": first_words(turn.question, TURN_WORDS, " …")},
            {"role": "assistant",
             "content": first_words(uncited(turn.answer), TURN_WORDS, " …")},
        ]
    numbered, titles = [], set()
    for i, c in enumerate(passages, start=1):
        header = passage_header(c, title_given=c.title in titles)
        titles.add(c.title)
        numbered.append(f"[{i}] {f'({header}) ' if header else ''}{' '.join(c.text.split())}")
    return [
        {"role": "system", "content": SYSTEM},
        *earlier,
        {"role": "user", "content": "Passages:\n" + "\n\n".join(numbered)
         + f"\n\nQuestion: {question.strip()}"},
    ]


def _supporting_passage(text: str, passages: Sequence[Chunk], min_coverage: float) -> int | None:
    """The passage (1-based) that contains most of the answer's content words, if any does."""
    words = content_words(text)
    if not words:
        return None
    best, best_cov = None, 0.0
    for i, chunk in enumerate(passages, start=1):
        cov = len(words & content_words(chunk.context_text)) / len(words)
        if cov > best_cov:
            best, best_cov = i, cov
    return best if best_cov >= min_coverage else None


_CLAIM = re.compile(r"\[[\d,\s]+\]|;|(?<=[.!?])\s+(?=[A-Z])")
_FACT = re.compile(r"\d+(?:[.,:]\d+)*|\b[A-Z][a-z]+(?:\s[A-Z][a-z]+)*")
# Capitalised only because they open a sentence, not names.
_OPENERS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "but",
        "you",
        "your",
        "yes",
        "no",
        "it",
        "its",
        "this",
        "that",
        "these",
        "there",
        "they",
        "we",
        "our",
        "if",
        "in",
        "on",
        "at",
        "for",
        "to",
        "of",
        "from",
        "by",
        "with",
        "as",
        "after",
        "before",
        "during",
        "each",
        "every",
        "all",
        "students",
        "student",
        "according",
        "answer",
        "please",
        "however",
        "also",
    ]
)


def _windows(passages: Sequence[Chunk]) -> list[str]:
    """Each sentence with its passage's heading (which names the course or programme)."""
    return [
        f"{passage_header(chunk)} {sentence}"
        for chunk in passages
        for sentence in sentences(chunk.text) or [chunk.text]
    ]


def unsupported_facts(text: str, passages: Sequence[Chunk]) -> list[str]:
    """Numbers and names in the answer missing from the passage sentence they restate.

    The failure that matters most in a catalogue assistant is a wrong fee, date, score or
    lecturer, and the likeliest wrong value is a neighbour's (another programme's fee in
    the same table). So each claim of the answer (a sentence or clause) must have all its
    facts in the one passage sentence, with its heading, that shares the most words with
    it, not merely somewhere in the context.
    """
    windows = _windows(passages)
    missing: set[str] = set()
    for claim in _CLAIM.split(text):
        facts = {m.group(0) for m in _FACT.finditer(claim)}
        facts = {f for f in facts if f.lower() not in _OPENERS}
        if not facts or not windows:
            missing |= facts
            continue
        words = content_words(claim)
        best = max(windows, key=lambda w: len(words & content_words(w))).lower()
        missing |= {f for f in facts if f.lower() not in best}
    return sorted(missing)


def snippet(text: str, limit: int = 240) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rsplit(" ", 1)[0] + "…"


def assemble(
    raw: str,
    passages: Sequence[Chunk],
    min_support: float = 0.6,
    fallback: tuple[int, str] | None = None,
) -> Answer:
    """Turn the model's text into an Answer whose citations all point at given passages.

    Small models often answer correctly from a passage but forget the marker; then the
    passage that contains most of the answer's words is cited, if one covers at least
    `min_support` of them. An answer that states a number or name found in no passage is
    not shown: `fallback`, (passage number, its most relevant sentence), is quoted
    instead, or the answer abstains.
    """
    text = " ".join(raw.split())
    if not passages or not text or is_abstention(text):
        return Answer(text=IDK, citations=[], abstained=True)
    if unsupported_facts(text, passages):
        if fallback is None:
            return Answer(text=IDK, citations=[], abstained=True)
        number, sentence = fallback
        text = f"{sentence} [{number}]"

    order: list[int] = []

    def keep_valid(match: re.Match[str]) -> str:
        valid = [
            int(n) for n in re.split(r"\s*,\s*", match.group(1)) if 1 <= int(n) <= len(passages)
        ]
        order.extend(n for n in valid if n not in order)
        return "[" + ", ".join(map(str, valid)) + "]" if valid else ""

    text = " ".join(_CITE.sub(keep_valid, text).split()).replace(" .", ".")
    if not order:
        inferred = _supporting_passage(text, passages, min_support)
        if inferred is None:  # an answer no passage supports is not shown
            if fallback is None:
                return Answer(text=IDK, citations=[], abstained=True)
            inferred, text = fallback
        order.append(inferred)
        text = f"{text} [{inferred}]"
    citations = [
        Citation(
            number=n,
            chunk_id=c.id,
            document_id=c.document_id,
            source=c.source,
            title=c.title,
            section=c.section,
            page=c.page,
            snippet=snippet(c.text),
        )
        for n in order
        for c in (passages[n - 1],)
    ]
    return Answer(text=text, citations=citations, abstained=False)
