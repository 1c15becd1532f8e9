"""Training data for the reranker: questions, the chunk that answers each, hard negatives.

Four reading-comprehension sets in ../shared/data (CoQA, BoolQ, NarrativeQA, QuAC) are
chunked the way ingestion chunks text (paragraph blocks, 200 encoder tokens, overlap 32,
title as the heading line), each question is paired with the chunk holding its answer,
and BM25 over the same source's chunks supplies the negatives that look relevant but are
not. Each example names its domain (CoQA's stories come from seven kinds of text), which
training balances over and validation reports on. SQuAD is the evaluation set: it is
never read here.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lectern.errors import DataFileError
from lectern.optional import require
from lectern.text import words
from lectern.types import Chunk
from retriever import bm25
from retriever.train.reranker_config import FILES, SOURCES

# A conversational follow-up ("did she have any children?") cannot be judged without the
# turns before it, so its label would be noise for a reranker that sees one question.
_ANAPHORA = frozenset({
    "he", "she", "it", "they", "him", "her", "them", "his", "hers", "its", "their", "theirs",
    "this", "that", "these", "those", "there", "then", "else", "also",
})
_QUAC_TURN = re.compile(r"^question(\d+):\s*(.*)$")
_QUAC_ANSWER = re.compile(
    r"possible answers for question(\d+):\n(.*?)(?=\npossible answers|\Z)", re.S
)


@dataclass(frozen=True, slots=True)
class Document:
    key: str
    title: str
    text: str  # paragraphs separated by blank lines
    domain: str = ""  # the kind of text, where a source mixes several; "": the source's


@dataclass(frozen=True, slots=True)
class RawQuestion:
    doc: str
    text: str
    answer: str | None  # a span of the document, or a free-form answer; None: yes/no
    span: bool  # the answer is copied from the document


@dataclass(frozen=True, slots=True)
class Example:
    source: str
    doc: str
    question: str
    positive: int  # chunk id
    relevant: frozenset[int]  # every chunk that holds the answer (overlaps), never a negative
    domain: str = ""  # see domain_of; "": the source is one domain (a corpus's questions)

    @property
    def group(self) -> str:
        """What training balances and validation reports on: the domain, else the source."""
        return self.domain or self.source


@dataclass
class SourceData:
    name: str
    documents: int
    chunks: list[Chunk]
    examples: list[Example]
    read: int  # questions in the file
    dropped: Counter = field(default_factory=Counter)  # reason -> questions
    domains: dict[str, str] = field(default_factory=dict)  # document -> its domain

    def counts(self) -> dict:
        return {
            "documents": self.documents,
            "chunks": len(self.chunks),
            "questions_read": self.read,
            "questions_paired": len(self.examples),
            "questions_dropped": dict(self.dropped),
        }


def _key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def is_standalone(question: str) -> bool:
    found = words(question)
    return len(found) >= 3 and not _ANAPHORA.intersection(found)


def domain_of(source: str, kind: str = "") -> str:
    """A domain's name: the source, or "<source>-<kind>" for a source that mixes kinds of
    text (CoQA's stories carry a `source`: cnn, race, science, mctest, gutenberg, reddit,
    wikipedia)."""
    return f"{source}-{kind}" if kind else source


def read_coqa(path: Path) -> tuple[list[Document], list[RawQuestion]]:
    docs, questions = [], []
    for story in json.loads(path.read_text())["data"]:
        title = story["filename"].removesuffix(".txt") if story["source"] == "wikipedia" else ""
        domain = domain_of("coqa", story["source"])
        docs.append(Document(story["id"], title, story["story"], domain))
        spans = {a["turn_id"]: a["span_text"] for a in story["answers"]}
        for q in story["questions"]:
            span = spans.get(q["turn_id"])
            questions.append(RawQuestion(story["id"], q["input_text"], span, True))
    return docs, questions


def read_boolq(path: Path) -> tuple[list[Document], list[RawQuestion]]:
    docs: dict[str, Document] = {}
    questions = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        title, _, text = row["passage"].partition(" -- ")
        if not text:
            title, text = "", row["passage"]
        key = _key(row["passage"])
        docs.setdefault(key, Document(key, title.strip(), text.strip()))
        questions.append(RawQuestion(key, row["question"].strip().rstrip("?") + "?", None, False))
    return list(docs.values()), questions


def read_narrativeqa(path: Path) -> tuple[list[Document], list[RawQuestion]]:
    docs: dict[str, Document] = {}
    questions = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        key = _key(row["passage"])
        docs.setdefault(key, Document(key, "", row["passage"].replace("\n", "\n\n")))
        answers = row["answer"]
        if isinstance(answers, str):  # a Python list's repr in some rows
            answers = ast.literal_eval(answers) if answers.startswith("[") else [answers]
        questions.append(RawQuestion(key, row["question"], " ".join(answers), False))
    return list(docs.values()), questions


def read_quac(path: Path) -> tuple[list[Document], list[RawQuestion]]:
    docs, questions = [], []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        key = _key(row["passage"])
        docs.append(Document(key, "", row["passage"]))
        answers = {int(n): a.strip() for n, a in _QUAC_ANSWER.findall(row["answer"])}
        for turn in row["question"].splitlines():
            m = _QUAC_TURN.match(turn.strip())
            if m is None:
                continue
            answer = answers.get(int(m[1]))
            answer = None if not answer or answer.startswith("CANNOTANSWER") else answer
            questions.append(RawQuestion(key, m[2].strip(), answer, True))
    return docs, questions


READERS: dict[str, Callable[[Path], tuple[list[Document], list[RawQuestion]]]] = {
    "coqa": read_coqa,
    "boolq": read_boolq,
    "narrativeqa": read_narrativeqa,
    "quac": read_quac,
}


def _normal(text: str) -> str:
    return " ".join(words(text))


def _span_in(answer: str, doc_text: str) -> str | None:
    """The longest leading part of `answer` (4+ words) found verbatim in the document.

    QuAC lists several answer spans run together; the first is a prefix of the string.
    """
    found = words(answer)
    for n in range(min(len(found), 40), min(len(found), 4) - 1, -1):
        phrase = " ".join(found[:n])
        if phrase in doc_text:
            return phrase
    return None


def locate(
    q: RawQuestion, chunks: list[Chunk], terms: Callable[[str], set[str]]
) -> tuple[int, frozenset[int]] | str:
    """(positive chunk id, ids of every chunk holding the answer), or why there is none."""
    if len(chunks) == 1:
        return chunks[0].id, frozenset([chunks[0].id])
    if q.answer is None:
        return "no answer span (yes/no or unanswerable) in a multi-chunk passage"
    bodies = [_normal(c.text) for c in chunks]
    if q.span:
        span = _span_in(q.answer, " ".join(bodies))
        holding = [c.id for c, b in zip(chunks, bodies, strict=True) if span and span in b]
        if holding:
            return holding[0], frozenset(holding)
    wanted = terms(q.answer)
    if not wanted:
        return "answer has no content words"
    cover = [len(wanted & terms(c.text)) / len(wanted) for c in chunks]
    best = max(range(len(cover)), key=cover.__getitem__)  # the first of equals
    if cover[best] < 0.6:
        return "answer not found in one chunk"
    return chunks[best].id, frozenset(c.id for c, s in zip(chunks, cover, strict=True) if s >= 0.6)


def chunk_documents(
    docs: list[Document], split: Callable[[str], list[str]], source: str, first_id: int = 0
) -> Iterator[Chunk]:
    """Chunks as ingestion would store them: the title is the heading line."""
    next_id = first_id
    for d in docs:
        for pos, text in enumerate(split(d.text)):
            yield Chunk(next_id, d.key, text, source, d.title, position=pos)
            next_id += 1


def load_source(
    name: str,
    data_dir: Path,
    split: Callable[[str], list[str]],
    terms: Callable[[str], set[str]],
    first_id: int = 0,
) -> SourceData:
    if name not in READERS:
        raise ValueError(f"unknown training source {name!r}; known: {', '.join(SOURCES)}")
    path = Path(data_dir) / FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{name}: {path} does not exist")
    try:
        docs, questions = READERS[name](path)
    except (KeyError, TypeError, ValueError, SyntaxError) as exc:  # JSONDecodeError is one
        raise DataFileError(
            f"{path}: not a {name} file as the shared data has it ({exc!r})"
        ) from exc
    chunks = list(chunk_documents(docs, split, name, first_id))
    by_doc: dict[str, list[Chunk]] = {}
    for c in chunks:
        by_doc.setdefault(c.document_id, []).append(c)
    domain = {d.key: d.domain or domain_of(name) for d in docs}
    data = SourceData(name, len(docs), chunks, [], len(questions), domains=domain)
    seen: set[tuple[str, str]] = set()
    for q in questions:
        if name in ("coqa", "quac") and not is_standalone(q.text):
            data.dropped["follow-up question (pronoun or under 3 words)"] += 1
            continue
        if (q.doc, q.text.lower()) in seen:
            data.dropped["duplicate question"] += 1
            continue
        found = locate(q, by_doc.get(q.doc, []), terms)
        if isinstance(found, str):
            data.dropped[found] += 1
            continue
        seen.add((q.doc, q.text.lower()))
        data.examples.append(
            Example(name, q.doc, q.text, found[0], found[1], domain.get(q.doc, name))
        )
    return data


def is_validation(doc: str, fraction: float) -> bool:
    """Held out by document, so no passage is seen in training and in validation."""
    return int(hashlib.sha1(doc.encode()).hexdigest()[:8], 16) % 10_000 < fraction * 10_000


class NegativeMiner:
    """BM25 over one source's chunks, tokenized as serving's BM25 tokenizes them.

    One miner serves one thread: searching grows its tokenizer's caches.
    """

    def __init__(self, chunks: list[Chunk], k1: float = 1.2, b: float = 0.75) -> None:
        bm25s = require("bm25s", "retrieval")

        self.chunks = chunks
        self._tok = bm25.tokenizer()
        ids = self._tok.tokenize([c.context_text for c in chunks], show_progress=False)
        self._index = bm25s.BM25(k1=k1, b=b)
        self._index.index((ids, self._tok.get_vocab_dict()), show_progress=False)

    def search(self, questions: list[str], k: int) -> list[list[int]]:
        """For each question, the indexes (into `chunks`) of its top-k chunks, best first."""
        if not questions:
            return []
        k = min(k, len(self.chunks))
        ids = self._tok.tokenize(
            questions, update_vocab=False, return_as="ids", show_progress=False
        )
        top, scores = self._index.retrieve(ids, k=k, show_progress=False, n_threads=1)
        return [
            [int(i) for i, s in zip(row, srow, strict=True) if s > 0]
            for row, srow in zip(top, scores, strict=True)
        ]


@dataclass(frozen=True, slots=True)
class Group:
    """A question with its positive chunk first, then its negatives.

    For held-out questions, `candidates` is BM25's top list to rerank (it may lack the
    positive: then neither BM25 nor the reranker finds it).
    """

    source: str
    question: str
    chunks: list[Chunk]
    relevant: frozenset[int]
    candidates: list[Chunk] = field(default_factory=list)


def build_groups(
    examples: list[Example],
    miner: NegativeMiner,
    hard: int,
    random_negatives: int,
    depth: int,
    rng: random.Random,
    candidates: int = 0,
) -> list[Group]:
    """Positive + `hard` BM25 negatives (sampled from the top 2*hard non-answers) + random."""
    chunks = miner.chunks
    by_id = {c.id: i for i, c in enumerate(chunks)}
    ranked = miner.search([e.question for e in examples], max(depth, candidates))
    groups = []
    for e, top in zip(examples, ranked, strict=True):
        positive = chunks[by_id[e.positive]]
        same_text = {positive.text}
        pool = [
            i for i in top[:depth]
            if chunks[i].id not in e.relevant and chunks[i].text not in same_text
        ]
        chosen = rng.sample(pool[: 2 * hard], min(hard, len(pool[: 2 * hard])))
        want = len(chosen) + random_negatives + (hard - len(chosen))
        tries = 0
        while len(chosen) < want and tries < 50 * want:
            tries += 1
            i = rng.randrange(len(chunks))
            if chunks[i].id not in e.relevant and i not in chosen:
                chosen.append(i)
        groups.append(Group(
            e.source, e.question, [positive, *(chunks[i] for i in chosen)], e.relevant,
            [chunks[i] for i in top[:candidates]],
        ))
    return groups
