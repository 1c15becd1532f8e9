"""The door ingests go through, so a shutdown can stop them and know when they are out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from lectern.errors import IngestCancelledError

SHUTTING_DOWN = "not ingested: the server is shutting down"


class IngestGate:
    """Counts the ingests inside; once closed, lets no new one in and stops those inside.

    An ingest calls `check()` between its steps (before parsing, between embedding slices,
    before storing): after `close()` the next check raises IngestCancelledError, so the
    ingest fails as a whole and leaves the store as it was.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._inside = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def ingesting(self, shown: str) -> Iterator[None]:
        with self._changed:
            if self._closed:
                raise IngestCancelledError(shown, SHUTTING_DOWN)
            self._inside += 1
        try:
            yield
        finally:
            with self._changed:
                self._inside -= 1
                self._changed.notify_all()

    def check(self, shown: str) -> None:
        if self._closed:
            raise IngestCancelledError(shown, SHUTTING_DOWN)

    def close(self) -> None:
        with self._changed:
            self._closed = True

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no ingest is inside; False if some still are after `timeout_s`."""
        with self._changed:
            return self._changed.wait_for(lambda: self._inside == 0, timeout_s)
