"""Logged questions grouped by meaning, for the admin Questions view.

Staff read the groups to see what students ask that the documents do not answer, so one
question asked ten ways should be one line with a count of ten, while two different
questions about one course should stay two lines (each may need its own document).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from lectern.protocols import Embedder
from lectern.types import LoggedAnswer

# Cosine distance within which (on average, between every pair across two groups) questions
# are one group. Checked with the default encoder (all-MiniLM-L6-v2) on course and fee
# questions: paraphrases ("prerequisites for CSC 340?", "prereqs of CSC 340", "which courses
# do I need before taking CSC 340?"; three wordings of the international fee) lie at
# similarity 0.69-0.91 and all join at 0.25 but not at 0.20; different questions on one
# topic (who teaches CSC 340 / its prerequisites, the part-time / international fee) lie at
# 0.66-0.76 and stay apart at 0.25 but merge at 0.30. One pair (CSC 340's cost / when it
# is offered, 0.79) still merges at 0.25: splitting paraphrases would be the worse error.
DEFAULT_THRESHOLD = 0.25
MAX_QUESTIONS = 10  # distinct wordings shown per group
_TRAILING = re.compile(r"[\s?!.,;:…]+$")


def question_text(entry: LoggedAnswer) -> str:
    """What the entry's question means on its own: the standalone question retrieval
    searched (a follow-up rewritten with its conversation), else the question as asked."""
    return entry.standalone_question.strip() or entry.question.strip()


def _asked(entry: LoggedAnswer) -> str:
    return entry.question.strip() or question_text(entry)


def normalise_question(text: str) -> str:
    """`text` lower-cased, whitespace collapsed, trailing punctuation dropped: two
    questions with the same normal form are the same question."""
    return _TRAILING.sub("", " ".join(text.lower().split()))


@dataclass(frozen=True, slots=True)
class QuestionGroup:
    count: int  # answers in the group
    example: str  # the question closest to the group's mean, as asked
    example_searched: str | None  # what was searched for it, when that differs (a follow-up)
    questions: tuple[str, ...]  # distinct wordings as asked, most asked first (MAX_QUESTIONS)
    abstained: int  # answers in the group that abstained
    rated_down: int  # answers in the group rated down
    answer_ids: tuple[str, ...]  # newest first
    last_asked: datetime


def group_questions(
    entries: Sequence[LoggedAnswer], embedder: Embedder, *, threshold: float = DEFAULT_THRESHOLD
) -> list[QuestionGroup]:
    """The entries' questions grouped by meaning, the largest groups first (ties: the most
    recently asked first).

    Each distinct question (by normal form) is embedded once and clustered with average
    linkage on cosine distance, `threshold` the distance at which merging stops.
    """
    if not 0 <= threshold <= 2:
        raise ValueError(f"threshold is a cosine distance in [0, 2], got {threshold}")
    by_key: dict[str, list[LoggedAnswer]] = {}
    for entry in entries:
        by_key.setdefault(normalise_question(question_text(entry)), []).append(entry)
    if not by_key:
        return []
    keys = list(by_key)
    # The newest wording of each distinct question is the one embedded (what it means on
    # its own) and shown (as it was asked: staff read what people typed).
    newest = {k: max(by_key[k], key=lambda e: e.created) for k in keys}
    shown = {k: question_text(newest[k]) for k in keys}
    vectors = np.stack([np.asarray(embedder.embed_query(shown[k]), dtype=np.float32)
                        for k in keys])
    labels = _cluster(vectors, threshold)

    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(int(label), []).append(index)
    groups = [_group([keys[i] for i in idx], vectors[idx], by_key, newest)
              for idx in members.values()]
    groups.sort(key=lambda g: (-g.count, -g.last_asked.timestamp(), g.example))
    return groups


def _cluster(vectors: np.ndarray, threshold: float) -> np.ndarray:
    if len(vectors) == 1:  # the clustering needs two points; one is its own group
        return np.zeros(1, dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    return AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=threshold
    ).fit_predict(vectors)


def _group(
    keys: list[str],
    vectors: np.ndarray,
    by_key: dict[str, list[LoggedAnswer]],
    newest: dict[str, LoggedAnswer],
) -> QuestionGroup:
    sizes = np.array([len(by_key[k]) for k in keys], dtype=np.float32)
    # The mean over the group's answers, so that a question asked often weighs more.
    mean = (vectors * sizes[:, None]).sum(axis=0) / sizes.sum()
    example = keys[int(np.argmax(vectors @ mean))]
    answers = sorted((e for k in keys for e in by_key[k]), key=lambda e: e.created,
                     reverse=True)
    # The wordings as asked, counted over the group's answers; each shown as last asked.
    tally: dict[str, int] = {}
    wording: dict[str, str] = {}
    for entry in answers:  # newest first: the first wording seen of a form is its newest
        text = _asked(entry)
        form = normalise_question(text)
        wording.setdefault(form, text)
        tally[form] = tally.get(form, 0) + 1
    forms = sorted(tally, key=lambda f: -tally[f])  # stable: ties stay newest first
    searched = question_text(newest[example])
    return QuestionGroup(
        count=len(answers),
        example=_asked(newest[example]),
        example_searched=searched if searched != _asked(newest[example]) else None,
        questions=tuple(wording[f] for f in forms[:MAX_QUESTIONS]),
        abstained=sum(e.abstained for e in answers),
        rated_down=sum(e.rating == "down" for e in answers),
        answer_ids=tuple(e.id for e in answers),
        last_asked=answers[0].created,
    )
