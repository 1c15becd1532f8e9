"""Answer latency on the sample corpus: time to first token, full answer, decode speed.

    python bench/answer_latency.py [--runs 2] [--dtype float32|bfloat16] [--max-new-tokens 64]

Each sample question (samples/queries.jsonl) goes through `Lectern.ask_stream` — hybrid
retrieval, context compression, generation, grounding — `--runs` times after a warm-up.
Writes bench/results/answer_latency.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from _common import CpuMonitor, environment, latency_ms, table, write_results

from api.service import Lectern
from lectern.settings import Settings
from lectern.types import Answer, TokenEvent

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def is_correct(record: dict, answer: Answer) -> bool:
    """The expected fact is in the answer and a citation points at its source file."""
    return (not answer.abstained and _norm(record["expect"]) in _norm(answer.text)
            and any(c.source.endswith(record["source"]) for c in answer.citations))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--name", default="answer_latency")
    args = ap.parse_args()

    records = [json.loads(line) for line in
               (SAMPLES / "queries.jsonl").read_text().splitlines() if line.strip()]
    queries = [r["query"] for r in records]
    with tempfile.TemporaryDirectory(prefix="lectern-bench-") as tmp:
        base = Settings()  # LECTERN_* variables apply; the flags below override them
        settings = base.model_copy(update={
            "data_dir": Path(tmp),
            "models": base.models.model_copy(
                update={"dtype": args.dtype, "cache_dir": ROOT / "var" / "models"}),
            "generation": base.generation.model_copy(
                update={"max_new_tokens": args.max_new_tokens}),
        })
        svc = Lectern(settings)
        svc.ingest([SAMPLES / "corpus"])
        t = time.perf_counter()
        svc.warm_up_generator()
        load_s = time.perf_counter() - t
        tokenizer = svc.generator.tokenizer
        plan = svc.generator.plan
        for q in queries[:3]:  # warm-up
            list(svc.ask_stream(q))

        monitor = CpuMonitor()
        first, total, decode_rates, new_tokens, retrieve, generate = [], [], [], [], [], []
        rerank: list[float] = []
        abstained = 0
        correct: dict[str, bool] = {}
        for _ in range(args.runs):
            for record in records:
                q = record["query"]
                start = time.perf_counter()
                first_at, text = None, []
                for event in svc.ask_stream(q):
                    if isinstance(event, TokenEvent):
                        first_at = first_at or time.perf_counter()
                        text.append(event.text)
                    else:
                        result = event.result
                end = time.perf_counter()
                total.append(end - start)
                first.append((first_at or end) - start)
                n = len(tokenizer("".join(text), add_special_tokens=False)["input_ids"])
                new_tokens.append(n)
                if first_at and n > 1 and end > first_at:
                    decode_rates.append((n - 1) / (end - first_at))
                retrieve.append(result.timings.retrieve_ms)
                rerank.append(result.timings.rerank_ms)
                generate.append(result.timings.generate_ms)
                abstained += result.answer.abstained
                correct[q] = is_correct(record, result.answer)
        cpu = monitor.stop()

    ttft, full = latency_ms(first), latency_ms(total)
    decode = {"p50_tokens_per_s": round(statistics.median(decode_rates), 1),
              "mean_tokens_per_s": round(statistics.fmean(decode_rates), 1)}
    data = {
        "questions": len(queries), "runs": args.runs, "answers": len(total),
        "first_token": ttft, "full_answer": full, "decode": decode,
        "new_tokens": {"mean": round(statistics.fmean(new_tokens), 1), "max": max(new_tokens)},
        "retrieve_ms_p50": round(statistics.median(retrieve), 1),
        "rerank": {"model": str(getattr(svc.reranker, "model_dir", None)),
                   "candidates": settings.generation.rerank_candidates
                   if svc.reranker is not None else 0,
                   "p50_ms": round(statistics.median(rerank), 1)},
        "abstained": abstained,
        "correct_and_cited": sum(correct.values()),
        "wrong": sorted(q for q, ok in correct.items() if not ok),
        "generator_load_s": round(load_s, 1),
        "plan": {"device": plan.device, "dtype": plan.dtype,
                 "dynamic_int8": plan.dynamic_int8,
                 "attn_implementation": plan.attn_implementation},
        "max_new_tokens": args.max_new_tokens, "cpu": cpu, "environment": environment(),
    }
    goal_ttft = ttft["p50_ms"] <= 500
    goal_full = full["p50_ms"] <= 3000
    md = "\n".join([
        "# Answer latency (sample corpus)", "",
        f"{len(queries)} sample questions × {args.runs} runs through `Lectern.ask_stream` "
        f"(hybrid retrieval, context compression, SmolLM2-135M-Instruct greedy, ≤ "
        f"{args.max_new_tokens} new tokens, grounding check); {plan.device}, {plan.dtype}"
        f"{' with int8 dynamic quantization' if plan.dynamic_int8 else ''}, "
        f"{plan.attn_implementation}. {environment()['cpu_count']} CPUs.", "",
        table(["figure", "p50", "p95", "mean"], [
            ["time to first token (ms)", ttft["p50_ms"], ttft["p95_ms"], ttft["mean_ms"]],
            ["full answer (ms)", full["p50_ms"], full["p95_ms"], full["mean_ms"]],
            ["decode (tokens/s)", decode["p50_tokens_per_s"], "", decode["mean_tokens_per_s"]],
        ]), "",
        f"New tokens per answer: mean {data['new_tokens']['mean']}, max "
        f"{data['new_tokens']['max']}. Retrieval p50 {data['retrieve_ms_p50']} ms; reranking "
        f"{data['rerank']['candidates']} candidates p50 {data['rerank']['p50_ms']} ms. "
        f"Abstained: {abstained} of {len(total)}. Answers that state the expected fact and "
        f"cite its source document: {sum(correct.values())} of {len(records)}.", "",
        f"Goals: first token p50 ≤ 500 ms: **{'met' if goal_ttft else 'NOT met'}**; "
        f"full answer p50 ≤ 3 s: **{'met' if goal_full else 'NOT met'}**.", "",
        f"Other processes' share of the CPU during the run: "
        f"{cpu.get('other_processes_share_of_capacity')}.",
    ])
    write_results(args.name, data, md)
    print(md)


if __name__ == "__main__":
    main()
