"""What a follow-up costs before its answer: the rewrite, and searching the longer question.

    python bench/conversation_latency.py --data-dir var/sample-dd   # an ingested sample
    python bench/conversation_latency.py --repeats 30

Asks each follow-up below after its first question, on the sample corpus with the real
encoder and reranker: the rewrite (`conversation.rewrite`, the served default) and the
answering path's search (hybrid, the reranker over `generation.rerank_candidates`, the
top `generation.passages`), for the follow-up searched as asked and as rewritten,
interleaved turn by turn so that load falls on both alike. The generator is not called:
its time does not depend on how the question was found. Writes
bench/results/conversation_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import CpuMonitor, environment, latency_ms, table, write_results

from api.service import Lectern
from lectern.settings import Settings
from lectern.types import Turn

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "corpus"
# (first question, its answer as Lectern gives it, the follow-up)
CONVERSATIONS = [
    ("What is the MSc in Data Science?", "The MSc Data Science trains students to build, "
     "evaluate and responsibly deploy data-driven systems. [1]", "And what is the fee for it?"),
    ("What are the prerequisites for CSC 340?", "CSC 340 requires CSC 220 and MAT 210. [1]",
     "Who teaches it?"),
    ("When does the library open?", "The library opens at 8:00 on weekdays. [1]",
     "And on Sundays?"),
    ("What is the BSc in Biology?", "A three-year programme in the life sciences. [1]",
     "How long is the placement in it?"),
    ("Where can international students live?", "In the university residences. [1]",
     "How much do they cost?"),
    ("What is the application deadline for the MSc Environmental Engineering?",
     "International applicants apply by 1 February 2026. [1]", "And for home students?"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="an ingested data dir (default: "
                        "the sample corpus ingested into var/bench-conversations)")
    parser.add_argument("--repeats", type=int, default=20, help="rounds over the turns")
    args = parser.parse_args()
    data_dir = args.data_dir or ROOT / "var" / "bench-conversations"
    settings = Settings(data_dir=data_dir)
    service = Lectern(settings)
    service.warm_up()
    if not service.store.list_documents():
        service.ingest([SAMPLES])
    g, rewriter = settings.generation, service.answerer.rewriter
    times: dict[str, list[float]] = {"rewrite": [], "as asked": [], "rewritten": []}
    extra: list[float] = []
    monitor = CpuMonitor()
    for _ in range(args.repeats):
        for first, answer, follow_up in CONVERSATIONS:
            history = [Turn(first, answer)]
            began = time.perf_counter()
            searched = rewriter.rewrite(follow_up, history)
            times["rewrite"].append(time.perf_counter() - began)
            pair = []
            for key, query in (("as asked", follow_up), ("rewritten", searched)):
                began = time.perf_counter()
                service.corpus.search_timed(query, g.passages, "hybrid", None,
                                            g.rerank_candidates)
                pair.append(time.perf_counter() - began)
                times[key].append(pair[-1])
            extra.append((pair[1] - pair[0]) * 1000)
    cpu = monitor.stop()
    service.close()
    summary = {k: latency_ms(v) for k, v in times.items()}
    diff_se = statistics.stdev(extra) / len(extra) ** 0.5
    result = {
        "benchmark": "conversation_latency",
        "rewrite": settings.conversation.rewrite,
        "history_for": settings.conversation.history_for,
        "turns": len(CONVERSATIONS), "repeats": args.repeats,
        "latency": summary,
        "search_extra_ms": {"mean": round(statistics.fmean(extra), 2),
                            "se": round(diff_se, 2),
                            "p50": round(statistics.median(extra), 2)},
        "cpu": cpu, "environment": environment(),
    }
    rows = [[k, s["n"], f"{s['p50_ms']:.3g}", f"{s['p95_ms']:.3g}"] for k, s in summary.items()]
    share = cpu.get("other_processes_share_of_capacity")
    page = "\n".join([
        "# A follow-up's cost before its answer: the rewrite and the longer search", "",
        f"`conversation.rewrite = {settings.conversation.rewrite}` "
        f"(`history_for = {settings.conversation.history_for}`), {len(CONVERSATIONS)} "
        f"follow-ups × {args.repeats} rounds on the sample corpus; search = hybrid + "
        f"the reranker over {g.rerank_candidates}, top {g.passages} (the answering path).",
        "", table(["step", "n", "p50 ms", "p95 ms"], rows), "",
        f"Searching the rewritten follow-up instead of the follow-up as asked costs "
        f"{result['search_extra_ms']['mean']:+.2f} ± {diff_se:.2f} ms (mean ± SE of the "
        f"paired differences; p50 {result['search_extra_ms']['p50']:+.2f} ms). "
        f"Other processes' CPU share during the run: "
        f"{'—' if share is None else f'{share:.0%}'}.",
    ])
    json_path, md_path = write_results("conversation_latency", result, page)
    print(page)
    print(f"\nwrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
