"""The generator backends against each other and against raw llama.cpp, in one run.

    python bench/generator_backends.py [--runs 3] [--max-new-tokens 64] [--threads N]
                                       [--adapter none]

Each sample question (samples/queries.jsonl) goes through `Lectern.ask_stream` (hybrid
retrieval, reranking, context compression, generation, grounding) once per backend,
the backends taking turns question by question so that the machine's load falls on
all of them alike: transformers (on CPU with int8 dynamic quantization, as it
serves) and llamacpp, both SmolLM2-135M-Instruct with the adapter that serves (the
shipped one, unless --adapter names another): transformers merges it into the
dequantized conversion of the packaged Q4_1 GGUF, llamacpp reads the GGUF it was merged
into at models.gguf_quant (`lectern models export-gguf`); with --adapter none, llamacpp
reads the packaged GGUF as it is. Then the prompt
llamacpp was given goes to llama-cpp-python's own `create_completion` on a second
context over the same file and thread count, greedy, its own sampler: what llama.cpp
itself does with that prompt.

Decode speed per answer: (tokens − 1) / (time from the first token to the last), as the
generator hands them out. llama.cpp itself reuses the longest prefix its context holds
of the previous prompt (the system turn, sometimes passages too), so its first token is
a lower bound for a reply that may not depend on the question before it.
Writes bench/results/generator_backends.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from _common import CpuMonitor, environment, latency_ms, table, write_results
from answer_latency import is_correct

from api.components import device_plan
from api.service import Lectern
from lectern.protocols import Generator, Message
from lectern.settings import Settings
from lectern.types import AnswerEvent, TokenEvent
from model import generators

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
BACKENDS = ("transformers", "llamacpp")


class Recorded:
    """A Generator that passes everything through and times each reply it streams."""

    def __init__(self, inner: Generator) -> None:
        self.inner = inner
        self.replies: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:  # count_tokens, prompt_ids, ...
        return getattr(self.inner, name)

    def warm_up(self) -> None:
        self.inner.warm_up()

    def close(self) -> None:
        self.inner.close()

    def generate(self, messages: Sequence[Message]) -> str:
        return "".join(self.stream(messages))

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        start = time.perf_counter()
        first = last = None
        pieces = []
        for piece in self.inner.stream(messages):
            last = time.perf_counter()
            first = first or last
            pieces.append(piece)
            yield piece
        end = time.perf_counter()
        self.replies.append({"messages": list(messages), "text": "".join(pieces),
                             "first_s": (first or end) - start,
                             "decoding_s": (last or end) - (first or end)})


def settings_for(
    backend: str, data_dir: Path, max_new: int, threads: int, adapter: str | None
) -> Settings:
    base = Settings()
    models = {"generator_backend": backend, "cache_dir": ROOT / "var" / "models"}
    if adapter is not None:
        models["adapter"] = adapter
    return base.model_copy(update={
        "data_dir": data_dir,
        "models": base.models.model_copy(update=models),
        "generation": base.generation.model_copy(update={
            "max_new_tokens": max_new,
            "decode_threads": threads if backend == "llamacpp" else 0}),
    })


def ask(svc: Lectern, record: dict[str, str]) -> dict[str, Any]:
    start = time.perf_counter()
    first = None
    correct = False
    for event in svc.ask_stream(record["query"]):
        if isinstance(event, TokenEvent):
            first = first or time.perf_counter()
        elif isinstance(event, AnswerEvent):
            correct = is_correct(record, event.result.answer)
    end = time.perf_counter()
    return {"first_s": (first or end) - start, "total_s": end - start, "correct": correct}


def raw_completion(llm: Any, ids: list[int], max_new: int) -> dict[str, float]:
    start = time.perf_counter()
    first = last = None
    n = 0
    for _ in llm.create_completion(ids, max_tokens=max_new, temperature=0.0,
                                   repeat_penalty=1.1, stream=True):
        last = time.perf_counter()
        first = first or last
        n += 1
    end = time.perf_counter()
    span = (last or end) - (first or end)
    return {"first_s": (first or end) - start, "total_s": end - start, "tokens": n,
            "rate": (n - 1) / span if n > 1 and span > 0 else None}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["rate"] for r in rows if r.get("rate")]
    return {
        "answers": len(rows),
        "first_token": latency_ms([r["first_s"] for r in rows]),
        "full_answer": latency_ms([r["total_s"] for r in rows]),
        "decode_tokens_per_s": {"p50": round(statistics.median(rates), 1),
                                "mean": round(statistics.fmean(rates), 1),
                                "stdev": round(statistics.stdev(rates), 1)
                                if len(rates) > 1 else None},
        "new_tokens_mean": round(statistics.fmean(r["tokens"] for r in rows), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--name", default="generator_backends")
    ap.add_argument("--adapter", default=None,
                    help="models.adapter for both backends ('none': the base model); "
                         "default: what serves (the shipped adapter, merged into a "
                         "models.gguf_quant GGUF for llamacpp)")
    args = ap.parse_args()

    llama_cpp = __import__("llama_cpp")
    records = [json.loads(line) for line in
               (SAMPLES / "queries.jsonl").read_text().splitlines() if line.strip()]
    queries = [r["query"] for r in records]
    rows: dict[str, list[dict[str, Any]]] = {b: [] for b in (*BACKENDS, "llama.cpp itself")}
    with tempfile.TemporaryDirectory(prefix="lectern-bench-") as tmp:
        services, recorded = {}, {}
        for backend in BACKENDS:
            s = settings_for(backend, Path(tmp), args.max_new_tokens, args.threads,
                             args.adapter)
            recorded[backend] = Recorded(generators.build(s, device_plan(s)))
            services[backend] = Lectern(s, generator=recorded[backend])
        services[BACKENDS[0]].ingest([SAMPLES / "corpus"])
        for svc in services.values():
            svc.warm_up()
            svc.warm_up_generator()
        lcpp = recorded["llamacpp"].inner
        raw = llama_cpp.Llama(str(lcpp.model_path),
                              n_ctx=lcpp.max_input_tokens + args.max_new_tokens,
                              n_threads=args.threads, n_threads_batch=args.threads,
                              verbose=False)
        for q in queries[:3]:  # warm-up
            for svc in services.values():
                list(svc.ask_stream(q))
        monitor = CpuMonitor()
        for _ in range(args.runs):
            for record in records:
                q = record["query"]
                for backend, svc in services.items():
                    before = len(recorded[backend].replies)
                    timing = ask(svc, record)
                    reply = recorded[backend].replies[before:]
                    text = reply[-1]["text"] if reply else ""
                    n = lcpp.count_tokens(text) if text else 0
                    span = reply[-1]["decoding_s"] if reply else 0.0
                    rows[backend].append({
                        "question": q, "first_s": timing["first_s"], "total_s": timing["total_s"],
                        "generator_first_s": reply[-1]["first_s"] if reply else None,
                        "tokens": n, "rate": (n - 1) / span if n > 1 and span > 0 else None,
                        "generated": bool(reply), "correct": timing["correct"],
                    })
                    if backend == "llamacpp" and reply:
                        ids = lcpp.prompt_ids(reply[-1]["messages"])
                        rows["llama.cpp itself"].append(
                            {"question": q, **raw_completion(raw, ids, args.max_new_tokens),
                             "prompt_tokens": len(ids)})
        cpu = monitor.stop()
        for svc in services.values():
            svc.close()
        raw.close()

    data: dict[str, Any] = {
        "questions": len(queries), "runs": args.runs, "threads": args.threads,
        "max_new_tokens": args.max_new_tokens, "gguf": str(lcpp.model_path),
        "adapter": args.adapter,
        "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "backends": {b: summary([r for r in rs if r.get("tokens")]) for b, rs in rows.items()},
        "generator_first_token_ms_p50": {
            b: round(1000 * statistics.median(r["generator_first_s"] for r in rows[b]
                                              if r["generator_first_s"] is not None), 1)
            for b in BACKENDS},
        "correct": {b: sum(r["correct"] for r in rows[b]) for b in BACKENDS},
        "prompt_tokens_mean": round(statistics.fmean(
            r["prompt_tokens"] for r in rows["llama.cpp itself"]), 1),
        "cpu": cpu, "environment": environment(), "rows": rows,
    }
    b = data["backends"]
    ratio = b["llamacpp"]["decode_tokens_per_s"]["p50"] / b["llama.cpp itself"][
        "decode_tokens_per_s"]["p50"]
    data["llamacpp_decode_vs_raw"] = round(ratio, 3)
    lines = [
        "# Generator backends (sample corpus)", "",
        f"{len(queries)} sample questions × {args.runs} runs, the backends taking turns; "
        f"≤ {args.max_new_tokens} new tokens, greedy, {args.threads} threads, "
        f"{environment()['cpu_count']} CPUs. First token and full answer are end to end "
        "through `Lectern.ask_stream` (retrieval and reranking included) for the two "
        "backends, and from the prompt for llama.cpp itself (the prompts llamacpp was "
        f"given, mean {data['prompt_tokens_mean']} tokens). GGUF: "
        f"`{lcpp.model_path.parent.name}/{lcpp.model_path.name}`; llama.cpp's build: "
        f"{data['llama_cpp_system_info']}", "",
        table(["backend", "answers", "first token p50 / p95 (ms)", "full answer p50 / p95 (ms)",
               "decode p50 (tokens/s)", "decode mean ± sd", "new tokens (mean)"], [
            [name, s["answers"], f"{s['first_token']['p50_ms']} / {s['first_token']['p95_ms']}",
             f"{s['full_answer']['p50_ms']} / {s['full_answer']['p95_ms']}",
             s["decode_tokens_per_s"]["p50"],
             f"{s['decode_tokens_per_s']['mean']} ± {s['decode_tokens_per_s']['stdev']}",
             s["new_tokens_mean"]] for name, s in b.items()
        ]), "",
        "Generator-only first token p50: " + ", ".join(
            f"{k} {v} ms" for k, v in data["generator_first_token_ms_p50"].items()) + ".",
        f"Lectern's llamacpp decodes at {ratio:.2f}× llama.cpp itself.",
        "Answers that state the expected fact and cite its source document (of "
        f"{len(queries) * args.runs}): " + ", ".join(
            f"{k} {v}" for k, v in data["correct"].items()) + ".",
        f"Other processes' share of the CPU during the run: "
        f"{cpu.get('other_processes_share_of_capacity')}.",
    ]
    write_results(args.name, data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
