"""Searching the conversational benchmark's turns (conversations.py) as Lectern serves them.

Each set is indexed on a corpus of its own (retriever/eval/indexing.index_dataset, the
ingest path). Every first question is searched as asked: the reference. Every follow-up
is searched as asked, "none", the (a) of issue 19, and as each rewrite variant makes it
stand alone with its gold history, the (b)s. A search is the answering path's: hybrid,
then the corpus's reranker over `candidates` fused chunks (generation.rerank_candidates,
what /api/v1/ask reranks), and BM25 alone beside it. The time each rewrite takes is
recorded per follow-up; a variant that calls the generator rewrites a seeded sample of
the follow-ups only (it takes about a second a turn on two cores).
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lectern.errors import ConfigError
from lectern.protocols import Message
from lectern.reporting import CpuMonitor, latency_ms
from lectern.types import Turn
from model.eval.conversations import ConversationSet, ConvItem
from model.rewrite import ANSWER_WORDS, AsAsked, GeneratorRewriter, HistoryRewriter, Rewriter
from retriever.corpus import Corpus
from retriever.eval.indexing import Log, index_dataset, quiet
from retriever.metrics import ranked_items, score_ranking

Generate = Callable[[Sequence[Message]], str]
CONFIGS = ("served", "bm25")  # hybrid + reranker as served; BM25 alone
RECALL_KS = (5,)
CUTOFF = 10
DEPTH = 20  # chunks searched: one item may be stored as several, and MRR@10 reads 10 items
AS_ASKED = "none"
# The answer words are spelled out, so that a change of rewrite.ANSWER_WORDS does not make
# two names one.
DEFAULT_VARIANTS = (
    AS_ASKED, "history:1:w40", "history:2:w40", "history:3:w40", "history:2:w40:all",
    "history:2:w0", "history:2:w10", "generator:2",
)
_SPEC = re.compile(r"^(history|generator):(\d+)(?::w(\d+))?(:all)?$")


@dataclass(frozen=True, slots=True)
class Variant:
    """How a follow-up is searched: as asked, or rewritten by one of model.rewrite's."""

    name: str  # canonical: "history:N:wK", ":all" added when every follow-up takes history
    method: str  # "none", "history" or "generator"
    turns: int = 0
    answer_words: int = ANSWER_WORDS  # of each earlier answer the history variant adds
    referring_only: bool = True  # history: only to a follow-up that refers back

    @property
    def calls_model(self) -> bool:
        return self.method == "generator"

    @property
    def cost(self) -> tuple[int, int]:
        """What the rule calls cheaper: no model call first, then fewer turns read."""
        return int(self.calls_model), self.turns

    @property
    def label(self) -> str:
        if self.method == AS_ASKED:
            return "(a) as asked"
        turns = f"(b) {self.method}, {self.turns} turn{'s' * (self.turns > 1)}"
        if self.method != "history":
            return turns
        words = ", questions only" if self.answer_words == 0 else (
            f", {self.answer_words} answer words")
        return turns + words + ("" if self.referring_only else ", every follow-up")

    def rewriter(self, generate: Generate | None) -> Rewriter:
        if self.method == "history":
            return HistoryRewriter(self.turns, self.referring_only, self.answer_words)
        if self.method == "generator":
            if generate is None:
                raise ConfigError(f"variant {self.name!r} needs the generator")
            return GeneratorRewriter(generate, self.turns)
        return AsAsked()


def parse_variant(spec: str) -> Variant:
    """"none", "history:N[:wK][:all]" (K answer words, default rewrite.ANSWER_WORDS, 0:
    the questions only; ":all": every follow-up, not only those that refer back) or
    "generator:N", N the turns read. Named canonically, so a name says what ran."""
    name = spec.strip()
    if name == AS_ASKED:
        return Variant(name, AS_ASKED)
    m = _SPEC.match(name)
    if m is None or int(m[2]) < 1 or (m[1] == "generator" and (m[3] or m[4])):
        raise ConfigError(f"unknown variant {spec!r}; use none, history:N[:wK][:all] or "
                          "generator:N (N turns, at least 1; K answer words)")
    if m[1] == "generator":
        return Variant(f"generator:{int(m[2])}", "generator", int(m[2]))
    words = ANSWER_WORDS if m[3] is None else int(m[3])
    return Variant(f"history:{int(m[2])}:w{words}{m[4] or ''}", "history", int(m[2]), words,
                   referring_only=not m[4])


def parse_variants(text: str | None) -> list[Variant]:
    """Comma-separated variants, checked; "none" (the as-asked reference) always first."""
    names = [n.strip() for n in (text or ",".join(DEFAULT_VARIANTS)).split(",") if n.strip()]
    variants = [parse_variant(n) for n in names]
    if len({v.name for v in variants}) != len(variants):
        raise ConfigError(f"variants listed twice: {names}")
    rest = [v for v in variants if v.name != AS_ASKED]
    if not rest:
        raise ConfigError("no rewrite variant to measure besides 'none'")
    return [Variant(AS_ASKED, AS_ASKED), *rest]


def switches(
    firsts: Sequence[ConvItem], follow: Sequence[ConvItem]
) -> list[tuple[ConvItem, tuple[Turn, ...]]]:
    """Each first question paired with the gold history of a follow-up from another
    document: the question asked as a change of subject. Deterministic: the k-th first
    question takes the follow-ups of other documents in order, from a stride of k."""
    out = []
    for k, first in enumerate(firsts):
        others = [f for f in follow if f.doc != first.doc]
        if others:
            out.append((first, others[(k * 7919) % len(others)].history))
    return out


def _sample(items: list[ConvItem], limit: int | None, rng: random.Random) -> list[ConvItem]:
    if limit is None or limit >= len(items):
        return items
    keep = sorted(rng.sample(range(len(items)), limit))
    return [items[i] for i in keep]


class ConversationRun:
    def __init__(
        self,
        variants: Sequence[Variant],
        *,
        candidates: int = 10,
        max_followups: int | None = None,
        model_followups: int = 120,
        seed: int = 0,
        warmup: int = 2,
    ) -> None:
        if not variants or variants[0].name != AS_ASKED:
            raise ConfigError("variants must start with 'none' (see parse_variants)")
        if candidates < 1:
            raise ConfigError(f"candidates must be at least 1, got {candidates}")
        if max_followups is not None and max_followups < 1:
            raise ConfigError(f"max_followups must be at least 1, got {max_followups}")
        if model_followups < 1:
            raise ConfigError(f"model_followups must be at least 1, got {model_followups}")
        if warmup < 0:
            raise ConfigError(f"warmup must be 0 or more, got {warmup}")
        self.variants = list(variants)
        self.candidates = candidates
        self.max_followups = max_followups
        self.model_followups = model_followups
        self.seed = seed
        self.warmup = warmup

    @property
    def calls_model(self) -> bool:
        return any(v.calls_model for v in self.variants)

    def _search(self, corpus: Corpus, cset: ConversationSet, text: str) -> dict[str, list[str]]:
        served = corpus.search_timed(text, DEPTH, "hybrid", None, self.candidates)[0]
        bm25 = corpus.search(text, DEPTH, "bm25", rerank=False)
        item = lambda hit: cset.dataset.item_id(hit.chunk.source)  # noqa: E731
        return {"served": ranked_items(served, item)[:CUTOFF],
                "bm25": ranked_items(bm25, item)[:CUTOFF]}

    def run(
        self, cset: ConversationSet, corpus: Corpus, generate: Generate | None, log: Log = quiet
    ) -> dict[str, Any]:
        """The set indexed on `corpus` and every turn searched; one row per turn."""
        rewriters = {v.name: v.rewriter(generate) for v in self.variants}
        report = index_dataset(corpus, cset.dataset, log)
        rng = random.Random(f"{self.seed}-{cset.name}")
        firsts = [i for i in cset.items if not i.follow_up]
        follow = _sample([i for i in cset.items if i.follow_up], self.max_followups, rng)
        sampled = {i.query.id for i in _sample(follow, self.model_followups, rng)}
        memo: dict[str, dict[str, list[str]]] = {}
        for item in follow[: self.warmup]:  # the first calls load lazily: not timed
            for v in self.variants:
                self._search(corpus, cset, rewriters[v.name].rewrite(item.query.text, item.history))
        seconds: dict[str, list[float]] = {v.name: [] for v in self.variants}
        loads: list[float] = []
        rows = []
        monitor = CpuMonitor()  # other processes' load skews the rewrite times
        start = time.perf_counter()
        def row(item: ConvItem, history: Sequence[Turn], here: Sequence[Variant],
                timed: bool, **extra: Any) -> dict[str, Any]:
            """The item searched as each variant rewrites it after `history`."""
            qrels = report.qrels(item.query)
            texts, scores = {}, {}
            for v in here:
                began = time.perf_counter()
                text = rewriters[v.name].rewrite(item.query.text, history)
                if timed:
                    seconds[v.name].append(time.perf_counter() - began)
                if text not in memo:
                    memo[text] = self._search(corpus, cset, text)
                texts[v.name] = text
                scores[v.name] = {c: score_ranking(memo[text][c], qrels, RECALL_KS, CUTOFF)
                                  for c in CONFIGS}
            return {
                "dataset": cset.name, "query": item.query.id, "doc": item.doc, "half": item.half,
                "turn": item.turn, "relevant": sorted(k for k, g in qrels.items() if g > 0),
                **extra, "texts": texts, "scores": scores,
            }

        for n, item in enumerate([*firsts, *follow], 1):
            here = [v for v in self.variants if v.name == AS_ASKED or (
                item.follow_up and (not v.calls_model or item.query.id in sampled))]
            rows.append(row(item, item.history, here, timed=item.follow_up))
            if n % 100 == 0:
                loads.append(os.getloadavg()[0])
            if n % 500 == 0:
                log(f"  {n}/{len(firsts) + len(follow)} turns "
                    f"({time.perf_counter() - start:.0f} s)")
        # Changes of subject: every variant but the generator's (a second per turn).
        cheap = [v for v in self.variants if not v.calls_model]
        for item, history in switches(firsts, [i for i in cset.items if i.follow_up]):
            rows.append(row(item, history, cheap, timed=False, switch=True))
        loads.append(os.getloadavg()[0])
        return {
            "dataset": {"name": cset.name, **cset.dataset.info},
            "index": report.summary(),
            "first_turns": len(firsts),
            "follow_ups_evaluated": len(follow),
            "model_sample": len(sampled) if self.calls_model else 0,
            "rewrite_latency": {name: latency_ms(s) for name, s in seconds.items() if s},
            "loadavg_1m": {"mean": round(sum(loads) / len(loads), 2), "max": max(loads)},
            "cpu": monitor.stop(),
            "rows": rows,
        }


def run_sets(
    sets: Sequence[ConversationSet],
    run: ConversationRun,
    open_corpus: Callable[[Path], Corpus],
    workdir: Path,
    generate: Generate | None = None,
    log: Log = quiet,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every set on a fresh corpus under `workdir`/<its name>: the result per set (its
    rows apart) and every set's rows."""
    if run.calls_model and generate is None:
        raise ConfigError("a generator variant is listed but no generator was given")
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for cset in sets:
        log(f"{cset.name}: {len(cset.dataset.items)} items, {len(cset.items)} turns")
        corpus = open_corpus(Path(workdir) / cset.name)
        try:
            result = run.run(cset, corpus, generate, log)
        finally:
            corpus.store.close()
        rows += result.pop("rows")
        results[cset.name] = result
    method = {
        "configs": {"served": f"hybrid + reranker over {run.candidates} fused chunks",
                    "bm25": "BM25 alone"},
        "chunks_searched": DEPTH, "recall_ks": list(RECALL_KS), "cutoff": CUTOFF,
        "variants": [v.name for v in run.variants], "max_followups": run.max_followups,
        "model_followups": run.model_followups, "seed": run.seed,
    }
    return {"evaluation": "conversations", "method": method, "datasets": results}, rows
