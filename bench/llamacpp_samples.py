"""n replies to one prompt on llama.cpp: decoded one after another from the prompt's
cache (what LlamaCppGenerator.samples does) against one batch of n sequences that share
the prompt's cache (llama_memory_seq_cp), in one run.

    python bench/llamacpp_samples.py [--n 2,4,8] [--tokens 32] [--repeats 5]

The GGUF is the one the llamacpp backend serves (the shipped adapter's q8_0 export);
a 190-token prompt, 2 threads, every reply `--tokens` long, sampled at temperature 0.8
the same way in both (so the n replies differ). Times count from the prompt's cache to
the last token. Writes bench/results/llamacpp_samples.json and .md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import CpuMonitor, environment, table, write_results

from lectern.settings import Settings
from model.prepare import llamacpp_file

ROOT = Path(__file__).resolve().parent.parent
Pick = Callable[[np.ndarray], int]
PROMPT = "The University of Example offers a Bachelor of Science in Computer Science. " * 20


class Context:
    """A llama.cpp context of `n` sequences over the model `llm` holds."""

    def __init__(self, llama_cpp: Any, llm: Any, n: int, threads: int) -> None:
        self.L, self.n, self.vocab = llama_cpp, n, llm.n_vocab()
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = 2048, 512, 512
        params.n_seq_max, params.kv_unified = n, True
        params.n_threads = params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(llm.model, params)
        self.memory = llama_cpp.llama_get_memory(self.ctx)

    def decode(self, tokens: list[tuple[int, int, int]]) -> None:
        """tokens: (token, position, sequence), each with its logits kept."""
        batch = self.L.llama_batch_init(len(tokens), 0, self.n)
        for k, (token, pos, seq) in enumerate(tokens):
            batch.token[k], batch.pos[k], batch.n_seq_id[k] = token, pos, 1
            batch.seq_id[k][0], batch.logits[k] = seq, True
        batch.n_tokens = len(tokens)
        try:
            if self.L.llama_decode(self.ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
        finally:
            self.L.llama_batch_free(batch)

    def logits(self, i: int) -> np.ndarray:
        return np.ctypeslib.as_array(self.L.llama_get_logits_ith(self.ctx, i),
                                     shape=(self.vocab,)).copy()

    def prefill(self, prompt: list[int]) -> np.ndarray:
        self.L.llama_memory_clear(self.memory, True)
        self.decode([(t, i, 0) for i, t in enumerate(prompt)])
        return self.logits(-1)

    def one_after_another(self, prompt: list[int], tokens: int, pick: Pick) -> float:
        """The n replies decoded in turn, each from the prompt's cache."""
        first, end = self.prefill(prompt), len(prompt)
        start = time.perf_counter()
        for _ in range(self.n):
            self.L.llama_memory_seq_rm(self.memory, 0, end, -1)
            token = pick(first)
            for step in range(tokens - 1):
                self.decode([(token, end + step, 0)])
                token = pick(self.logits(-1))
        return time.perf_counter() - start

    def one_batch(self, prompt: list[int], tokens: int, pick: Pick) -> float:
        """The n replies decoded together, sequence s a copy of the prompt's cache."""
        first, end = self.prefill(prompt), len(prompt)
        start = time.perf_counter()
        for s in range(1, self.n):
            self.L.llama_memory_seq_cp(self.memory, 0, s, 0, end)
        last = [pick(first) for _ in range(self.n)]
        for step in range(tokens - 1):
            self.decode([(last[s], end + step, s) for s in range(self.n)])
            last = [pick(self.logits(s)) for s in range(self.n)]
        return time.perf_counter() - start

    def close(self) -> None:
        self.L.llama_free(self.ctx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", default="2,4,8")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    llama_cpp = __import__("llama_cpp")
    base = Settings()
    settings = base.model_copy(update={"models": base.models.model_copy(
        update={"cache_dir": ROOT / "var" / "models"})})
    gguf = llamacpp_file(settings, install=False)
    llm = llama_cpp.Llama(str(gguf), n_ctx=256, n_threads=args.threads, verbose=False)
    prompt = llm.tokenize(PROMPT.encode())[:190]
    rng = np.random.default_rng(0)

    def pick(row: np.ndarray) -> int:
        z = row.astype(np.float64) / 0.8
        p = np.exp(z - z.max())
        return int(rng.choice(len(p), p=p / p.sum()))

    rows, data = [], {"gguf": str(gguf), "prompt_tokens": len(prompt), "tokens": args.tokens,
                      "threads": args.threads, "n": {}}
    monitor = CpuMonitor()
    for n in [int(x) for x in args.n.split(",")]:
        c = Context(llama_cpp, llm, n, args.threads)
        ways: dict[str, Callable[[list[int], int, Pick], float]] = {
            "one after another": c.one_after_another, "one batch": c.one_batch}
        times: dict[str, list[float]] = {k: [] for k in ways}
        for f in ways.values():
            f(prompt, args.tokens, pick)  # warm-up
        for _ in range(args.repeats):
            for k, f in ways.items():
                times[k].append(f(prompt, args.tokens, pick))
        c.close()
        med = {k: statistics.median(v) for k, v in times.items()}
        data["n"][n] = {k: {"median_s": round(med[k], 4),
                            "spread_s": [round(min(v), 4), round(max(v), 4)]}
                        for k, v in times.items()}
        rows.append([n, f"{1000 * med['one after another']:.0f} "
                        f"({1000 * min(times['one after another']):.0f}–"
                        f"{1000 * max(times['one after another']):.0f})",
                     f"{1000 * med['one batch']:.0f} ({1000 * min(times['one batch']):.0f}–"
                     f"{1000 * max(times['one batch']):.0f})",
                     f"{med['one after another'] / med['one batch']:.2f}×"])
    cpu = monitor.stop()
    llm.close()
    data.update(cpu=cpu, environment=environment())
    lines = [
        "# n replies on llama.cpp: one after another against one batch", "",
        f"`{gguf.parent.name}/{gguf.name}`, a {len(prompt)}-token prompt read once, "
        f"{args.tokens} tokens per reply (sampled, temperature 0.8), {args.threads} threads, "
        f"median of {args.repeats} (min–max).", "",
        table(["n", "one after another (ms)", "one batch (ms)", "speed-up"], rows), "",
        f"Other processes' share of the CPU during the run: "
        f"{cpu.get('other_processes_share_of_capacity')}.",
    ]
    write_results("llamacpp_samples", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
