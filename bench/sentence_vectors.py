"""First token with the passages' sentence vectors read from the store against embedded
per question, in one run, question by question.

    python bench/sentence_vectors.py [--runs 5] [--backend llamacpp]

Each sample question (samples/queries.jsonl) goes through `Lectern.ask_stream` twice per
run: once as it serves (the context compressor reads the sentence vectors the refresh
stored, lectern.sentences) and once with the store answering that it has none, so the
compressor embeds the shortlisted sentences itself, as it did before they were stored.
The two take turns in alternating order; the paired difference per question is reported
with its standard error. Both produce the same prompt (tests/model/test_context.py).
Writes bench/results/sentence_vectors.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from _common import CpuMonitor, environment, latency_ms, table, write_results
from generator_backends import SAMPLES, ask, settings_for

from api.service import Lectern


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--backend", default="llamacpp", choices=["llamacpp", "transformers"])
    args = ap.parse_args()
    records = [json.loads(line) for line in
               (SAMPLES / "queries.jsonl").read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory(prefix="lectern-bench-") as tmp:
        svc = Lectern(settings_for(args.backend, Path(tmp), 64, 0, None))
        svc.ingest([SAMPLES / "corpus"])
        svc.warm_up()
        svc.warm_up_generator()
        stored = svc.store.sentence_vectors

        def first_token(record: dict[str, str], read: bool) -> float:
            svc.store.sentence_vectors = stored if read else (lambda ids, key: {})
            return ask(svc, record)["first_s"]

        for record in records[:3]:  # warm-up
            first_token(record, True)
            first_token(record, False)
        times: dict[bool, list[float]] = {True: [], False: []}
        monitor = CpuMonitor()
        for run in range(args.runs):
            for i, record in enumerate(records):
                for read in ((True, False) if (i + run) % 2 else (False, True)):
                    times[read].append(first_token(record, read))
        cpu = monitor.stop()
        svc.close()

    diffs = [e - s for s, e in zip(times[True], times[False], strict=True)]
    saved = {"mean_ms": round(1000 * statistics.fmean(diffs), 1),
             "se_ms": round(1000 * statistics.stdev(diffs) / len(diffs) ** 0.5, 1),
             "median_ms": round(1000 * statistics.median(diffs), 1), "n": len(diffs)}
    data = {"backend": args.backend, "runs": args.runs, "questions": len(records),
            "stored": latency_ms(times[True]), "embedded": latency_ms(times[False]),
            "saved_per_question": saved, "cpu": cpu, "environment": environment()}
    lines = [
        "# First token: sentence vectors stored against embedded per question", "",
        f"{len(records)} sample questions × {args.runs} runs through `Lectern.ask_stream` "
        f"({args.backend}), the two ways taking turns question by question; "
        f"{environment()['cpu_count']} CPUs.", "",
        table(["sentence vectors", "first token p50 / p95 (ms)", "mean (ms)"], [
            [name, f"{d['p50_ms']} / {d['p95_ms']}", d["mean_ms"]]
            for name, d in (("read from the store", data["stored"]),
                            ("embedded per question", data["embedded"]))]), "",
        f"Saved per question, paired: {saved['mean_ms']} ± {saved['se_ms']} ms (mean ± SE, "
        f"median {saved['median_ms']} ms, n {saved['n']}).",
        f"Other processes' share of the CPU during the run: "
        f"{cpu.get('other_processes_share_of_capacity')}.",
    ]
    write_results("sentence_vectors", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
