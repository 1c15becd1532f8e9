"""Tiny files shaped like the reranker's training sources (../shared/data), for the
cross-domain evaluation's tests.

With a hold-out share of 0.5, reranker_data.is_validation holds out the stories cnn-1,
cnn-2, race-2 and wiki-2 and keeps cnn-4 and race-1 for training.
"""

from __future__ import annotations

import json
from pathlib import Path

SHARE = 0.5
HELD = {"cnn-1", "cnn-2", "race-2", "wiki-2"}


def paragraph_split(text: str) -> list[str]:
    """A chunk per paragraph: the chunker's job is not what these tests test."""
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def _story(sid: str, source: str, paragraphs: list[str], qas: list[tuple[str, str]]) -> dict:
    return {
        "source": source, "id": sid, "filename": f"{sid}.txt", "name": sid,
        "story": "\n\n".join(paragraphs),
        "questions": [{"turn_id": n, "input_text": q} for n, (q, _) in enumerate(qas, 1)],
        "answers": [{"turn_id": n, "span_text": a} for n, (_, a) in enumerate(qas, 1)],
        "additional_answers": {},
    }


STORIES = [
    _story("cnn-1", "cnn", [
        "The harbour council met on Tuesday to discuss the new ferry timetable.",
        "Ferries to the northern islands will leave every forty minutes from June.",
    ], [("How often will ferries leave for the northern islands?", "every forty minutes"),
        ("Did she agree?", "yes")]),  # a follow-up: dropped
    _story("cnn-2", "cnn", [
        "A storm closed the mountain pass for three days last winter.",
        "Snow ploughs cleared the mountain road by Friday evening.",
    ], [("When was the mountain road cleared by the ploughs?", "by Friday evening")]),
    _story("cnn-4", "cnn", [
        "Local bakers won a regional prize for their rye bread recipe.",
    ], [("Which bread recipe won the regional prize?", "rye bread")]),
    _story("race-1", "race", [
        "Tom practised the violin every morning before school.",
    ], [("What instrument did Tom practise every morning?", "the violin")]),
    _story("race-2", "race", [
        "The class planted twelve oak trees behind the gymnasium.",
        "Each pupil watered one sapling during the dry summer weeks.",
    ], [("How many oak trees did the class plant?", "twelve oak trees")]),
    _story("wiki-2", "wikipedia", [
        "Basalt columns form when thick lava flows cool and contract slowly.",
    ], [("How do basalt columns form from lava flows?", "cool and contract slowly")]),
]

BOOLQ_TOPICS = [
    "copper wire", "granite quarry", "tidal mill", "glass kiln", "paper mill", "salt marsh",
    "iron bridge", "wool market", "canal lock", "lime kiln", "rope walk", "brick works",
]


def boolq_rows() -> list[dict]:
    return [
        {"question": f"is the {t} still in use", "answer": True, "title": t,
         "passage": f"{t.title()} -- The {t} opened in the old town and is still in use today."}
        for t in BOOLQ_TOPICS
    ]


def write_sources(folder: Path) -> Path:
    """A data folder holding CoQA and BoolQ in the shared layout."""
    (folder / "coqa").mkdir(parents=True)
    (folder / "coqa" / "coqa-dev.json").write_text(json.dumps({"version": "1.0",
                                                               "data": STORIES}))
    (folder / "boolq").mkdir()
    (folder / "boolq" / "combined.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in boolq_rows())
    )
    return folder


def write_reranker_record(folder: Path, share: float | None = SHARE) -> Path:
    """A reranker folder with only its record (and config.json, which marks a model)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"chunk_tokens": 200, "chunk_overlap": 32, "max_length": 64}
    if share is not None:
        config["val_fraction"] = share  # version 1's name for the hold-out share
    (folder / "reranker.json").write_text(json.dumps({"config": config}))
    (folder / "config.json").write_text("{}")
    return folder
