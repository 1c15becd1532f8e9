"""The retrieval evaluation harness behind `lectern eval retrieval`.

Indexes an evaluation set through the normal ingest path (`Ingestor.ingest_text`, the
same chunking and embedding as any document), runs every retriever configuration over
its queries and reports Recall@k, MRR@k, nDCG@k (each with its standard error) and query
latency side by side. The caller writes the result dict and its markdown (see
`lectern.reporting.write_results`); the result's "per_query" rows (each query's rank of
its first relevant item per configuration) go to a JSONL file of their own (write_ranks).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lectern.errors import ConfigError
from lectern.protocols import Reranker
from lectern.reporting import CpuMonitor, latency_ms, table
from lectern.types import ScoredChunk
from retriever.corpus import Corpus, Mode, rerank_top
from retriever.eval.datasets import Dataset, DatasetError, Query
from retriever.eval.indexing import Log, QueryMemo, index_dataset, quiet
from retriever.metrics import (
    first_relevant_rank,
    mean_scores,
    mean_se_scores,
    ranked_items,
    score_ranking,
)

# name -> (which encoder's index, search mode); "+rerank" may follow any of them.
RETRIEVALS: dict[str, tuple[str, Mode]] = {
    "bm25": ("base", "bm25"),
    "dense": ("base", "dense"),
    "hybrid": ("base", "hybrid"),
    "tuned-dense": ("tuned", "dense"),
    "tuned": ("tuned", "hybrid"),
}
RERANK = "+rerank"
# The corpus searched exactly as it serves: its calibration (retriever.calibration)
# chooses the fusion and whether and how to rerank. Run it after the corpus is calibrated
# and after the fixed configurations, which a calibration would otherwise change.
CALIBRATED = "calibrated"


@dataclass(frozen=True, slots=True)
class ConfigSpec:
    name: str
    encoder: str  # "base" or "tuned"
    mode: Mode
    rerank: bool
    served: bool = False  # the corpus's own search (CALIBRATED): its settings decide


def parse_configs(names: Sequence[str]) -> list[ConfigSpec]:
    specs = []
    for raw in names:
        name = raw.strip()
        if name == CALIBRATED:
            specs.append(ConfigSpec(name, "base", "hybrid", False, served=True))
            continue
        base = name.removesuffix(RERANK)
        if base not in RETRIEVALS:
            known = ", ".join([*RETRIEVALS, *(f"{r}{RERANK}" for r in RETRIEVALS), CALIBRATED])
            raise ConfigError(f"unknown configuration {raw!r}; known: {known}")
        encoder, mode = RETRIEVALS[base]
        specs.append(ConfigSpec(name, encoder, mode, name.endswith(RERANK)))
    if len({s.name for s in specs}) != len(specs):
        raise ConfigError(f"configurations listed twice: {list(names)}")
    return specs


def default_configs(reranker: bool, tuned: bool) -> list[str]:
    """Every configuration the given models make possible, simplest first."""
    names = ["bm25", "dense", "hybrid"]
    if reranker:
        names.append("hybrid" + RERANK)
    if tuned:
        names.append("tuned" + RERANK if reranker else "tuned")
    return names


class RetrievalEvaluation:
    """Runs configurations over a dataset's queries and aggregates their metrics.

    A configuration is a search mode on the base or the tuned encoder's index, optionally
    followed by the reranker: the top `rerank_candidates` chunks are reordered by it and
    the rest of the ranking follows them unchanged, so Recall@k beyond the candidates
    stays comparable with the configuration without reranking.
    """

    def __init__(
        self,
        configs: Sequence[str],
        *,
        rerank_candidates: int = 20,
        recall_ks: Sequence[int] = (1, 5, 20),
        cutoff: int = 10,
        depth: int | None = None,
        warmup: int = 5,
    ) -> None:
        self.specs = parse_configs(configs)
        if not self.specs:
            raise ConfigError("no configuration to evaluate")
        if rerank_candidates < 1:
            raise ConfigError(f"rerank_candidates must be at least 1, got {rerank_candidates}")
        if not recall_ks or min(*recall_ks, cutoff) < 1:
            raise ConfigError(f"cutoffs must be at least 1, got {list(recall_ks)} and {cutoff}")
        if depth is not None and depth < 1:
            raise ConfigError(f"depth must be at least 1, got {depth}")
        if warmup < 0:
            raise ConfigError(f"warmup must be 0 or more, got {warmup}")
        self.rerank_candidates = rerank_candidates
        self.recall_ks = sorted(set(recall_ks))
        self.cutoff = cutoff
        self.max_k = max(*self.recall_ks, cutoff)
        self.depth = depth
        self.warmup = warmup

    def _with(self, names: Sequence[str]) -> RetrievalEvaluation | None:
        if not names:
            return None
        return RetrievalEvaluation(
            names, rerank_candidates=self.rerank_candidates, recall_ks=self.recall_ks,
            cutoff=self.cutoff, depth=self.depth, warmup=self.warmup,
        )

    def only(self, *names: str) -> RetrievalEvaluation | None:
        """The same evaluation of just these configurations (None: none of them)."""
        return self._with([s.name for s in self.specs if s.name in names])

    def without(self, *names: str) -> RetrievalEvaluation | None:
        """The same evaluation of the other configurations (None: no other)."""
        return self._with([s.name for s in self.specs if s.name not in names])

    @property
    def needs_tuned(self) -> bool:
        return any(s.encoder == "tuned" for s in self.specs)

    @property
    def needs_reranker(self) -> bool:
        return any(s.rerank for s in self.specs)

    def require(self, reranker: bool, tuned: bool) -> None:
        """Raise ConfigError unless the models the configurations need are given."""
        if self.needs_reranker and not reranker:
            names = ", ".join(s.name for s in self.specs if s.rerank)
            raise ConfigError(f"{names} need a reranker (--reranker)")
        if self.needs_tuned and not tuned:
            names = ", ".join(s.name for s in self.specs if s.encoder == "tuned")
            raise ConfigError(f"{names} need a tuned encoder (--tuned-encoder)")

    def _search(
        self,
        spec: ConfigSpec,
        corpus: Corpus,
        reranker: Reranker | None,
        text: str,
        depth: int,
    ) -> tuple[list[ScoredChunk], float]:
        """The configuration's ranking and its latency, query embedding included."""
        memo = corpus.embedder if isinstance(corpus.embedder, QueryMemo) else None
        replayed = memo.replayed if memo else 0.0
        start = time.perf_counter()
        if spec.served:
            hits = corpus.search(text, depth, spec.mode)
            seconds = time.perf_counter() - start
            return hits, seconds + ((memo.replayed - replayed) if memo else 0.0)
        hits = corpus.search(text, depth, spec.mode, rerank=False)  # reranked below, once
        if spec.rerank and reranker is not None:
            hits = rerank_top(reranker, text, hits, self.rerank_candidates, depth)
        seconds = time.perf_counter() - start
        return hits, seconds + ((memo.replayed - replayed) if memo else 0.0)

    def run(
        self,
        dataset: Dataset,
        base: Corpus,
        tuned: Corpus | None = None,
        reranker: Reranker | None = None,
        log: Log = quiet,
    ) -> dict[str, Any]:
        """Index the dataset on each corpus needed, then evaluate every configuration."""
        self.require(reranker is not None, tuned is not None)
        if not dataset.queries:
            raise DatasetError(f"{dataset.name} has no queries to evaluate")
        corpora = {"base": base}
        if self.needs_tuned and tuned is not None:
            corpora["tuned"] = tuned
        reports = {}
        for key, corpus in corpora.items():
            log(f"indexing {len(dataset.items)} items ({key} encoder)")
            reports[key] = index_dataset(corpus, dataset, log)
        # Hybrid fuses max(candidates, top_k) hits per retriever, so a depth of at least
        # `candidates` keeps its top chunks the same as a search for fewer would give.
        depth = self.depth or max(
            base.settings.retrieval.candidates, self.max_k, self.rerank_candidates
        )
        for q in dataset.queries[: self.warmup]:
            for spec in self.specs:
                self._search(spec, corpora[spec.encoder], reranker, q.text, depth)

        scores: dict[str, list[dict[str, float]]] = {s.name: [] for s in self.specs}
        rows: list[dict[str, Any]] = []
        gain = f"ndcg@{self.cutoff}"
        seconds: dict[str, list[float]] = {s.name: [] for s in self.specs}
        short: Counter[str] = Counter()
        full = min(self.max_k, len(dataset.items))
        monitor = CpuMonitor()  # other processes' load skews the latencies
        start = time.perf_counter()
        for n, query in enumerate(dataset.queries):
            # Rotate which configuration goes first, so a change in machine load over the
            # run falls on all of them alike.
            shift = n % len(self.specs)
            found: dict[str, tuple[int | None, str | None, float]] = {}
            for spec in self.specs[shift:] + self.specs[:shift]:
                hits, secs = self._search(
                    spec, corpora[spec.encoder], reranker, query.text, depth
                )
                items = ranked_items(hits, lambda h: dataset.item_id(h.chunk.source))
                ranked = items[: self.max_k]
                qrels = reports[spec.encoder].qrels(query)
                scored = score_ranking(ranked, qrels, self.recall_ks, self.cutoff)
                scores[spec.name].append(scored)
                seconds[spec.name].append(secs)
                short[spec.name] += len(ranked) < full
                found[spec.name] = (
                    first_relevant_rank(items, qrels), items[0] if items else None, scored[gain]
                )
            rows.append(self._row(query, reports["base"].qrels(query), found, gain))
            if (n + 1) % 1000 == 0:
                log(f"  {n + 1}/{len(dataset.queries)} queries "
                    f"({time.perf_counter() - start:.0f} s)")

        cpu = monitor.stop()
        configs = {
            s.name: {
                "encoder": s.encoder,
                "mode": s.mode,
                "rerank": s.rerank,
                **{k: round(v, 4) for k, v in mean_scores(scores[s.name]).items()},
                "se": {k: None if v is None else round(v, 4)
                       for k, v in mean_se_scores(scores[s.name]).items()},
                "latency": latency_ms(seconds[s.name]),
                "queries_with_fewer_items_than_max_k": short[s.name],
            }
            for s in self.specs
        }
        return {
            "evaluation": "retrieval",
            "dataset": {"name": dataset.name, **dataset.info},
            "queries_evaluated": len(dataset.queries),
            "method": {
                "recall_ks": self.recall_ks,
                "cutoff": self.cutoff,
                "chunks_searched": depth,
                "rerank_candidates": self.rerank_candidates,
                "reranker": type(reranker).__name__ if reranker else None,
                "warmup_queries": min(self.warmup, len(dataset.queries)),
            },
            "configs": configs,
            "cpu_during_queries": cpu,
            "index": {key: r.summary() for key, r in reports.items()},
            "encoders": {key: s.embedder.fingerprint for key, s in corpora.items()},
            "fusion": {key: s.fusion for key, s in corpora.items()},
            "settings": base.settings.model_dump(mode="json"),
            "per_query": rows,
        }

    def _row(
        self,
        query: Query,
        qrels: dict[str, float],
        found: dict[str, tuple[int | None, str | None, float]],
        gain: str,
    ) -> dict[str, Any]:
        """One query's JSONL row: per configuration (in the order given, whichever ran
        first), the rank of its first relevant item (None: not among the chunks
        searched), the item it put first and its nDCG."""
        names = [s.name for s in self.specs]
        return {
            "query": query.id,
            "text": query.text,
            "relevant": sorted(item for item, grade in qrels.items() if grade > 0),
            "ranks": {name: found[name][0] for name in names},
            "top": {name: found[name][1] for name in names},
            gain: {name: round(found[name][2], 4) for name in names},
        }


def write_ranks(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """The per-query rows of a result ("per_query"), one JSON object a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _delta(value: float, reference: float | None) -> str:
    return "—" if reference is None else f"{value - reference:+.3f}"


def _se(config: dict[str, Any], key: str) -> str:
    """The standard error of a config's `key`, "—" when unknown (one query, or a result
    written before errors were)."""
    se = config.get("se", {}).get(key)
    return "—" if se is None else f"±{se:.3f}"


def _fusion(fusion: dict[str, dict[str, float]]) -> str:
    if not fusion:
        return ""
    return "Hybrid fusion: " + "; ".join(
        f"{key} RRF k {f['rrf_k']}, weights BM25 {f['bm25_weight']:g}, dense {f['dense_weight']:g}"
        for key, f in fusion.items()
    ) + ". "


def markdown(result: dict[str, Any]) -> str:
    """The result as a page: one row per configuration, with each row's gain visible."""
    ds, m, configs = result["dataset"], result["method"], result["configs"]
    cut = m["cutoff"]
    keys = [f"recall@{k}" for k in m["recall_ks"]] + [f"mrr@{cut}", f"ndcg@{cut}"]
    gain = f"ndcg@{cut}"
    baseline = "bm25" if "bm25" in configs else next(iter(configs))
    rows, previous = [], None
    for name, c in configs.items():
        rows.append([
            f"`{name}`", *(f"{c[k]:.3f}" for k in keys), _se(c, gain),
            f"{c['latency']['p50_ms']:.1f}",
            _delta(c[gain], previous),
            _delta(c[gain], None if name == baseline else configs[baseline][gain]),
        ])
        previous = c[gain]
    headers = [
        "configuration", *(f"R@{k}" for k in m["recall_ks"]), f"MRR@{cut}", f"nDCG@{cut}",
        "± SE", "p50 ms", f"ΔnDCG@{cut} vs row above", f"ΔnDCG@{cut} vs {baseline}",
    ]
    sample = (
        f" (a sample, seed {ds['seed']}, of {ds['queries']})" if ds.get("queries_sampled") else ""
    )
    removed = (
        f"; {ds['removed_ids_skipped']} removed question ids left out"
        if ds.get("removed_ids_skipped") else ""
    )
    indexed = "; ".join(
        f"{key} encoder `{result['encoders'][key]}`: {ix['chunks']} chunks ("
        + ", ".join(f"{n} {s}" for s, n in sorted(ix["statuses"].items()))
        + f") in {ix['seconds']:.0f} s"
        for key, ix in result["index"].items()
    )
    reranked = any(c["rerank"] for c in configs.values())
    share = result.get("cpu_during_queries", {}).get("other_processes_share_of_capacity")
    when = result.get("environment", {}).get("date")
    out = [
        f"# Retrieval evaluation: {ds['name']}",
        "",
        f"{ds['items']} items indexed through the ingest path, "
        f"{result['queries_evaluated']} queries{sample}{removed}. {indexed}.",
        "",
        table(headers, rows),
        "",
        f"Every configuration searches {m['chunks_searched']} chunks; a chunk counts for the "
        "item it came from, and an item ranks where its best chunk ranks; ± SE is the "
        f"standard error of the nDCG@{cut} mean over the queries. "
        + (f"`+rerank`: the top {m['rerank_candidates']} chunks reordered by {m['reranker']}, "
           "the rest after them. " if reranked else "")
        + ("`tuned`: hybrid with the tuned encoder. " if "tuned" in result["encoders"] else "")
        + _fusion(result.get("fusion", {}))
        + f"Latency: one query at a time after {m['warmup_queries']} warm-up queries, query "
        "embedding" + (" and reranking" if reranked else "") + " included"
        + (f"; other processes took {share:.0%} of the machine's CPU meanwhile" if share
           is not None else "")
        + (f"; run {when}." if when else "."),
    ]
    return "\n".join(out)
