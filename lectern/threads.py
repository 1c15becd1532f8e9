"""Objects that are not safe to share between threads, one copy per thread.

A Hugging Face fast tokenizer keeps its padding and truncation settings inside its Rust
object and changes them on every call that passes them, so two request threads calling
one tokenizer at once get each other's settings: ragged batches, wrong ids, a 500. A
per-thread copy makes every caller's tokenizer its own, with no lock on the hot path.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerThread(Generic[T]):
    """`get()` returns this thread's instance, made by `make` on the thread's first call."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._local = threading.local()
        self._making = threading.Lock()  # `make` may read shared state (a prototype)

    def get(self) -> T:
        mine = getattr(self._local, "value", None)
        if mine is None:
            with self._making:
                mine = self._make()
            self._local.value = mine
        return mine

    @classmethod
    def copies_of(cls, prototype: T) -> PerThread[T]:
        """Deep copies of `prototype`, which is then only ever read (copied)."""
        return cls(lambda: copy.deepcopy(prototype))
