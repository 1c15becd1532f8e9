"""Elapsed time as the API reports it, and a running mean of durations."""

from __future__ import annotations

import time


def elapsed_ms(start: float) -> float:
    """Milliseconds since `start` (a time.perf_counter() value), to 0.01 ms."""
    return round((time.perf_counter() - start) * 1000, 2)


class RunningMean:
    """An exponentially weighted mean (weight 0.2 for each new value); not thread-safe:
    callers update it under their own lock or from one thread."""

    def __init__(self, start: float) -> None:
        self.value = start

    def add(self, x: float) -> None:
        self.value = 0.8 * self.value + 0.2 * x
