"""Question-answer sources for tuning the generator: CoQA, QuAC, NarrativeQA and BoolQ.

Each reader turns one public data set into documents and standalone questions with their
answers. Conversational sets (CoQA, QuAC) ask follow-ups that need the earlier turns
("about when was he created?"); the assistant answers single questions, so only a first
turn, or a later one that names its subject, is kept. No evaluation file (SQuAD) is ever
read here: `SOURCES` is the whole list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lectern.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SourceDoc:
    source: str  # "coqa" | "quac" | "narrativeqa" | "boolq"
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class SourceQuestion:
    source: str
    doc_id: str
    question: str
    answers: tuple[str, ...]  # the first is the training target; all count when scoring
    evidence: str | None = None  # the span of the document the answer rests on, if given
    unanswerable: bool = False  # the document itself does not answer it (QuAC CANNOTANSWER)


@dataclass(slots=True)
class SourceData:
    docs: list[SourceDoc]
    questions: list[SourceQuestion]


# Words that point back to an earlier turn; a question with one is not standalone.
_ANAPHORA = re.compile(
    r"\b(he|she|it|they|him|her|his|hers|its|their|theirs|them|this|that|these|those|"
    r"there|then|else|also|other|another|again|one)\b",
    re.IGNORECASE,
)


def standalone(question: str, turn: int) -> bool:
    """A first turn, or a later one of at least four words that points back at nothing."""
    q = question.strip()
    if turn == 1:
        return len(q.split()) >= 2
    return len(q.split()) >= 4 and not _ANAPHORA.search(q)


def _answer(text: str) -> str:
    return " ".join(text.split()).strip().rstrip(".").strip()


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def read_coqa(path: Path) -> SourceData:
    docs, questions = [], []
    for story in json.loads(path.read_text(encoding="utf-8"))["data"]:
        doc_id = str(story["id"])
        docs.append(SourceDoc("coqa", doc_id, "", story["story"]))
        answers = {a["turn_id"]: a for a in story["answers"]}
        for q in story["questions"]:
            a = answers.get(q["turn_id"])
            if a is None or not standalone(q["input_text"], q["turn_id"]):
                continue
            text = _answer(a["input_text"])
            unknown = text.lower() == "unknown"
            span = a.get("span_text", "").strip(" -\n")
            if not text:
                continue
            questions.append(SourceQuestion(
                "coqa", doc_id, q["input_text"].strip(), () if unknown else (text,),
                evidence=span or None, unanswerable=unknown,
            ))
    return SourceData(docs, questions)


_QUAC_QUESTION = re.compile(r"question(\d+):\s*(.*)")


def _first_span(answers: str, passage: str) -> str | None:
    """The longest opening of `answers` (its possible answers run together) in the passage."""
    words = answers.split()
    flat = " ".join(passage.split())
    best = None
    for n in range(1, min(len(words), 60) + 1):
        candidate = " ".join(words[:n])
        if candidate not in flat:
            break
        best = candidate
    return best


def read_quac(path: Path) -> SourceData:
    """Only each passage's first question: QuAC's answers are listed per question number."""
    docs, questions = [], []
    for n, row in enumerate(_jsonl(path)):
        doc_id = f"quac-{n}"
        docs.append(SourceDoc("quac", doc_id, "", row["passage"]))
        first = _QUAC_QUESTION.match(row["question"].splitlines()[0])
        parts = row["answer"].split("possible answers for question")
        if first is None or len(parts) < 2:
            continue
        answers = parts[1].split(":", 1)[1].strip() if ":" in parts[1] else ""
        question = first.group(2).strip()
        if answers.startswith("CANNOTANSWER"):
            questions.append(SourceQuestion("quac", doc_id, question, (), unanswerable=True))
            continue
        span = _first_span(answers, row["passage"])
        if span and len(span.split()) <= 30:
            questions.append(SourceQuestion("quac", doc_id, question, (_answer(span),), span))
    return SourceData(docs, questions)


def read_narrativeqa(path: Path) -> SourceData:
    docs: dict[str, SourceDoc] = {}
    questions = []
    for row in _jsonl(path):
        passage = row["passage"]
        doc_id = f"nqa-{len(docs)}" if passage not in docs else docs[passage].doc_id
        docs.setdefault(passage, SourceDoc("narrativeqa", doc_id, "", passage))
        answers = row["answer"] if isinstance(row["answer"], list) else [row["answer"]]
        answers = tuple(_answer(a) for a in answers if _answer(a))
        if answers:
            questions.append(SourceQuestion("narrativeqa", doc_id, row["question"].strip(),
                                            answers))
    return SourceData(list(docs.values()), questions)


def read_boolq(path: Path) -> SourceData:
    """Passages read "Title -- text"; the title is kept apart, as a page title would be."""
    docs: dict[str, SourceDoc] = {}
    questions = []
    for row in _jsonl(path):
        title, _, text = row["passage"].partition(" -- ")
        if not text:
            title, text = "", row["passage"]
        doc = docs.setdefault(row["passage"], SourceDoc("boolq", f"boolq-{len(docs)}",
                                                        title.strip(), text.strip()))
        if "label" not in row:  # the unlabelled test split: its passage still distracts
            continue
        label = str(row["label"]).lower() in {"true", "1", "yes"}
        question = row["question"].strip()
        question = question[0].upper() + question[1:] + ("" if question.endswith("?") else "?")
        questions.append(SourceQuestion("boolq", doc.doc_id, question,
                                        ("Yes" if label else "No",)))
    return SourceData(list(docs.values()), questions)


Reader = Callable[[Path], SourceData]
# Relative to the shared data folder (../shared/data).
SOURCES: dict[str, tuple[str, Reader]] = {
    "coqa": ("coqa/coqa-dev.json", read_coqa),
    "quac": ("quac/test.jsonl", read_quac),
    "narrativeqa": ("narrativeqa/test.jsonl", read_narrativeqa),
    "boolq": ("boolq/combined.jsonl", read_boolq),
}


def read_source(name: str, data_dir: Path) -> SourceData:
    if name not in SOURCES:
        raise ConfigError(f"unknown training source {name!r}; use one of {sorted(SOURCES)}")
    relative, reader = SOURCES[name]
    path = data_dir / relative
    if not path.is_file():
        raise ConfigError(f"training source {name!r} expects {path}, which does not exist")
    return reader(path)


def corpus_questions(questions: Iterable[Any], chunks: Iterable[Any]) -> SourceData:
    """The ingested corpus's own questions (`lectern train encoder` writes them) as a source.

    Each kept question was written from one sentence of one chunk; that sentence is the
    answer, so a university's catalogue teaches the model its own vocabulary. Every chunk
    is a document: the distractors are the corpus's other chunks.
    """
    by_id = {c.id: c for c in chunks}
    docs = {}
    out = []
    for q in questions:
        chunk = by_id.get(q.chunk_id)
        if not q.kept or chunk is None:
            continue
        doc_id = f"chunk-{chunk.id}"
        docs.setdefault(doc_id, SourceDoc("corpus", doc_id, chunk.title, chunk.text))
        answer = _answer(q.sentence)
        if answer:
            out.append(SourceQuestion("corpus", doc_id, q.question, (answer,), q.sentence))
    for c in by_id.values():  # chunks without questions still distract
        docs.setdefault(f"chunk-{c.id}", SourceDoc("corpus", f"chunk-{c.id}", c.title, c.text))
    return SourceData(list(docs.values()), out)
