"""The generator's training set: every source's examples, split by document.

Also writes the held-out questions as a SQuAD-format file, so `lectern eval answers`
measures a setting on the training sources' held-out documents, never on SQuAD dev.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ingest.chunker import Chunker
from lectern.files import atomic_write
from lectern.protocols import Embedder
from model.train.lora_config import DataCounts
from model.train.lora_data import (
    HELDOUT_BELOW,
    Example,
    ExampleBuilder,
    build_examples,
    counts,
    gold_chunk,
    held_out,
    rebalanced,
)
from model.train.qa_sources import SOURCES, SourceData, SourceQuestion, read_source

Log = Callable[[str], None]
SPLIT_RULE = (f"a document is held out when the first byte of sha1('<source>/<doc id>') "
              f"is below {HELDOUT_BELOW} (of 256)")


@dataclass(slots=True)
class GeneratorData:
    train: list[Example]
    heldout: list[Example]
    counts: DataCounts
    heldout_squad: dict  # the held-out answerable questions, SQuAD v1.1 format


def _split(data: SourceData, heldout: bool) -> SourceData:
    keep = {d.doc_id for d in data.docs if held_out(d.source, d.doc_id) == heldout}
    return SourceData([d for d in data.docs if d.doc_id in keep],
                      [q for q in data.questions if q.doc_id in keep])


def _squad(builder: ExampleBuilder, examples: Sequence[Example]) -> list[dict]:
    """One article per held-out document; each chunk a paragraph; questions on their gold."""
    articles: dict[str, dict] = {}
    for e in examples:
        if e.kind != "answer":
            continue
        chunks = builder.by_doc[e.doc_id]
        q = SourceQuestion(e.source, e.doc_id, e.question, e.answers)
        gold = gold_chunk(q, chunks)
        doc = builder.docs[e.doc_id]
        art = articles.setdefault(e.doc_id, {
            "title": doc.title or f"{e.source} {e.doc_id}",
            "paragraphs": [{"context": c.text, "qas": []} for c in chunks],
        })
        para = art["paragraphs"][[c.id for c in chunks].index(gold.id)]
        answers = [{"text": a, "answer_start": gold.text.find(a)}  # -1: not a span
                   for a in e.answers]
        para["qas"].append({"id": f"{e.source}-{e.doc_id}-{len(para['qas'])}",
                            "question": e.question, "answers": answers})
    return list(articles.values())


def build_generator_data(
    data_dir: Path,
    embedder: Embedder,
    chunker: Chunker,
    passages: int,
    budgets: Sequence[int],
    limits: dict[str, int | None],
    unanswerable_share: float,
    seed: int = 0,
    log: Log = print,
    given: dict[str, SourceData] | None = None,
) -> GeneratorData:
    """Examples of every source in `limits` (name -> questions, None: all): the shared data
    sets are read from `data_dir`; `given` holds sources already read (the corpus's own
    questions, "corpus")."""
    given = given or {}
    train: list[Example] = []
    heldout: list[Example] = []
    squad: list[dict] = []
    next_id = 0
    for name in limits:
        if name not in SOURCES and name not in given:
            raise ValueError(f"unknown source {name!r}; use {sorted(SOURCES)}")
        data = given[name] if name in given else read_source(name, data_dir)
        for part, out in ((False, train), (True, heldout)):
            split = _split(data, part)
            builder = ExampleBuilder(split, embedder, chunker, passages, budgets, seed, next_id)
            next_id += len(builder.chunks)
            limit = limits[name]
            if part and limit is not None:
                limit = max(1, limit // 9)  # the held-out share of the documents is ~1/10
            made = build_examples(builder, split.questions, limit, unanswerable_share, seed)
            out.extend(made)
            if part:
                squad.extend(_squad(builder, made))
        log(f"{name}: {counts(e for e in train if e.source == name)} train, "
            f"{sum(e.source == name for e in heldout)} held out")
    data_counts = DataCounts(train=counts(train), heldout=counts(heldout),
                             unanswerable_share=unanswerable_share, budgets=list(budgets),
                             passages=passages, split_rule=SPLIT_RULE)
    return GeneratorData(train, heldout, data_counts,
                         {"version": "1.1", "data": squad})


def rebalance(data: GeneratorData, abstain_share: float, seed: int) -> GeneratorData:
    """The same data with abstentions cut to `abstain_share` (lora_data.rebalanced)."""
    train = rebalanced(data.train, abstain_share, seed)
    heldout = rebalanced(data.heldout, abstain_share, seed)
    c = data.counts.model_copy(update={"train": counts(train), "heldout": counts(heldout),
                                       "abstain_share": abstain_share})
    return GeneratorData(train, heldout, c, data.heldout_squad)


def save(data: GeneratorData, folder: Path) -> None:
    """examples-train.jsonl, examples-heldout.jsonl, heldout-squad.json, data-counts.json."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", data.train), ("heldout", data.heldout)):
        lines = "".join(json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in rows)
        atomic_write(folder / f"examples-{name}.jsonl", lambda f, t=lines: f.write(t.encode()))
    atomic_write(folder / "heldout-squad.json",
                 lambda f: f.write(json.dumps(data.heldout_squad).encode()))
    atomic_write(folder / "data-counts.json",
                 lambda f: f.write(data.counts.model_dump_json(indent=2).encode()))


def load(folder: Path) -> GeneratorData:
    """What save() wrote (a resumed run trains on exactly the same examples)."""
    def rows(name: str) -> list[Example]:
        out = []
        for line in (folder / f"examples-{name}.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                raw = json.loads(line)
                out.append(Example(**{**raw, "answers": tuple(raw["answers"])}))
        return out

    return GeneratorData(
        rows("train"), rows("heldout"),
        DataCounts.model_validate_json((folder / "data-counts.json").read_text()),
        json.loads((folder / "heldout-squad.json").read_text()),
    )
