"""Runs a corpus's retrieval calibration: on demand, and by itself after ingests.

A calibration writes a few hundred questions with the generator (minutes on CPU), so
the one that follows an ingest runs on a background thread while the old settings go on
serving; only a finished fit is saved and switched to, and a failed one leaves
everything as it was (logged, and kept in `last_error` for the admin view).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from lectern.errors import CalibrationRunningError
from lectern.protocols import Generator
from lectern.settings import Settings
from retriever import calibration
from retriever.calibration import RetrievalCalibration
from retriever.calibration_fit import calibrate
from retriever.corpus import Corpus

log = logging.getLogger(__name__)


class Calibrator:
    """One calibration at a time for one corpus; `fit()` runs it here, `after_change()`
    starts it in the background when enough of the corpus changed since the last one."""

    def __init__(
        self,
        settings: Settings,
        corpus: Callable[[], Corpus],
        generator: Callable[[], Generator],
    ) -> None:
        self.settings = settings
        self._corpus = corpus
        self._generator = generator
        self._running = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_error: str | None = None
        self.started: float | None = None  # time.time() of the run under way
        # Background runs only in a process that lives to finish them: the server turns
        # this on; a CLI command exits long before a fit would be done.
        self.background = False

    @property
    def running(self) -> bool:
        return self._running.locked()

    def fit(self, log_line: Callable[[str], Any] = log.info) -> RetrievalCalibration:
        """Calibrate now (blocking), save the record and serve it."""
        if not self._running.acquire(blocking=False):
            raise CalibrationRunningError("a retrieval calibration is already running")
        try:
            return self._fit(log_line)
        finally:
            self.started = None  # before the release: a run starting next sets its own
            self._running.release()

    def _fit(self, log_line: Callable[[str], Any]) -> RetrievalCalibration:

        self.started = time.time()
        corpus = self._corpus()
        c = self.settings.calibration
        reranker = corpus.reranker
        score = getattr(reranker, "score_chunks", None)
        dense = corpus.retriever("dense")
        # The encoder the dense lists come from, read once: a switch meanwhile must not
        # label this fit with the new one.
        encoder = getattr(dense, "embedder", corpus.embedder).fingerprint
        record = calibrate(
            corpus.store.all_chunks(),
            corpus.retriever("bm25"),
            dense,
            self._generator(),
            encoder=encoder,
            retrieval=self.settings.retrieval,
            score=score,
            reranker=calibration.reranker_id(reranker),
            default_prior=getattr(reranker, "prior_weight", None),
            questions=c.questions,
            max_minutes=c.max_minutes,
            seed=c.seed,
            log=log_line,
            should_stop=self._stop.is_set,
        )
        calibration.save(self.settings, record)  # written first: a restart serves it too
        corpus.use_calibration(record)
        self.last_error = None
        return record

    def due(self) -> bool:
        """Whether enough of the corpus changed since the last fit to fit again."""
        c = self.settings.calibration
        if c.auto_share <= 0:
            return False
        corpus = self._corpus()
        ids = corpus.store.chunk_ids()
        if len(ids) < c.min_chunks:
            return False
        record = corpus.calibration
        return record is None or calibration.changed_share(record, ids.tolist()) > c.auto_share

    def after_change(self) -> bool:
        """Start a background calibration if one is due and none runs; True if started."""
        if not self.background or self.running or self._stop.is_set() or not self.due():
            return False
        return self.start()

    def start(self) -> bool:
        """Start a calibration in the background now; False when one already runs."""
        if self.running or self._stop.is_set():
            return False
        thread = threading.Thread(target=self._background, name="calibrate", daemon=True)
        self._thread = thread
        thread.start()
        return True

    def _background(self) -> None:
        try:
            record = self.fit()
            log.info("retrieval calibrated: %s (%s)", record.chosen.name, record.reason)
        except CalibrationRunningError as exc:  # another run started first
            log.info("calibration not started: %s", exc)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("retrieval calibration failed; the previous settings stay: %s", exc)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop a background run at its next batch of questions."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
