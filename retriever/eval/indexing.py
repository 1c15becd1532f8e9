"""Indexing an evaluation set through the normal ingest path, for `lectern eval retrieval`.

Each item is ingested with `Ingestor.ingest_text` under the source "<prefix><item id>", so
the chunks a search returns name the item they came from, whatever the chunker made of it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingest.pipeline import Ingestor
from lectern.protocols import Embedder
from lectern.settings import Settings
from retriever.corpus import Corpus
from retriever.eval.datasets import Dataset, DatasetError, Query

Log = Callable[[str], None]


def quiet(_: str) -> None:
    pass


class QueryMemo:
    """An Embedder that embeds each query once across the configurations that need it.

    Dense, hybrid and reranked hybrid all embed the same query. The vector is kept for
    the next call with the same text, and the seconds it took are added to `replayed`
    so that every configuration's latency still includes a query embedding.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.replayed = 0.0
        self._text: str | None = None
        self._vector: np.ndarray | None = None
        self._seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        # Everything but embed_query is the inner embedder's (dimension, fingerprint, ...).
        return getattr(self.inner, name)

    def embed_query(self, text: str) -> np.ndarray:
        if text == self._text and self._vector is not None:
            self.replayed += self._seconds
            return self._vector
        start = time.perf_counter()
        vector = self.inner.embed_query(text)
        self._seconds = time.perf_counter() - start
        self._text, self._vector = text, vector
        return vector


def tuned_settings(settings: Settings, encoder: str) -> Settings:
    """The same settings with another encoder, on a data dir of its own."""
    models = settings.models.model_copy(update={"encoder": encoder})
    return settings.model_copy(update={"models": models, "data_dir": settings.data_dir / "tuned"})


@dataclass(slots=True)
class IndexReport:
    stored_as: dict[str, str]  # item id -> the item its chunks are stored under
    statuses: Counter[str]
    failures: list[dict[str, str]]
    chunks: int
    seconds: float

    def qrels(self, query: Query) -> dict[str, float]:
        """The query's judgements on the items as stored (identical texts are stored once)."""
        out: dict[str, float] = {}
        for item, grade in query.qrels.items():
            key = self.stored_as.get(item, item)
            out[key] = max(out.get(key, grade), grade)
        return out

    def summary(self) -> dict[str, Any]:
        return {"statuses": dict(self.statuses), "failures": self.failures,
                "chunks": self.chunks, "seconds": round(self.seconds, 2)}


def plain(settings: Settings) -> Settings:
    """The settings of a corpus the harness searches: it reranks by itself (the +rerank
    configurations, with --reranker), so the corpus loads no reranker of its own."""
    return settings.model_copy(
        update={"retrieval": settings.retrieval.model_copy(update={"rerank": False})}
    )


def index_dataset(corpus: Corpus, dataset: Dataset, log: Log = quiet) -> IndexReport:
    """Ingest every item as text; a data dir that already holds them is reused as is."""
    ingestor = Ingestor(corpus.store, corpus.embedder, corpus.settings.ingest)
    stored_as: dict[str, str] = {}
    statuses: Counter[str] = Counter()
    failures: list[dict[str, str]] = []
    start = time.perf_counter()
    for n, item in enumerate(dataset.items, start=1):
        res = ingestor.ingest_text(dataset.source(item.id), item.title, item.text)
        statuses[res.status] += 1
        if res.status == "failed":
            failures.append({"item": item.id, "detail": res.detail})
        elif res.status == "duplicate":
            twin = corpus.store.get_document(res.document_id or "")
            stored_as[item.id] = dataset.item_id(twin.source) if twin else item.id
        else:
            stored_as[item.id] = item.id
        if n % 500 == 0:
            log(f"  indexed {n}/{len(dataset.items)} items ({time.perf_counter() - start:.0f} s)")
    corpus.refresh()
    # Documents of anything else in the store would compete in every ranking.
    stored = len(corpus.store.list_documents())
    own = sum(statuses[s] for s in ("added", "updated", "unchanged"))
    if stored != own:
        raise DatasetError(
            f"{corpus.settings.data_dir} holds {stored - own} documents that are not part of "
            f"{dataset.name}; give an empty or dedicated data dir"
        )
    return IndexReport(stored_as, statuses, failures, corpus.store.chunk_count(),
                       time.perf_counter() - start)
