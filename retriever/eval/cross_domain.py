"""`lectern eval retrieval --domains`: one table of retrieval quality across domains.

Each dataset (a domain of the training sources, see domains.py; its long-title variant;
SQuAD when given) is indexed in a data dir of its own, so no domain's chunks compete in
another's rankings, and evaluated by the same RetrievalEvaluation. The page has a row per
dataset with nDCG@10 ± its standard error per configuration, then each configuration's
difference from BM25, and each long-title row's from its short-title row, with the
paired standard error: the same questions are asked of both, so the spread of the
per-query differences decides, which is far smaller than the two errors combined.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lectern.errors import ConfigError
from lectern.protocols import Reranker
from lectern.reporting import mean_se, table
from retriever.calibration import RetrievalCalibration
from retriever.corpus import Corpus
from retriever.eval.datasets import Dataset
from retriever.eval.harness import CALIBRATED, RetrievalEvaluation
from retriever.eval.indexing import Log, quiet

# The table's columns by default.
DEFAULT_CONFIGS = ("bm25", "dense", "hybrid", "hybrid+rerank", CALIBRATED)
BASELINE = "bm25"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def run_datasets(
    datasets: Sequence[Dataset],
    evaluation: RetrievalEvaluation,
    open_corpus: Callable[[Path], Corpus],
    workdir: Path,
    reranker: Reranker | None = None,
    log: Log = quiet,
    calibrate: Callable[[Corpus], RetrievalCalibration] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every dataset evaluated on a fresh corpus under `workdir`/<its name>.

    With CALIBRATED among the configurations, `calibrate(corpus)` fits and applies the
    corpus's own calibration once the fixed configurations are measured, and the corpus
    is then searched as it serves.

    Returns the result (per dataset: RetrievalEvaluation.run's, without its settings,
    kept once at the top, and its per-query rows) and every dataset's per-query rows,
    each naming its dataset.
    """
    names = [d.name for d in datasets]
    if not datasets or len(set(names)) != len(names):
        raise ConfigError(f"datasets must be given, each once: {names}")
    served = [s for s in evaluation.specs if s.served]
    if served and calibrate is None:
        raise ConfigError(f"{CALIBRATED!r} needs a calibration to fit (calibrate=)")
    fixed = evaluation.without(CALIBRATED) if served else evaluation
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    settings: dict[str, Any] = {}
    for dataset in datasets:
        log(f"{dataset.name}: {len(dataset.items)} items, {len(dataset.queries)} queries")
        corpus = open_corpus(workdir / _slug(dataset.name))
        try:
            result = fixed.run(dataset, corpus, None, reranker, log) if fixed else None
            if served:
                record = calibrate(corpus)  # type: ignore[misc] - checked above
                log(f"  calibrated: {record.chosen.name} ({record.questions} questions, "
                    f"{record.seconds:.0f} s)")
                own = evaluation.only(CALIBRATED).run(  # type: ignore[union-attr]
                    dataset, corpus, None, reranker, log
                )
                own["calibration"] = record.as_dict()
                result = own if result is None else merge(result, own)
        finally:
            corpus.store.close()
        settings = result.pop("settings")
        per_query = result.pop("per_query")
        rows += [{"dataset": dataset.name, **r} for r in per_query]
        results[dataset.name] = result
    gain = f"ndcg@{evaluation.cutoff}"
    configs = [s.name for s in evaluation.specs]
    return {
        "evaluation": "retrieval-cross-domain",
        "metric": gain,
        "configs": configs,
        "datasets": results,
        "versus_bm25": _versus_baseline(rows, names, configs, gain),
        "long_minus_short": _long_minus_short(datasets, rows, configs, gain),
        "settings": settings,
    }, rows


def merge(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Two runs of one dataset's queries (other configurations) as one result."""
    out = {**first, "configs": {**first["configs"], **second["configs"]}}
    out["calibration"] = second.get("calibration")
    out["per_query"] = [
        {**a, **{k: {**a[k], **b[k]} for k in b if isinstance(b[k], dict) and k in a}}
        for a, b in zip(first["per_query"], second["per_query"], strict=True)
    ]
    return out


def _paired(a: dict[str, float], b: dict[str, float]) -> dict[str, float | int | None]:
    """Mean and standard error of a - b over the queries both have."""
    diffs = [a[q] - b[q] for q in a if q in b]
    if not diffs:
        return {"mean": None, "se": None, "n": 0}
    mean, se = mean_se(diffs)
    return {"mean": round(mean, 4), "se": None if se is None else round(se, 4), "n": len(diffs)}


def _scores(rows: list[dict[str, Any]], dataset: str, config: str, gain: str) -> dict:
    return {r["query"]: r[gain][config] for r in rows if r["dataset"] == dataset}


def _versus_baseline(
    rows: list[dict[str, Any]], names: list[str], configs: list[str], gain: str
) -> dict[str, dict[str, Any]]:
    if BASELINE not in configs:
        return {}
    return {
        n: {c: _paired(_scores(rows, n, c, gain), _scores(rows, n, BASELINE, gain))
            for c in configs if c != BASELINE}
        for n in names
    }


def _long_minus_short(
    datasets: Sequence[Dataset], rows: list[dict[str, Any]], configs: list[str], gain: str
) -> dict[str, dict[str, Any]]:
    present = {d.name for d in datasets}
    out = {}
    for d in datasets:
        short = d.info.get("long_titles", {}).get("of")
        if short in present:
            out[d.name] = {c: _paired(_scores(rows, d.name, c, gain),
                                      _scores(rows, short, c, gain)) for c in configs}
    return out


def _cell(mean: float | None, se: float | None, signed: bool = False) -> str:
    if mean is None:
        return "—"
    value = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return value if se is None else f"{value} ± {se:.3f}"


def _is_domain(result: dict[str, Any]) -> bool:
    ds = result["dataset"]
    return ds.get("format") == "training-source" and "long_titles" not in ds


def markdown(result: dict[str, Any]) -> str:
    gain, configs, datasets = result["metric"], result["configs"], result["datasets"]
    rows = []
    for name, r in datasets.items():
        c = r["configs"]
        rows.append([name, r["queries_evaluated"], r["dataset"]["items"],
                     *(_cell(c[k][gain], c[k]["se"].get(gain)) for k in configs)])
    domains = [r for r in datasets.values() if _is_domain(r)]
    if len(domains) > 1:
        # Every domain weighs the same, whatever its number of questions.
        means = []
        for k in configs:
            vals = [r["configs"][k][gain] for r in domains]
            ses = [r["configs"][k]["se"].get(gain) for r in domains]
            se = None if None in ses else sum(s * s for s in ses) ** 0.5 / len(ses)
            means.append(_cell(sum(vals) / len(vals), se))
        rows.append([f"mean of {len(domains)} domains", "", "", *means])
    out = [
        "# Retrieval across domains",
        "",
        f"{gain} ± its standard error over the queries; each dataset indexed on its own.",
        "",
        table(["dataset", "queries", "items", *(f"`{k}`" for k in configs)], rows),
    ]
    versus = result.get("versus_bm25") or {}
    others = [k for k in configs if k != BASELINE]
    if versus and others:
        out += ["", f"## {gain} minus `{BASELINE}`, ± the paired standard error", "",
                table(["dataset", *(f"`{k}`" for k in others)],
                      [[n, *(_cell(v[k]["mean"], v[k]["se"], True) for k in others)]
                       for n, v in versus.items()])]
    longs = result.get("long_minus_short") or {}
    if longs:
        out += ["", f"## {gain}, long titles minus short titles, ± the paired standard error",
                "", table(["dataset", *(f"`{k}`" for k in configs)],
                          [[n, *(_cell(v[k]["mean"], v[k]["se"], True) for k in configs)]
                           for n, v in longs.items()])]
    notes = []
    for name, r in datasets.items():
        ds = r["dataset"]
        if ds.get("documents_sampled"):
            s = ds["documents_sampled"]
            notes.append(f"{name}: {ds['documents_indexed']} of {ds['documents']} documents "
                         f"indexed (every held-out one, the rest a seeded sample, seed "
                         f"{s['seed']}, up to {s['max_items']} of {s['chunks_in_domain']} "
                         "chunks)")
        if ds.get("queries_sampled"):
            notes.append(f"{name}: a sample of {ds['queries_sampled']} of its {ds['queries']} "
                         f"held-out questions (seed {ds['seed']})")
        if "title_tokens_median" in ds.get("long_titles", {}):
            notes.append(f"{name}: titles of a median "
                         f"{ds['long_titles']['title_tokens_median']:g} encoder tokens")
    if notes:
        out += ["", *(f"- {n}" for n in notes)]
    return "\n".join(out)
