"""Load on a running server: bounded concurrent clients on loopback, each asking in turn.

    python bench/load.py [--clients 1,4,16] [--seconds 60] [--route ask|stream]
                         [--url http://127.0.0.1:8000] [--name load]

Without --url a server is started on a free loopback port (`lectern serve`, a temporary
data dir holding the sample corpus, models from var/models) with the per-client rate
limit off, since every client here shares one address; any other setting comes from
LECTERN_* variables. Each client asks the sample questions in turn; a 429/503 is honoured
(the client sleeps its Retry-After). Per client count: requests completed, answers, errors
by status, dropped connections, p50/p95 latency, answers/s. Writes
bench/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import _server
import httpx
from _common import CpuMonitor, environment, latency_ms, table, write_results


def _questions() -> list[str]:
    lines = (_server.ROOT / "samples" / "queries.jsonl").read_text().splitlines()
    return [json.loads(line)["query"] for line in lines if line.strip()]


@contextlib.contextmanager
def local_server(workdir: Path) -> Iterator[tuple[str, int]]:
    """A `lectern serve` on the sample corpus, rate limit off; yields (url, pid)."""
    _server.ingest_samples(workdir)
    with _server.serving(workdir, LECTERN_API__RATE_LIMIT_PER_MINUTE="0") as (proc, url):
        yield url, proc.pid


class Client(threading.Thread):
    def __init__(self, url: str, route: str, questions: list[str], k: int, until: float) -> None:
        super().__init__(daemon=True)
        self.url, self.route, self.questions, self.k, self.until = url, route, questions, k, until
        self.latencies: list[float] = []  # of answered requests
        self.answered_at: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.refusals_without_retry_after = 0
        self.refusals_not_json = 0
        self.dropped = 0
        self.last_done = 0.0

    def run(self) -> None:
        path = "/api/v1/ask" if self.route == "ask" else "/api/v1/ask/stream"
        n = self.k
        with httpx.Client(base_url=self.url, timeout=180) as http:
            while time.monotonic() < self.until:
                question = self.questions[n % len(self.questions)]
                n += 1
                start = time.monotonic()
                try:
                    r = http.post(path, json={"question": question})
                except httpx.HTTPError:
                    self.dropped += 1
                    continue
                self.last_done = time.monotonic()
                status = r.status_code
                if status == 200 and self.route == "stream" and "event: done" not in r.text:
                    status = "200-without-done"
                self.statuses[str(status)] += 1
                if status == 200:
                    self.latencies.append(self.last_done - start)
                    self.answered_at.append(self.last_done)
                elif status in (429, 503):
                    if "retry-after" not in r.headers:
                        self.refusals_without_retry_after += 1
                    if not r.headers.get("content-type", "").startswith("application/json"):
                        self.refusals_not_json += 1
                    time.sleep(min(float(r.headers.get("retry-after", 1)), 10))


def run_level(url: str, pid: int | None, route: str, clients: int, seconds: float) -> dict:
    questions = _questions()
    start = time.monotonic()
    cpu = CpuMonitor(pids=[pid] if pid else [])
    pool = [Client(url, route, questions, k, start + seconds) for k in range(clients)]
    for c in pool:
        c.start()
    for c in pool:
        c.join()
    end = max([c.last_done for c in pool] + [start + seconds])
    wall = end - start
    load = cpu.stop()
    statuses = sum((c.statuses for c in pool), Counter())
    latencies = [x for c in pool for x in c.latencies]
    answered = statuses.get("200", 0)
    # Answers/s in each tenth of the run (the first is left out: clients start together,
    # so it holds no completions yet at high load): the spread beside the mean.
    window = seconds / 10
    counts = Counter(int((t - start) // window) for c in pool for t in c.answered_at)
    rates = [counts.get(i, 0) / window for i in range(1, 10)]
    mean = statistics.fmean(rates)
    se = statistics.stdev(rates) / len(rates) ** 0.5
    return {
        "clients": clients,
        "wall_seconds": round(wall, 1),
        "requests": sum(statuses.values()),
        "answered": answered,
        "statuses": dict(statuses),
        # 503 is the designed refusal (JSON, Retry-After), counted with the 429s below.
        "server_errors_5xx_but_503": sum(
            v for k, v in statuses.items() if k.startswith("5") and k != "503"),
        "refusals_503_429": statuses.get("503", 0) + statuses.get("429", 0),
        "refusals_without_retry_after": sum(c.refusals_without_retry_after for c in pool),
        "refusals_not_json": sum(c.refusals_not_json for c in pool),
        "dropped_connections": sum(c.dropped for c in pool),
        "latency_ms": latency_ms(latencies) if latencies else {},
        "answers_per_second": round(answered / wall, 3),
        "answers_per_second_by_window": {"mean": round(mean, 3), "se": round(se, 3),
                                         "window_seconds": window},
        "other_processes_share_of_capacity": load.get("other_processes_share_of_capacity"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--route", choices=["ask", "stream"], default="ask")
    ap.add_argument("--url", help="a running server (else one is started)")
    ap.add_argument("--name", default="load")
    args = ap.parse_args()
    levels = [int(x) for x in args.clients.split(",")]

    with contextlib.ExitStack() as stack:
        if args.url:
            url, pid = args.url, None
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lectern-load-")))
            url, pid = stack.enter_context(local_server(work))
        runs = []
        for n in levels:
            run = run_level(url, pid, args.route, n, args.seconds)
            runs.append(run)
            print(json.dumps(run), flush=True)

    single = next((r for r in runs if r["clients"] == 1), None)
    rows = []
    for r in runs:
        lat = r["latency_ms"]
        speedup = (round(r["answers_per_second"] / single["answers_per_second"], 2)
                   if single and single["answers_per_second"] else "")
        others = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()) if k != "200")
        win = r["answers_per_second_by_window"]
        rows.append([r["clients"], r["requests"], r["answered"], others or "none",
                     r["dropped_connections"], lat.get("p50_ms"), lat.get("p95_ms"),
                     r["answers_per_second"], f"{win['mean']} ± {win['se']}", speedup,
                     r["other_processes_share_of_capacity"]])
    md = (
        f"# Load: {args.route} on loopback, {args.seconds:.0f} s per level\n\n"
        f"`python bench/load.py --clients {args.clients} --seconds {args.seconds:.0f} "
        f"--route {args.route}`; sample questions in turn, a 429/503 honoured by sleeping "
        f"its Retry-After. {os.cpu_count()} CPUs.\n\n"
        + table(["clients", "requests", "answered (200)", "other statuses", "dropped",
                 "p50 ms", "p95 ms", "answers/s", "answers/s per window (mean ± SE)",
                 "× 1 client", "other processes' CPU share"],
                rows)
    )
    write_results(args.name, {"route": args.route, "seconds": args.seconds, "url": url,
                              "environment": environment(), "runs": runs}, md)
    print(md)


if __name__ == "__main__":
    main()
