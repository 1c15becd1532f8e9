"""n sampled replies to one prompt on the llama.cpp backend: decoded one after another
from the prompt's cache against together as n sequences of one batch, in one run.

    python bench/llamacpp_samples.py [--n 2,4,8] [--tokens 32] [--repeats 5]

Both ways are `LlamaCppGenerator.samples(messages, n)` as serving calls it, on the GGUF
the llamacpp backend serves (the shipped adapter's q8_0 export), 2 threads: with
max_sequences 1 its replies decode in turns, with max_sequences n together. The prompt
asks for a long letter; replies are sampled at temperature 0.8, at most `--tokens` new
tokens each (a reply may end sooner, so new tokens per second is reported beside the
time). The two generators take turns, repeat by repeat. Writes
bench/results/llamacpp_samples.json and .md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from _common import CpuMonitor, environment, table, write_results

from lectern.settings import Settings
from model.generators.llamacpp import LlamaCppGenerator
from model.generators.sampling import Sampling
from model.prepare import adapter, llamacpp_file

ROOT = Path(__file__).resolve().parent.parent
# A reply that runs long, so that the decoding steps, not the prompt, are what is timed.
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant for a university."},
    {"role": "user", "content": "Write a long, friendly welcome letter to new computer "
                                "science students, describing their first year in detail."},
]


def _cell(times: list[float], rates: list[float]) -> str:
    return (f"{1000 * statistics.median(times):.0f} ({1000 * min(times):.0f}–"
            f"{1000 * max(times):.0f}), {statistics.median(rates):.0f} tok/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", default="2,4,8")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    base = Settings()
    settings = base.model_copy(update={"models": base.models.model_copy(
        update={"cache_dir": ROOT / "var" / "models"})})
    gguf = llamacpp_file(settings, install=False)
    sampling = Sampling(max_new_tokens=args.tokens, do_sample=True, temperature=0.8,
                        top_p=1.0, repetition_penalty=1.1, abstain_threshold=0.0)
    ns = [int(x) for x in args.n.split(",")]
    ways = {"one after another": 1, "one batch": max(ns)}
    gens = {k: LlamaCppGenerator(gguf, sampling, threads=args.threads, max_sequences=m,
                                 adapter=adapter(settings)) for k, m in ways.items()}
    for g in gens.values():
        g.warm_up()
    prompt_tokens = gens["one batch"].count_prompt_tokens(MESSAGES)
    rows, data = [], {"gguf": str(gguf), "prompt_tokens": prompt_tokens,
                      "max_new_tokens": args.tokens, "threads": args.threads, "n": {}}
    monitor = CpuMonitor()
    for n in ns:
        times: dict[str, list[float]] = {k: [] for k in gens}
        rates: dict[str, list[float]] = {k: [] for k in gens}
        for g in gens.values():
            g.samples(MESSAGES, n)  # warm-up
        for _ in range(args.repeats):
            for k, g in gens.items():
                start = time.perf_counter()
                replies = g.samples(MESSAGES, n)
                took = time.perf_counter() - start
                times[k].append(took)
                rates[k].append(sum(g.count_tokens(r) for r in replies) / took)
        med = {k: statistics.median(v) for k, v in times.items()}
        data["n"][n] = {k: {"median_s": round(med[k], 4),
                            "spread_s": [round(min(v), 4), round(max(v), 4)],
                            "new_tokens_per_s_median": round(statistics.median(rates[k]), 1)}
                        for k, v in times.items()}

        rows.append([n, _cell(times["one after another"], rates["one after another"]),
                     _cell(times["one batch"], rates["one batch"]),
                     f"{med['one after another'] / med['one batch']:.2f}×"])
    cpu = monitor.stop()
    for g in gens.values():
        g.close()
    data.update(cpu=cpu, environment=environment())
    lines = [
        "# n sampled replies on the llama.cpp backend: one after another against one batch",
        "",
        f"`LlamaCppGenerator.samples` on `{gguf.parent.name}/{gguf.name}`: a "
        f"{prompt_tokens}-token prompt read once, at most {args.tokens} new tokens per reply "
        f"(temperature 0.8), {args.threads} threads; median of {args.repeats} (min–max) "
        "and new tokens per second.", "",
        table(["n", "one after another (ms)", "one batch (ms)", "speed-up"], rows), "",
        f"Other processes' share of the CPU during the run: "
        f"{cpu.get('other_processes_share_of_capacity')}.",
    ]
    write_results("llamacpp_samples", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
