"""Parse files in warm child processes, which a timeout or a shutdown can kill.

A parse cannot be interrupted from the thread that runs it: unstructured on a hostile or
huge file holds a request thread for minutes, and with it a server's shutdown (uvicorn waits
for the request; given a bound, it then ends the process mid-parse, leaving the upload
behind with no document). So files are parsed in pebble worker processes:
started with spawn (the server has loaded torch and runs threads, which a fork would copy
half-way), kept warm across files (importing unstructured and torch takes seconds), and
killed and replaced when a parse runs past its timeout or its `ParseWorkers` closes.

The processes are shared by every `ParseWorkers` of this process (one warm pool per worker
count; pebble stops them at exit): a server has one, but a test run would otherwise start
a pool per service it builds. Closing a `ParseWorkers` cancels its own parses only.
"""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from concurrent.futures import CancelledError, Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.formats import Format
from ingest.gate import SHUTTING_DOWN
from ingest.partition import Parsed, partition, warm_imports
from lectern.errors import CorruptFileError, IngestCancelledError, IngestError, ParseTimeoutError
from lectern.optional import require

if TYPE_CHECKING:
    from pebble import ProcessPool

BROKEN = "the parse workers stopped; try again"
_POLL_S = 1.0  # how often a waiting thread checks that its pool still runs
_pools: dict[int, ProcessPool] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ProcessPool:
    """The shared pool of `workers` processes, started at its first task."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pebble = require("pebble", "ingest")
            pool = pebble.ProcessPool(
                max_workers=workers,
                initializer=warm_imports,
                context=multiprocessing.get_context("spawn"),
            )
            _pools[workers] = pool
        return pool


def _retire(pool: ProcessPool) -> None:
    """Stop `pool` and kill its processes; the next parse starts a fresh one.

    For a broken pool, and on close() with parses running: pebble would replace a process
    killed by a cancel at once, spawning a worker into a server that is exiting.
    """
    with _pools_lock:
        mine = [workers for workers, current in _pools.items() if current is pool]
        for workers in mine:
            del _pools[workers]
    if mine:  # else another thread retired it already
        pool.stop()
        pool.join()  # its waiters see it inactive and give up (ParseWorkers._wait)


def _parse(path: str, fmt: Format, pdf_strategy: str) -> Parsed:
    """Runs in a worker: the parse, raising only errors the server can unpickle."""
    try:
        return partition(Path(path), fmt, pdf_strategy)
    except IngestError:
        raise
    except Exception as exc:
        try:
            pickle.dumps(exc)
        except Exception:  # its class cannot cross back: send its name and text instead
            raise RuntimeError(f"{type(exc).__qualname__}: {exc}") from None
        raise


def _nothing() -> None:
    """Scheduled by `start()`: the workers start (and warm up) to run it."""


class ParseWorkers:
    """`parse()` from any number of threads; a parse gets `timeout_s` from when it starts.

    Parses beyond `workers` wait their turn (untimed). `close()` fails the running and
    waiting parses with IngestCancelledError at once, and refuses new ones.
    """

    def __init__(self, workers: int, timeout_s: float, pdf_strategy: str = "fast") -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.workers = workers
        self.timeout_s = timeout_s
        self.pdf_strategy = pdf_strategy
        self._lock = threading.Lock()
        self._pending: dict[Future[Any], ProcessPool] = {}  # this instance's, by their pool
        self._closed = False

    def start(self) -> None:
        """Start the worker processes now rather than at the first parse."""
        if not self._closed:  # not a parse: close() leaves it be, not killing a warm pool
            _pool(self.workers).schedule(_nothing)

    def parse(self, path: Path, fmt: Format) -> Parsed:
        shown = str(path)
        args = (shown, fmt, self.pdf_strategy)
        pool, future = self._submit(shown, args)
        return self._wait(pool, future, shown)

    def close(self) -> None:
        """Cancel this instance's parses, killing the processes that run them. Idempotent."""
        with self._lock:
            self._closed = True
            pending = list(self._pending.items())
        # Outside the lock: cancel() runs the done callbacks (_forget) in this thread.
        cancelled = {id(pool): pool for future, pool in pending if future.cancel()}
        for pool in cancelled.values():
            _retire(pool)

    def _submit(self, shown: str, args: tuple) -> tuple[ProcessPool, Future[Any]]:
        with self._lock:
            if self._closed:
                raise IngestCancelledError(shown, SHUTTING_DOWN)
            pool = _pool(self.workers)
            try:
                future = pool.schedule(_parse, args, timeout=self.timeout_s)
            except RuntimeError:  # "Unexpected error within the Pool": a loop of it died
                _retire(pool)
                pool = _pool(self.workers)
                future = pool.schedule(_parse, args, timeout=self.timeout_s)
            self._pending[future] = pool
        future.add_done_callback(self._forget)
        return pool, future

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.pop(future, None)

    def _wait(self, pool: ProcessPool, future: Future[Parsed], shown: str) -> Parsed:
        pebble = require("pebble", "ingest")
        while True:
            try:
                return future.result(timeout=_POLL_S)  # wakes at once on cancel()
            except TimeoutError:  # the poll's, or the parse's own (concurrent.futures')
                if not future.done():
                    if not pool.active:  # stopped or broken: this future would never end
                        _retire(pool)
                        raise IngestError(shown, BROKEN) from None
                elif not future.cancelled() and isinstance(future.exception(), TimeoutError):
                    raise ParseTimeoutError(  # pebble killed the process that ran it
                        shown, f"parsing took over {self.timeout_s:g} s and was stopped"
                    ) from None
            except CancelledError:
                raise IngestCancelledError(shown, SHUTTING_DOWN) from None
            except pebble.ProcessExpired as exc:
                raise CorruptFileError(
                    shown, f"the parser's process died (exit code {exc.exitcode}) on this file"
                ) from None
            except BrokenProcessPool:
                _retire(pool)
                raise IngestError(shown, BROKEN) from None
