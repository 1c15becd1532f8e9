"""Continuous batching: one thread owns the model and decodes every request together.

Requests wait in a bounded queue; between two decoding steps the thread prefills those
waiting (up to `max_batch` rows) and they join the running batch, so throughput grows
with load instead of latency. Beyond `max_waiting` a request is refused at once with
`OverloadedError`, before any work is done for it. Only this thread touches the model
and its caches, so nothing in them is shared between request threads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from lectern.errors import NotReadyError, OverloadedError
from lectern.timing import RunningMean
from model.generators.decode_batch import DecodeBatch, Prefilled

log = logging.getLogger(__name__)
_DONE = object()


@dataclass(eq=False)
class Ticket:
    """One request's reply: its new token ids arrive on `tokens`, in order."""

    prompt: list[int]
    max_new_tokens: int
    shared: int = 0  # leading prompt ids that are the shared system turn
    generated: list[int] = field(default_factory=list)
    tokens: queue.Queue[Any] = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    started: float = 0.0

    def cancel(self) -> None:
        """Stop decoding this request (its reader went away); safe from any thread."""
        self.cancelled.set()

    def ids(self, timeout: float) -> Iterator[int]:
        """The new token ids as they are decoded; raises what failed the request."""
        while True:
            try:
                item = self.tokens.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no token decoded within {timeout} s") from None
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


# (the logits for one row, the ids so far: prompt + generated) -> the next token id
Choose = Callable[[Any, list[int], bool], int]  # (logits, ids so far, first reply token)
# (prompt ids, how many lead ids are the shared turn) -> (a copy of their cache or None,
# how many ids it holds)
PrefixCache = Callable[[list[int], int], tuple[Any, int]]


class BatchScheduler:
    def __init__(
        self,
        batch: DecodeBatch,
        choose: Choose,
        eos: set[int],
        *,
        max_batch: int = 8,
        max_waiting: int = 32,
        prefix: PrefixCache | None = None,
        threads: tuple[int, int] | None = None,
        context: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be at least 0, got {max_waiting}")
        self.batch = batch
        self.choose = choose
        self.eos = eos
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self.prefix = prefix
        # Entered once by the decoding thread around all its work: torch.inference_mode,
        # without which every cached key would keep its autograd history alive.
        self.context = context
        # (prefill, decode) torch thread counts, switched in this thread: prefill is
        # compute-bound and wants every core, a memory-bound step may not.
        self.threads = threads
        self._waiting: deque[Ticket] = deque()
        self._rows: list[Ticket] = []
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._seconds_per_reply = RunningMean(2.0)  # for Retry-After

    # -- request threads ---------------------------------------------------------------

    def start(self) -> None:
        with self._wake:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="decode-batch", daemon=True)
            self._thread.start()

    def submit(self, prompt: list[int], max_new_tokens: int, shared: int = 0) -> Ticket:
        """Queue a prompt; its first `shared` ids are a turn other prompts share (cached)."""
        if not prompt:
            raise ValueError("an empty prompt")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        ticket = Ticket(list(prompt), max_new_tokens, shared=shared)
        with self._wake:
            if self._closing or self._thread is None:
                raise NotReadyError("the generator is not running (stopped or not warmed up)")
            if len(self._rows) + len(self._waiting) >= self.max_batch + self.max_waiting:
                raise OverloadedError(self.retry_after(), "the generator's queue is full")
            self._waiting.append(ticket)
            self._wake.notify()
        return ticket

    def retry_after(self) -> float:
        """Seconds until a place is likely free: a reply's time per batch ahead of it."""
        batches_ahead = 1 + len(self._waiting) // self.max_batch
        return max(1.0, self._seconds_per_reply.value * batches_ahead)

    @property
    def load(self) -> tuple[int, int]:
        """(rows decoding, requests waiting)."""
        with self._wake:
            return len(self._rows), len(self._waiting)

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new requests, let those decoding finish within `timeout`, fail the rest."""
        with self._wake:
            self._closing = True
            waiting, self._waiting = list(self._waiting), deque()
            self._wake.notify()
        for t in waiting:
            t.tokens.put(NotReadyError("the server is shutting down"))
        if self._thread is not None:
            self._thread.join(timeout)
            for t in list(self._rows):
                t.cancel()
            self._thread.join(1.0)

    # -- the decoding thread -----------------------------------------------------------

    def _run(self) -> None:
        with self.context():
            self._loop()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._rows and not self._waiting and not self._closing:
                    self._wake.wait()
                if self._closing and not self._rows:
                    return
                joining = []
                while self._waiting and len(self._rows) + len(joining) < self.max_batch:
                    joining.append(self._waiting.popleft())
            try:
                for ticket in joining:
                    self._admit(ticket)
                if self._rows:
                    self._step()
            except Exception as exc:  # a failed step fails its rows, not the server
                log.exception("decoding failed")
                for t in self._rows + [t for t in joining if t not in self._rows]:
                    t.tokens.put(exc)
                with self._wake:
                    self._rows = []
                self.batch.keep([])

    def _set_threads(self, phase: int) -> None:
        if self.threads is not None:
            from lectern.optional import require

            require("torch", "torch").set_num_threads(self.threads[phase])

    def _admit(self, ticket: Ticket) -> None:
        if ticket.cancelled.is_set():
            ticket.tokens.put(_DONE)
            return
        ticket.started = time.perf_counter()
        self._set_threads(0)
        cache, cached = (None, 0)
        if self.prefix is not None and ticket.shared:
            cache, cached = self.prefix(ticket.prompt, ticket.shared)
        row: Prefilled = self.batch.prefill(ticket.prompt, cache, cached)
        token = self.choose(row.logits, ticket.prompt, True)
        if self._emit(ticket, token):
            self.batch.join(row, token)
            with self._wake:
                self._rows.append(ticket)

    def _step(self) -> None:
        self._set_threads(1)
        logits = self.batch.step()
        keep, tokens = [], []
        for i, ticket in enumerate(self._rows):
            token = self.choose(logits[i], ticket.prompt + ticket.generated, False)
            if self._emit(ticket, token):
                keep.append(i)
                tokens.append(token)
        if len(keep) < len(self._rows):
            with self._wake:
                self._rows = [self._rows[i] for i in keep]
            self.batch.keep(keep)
        if keep:
            self.batch.feed(tokens)

    def _emit(self, ticket: Ticket, token: int) -> bool:
        """Hand `token` to the reader; whether the row decodes on."""
        if ticket.cancelled.is_set():
            # Cut short by shutdown: the reader must not take the partial reply as whole.
            stopped = NotReadyError("the server is shutting down") if self._closing else None
            return self._finish(ticket, stopped)
        if token in self.eos:
            return self._finish(ticket)
        ticket.generated.append(token)
        ticket.tokens.put(token)
        if len(ticket.generated) >= ticket.max_new_tokens:
            return self._finish(ticket)
        return True

    def _finish(self, ticket: Ticket, error: BaseException | None = None) -> bool:
        ticket.tokens.put(_DONE if error is None else error)
        took = time.perf_counter() - ticket.started
        self._seconds_per_reply.add(took)
        return False
