"""Shared helpers for the benchmark scripts in bench/ (not a benchmark itself).

The scripts are run as `python bench/<name>.py`, which puts bench/ on sys.path, so they
import this module as `_common`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from lectern.protocols import Embedder
from lectern.reporting import (  # noqa: F401 - re-exported for the scripts
    RESULTS_DIR,
    CpuMonitor,
    environment,
    latency_ms,
    percentile,
    table,
    write_results,
)
from lectern.settings import Settings
from retriever.embedder import SentenceTransformerEmbedder

# `python bench/<script>.py` puts bench/ first on sys.path, so no script here may be named
# like a project package (bench/ingestion.py, not ingest.py); a spawned process (the parse
# workers) re-imports the script with the same path.


class TimedEmbedder:
    """An Embedder that delegates to a real one and accumulates the time spent in it.

    Satisfies lectern.protocols.Embedder structurally, so it can be handed to
    `Lectern(settings, embedder=...)`.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.passage_seconds = 0.0
        self.passage_calls = 0
        self.passage_texts = 0
        self.query_seconds = 0.0
        self.query_calls = 0
        self.token_seconds = 0.0
        self.token_calls = 0

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def warm_up(self) -> None:
        self.inner.warm_up()

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.inner.embed_passages(texts)
        finally:
            self.passage_seconds += time.perf_counter() - t0
            self.passage_calls += 1
            self.passage_texts += len(texts)

    def embed_query(self, text: str) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.inner.embed_query(text)
        finally:
            self.query_seconds += time.perf_counter() - t0
            self.query_calls += 1

    def count_tokens(self, text: str) -> int:
        t0 = time.perf_counter()
        try:
            return self.inner.count_tokens(text)
        finally:
            self.token_seconds += time.perf_counter() - t0
            self.token_calls += 1

    def reset(self) -> None:
        self.__init__(self.inner)

    def stats(self) -> dict:
        return {
            "embed_passages_seconds": round(self.passage_seconds, 3),
            "embed_passages_calls": self.passage_calls,
            "embed_passages_texts": self.passage_texts,
            "embed_query_seconds": round(self.query_seconds, 3),
            "embed_query_calls": self.query_calls,
            "count_tokens_seconds": round(self.token_seconds, 3),
            "count_tokens_calls": self.token_calls,
        }


def real_embedder(settings: Settings) -> tuple[SentenceTransformerEmbedder, dict]:
    """The encoder exactly as `Lectern.warm_up` builds it, plus what was chosen."""
    from api.components import build_embedder, device_plan

    plan = device_plan(settings)
    emb = build_embedder(settings, plan.device)
    return emb, {"device": plan.device, "dtype_plan": plan.dtype, "fingerprint": emb.fingerprint,
                 "folder": str(emb.folder), "backend": settings.models.encoder_backend}
