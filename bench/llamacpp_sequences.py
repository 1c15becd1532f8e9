"""How long llama.cpp takes to read a prompt, by the number of sequences its context holds.

    python bench/llamacpp_sequences.py [--sequences 1,2,...] [--repeats 8]

One process per sequence count (a context is built as the llama.cpp backend builds it,
`model.generators.llamacpp_context.SequenceContext`, unified cache of 2,560 cells, 2
threads), over the GGUF the backend serves. Each repeat clears the cache, reads a
60-token head, then times reading 127 more tokens (a grounded prompt after its cached
system turn). The backend's `max_sequences` is the context's sequence count, so this is
what its default is chosen from. Writes bench/results/llamacpp_sequences.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import CpuMonitor, environment, table, write_results

ROOT = Path(__file__).resolve().parent.parent
TEXT = "The course CSC 340 covers operating systems, including processes and threads. " * 30
HEAD, TIMED = 60, 127


def _one(gguf: str, sequences: int, repeats: int, threads: int) -> list[float]:
    import llama_cpp

    from model.generators.llamacpp_context import SequenceContext

    llm = llama_cpp.Llama(gguf, n_ctx=64, n_threads=1, verbose=False)
    ids = llm.tokenize(TEXT.encode())
    context = SequenceContext(llm.model, 2560, sequences, threads, threads, False)
    times = []
    for _ in range(repeats + 2):  # two warm-up reads
        context.clear()
        context.read(ids[:HEAD], 0)
        start = time.perf_counter()
        context.read(ids[HEAD : HEAD + TIMED], HEAD)
        times.append((time.perf_counter() - start) * 1000)
    context.close()
    llm.close()
    return times[2:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequences", default="1,2,3,4,5,6,7,8,9,10,12,16")
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # gguf, sequences: a child
    args = ap.parse_args()
    if args.one:
        print(json.dumps(_one(args.one[0], int(args.one[1]), args.repeats, args.threads)))
        return
    from lectern.settings import Settings
    from model.prepare import llamacpp_file

    base = Settings()
    settings = base.model_copy(update={"models": base.models.model_copy(
        update={"cache_dir": ROOT / "var" / "models"})})
    gguf = str(llamacpp_file(settings, install=False))
    monitor = CpuMonitor()
    data: dict = {"gguf": gguf, "timed_tokens": TIMED, "threads": args.threads, "sequences": {}}
    rows = []
    for n in [int(x) for x in args.sequences.split(",")]:
        out = subprocess.run(
            [sys.executable, __file__, "--one", gguf, str(n), "--repeats", str(args.repeats),
             "--threads", str(args.threads)], check=True, capture_output=True, text=True)
        times = json.loads(out.stdout.strip().splitlines()[-1])
        med = statistics.median(times)
        data["sequences"][n] = {"median_ms": round(med, 1),
                                "spread_ms": [round(min(times), 1), round(max(times), 1)]}
        rows.append([n, f"{med:.1f} ({min(times):.1f}–{max(times):.1f})"])
    cpu = monitor.stop()
    data.update(cpu=cpu, environment=environment())
    lines = [
        "# llama.cpp reading a prompt, by the sequences its context holds", "",
        f"`{Path(gguf).parent.name}/{Path(gguf).name}`: {TIMED} tokens read after a "
        f"{HEAD}-token head, {args.threads} threads, one process per row, median of "
        f"{args.repeats} (min–max).", "",
        table(["sequences", "read (ms)"], rows), "",
        f"Other processes' share of the CPU during the run: "
        f"{cpu.get('other_processes_share_of_capacity')}.",
    ]
    write_results("llamacpp_sequences", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
