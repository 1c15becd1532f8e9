"""Writing benchmark and evaluation results: latency summaries, markdown tables, files.

Shared by the scripts in bench/ and by `lectern eval`, so every result file has the same
shape and records the same environment.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lectern.optional import require

RESULTS_DIR = Path(__file__).resolve().parent.parent / "bench" / "results"


def environment() -> dict:
    faiss = require("faiss", "retrieval")
    torch = require("torch", "torch")

    def version(dist: str) -> str | None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as v

        try:
            return v(dist)
        except PackageNotFoundError:
            return None

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "faiss": faiss.__version__,
        "sentence_transformers": version("sentence-transformers"),
        "transformers": version("transformers"),
        "bm25s": version("bm25s"),
        "unstructured": version("unstructured"),
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": cpu_model,
        "cuda": torch.cuda.is_available(),
    }


def _busy_jiffies() -> int | None:
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return user + nice + system + irq + softirq + steal


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU of a running process (all its threads); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return (int(fields[11]) + int(fields[12])) / hz


def descendant_cpu_seconds(root: int | None = None) -> dict[int, float]:
    """user + system CPU of each live process descended from `root` (this one)."""
    root = os.getpid() if root is None else root
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            parent[int(entry.name)] = int(fields[1])
    out: dict[int, float] = {}
    for pid in parent:
        up = parent.get(pid)
        while up is not None and up != root and up > 1:
            up = parent.get(up)
        if up == root:
            out[pid] = process_cpu_seconds(pid)
    return out


class CpuMonitor:
    """How much CPU other processes took while a benchmark ran (they skew its timings).

    System-wide busy time from /proc/stat minus this process's own CPU time, its reaped
    children's, that of its live descendants (worker processes: what they did between
    start and stop) and that of `pids` (a server it drives: alive, not reaped, all along).
    """

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.pids = list(pids)
        self.start()

    def _own_seconds(self) -> float:
        t = os.times()
        ours = t.user + t.system + t.children_user + t.children_system
        return ours + sum(process_cpu_seconds(pid) for pid in self.pids)

    def start(self) -> None:
        self._wall = time.perf_counter()
        self._busy = _busy_jiffies()
        self._own = self._own_seconds()
        self._descendants = descendant_cpu_seconds()

    def stop(self) -> dict:
        wall = time.perf_counter() - self._wall
        busy = _busy_jiffies()
        workers = sum(s - self._descendants.get(pid, 0.0)
                      for pid, s in descendant_cpu_seconds().items() if pid not in self.pids)
        own = self._own_seconds() - self._own + workers
        cpus = os.cpu_count() or 1
        out = {"wall_seconds": round(wall, 2), "own_cpu_seconds": round(own, 2),
               "loadavg_1m_at_end": round(os.getloadavg()[0], 2)}
        if busy is not None and self._busy is not None:
            system = (busy - self._busy) / self.hz
            other = max(system - own, 0.0)
            out.update(system_busy_cpu_seconds=round(system, 2),
                       other_processes_cpu_seconds=round(other, 2),
                       other_processes_share_of_capacity=round(other / (wall * cpus), 3)
                       if wall else None)
        return out


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def latency_ms(seconds: Sequence[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
    }


def mean_se(values: Sequence[float]) -> tuple[float, float | None]:
    """The mean and its standard error (sample standard deviation / sqrt(n)).

    The error is None for a single value: one question says nothing about the spread.
    """
    if not values:
        raise ValueError("mean_se of no values")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, statistics.stdev(values) / len(values) ** 0.5


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(
    name: str, data: dict, markdown: str, out_dir: Path = RESULTS_DIR
) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
    js.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md.write_text(markdown.rstrip() + "\n")
    return js, md
