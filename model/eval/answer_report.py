"""The figures of `lectern eval answers`, from its rows: per configuration, and as a page.

EM and F1 are on the official script's 0-100 scale, each a mean over the questions with
its standard error; every other rate is a share (0-1) in the JSON and a percentage on
the page. Scores come from the normal run; the probe contributes only its abstain rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lectern.reporting import latency_ms, mean_se, table, write_results


def _share(flags: Sequence[bool | float]) -> float | None:
    return round(math.fsum(flags) / len(flags), 4) if flags else None


def _mean_se(values: Sequence[float], scale: float = 1.0, digits: int = 4) -> dict[str, Any]:
    if not values:
        return {"mean": None, "se": None}
    mean, se = mean_se([v * scale for v in values])
    return {"mean": round(mean, digits), "se": None if se is None else round(se, digits)}


def _latency(ms: Sequence[float]) -> dict[str, Any] | None:
    return latency_ms([m / 1000 for m in ms]) if ms else None


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's figures from its rows (both runs)."""
    ok = [r for r in rows if "error" not in r]
    normal = [r for r in ok if r["run"] == "normal"]
    probe = [r for r in ok if r["run"] == "probe"]
    answered = [r for r in normal if not r["abstained"]]
    cited = sum(len(r["citations"]) for r in answered)
    generated = [r for r in ok if r["timings"]["generate_ms"] > 0]
    tokens = sum(r["tokens"] for r in generated)
    generate_s = math.fsum(r["timings"]["generate_ms"] for r in generated) / 1000
    return {
        "counts": {
            "questions": len(normal), "answered": len(answered),
            "abstained": len(normal) - len(answered), "probe_questions": len(probe),
            "probe_abstained": sum(r["abstained"] for r in probe), "citations": cited,
            "errors": {run: sum(r["run"] == run and "error" in r for r in rows)
                       for run in ("normal", "probe")},
        },
        "em": _mean_se([r["scores"]["em"] for r in normal], 100, 2),
        "f1": _mean_se([r["scores"]["f1"] for r in normal], 100, 2),
        "contains": _mean_se([r["scores"]["contains"] for r in normal]),
        # Pooled over every citation of every answered question.
        "citation_precision": round(
            sum(r["scores"]["citations_with_gold"] for r in answered) / cited, 4
        ) if cited else None,
        "gold_cited": _share([r["scores"]["cites_gold"] for r in answered]),
        "gold_in_passages": _share([r["scores"]["gold_in_passages"] for r in normal]),
        "false_abstain": _share([r["abstained"] for r in normal]),
        "probe_abstain": _share([r["abstained"] for r in probe]),
        "first_token": _latency(
            [r["timings"]["first_token_ms"] for r in normal
             if r["timings"]["first_token_ms"] is not None]),
        "full_answer": _latency([r["timings"]["total_ms"] for r in normal]),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / generate_s, 2) if generate_s > 0 else None,
        "words": round(math.fsum(r["scores"]["words"] for r in answered) / len(answered), 2)
        if answered else None,
    }


def _pm(figure: dict[str, Any]) -> str:
    if figure["mean"] is None:
        return "—"
    return f"{figure['mean']:.1f}" + (f" ± {figure['se']:.1f}" if figure["se"] is not None else "")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _p(lat: dict[str, Any] | None) -> str:
    return "—" if lat is None else f"{lat['p50_ms']:.0f} / {lat['p95_ms']:.0f}"


def markdown(result: dict[str, Any]) -> str:
    """The result as a page: one row per configuration, then what the figures mean."""
    ds, m = result["dataset"], result["method"]
    rows = []
    for name, c in result["configs"].items():
        rows.append([
            f"`{name}`", _pm(c["em"]), _pm(c["f1"]),
            _pct(c["contains"]["mean"]), _pct(c["citation_precision"]),
            _pct(c["gold_cited"]), _pct(c["false_abstain"]), _pct(c["probe_abstain"]),
            _p(c["first_token"]), _p(c["full_answer"]),
            "—" if c["tokens_per_s"] is None else f"{c['tokens_per_s']:.1f}",
            "—" if c["words"] is None else f"{c['words']:.1f}",
            f"{c['counts']['questions']}",
        ])
    headers = ["configuration", "EM", "F1", "contains", "citation precision", "gold cited",
               "false abstain", "probe abstain", "first token p50 / p95 ms",
               "full answer p50 / p95 ms", "tokens/s", "words", "questions"]
    sample = (f", a sample (seed {ds['seed']}) of {ds['queries_sampled']}"
              if ds.get("queries_sampled") else "")
    removed = (f"; {ds['removed_ids_skipped']} removed question ids left out"
               if ds.get("removed_ids_skipped") else "")
    ix = result["index"]
    overrides = "; ".join(
        f"`{name}`: " + (", ".join(f"{k}={v}" for k, v in c["overrides"].items()) or "as set")
        for name, c in result["configs"].items()
    )
    cpu = ", ".join(
        f"`{name}` " + ("?" if share is None else f"{share:.0%}")
        for name, c in result["configs"].items()
        for share in (c["cpu_during_answers"].get("other_processes_share_of_capacity"),)
    )
    counted = {c["tokens_counted_by"] for c in result["configs"].values()}
    errors = sum(sum(c["counts"]["errors"].values()) for c in result["configs"].values())
    when = result.get("environment", {}).get("date")
    return "\n".join([
        f"# Answer evaluation: {ds['name']}",
        "",
        f"{result['questions_evaluated']} questions{sample}{removed}, each asked through "
        f"the serving path (ask_stream, default top_k) by {m['workers']} client thread(s) "
        f"at once; {ds['items']} paragraphs indexed through the ingest path as "
        f"{ix['chunks']} chunks. Configurations: {overrides}.",
        "",
        table(headers, rows),
        "",
        "EM and F1: SQuAD v1.1's normalisation, max over the gold answers, citation markers "
        "stripped, an abstention scores 0 (mean ± standard error, 0-100). Contains: a "
        "normalised gold answer occurs in the answer. Citation precision: the share of all "
        "citations whose passage (its full chunk) holds a gold answer; gold cited: answered "
        "questions citing their own paragraph. False abstain: abstentions on the normal run; "
        "probe abstain: abstentions when the question's whole article is kept out of "
        "retrieval (the right reply there). Latency over the normal run: first token of "
        "the answers that reached the generator, full answer of all. Words: answered "
        f"replies. Tokens/s: generated tokens (counted by {', '.join(sorted(counted))}) "
        "over generation time, per answer stream. "
        f"Other processes took this share of the CPU meanwhile: {cpu}"
        + (f"; {errors} questions failed (see the rows)" if errors else "")
        + (f"; run {when}." if when else "."),
    ])


def write(result: dict[str, Any], name: str, out_dir: Path) -> tuple[Path, Path]:
    """<name>.json and <name>.md beside the rows (<name>.jsonl)."""
    return write_results(name, result, markdown(result), out_dir)
