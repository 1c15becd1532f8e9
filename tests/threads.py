"""Running work from many threads at once, for the thread-safety contracts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def run_together(work: Callable[[int], Any], jobs: int, threads: int = 8) -> list[list[Any]]:
    """Each of `threads` threads, started together, runs work(0..jobs-1) from its own
    starting job; returns every thread's results in job order.

    An exception in any thread is raised here, so a race that breaks a call fails the test.
    """
    results = [[None] * jobs for _ in range(threads)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker(k: int) -> None:
        start.wait()
        for n in range(jobs):
            job = (n + k * jobs // threads) % jobs
            try:
                results[k][job] = work(job)
            except BaseException as exc:  # reported to the test below
                errors.append(exc)
                return

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return results
