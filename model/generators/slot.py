"""The generator that serves, replaced while requests run on it (switching adapters).

A request leases the generator it starts on and keeps it to its last token, so a swap
never cuts a reply short: the requests after it get the new generator, and the old one
is closed when its last lease ends (at once when it has none). Closing a generator's
scheduler instead would fail the requests still waiting in its queue.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from lectern.errors import NotReadyError
from lectern.protocols import Generator, Message


class GeneratorSlot:
    def __init__(self, generator: Generator | None = None) -> None:
        self._current = generator
        # Keyed by id(): a generator need not be hashable. A leased or retired one is
        # referenced from here, so its id is not reused while it is a key.
        self._leases: dict[int, int] = {}
        self._retired: dict[int, Generator] = {}
        self._lock = threading.Lock()

    @property
    def current(self) -> Generator | None:
        return self._current

    def swap(self, generator: Generator) -> None:
        """Serve `generator` from now on; the one before closes once no request holds it."""
        with self._lock:
            old, self._current = self._current, generator
            if old is None or old is generator:
                return
            if self._leases.get(id(old)):
                self._retired[id(old)] = old
                return
        old.close()

    @contextmanager
    def lease(self) -> Iterator[Generator]:
        """The current generator, kept open until the block ends."""
        with self._lock:
            generator = self._current
            if generator is None:
                raise NotReadyError("no generator loaded yet")
            key = id(generator)
            self._leases[key] = self._leases.get(key, 0) + 1
        try:
            yield generator
        finally:
            with self._lock:
                left = self._leases.pop(key) - 1
                if left:
                    self._leases[key] = left
                done = self._retired.pop(key, None) if not left else None
            if done is not None:
                done.close()

    def generate(self, messages: Sequence[Message]) -> str:
        with self.lease() as generator:
            return generator.generate(messages)

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        """The current generator's stream; the lease is taken on the first next()."""
        with self.lease() as generator:
            yield from generator.stream(messages)

    def samples(self, messages: Sequence[Message], n: int) -> list[str]:
        with self.lease() as generator:
            return generator.samples(messages, n)

    def close(self) -> None:
        """Close every generator, those still finishing requests too (shutdown)."""
        with self._lock:
            closing = list(self._retired.values())
            if self._current is not None:
                closing.append(self._current)
            self._retired.clear()
        for generator in closing:
            generator.close()
