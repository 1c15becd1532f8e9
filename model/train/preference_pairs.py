"""Preference pairs from answer feedback: the reward model's training data.

A pair is an answer users rated up (chosen) and one they rated down (rejected) to the same
question, or a near-identical one, with the passages the chosen answer was written from:
what `RewardModel.score(question, passages, answer)` reads, so a reward model learns to
score the chosen answer above the rejected one on those passages.

`lectern feedback export --pairs` writes them as JSON lines (`write_pairs`); training
reads them back validated (`read_pairs`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lectern.errors import ConfigError
from lectern.protocols import Embedder
from lectern.types import LoggedAnswer
from model.question_groups import normalise_question, question_text

VERSION = 1


class PreferencePair(BaseModel):
    """One line of a pairs file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = VERSION
    question: str = Field(min_length=1)  # the chosen answer's (standalone) question
    passages: list[str]  # the chosen answer's prompt passages, in prompt order
    chosen: str
    rejected: str
    source: str = Field("feedback", min_length=1)  # where the preference came from
    chosen_id: str  # the answer log ids, to trace a pair back to its answers
    rejected_id: str

    @model_validator(mode="before")
    @classmethod
    def _known_version(cls, data: Any) -> Any:
        version = data.get("version", VERSION) if isinstance(data, dict) else VERSION
        if isinstance(version, int) and version > VERSION:
            raise ValueError(f"pair version {version} is newer than this Lectern reads "
                             f"({VERSION})")
        return data

    @model_validator(mode="after")
    def _a_preference(self) -> PreferencePair:
        if _same_text(self.chosen, self.rejected):
            raise ValueError("chosen and rejected are the same answer text")
        return self


@dataclass(frozen=True, slots=True)
class PairReport:
    """The pairs, and what became of every down-rated answer: each is paired, unmatched
    or skipped, so pairs + unmatched + skipped_identical + skipped_passages_gone == down."""

    pairs: list[PreferencePair]
    rated: int  # entries with feedback
    up: int
    down: int
    unmatched: int  # no up answer to the same or a near-identical question
    skipped_identical: int  # every such up answer says exactly what the down one says
    skipped_passages_gone: int  # every remaining one cites a chunk no longer stored


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def _similarities(
    downs: Sequence[LoggedAnswer], ups: Sequence[LoggedAnswer], embedder: Embedder | None
) -> np.ndarray:
    """[down, up] question similarity: 1 for the same normalised question, else the
    cosine of their embeddings (0 without an embedder, so only the same question pairs)."""
    down_keys = [normalise_question(question_text(e)) for e in downs]
    up_keys = [normalise_question(question_text(e)) for e in ups]
    sims = np.zeros((len(downs), len(ups)), dtype=np.float32)
    if embedder is not None and downs and ups:
        texts = sorted({question_text(e) for e in (*downs, *ups)})
        vector = {t: np.asarray(embedder.embed_query(t), dtype=np.float32) for t in texts}
        sims = (np.stack([vector[question_text(e)] for e in downs])
                @ np.stack([vector[question_text(e)] for e in ups]).T)
    same = np.array(down_keys, dtype=object)[:, None] == np.array(up_keys, dtype=object)[None, :]
    return np.where(same, 1.0, sims).reshape(len(downs), len(ups))


def pairs_from_feedback(
    entries: Iterable[LoggedAnswer],
    chunk_texts: Callable[[Sequence[int]], list[str] | None],
    embedder: Embedder | None = None,
    similarity: float = 0.9,
) -> PairReport:
    """Pairs of up- and down-rated answers to the same question (normalised text equal)
    or, given an embedder, a near-identical one (cosine of the questions ≥ `similarity`).

    Each down answer pairs with at most one up answer: the most similar (ties: the newest)
    whose text differs and whose passages are all still stored (`chunk_texts` of its
    passage ids; None when one is gone). Pairs come in the down answers' order of creation.
    """
    if not 0 < similarity <= 1:
        raise ValueError(f"similarity must be in (0, 1], got {similarity}")
    rated = [e for e in entries if e.rating is not None]
    order = sorted(rated, key=lambda e: (e.created, e.id))
    ups = [e for e in order if e.rating == "up"]
    downs = [e for e in order if e.rating == "down"]
    sims = _similarities(downs, ups, embedder)
    passages: dict[str, list[str] | None] = {}  # by up answer id: one look-up each

    def passages_of(up: LoggedAnswer) -> list[str] | None:
        if up.id not in passages:
            passages[up.id] = chunk_texts(up.passage_ids)
        return passages[up.id]

    pairs: list[PreferencePair] = []
    unmatched = identical = gone = 0
    for d, down in enumerate(downs):
        near = [u for u in range(len(ups)) if sims[d, u] >= similarity]
        near.sort(key=lambda u: (-float(sims[d, u]), -ups[u].created.timestamp(), ups[u].id))
        different = [ups[u] for u in near if not _same_text(ups[u].answer, down.answer)]
        pair = None
        for up in different:
            texts = passages_of(up)
            if texts is not None:
                pair = PreferencePair(
                    question=question_text(up), passages=texts, chosen=up.answer,
                    rejected=down.answer, chosen_id=up.id, rejected_id=down.id,
                )
                break
        if pair is not None:
            pairs.append(pair)
        elif not near:
            unmatched += 1
        elif not different:
            identical += 1
        else:
            gone += 1
    return PairReport(pairs, len(rated), len(ups), len(downs), unmatched, identical, gone)


def write_pairs(pairs: Iterable[PreferencePair], out: TextIO) -> int:
    """The pairs as JSON lines; how many were written."""
    n = 0
    for pair in pairs:
        out.write(pair.model_dump_json() + "\n")
        n += 1
    return n


def read_pairs(path: Path | str) -> list[PreferencePair]:
    """The pairs of a file `write_pairs` wrote, each validated; ConfigError naming the
    line of the first that is not a pair. Blank lines are skipped."""
    path = Path(path)
    pairs = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                pairs.append(PreferencePair.model_validate_json(line))
            except ValidationError as exc:
                raise ConfigError(f"{path}:{number} is not a preference pair: {exc}") from exc
    return pairs
