"""The conversational retrieval benchmark behind `lectern eval conversations` (issue 19).

CoQA (coqa/coqa-dev.json) and QuAC (quac/test.jsonl) are conversations about one story
or passage: a first question, then follow-ups ("who created him?") that name what they
are about only through the turns before them. Each set is read, chunked and paired the
way the reranker's training reads them (retriever/train/reranker_data, the chunker of
retriever/eval/domains.training_split), so a question's relevant items are the chunks
holding its answer, and every document of the set is indexed, the others being the
distractors. Only documents the reranker held out (reranker_data.is_validation with the
share its record names) are asked about: training saw none of their questions. Unlike
training, follow-ups are kept: they are the point. One item is a turn: its document, its
turn number (1 is the first question), the question as asked, the gold history (every
earlier question with its gold answer; an unanswerable one answered with model.answer's
IDK, as Lectern would answer it) and its relevant item ids. A turn whose answer is in
no one chunk (a yes/no question on a long passage) is not asked, but stays in the later
turns' history. Neither set has a gold standalone form of its follow-ups (CANARD, which
rewrites QuAC's, is not in ../shared/data), so the tables say so rather than invent one.

conversation_run.py searches every turn through the served path; conversation_report.py
aggregates, applies the rule below and writes the tables.

Selection rule (written before the first run and not changed after it): each set's
documents are split into a selection half and a report half by a hash of the document
id (`half`). On the selection half, each rewrite variant's MRR@10 gap recovered,
(b - a) / (first - a), with first the first-turn questions' MRR@10, a the follow-ups'
searched as asked and b the same follow-ups rewritten by the variant, is computed per
dataset, and its lowest over the datasets is the variant's score; the variant with the
highest score is the best. A variant whose score is within one standard error of the
best's (the best's paired SE on its worst dataset) and that is cheaper (no model call
before a model call, then fewer turns read) is chosen instead: the cheapest such, a
higher score breaking a tie of cost. Only rewriting variants compete ("none" is (a)). A
dataset whose first turns do not beat its follow-ups as asked has no gap and is left
out of the minimum; if some variant then has no dataset left, every variant is scored
by its worst-dataset MRR@10 gain (b - a) instead. The tables report the report half;
the selection half is shown apart.

Amendment (written after the second run, before the first run that measured changes of
subject): within one conversation CoQA and QuAC never change subject, so the rule above
can only reward adding the history to every follow-up, never count what that costs when
a user asks about something new. Each first question is therefore also asked as a change
of subject: after the gold history of a follow-up from another document of the set,
scored against its own document. A variant's switch loss is the MRR@10 that question
loses against being asked alone (paired, mean and SE over the questions). Among the
variants whose score above reaches the issue's goal (0.8 of the gap) on the selection
half, the one with the lowest worst-dataset switch loss is chosen; a variant within one
SE of that loss with a higher score above is chosen instead (the highest such). When no
variant reaches the goal, or none has switch figures, the rule above decides alone.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lectern.errors import ConfigError
from lectern.types import Turn
from model.answer import IDK
from retriever.eval.datasets import Dataset, DatasetError, Item, Query
from retriever.train import reranker_data as rd
from retriever.train.reranker_config import FILES

Half = Literal["selection", "report"]
HALVES: tuple[Half, ...] = ("selection", "report")
SETS = ("coqa", "quac")
Split = Callable[[str], list[str]]
Terms = Callable[[str], set[str]]
# The rule as the docstring states it (one text for the module and the report).
RULE = " ".join((__doc__ or "").partition("Selection rule ")[2].partition(": ")[2]
                .partition("\n\nAmendment ")[0].split())
AMENDMENT = " ".join((__doc__ or "").partition("\n\nAmendment ")[2].split())


@dataclass(frozen=True, slots=True)
class Conversation:
    doc: str
    questions: list[rd.RawQuestion]  # in turn order, each with its answer span
    answers: list[str]  # the gold answer of each, as a reply would give it


@dataclass(frozen=True, slots=True)
class ConvItem:
    dataset: str
    doc: str
    half: Half
    turn: int  # 1: the conversation's first question
    history: tuple[Turn, ...]  # every earlier turn, gold answers
    query: Query  # the question as asked and its relevant items

    @property
    def follow_up(self) -> bool:
        return self.turn >= 2


@dataclass(frozen=True, slots=True)
class ConversationSet:
    name: str
    dataset: Dataset  # every document's chunks as items; queries: the items' as asked
    items: list[ConvItem]


def half(doc: str) -> Half:
    """The document's half. Salted, so it does not follow is_validation's hash of the id."""
    h = int(hashlib.sha1(f"conversation-half:{doc}".encode()).hexdigest()[:8], 16)
    return HALVES[h % 2]


def _json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def read_coqa(path: Path) -> tuple[list[rd.Document], list[Conversation]]:
    """The stories as training reads them, and each story's turns in turn_id order."""
    docs, _ = rd.read_coqa(Path(path))
    conversations = []
    try:
        for story in _json(path)["data"]:
            answers = {a["turn_id"]: a for a in story["answers"]}
            questions, golds = [], []
            for q in sorted(story["questions"], key=lambda q: q["turn_id"]):
                a = answers.get(q["turn_id"], {})
                # CoQA marks a question the story cannot answer with span -1, "unknown".
                unknown = not a or a.get("span_start", 0) < 0 or str(
                    a.get("input_text", a.get("span_text", ""))).strip().lower() == "unknown"
                span = None if unknown else a.get("span_text")
                questions.append(rd.RawQuestion(story["id"], q["input_text"], span, True))
                golds.append(IDK if unknown else str(a.get("input_text", span)).strip())
            conversations.append(Conversation(story["id"], questions, golds))
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"{path} is not CoQA format: {type(exc).__name__} {exc}") from exc
    return docs, conversations


def first_span(answers: str, passage: str) -> str:
    """QuAC runs a question's possible answers together; the first is the longest
    leading run of words found verbatim in the passage."""
    found = answers.split()
    for n in range(len(found), 0, -1):
        head = " ".join(found[:n])
        if head in passage:
            return head
    return answers.strip()


def read_quac(path: Path) -> tuple[list[rd.Document], list[Conversation]]:
    """Each row a passage and its numbered questions, answers matched by number
    (reranker_data.read_quac); CANNOTANSWER is answered IDK."""
    docs, questions = rd.read_quac(Path(path))
    by_doc: dict[str, list[rd.RawQuestion]] = {}
    for q in questions:
        by_doc.setdefault(q.doc, []).append(q)
    text = {d.key: d.text for d in docs}
    return docs, [
        Conversation(doc, qs, [first_span(q.answer, text[doc]) if q.answer else IDK for q in qs])
        for doc, qs in by_doc.items()
    ]


READERS = {"coqa": read_coqa, "quac": read_quac}


def build_set(
    name: str,
    docs: Sequence[rd.Document],
    conversations: Sequence[Conversation],
    split: Split,
    share: float,
    terms: Terms,
) -> ConversationSet:
    """Every chunk an item (id "<document>/<position>", as domains.py names them); every
    located turn of a held-out document an item of the benchmark."""
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    chunks = list(rd.chunk_documents(list(docs), split, name))
    by_doc: dict[str, list] = {}
    for c in chunks:
        by_doc.setdefault(c.document_id, []).append(c)
    item_of = {c.id: f"{c.document_id}/{c.position}" for c in chunks}
    items: list[ConvItem] = []
    dropped: Counter[str] = Counter()
    held = [c for c in conversations if rd.is_validation(c.doc, share)]
    for conv in held:
        history: list[Turn] = []
        for turn, (q, gold) in enumerate(zip(conv.questions, conv.answers, strict=True), 1):
            found = rd.locate(q, by_doc.get(conv.doc, []), terms)
            if isinstance(found, str):
                dropped[found] += 1
            else:
                query = Query(f"{conv.doc}/t{turn}", q.text.strip(),
                              {item_of[i]: 1.0 for i in sorted(found[1])})
                items.append(ConvItem(name, conv.doc, half(conv.doc), turn, tuple(history), query))
            history.append(Turn(q.text.strip(), gold))
    info = {
        "documents": len(docs),
        "held_out_documents": len(held),
        "holdout_share": share,
        "items": len(chunks),
        "turns_read": sum(len(c.questions) for c in held),
        "first_turns": sum(not i.follow_up for i in items),
        "follow_ups": sum(i.follow_up for i in items),
        "turns_not_asked": dict(dropped),
        "documents_per_half": dict(Counter(half(c.doc) for c in held)),
    }
    dataset = Dataset(
        name, f"conversations/{name}/",
        [Item(item_of[c.id], c.title, c.text) for c in chunks], [i.query for i in items], info,
    )
    return ConversationSet(name, dataset, items)


def parse_sets(text: str | None) -> list[str]:
    """Comma-separated set names, checked; None or empty: every set."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        raise ConfigError(f"unknown conversational set {unknown[0]!r}; known: {', '.join(SETS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"sets listed twice: {names}")
    return names or list(SETS)


def load_sets(
    data_dir: Path, names: Sequence[str], split: Split, share: float, terms: Terms | None = None
) -> list[ConversationSet]:
    """The named sets (of SETS) from the shared data folder, in that order."""
    names = parse_sets(",".join(names))
    if terms is None:
        from retriever.cross_encoder import QueryFocus

        terms = QueryFocus().terms  # the answer-locating words, as training has them
    out = []
    for name in names:
        docs, conversations = READERS[name](Path(data_dir) / FILES[name])
        out.append(build_set(name, docs, conversations, split, share, terms))
    return out
