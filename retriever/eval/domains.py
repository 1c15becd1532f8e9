"""Cross-domain evaluation sets from the reranker's training sources (issue 17).

One Dataset per domain: CoQA split by its stories' `source` (race, reddit, science,
mctest, gutenberg, cnn, wikipedia), BoolQ, NarrativeQA and QuAC. The sources are read,
chunked and paired exactly as `lectern train reranker` reads them (reranker_data), so an
item is a training chunk and a query's relevant items are the chunks holding its answer.
Every document of the domain is indexed, so the other documents are the distractors;
only questions on documents the reranker held out (reranker_data.is_validation with the
hold-out share its record names) are asked. Its training never saw those questions;
their passages could have been drawn as negatives for other questions.

`with_long_titles` gives the same set with every title a URL of about 40 encoder tokens
made from the item id alone: news corpora have such titles, and the heading takes its
share of the reranker's and the encoder's window (issue 17, "the heading eats the
reranker's window"). SQuAD is never read here: it is the evaluation set of its own.
"""

from __future__ import annotations

import hashlib
import random
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lectern.errors import ConfigError
from lectern.text import words
from lectern.types import Chunk
from retriever.eval.datasets import Dataset, Item, Query
from retriever.records import RerankerRecord
from retriever.train import reranker_data as rd
from retriever.train.reranker_config import FILES

COQA_SOURCES = ("race", "reddit", "science", "mctest", "gutenberg", "cnn", "wikipedia")
# domain -> (training source, CoQA story source or None for the whole file)
DOMAINS: dict[str, tuple[str, str | None]] = {
    **{rd.domain_of("coqa", s): ("coqa", s) for s in COQA_SOURCES},
    "boolq": ("boolq", None),
    "narrativeqa": ("narrativeqa", None),
    "quac": ("quac", None),
}
# BoolQ has 13.8k chunks: indexing them all (twice, with long titles) would take most of
# a run's time for one row. A larger domain keeps every held-out document and a seeded
# sample of the rest up to this many chunks.
MAX_ITEMS = 4000
LONG_TITLE = (
    "https://www.example.edu/news/{year}/{month:02d}/{day:02d}/section/{slug}-{key}"
    "/index.html?utm_source=newsletter"
)
SLUG_WORDS = 8  # of the item's own title, kept in the URL as a site would

Split = Callable[[str], list[str]]


def parse_domains(text: str | None) -> list[str]:
    """Comma-separated domain names, checked; None or empty: every domain."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in DOMAINS]
    if unknown:
        raise ConfigError(f"unknown domain {unknown[0]!r}; known: {', '.join(DOMAINS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"domains listed twice: {names}")
    return names or list(DOMAINS)


def holdout_share(reranker_dir: Path) -> float:
    """The share of documents the reranker in `reranker_dir` held out, from its record."""
    record = RerankerRecord.load(Path(reranker_dir))
    share = (record.config.model_extra or {}).get("holdout_share") if record else None
    if not isinstance(share, int | float) or not 0 < share < 1:
        raise ConfigError(
            f"{reranker_dir}: its {RerankerRecord.FILE} names no hold-out share "
            f"(got {share!r}), so its held-out documents are unknown"
        )
    return float(share)


def _tokenizer(folder: Path) -> Any:
    from lectern.optional import require

    transformers = require("transformers", "model")
    # Counting only: the reranker's 64-token input limit does not apply, and would warn.
    return transformers.AutoTokenizer.from_pretrained(str(folder), model_max_length=10**9)


def token_count(reranker_dir: Path) -> Callable[[str], int]:
    """Tokens of a text in the reranker's tokenizer (its backbone's: the encoder's)."""
    tokenizer = _tokenizer(Path(reranker_dir))
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def training_split(reranker_dir: Path) -> Split:
    """Text to chunks as the reranker's training chunked it: its tokenizer, its record's
    chunk size and overlap (reranker._chunker, the training's own)."""
    from retriever.train.reranker import _chunker
    from retriever.train.reranker_config import TrainConfig

    folder = Path(reranker_dir)
    record = RerankerRecord.load(folder)
    extra = (record.config.model_extra or {}) if record else {}
    defaults = TrainConfig(folder, folder, folder)
    cfg = replace(
        defaults,
        chunk_tokens=extra.get("chunk_tokens", defaults.chunk_tokens),
        chunk_overlap=extra.get("chunk_overlap", defaults.chunk_overlap),
    )
    return _chunker(_tokenizer(folder), cfg)


def _item_id(chunk: Chunk) -> str:
    return f"{chunk.document_id}/{chunk.position}"


def _kept_documents(
    by_doc: dict[str, list[Chunk]], held: set[str], max_items: int | None, rng: random.Random
) -> list[str]:
    """Every held-out document, then others in a seeded order while the chunks fit."""
    docs = list(by_doc)
    if max_items is None or sum(len(c) for c in by_doc.values()) <= max_items:
        return docs
    kept = {d for d in docs if d in held}
    total = sum(len(by_doc[d]) for d in kept)
    others = [d for d in docs if d not in held]
    rng.shuffle(others)
    for d in others:
        if total + len(by_doc[d]) > max_items:
            continue
        kept.add(d)
        total += len(by_doc[d])
    return [d for d in docs if d in kept]  # the file's order


def domain_dataset(
    name: str,
    data: rd.SourceData,
    share: float,
    documents: set[str] | None = None,
    max_items: int | None = MAX_ITEMS,
    seed: int = 0,
    path: Path | None = None,
) -> Dataset:
    """The domain's chunks as items, its held-out questions as queries.

    documents: the source's documents that form the domain (None: all of them).
    """
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    by_doc: dict[str, list[Chunk]] = {}
    for c in data.chunks:
        if documents is None or c.document_id in documents:
            by_doc.setdefault(c.document_id, []).append(c)
    held = {d for d in by_doc if rd.is_validation(d, share)}
    kept = _kept_documents(by_doc, held, max_items, random.Random(f"{name}-{seed}"))
    chunks = [c for d in kept for c in by_doc[d]]
    items = [Item(_item_id(c), c.title, c.text) for c in chunks]
    item_of = {c.id: _item_id(c) for c in chunks}
    examples = [e for e in data.examples if e.doc in by_doc]
    asked = [e for e in examples if e.doc in held]
    per_doc: Counter[str] = Counter()
    queries = []
    for e in asked:
        # "<document>/q<n>": the n-th question asked of that document
        queries.append(Query(f"{e.doc}/q{per_doc[e.doc]}", e.question,
                             {item_of[i]: 1.0 for i in sorted(e.relevant)}))
        per_doc[e.doc] += 1
    total = sum(len(c) for c in by_doc.values())
    info = {
        "format": "training-source",
        "source": data.name,
        "path": str(path) if path else None,
        "holdout_share": share,
        "documents": len(by_doc),
        "held_out_documents": len(held),
        "documents_indexed": len(kept),
        "documents_sampled": None if len(kept) == len(by_doc) else {
            "seed": seed, "max_items": max_items, "chunks_in_domain": total,
            "note": "every held-out document kept; the others a seeded sample",
        },
        "items": len(items),
        "questions_paired": len(examples),
        "training_questions_left_out": len(examples) - len(asked),
        "queries": len(queries),
        "relevant_per_query": round(statistics.fmean(len(q.qrels) for q in queries), 3)
        if queries else None,
        "identical_item_texts": sum(n - 1 for n in Counter(i.text for i in items).values()),
    }
    return Dataset(name, f"domain/{name}/", items, queries, info)


def load_domains(
    data_dir: Path,
    names: Sequence[str],
    split: Split,
    share: float,
    *,
    terms: Callable[[str], set[str]] | None = None,
    max_items: int | None = MAX_ITEMS,
    seed: int = 0,
) -> list[Dataset]:
    """The named domains (see DOMAINS), in that order; each source is read once.

    terms: the answer-locating words, as training has them (the reranker's QueryFocus).
    """
    unknown = [n for n in names if n not in DOMAINS]
    if unknown:
        raise ConfigError(f"unknown domain {unknown[0]!r}; known: {', '.join(DOMAINS)}")
    if terms is None:
        from retriever.cross_encoder import QueryFocus

        terms = QueryFocus().terms
    sources: dict[str, rd.SourceData] = {}
    out = []
    for name in names:
        source, story_source = DOMAINS[name]
        if source not in sources:
            sources[source] = rd.load_source(source, Path(data_dir), split, terms)
        path = Path(data_dir) / FILES[source]
        documents = None
        if story_source is not None:
            domain = rd.domain_of(source, story_source)
            documents = {d for d, of in sources[source].domains.items() if of == domain}
        out.append(domain_dataset(name, sources[source], share, documents, max_items, seed, path))
    return out


def long_title(item_id: str, title: str = "") -> str:
    """A URL-like title of about 40 encoder tokens (more for a titled item): the item's
    own title as the URL's slug, as a news or university site writes it, and otherwise
    the same words for every item. It carries what the short title carried and nothing
    of the text, so a change from the short-title run is the length's doing."""
    digest = hashlib.sha1(item_id.encode()).hexdigest()
    n = int(digest[:8], 16)
    slug = "-".join(words(title)[:SLUG_WORDS])
    return LONG_TITLE.format(
        year=2015 + n % 10, month=1 + n % 12, day=1 + n % 28, key=digest[8:18],
        slug=slug or "article",
    )


def with_long_titles(dataset: Dataset, count: Callable[[str], int] | None = None) -> Dataset:
    """The same items and queries, every title replaced by long_title(item id, title).

    count: an encoder token counter, to record the titles' length.
    """
    items = [replace(i, title=long_title(i.id, i.title)) for i in dataset.items]
    info: dict = {"of": dataset.name, "template": LONG_TITLE}
    if count is not None and items:
        info["title_tokens_median"] = statistics.median(count(i.title) for i in items)
    return replace(
        dataset, name=f"{dataset.name} (long titles)", items=items,
        info={**dataset.info, "long_titles": info},
    )
