"""A bound on the answers in progress, checked before any work is done for a request.

Beyond the bound a question is refused at once (503, `Retry-After`) instead of queueing
behind retrieval and generation until every client times out: under overload the server
answers some requests well rather than all of them late.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lectern.errors import OverloadedError
from lectern.timing import RunningMean


class Admission:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the in-flight limit must be at least 1, got {limit}")
        self.limit = limit
        self._busy = 0
        self._seconds = RunningMean(2.0)  # an answer's time, for Retry-After
        self._lock = threading.Lock()

    @property
    def busy(self) -> int:
        with self._lock:
            return self._busy

    def retry_after(self) -> float:
        """About when one of the answers in progress will be done."""
        return max(1.0, self._seconds.value)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one place for the body of the `with`; OverloadedError when none is free."""
        with self._lock:
            if self._busy >= self.limit:
                raise OverloadedError(
                    self.retry_after(),
                    f"the server is answering as many questions as it allows ({self.limit})",
                )
            self._busy += 1
        start = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - start
            with self._lock:
                self._busy -= 1
                self._seconds.add(took)
