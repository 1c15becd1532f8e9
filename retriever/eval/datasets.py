"""Evaluation sets for `lectern eval retrieval`: SQuAD-format JSON and BEIR folders.

Both become one shape: items to index (a SQuAD paragraph, a BEIR corpus document) and
queries, each with its relevance judgements {item id: grade}. A SQuAD question's only
relevant item is its own paragraph.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lectern.errors import LecternError


class DatasetError(LecternError):
    """An evaluation file is missing or not in the format it claims to be."""


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class Query:
    id: str
    text: str
    qrels: dict[str, float]
    # The gold answer texts (SQuAD), which `lectern eval answers` scores against.
    answers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    # Items are stored under the source "<prefix><item id>", so a hit's chunk.source
    # names the item it came from.
    prefix: str
    items: list[Item]
    queries: list[Query]
    info: dict[str, Any] = field(default_factory=dict)

    def source(self, item_id: str) -> str:
        return self.prefix + item_id

    def item_id(self, source: str) -> str:
        return source.removeprefix(self.prefix)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not JSON: {exc}") from exc


def _removed_ids(path: Path) -> set[str]:
    doc = _read_json(path)
    # {"canary": ..., "removed": {question id: answers}}, or a bare list of ids
    removed = doc.get("removed") if isinstance(doc, dict) else doc
    if not isinstance(removed, dict | list):
        raise DatasetError(
            f"{path}: expected {{'removed': {{id: answers}}}} or a list of ids, "
            f"got {type(removed).__name__}"
        )
    return {str(i) for i in removed}


def load_squad(path: Path, removed: Path | None = None) -> Dataset:
    """Every paragraph is an item "<title>/<index>"; every question not removed, a query."""
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f"{path} is not SQuAD format: no top-level 'data' list")
    skip = _removed_ids(removed) if removed is not None else set()
    items: list[Item] = []
    queries: list[Query] = []
    in_file = skipped = 0
    try:
        for article in data["data"]:
            title = str(article["title"])
            for i, para in enumerate(article["paragraphs"]):
                item = Item(f"{title}/{i}", title.replace("_", " "), para["context"])
                items.append(item)
                for qa in para["qas"]:
                    in_file += 1
                    if qa["id"] in skip:
                        skipped += 1
                        continue
                    golds = tuple(str(a["text"]) for a in qa.get("answers", []))
                    queries.append(
                        Query(str(qa["id"]), qa["question"], {item.id: 1.0}, golds)
                    )
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"{path} is not SQuAD format: {type(exc).__name__} {exc}") from exc
    info = {
        "format": "squad",
        "path": str(path),
        "version": data.get("version"),
        "articles": len(data["data"]),
        "items": len(items),
        "questions_in_file": in_file,
        "removed_ids_listed": len(skip),
        "removed_ids_skipped": skipped,
        "queries": len(queries),
        "identical_item_texts": sum(n - 1 for n in Counter(i.text for i in items).values()),
    }
    version = f" v{info['version']}" if info["version"] else ""
    return Dataset(f"SQuAD{version} ({path.name})", "squad/", items, queries, info)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{n} is not JSON: {exc}") from exc
        if not isinstance(row, dict) or "_id" not in row:
            raise DatasetError(f"{path}:{n} has no '_id': {line[:80]!r}")
        rows.append(row)
    return rows


def _qrels(path: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    try:
        with path.open(encoding="utf-8", newline="") as f:
            for n, row in enumerate(csv.reader(f, delimiter="\t"), start=1):
                if not row or (n == 1 and row[0] == "query-id"):
                    continue
                if len(row) < 3:
                    raise DatasetError(f"{path}:{n}: expected query-id, corpus-id, score: {row}")
                try:
                    out.setdefault(row[0], {})[row[1]] = float(row[2])
                except ValueError as exc:
                    raise DatasetError(f"{path}:{n}: score {row[2]!r} is not a number") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return out


def load_beir(folder: Path, split: str = "test") -> Dataset:
    """corpus.jsonl {_id, title, text}, queries.jsonl {_id, text}, qrels/<split>.tsv.

    Only queries with at least one relevant (score > 0) judgement in the split are kept.
    """
    corpus = _jsonl(folder / "corpus.jsonl")
    items = [Item(str(r["_id"]), str(r.get("title") or ""), str(r.get("text") or ""))
             for r in corpus]
    qrels = _qrels(folder / "qrels" / f"{split}.tsv")
    known = {i.id for i in items}
    queries = [
        Query(str(r["_id"]), str(r.get("text") or ""), qrels[str(r["_id"])])
        for r in _jsonl(folder / "queries.jsonl")
        if any(g > 0 for g in qrels.get(str(r["_id"]), {}).values())
    ]
    info = {
        "format": "beir",
        "path": str(folder),
        "split": split,
        "items": len(items),
        "queries_with_qrels": len(qrels),
        "queries": len(queries),
        "judgements": sum(len(q.qrels) for q in queries),
        "judged_items_not_in_corpus": sum(i not in known for q in queries for i in q.qrels),
        "identical_item_texts": sum(n - 1 for n in Counter(i.text for i in items).values()),
    }
    return Dataset(f"BEIR {folder.name} ({split})", f"beir/{folder.name}/", items, queries, info)


def sample_queries(dataset: Dataset, limit: int | None, seed: int = 0) -> Dataset:
    """A seeded random subset of the queries (in their original order); all items stay."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if limit is None or limit >= len(dataset.queries):
        return replace(dataset, info={**dataset.info, "queries_sampled": None})
    keep = sorted(random.Random(seed).sample(range(len(dataset.queries)), limit))
    return replace(
        dataset,
        queries=[dataset.queries[i] for i in keep],
        info={**dataset.info, "queries_sampled": limit, "seed": seed},
    )
