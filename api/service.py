"""The composition root: `Lectern` answers, searches and keeps documents with the
components `api.components` builds from the Settings.

`Lectern` composes a `Corpus` (store + indexes + reranker) and a generator. Which store,
encoder, reranker and generator backend serve is decided in `api` and nowhere below.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from api.admission import Admission
from api.answering import Answerer
from api.calibration_runner import Calibrator
from api.components import build_reranker, device_plan, open_corpus
from api.conversations import ConversationStore
from api.upload_names import upload_path
from ingest.gate import IngestGate
from ingest.orphans import remove_orphans
from ingest.parse_worker import ParseWorkers
from ingest.pipeline import FileResult, Ingestor, IngestReport, document_id
from ingest.sqlite_store import SQLiteDocumentStore
from lectern.errors import CalibrationRunningError, DocumentNotFoundError, NotReadyError
from lectern.files import atomic_write
from lectern.protocols import AnswerLog, DocumentStore, Embedder, Generator, Reranker
from lectern.settings import Settings
from lectern.types import (
    AskResult,
    Chunk,
    DocumentInfo,
    ScoredChunk,
    SearchFilter,
    StreamEvent,
    Timings,
    Turn,
)
from model import generators
from model.answer_log import SQLiteAnswerLog
from model.generators.adapters import AdapterInfo
from model.generators.served import ServedGenerator
from retriever.corpus import Corpus, Counts, Mode

log = logging.getLogger(__name__)


def _keep(path: Path, data: bytes) -> bytes | None:
    """Write `data` at `path` (atomically); the bytes it replaced, if any."""
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = path.read_bytes() if path.exists() else None
    atomic_write(path, lambda f: f.write(data))
    return previous


def _prune_empty(folder: Path, root: Path) -> None:
    """Remove `folder` and the folders above it, up to `root` (kept), while they are empty."""
    root, folder = root.resolve(), folder.resolve()
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:  # not empty, or gone: what is left above holds other files
            return
        folder = folder.parent


class Lectern:
    """Everything one data directory serves: search, answers, documents and uploads.

    Cheap to construct; `warm_up()` loads the encoder, indexes and reranker, and
    `warm_up_generator()` the generator (both idempotent). Components handed in are used
    as they are (tests, `lectern train encoder`); the rest are built from the settings.
    """

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None = None,
        generator: Generator | None = None,
        reranker: Reranker | None = None,
        store: DocumentStore | None = None,
        answer_log: AnswerLog | None = None,
    ) -> None:
        self.settings = settings
        self.store = SQLiteDocumentStore(settings.store_path) if store is None else store
        self._embedder = embedder
        self._reranker = reranker
        self._corpus: Corpus | None = None
        # Request threads and the start-up loader may warm up at once: one of them loads.
        # The generator has its own lock (in ServedGenerator): a search need not wait for it.
        self._corpus_lock = threading.Lock()
        self._generators = ServedGenerator(settings, self._build_generator, generator)
        i = settings.ingest
        self._parsers = ParseWorkers(i.parse_workers, i.parse_timeout_s, i.pdf_strategy)
        self._ingests = IngestGate()  # closed by close(): in-flight ingests stop
        self._closed = False
        self.admission = Admission(settings.api.max_answers_in_flight)
        self.calibrator = Calibrator(settings, self._warm_corpus, self._warm_generator)
        if answer_log is None and settings.feedback.log_answers:
            answer_log = SQLiteAnswerLog(settings.feedback_path)
        self.answer_log = answer_log
        self.answerer = Answerer(
            settings, self._warm_corpus, lambda: self.embedder, self._generators, answer_log
        )
        self.conversations = ConversationStore(settings.conversation)

    @property
    def corpus(self) -> Corpus:
        if self._corpus is None:
            raise NotReadyError("Lectern used before warm_up()")
        return self._corpus

    @property
    def embedder(self) -> Embedder:
        if self._corpus is not None:
            return self._corpus.embedder
        if self._embedder is None:
            raise NotReadyError("Lectern used before warm_up()")
        return self._embedder

    @property
    def reranker(self) -> Reranker | None:
        return self._corpus.reranker if self._corpus is not None else self._reranker

    @property
    def fusion(self) -> dict[str, float]:
        return self.corpus.fusion

    def warm_up(self) -> None:
        if self._corpus is not None:
            return
        with self._corpus_lock:
            if self._corpus is not None:
                return
            reranker = build_reranker(self.settings) if self._reranker is None else self._reranker
            # Published only once it is ready to search.
            self._corpus = open_corpus(self.settings, self.store, self._embedder, reranker)

    def _warm_corpus(self) -> Corpus:
        self.warm_up()
        return self.corpus

    def _warm_generator(self) -> Generator:
        self.warm_up_generator()
        return self.generator

    def warm_up_generator(self) -> None:
        """Load the generator (converting a GGUF once if needed) with its adapter merged
        in, or the base model when the adapter is refused (see `adapters`); idempotent."""
        self._generators.warm_up()

    def _build_generator(self, settings: Settings) -> Generator:
        return generators.build(settings, device_plan(settings))

    @property
    def ready(self) -> bool:
        return self._corpus is not None and self._generators.ready

    def require_ready(self) -> None:
        if not self.ready:
            raise NotReadyError("the models are still loading; retry shortly")

    @property
    def generator(self) -> Generator:
        return self._require_generator()

    def _require_generator(self) -> Generator:
        return self._generators.require()

    @property
    def _generator(self) -> Generator | None:
        """The serving generator, warmed up or not (tests reach into a fake's state)."""
        return self._generators.current

    # -- generator adapters -----------------------------------------------------------

    def adapters(self) -> list[AdapterInfo]:
        """The adapters that can serve (shipped, configured, trained), the active marked."""
        return self._generators.adapters()

    @property
    def adapter_refused(self) -> str | None:
        """Why the configured adapter is not serving (refused at start-up), if it is not."""
        return self._generators.refused

    def use_adapter(self, name: str | None) -> AdapterInfo | None:
        """Serve adapter `name` (None: the base model) from the next request on, without a
        restart; answers already being written finish on the generator they started on.

        AdapterNotFoundError for a name `adapters()` does not list; AdapterMismatchError
        when it does not fit the base, the serving generator unchanged.
        """
        return self._generators.use(name)

    # -- start-up and shutdown ------------------------------------------------------

    def start_parsers(self) -> None:
        """Start the parse processes now, so the first upload does not wait for them."""
        self._parsers.start()

    def remove_orphan_uploads(self) -> list[Path]:
        """Remove uploads no stored document points at (see ingest.orphans).

        Only while no upload is under way: the server calls it at start-up, before its
        first request, and close() once the ingests are stopped. Not in warm_up(): a CLI
        command may warm up beside a running server whose upload has no document yet.
        """
        sources = [d.source for d in self.store.list_documents()]
        return remove_orphans(self.settings.upload_dir, sources)

    def stop_ingests(self) -> None:
        """Fail the ingests in flight at once (their parses killed) and refuse new ones.

        Called shortly before a graceful shutdown's period ends, so an upload still
        parsing answers with its per-file failure rather than being cut off. Idempotent.
        """
        self._ingests.close()
        self._parsers.close()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop: ingests in flight fail at once, their uploads are removed, the store closes.

        Parses are cancelled (their processes killed); an ingest past its parse stops at
        its next embedding slice. Waits up to `timeout_s` for them to unwind. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        self.calibrator.close(timeout_s)
        self.stop_ingests()
        if self._ingests.wait_idle(timeout_s):
            # An upload whose ingest just failed may not have removed its file yet.
            self.remove_orphan_uploads()
        else:  # one is still at work: its file stays, for the start-up sweep
            log.warning("ingests still running %.0f s after close(); closing anyway", timeout_s)
        self._generators.close()  # requests still decoding get no more time: the
        # server's graceful-shutdown period, before this, was theirs
        if self.answer_log is not None:
            self.answer_log.close()
        self.store.close()

    # -- answering -------------------------------------------------------------------

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        filters: SearchFilter | None = None,
        history: Sequence[Turn] = (),
    ) -> AskResult:
        """Answer from the top passages, citing them; abstain when there is nothing to cite.

        history: the conversation's earlier turns, oldest first (see api.answering).
        filters: documents kept out of retrieval (the evaluation's unanswerable probe asks
        a question again without its own article). Raises OverloadedError before any work
        when `api.max_answers_in_flight` are in progress.
        """
        with self.admission.slot():
            return self.answerer.ask(question, top_k, filters, history)

    def ask_stream(
        self,
        question: str,
        top_k: int | None = None,
        filters: SearchFilter | None = None,
        history: Sequence[Turn] = (),
    ) -> Iterator[StreamEvent]:
        """TokenEvents as the answer is generated, then one AnswerEvent with the checked answer.

        history, filters: as for ask(). The place among the answers in flight is taken on
        the first `next()` (which raises OverloadedError when there is none) and given back
        when the stream ends or is closed.
        """
        with self.admission.slot():
            yield from self.answerer.ask_stream(question, top_k, filters, history)

    # -- search and the corpus -------------------------------------------------------

    def search(
        self,
        query: str,
        top_k: int | None = None,
        mode: Mode = "hybrid",
        rerank: bool | None = None,
    ) -> list[ScoredChunk]:
        """The best chunks for `query` (see Corpus.search)."""
        self.warm_up()
        return self.corpus.search(query, top_k, mode, rerank)

    def refresh(self) -> None:
        """Bring the indexes in line with the store, then recalibrate in the background
        if enough of the corpus changed (see api.calibration_runner)."""
        self.corpus.refresh()
        self.calibrator.after_change()

    def start_calibration(self) -> None:
        """Calibrate retrieval in the background (CalibrationRunningError if one runs)."""
        self.require_ready()
        if not self.calibrator.start():
            raise CalibrationRunningError("a retrieval calibration is already running")

    def switch_encoder(
        self,
        embedder: Embedder,
        ref: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Serve `embedder` from now on (see Corpus.switch_encoder); a new encoder needs
        its own calibration, fitted in the background."""
        self.warm_up()
        done = self.corpus.switch_encoder(embedder, ref, on_progress)
        self.calibrator.after_change()
        return done

    def counts(self) -> Counts:
        if self._corpus is None:
            return Counts(len(self.store.list_documents()), self.store.chunk_count(),
                          self.store.vector_count(), 0, 0)
        return self._corpus.counts()

    # -- documents ---------------------------------------------------------------------

    def ingestor(self, show: Callable[[str], str] = str) -> Ingestor:
        """An Ingestor that parses in the worker processes and stops when this closes."""
        return Ingestor(
            self.store, self.embedder, self.settings.ingest, show,
            parse=self._parsers.parse, gate=self._ingests,
        )

    def ingest(
        self, paths: Iterable[Path], on_file: Callable[[FileResult], None] | None = None
    ) -> IngestReport:
        self.warm_up()
        report = self.ingestor().ingest_paths(paths, on_file)
        if report.changed:
            self.refresh()
        return report

    def resolve_document(self, key: str) -> DocumentInfo:
        """A document by id, by source as stored, or by a path that resolves to its source."""
        for candidate in (key, document_id(key), document_id(str(Path(key).resolve()))):
            info = self.store.get_document(candidate)
            if info is not None:
                return info
        raise DocumentNotFoundError(key)

    def shown_source(self, source: str) -> str:
        """How the API names a document's source: never by a path on the server.

        An upload: its path under the upload folder ("dirA/notes.txt"). Another file
        under the data folder: its path there. Any other file: its name alone (where the
        operator keeps files is no business of the API's). A source that is not an
        absolute path (text ingested under a name of its own, "faq:loans"): as stored.
        The CLI, run by the operator, shows full paths.
        """
        path = Path(source)
        if not path.is_absolute():
            return source
        for folder in (self.settings.upload_dir, self.settings.data_dir):
            root = folder.resolve()
            if path.is_relative_to(root):
                return path.relative_to(root).as_posix()
        return path.name

    def ingest_upload(self, filename: str, data: bytes) -> FileResult:
        """Keep an uploaded file under the upload folder and ingest it from there.

        It is kept at `upload_path(filename)`, folders included (see api.upload_names),
        and named so in the result; the same path uploaded again replaces the earlier
        document.
        """
        self.warm_up()
        relative = upload_path(filename)
        shown = relative.as_posix()
        root = self.settings.upload_dir
        path = root / relative
        try:
            previous = _keep(path, data)
        except OSError as exc:  # e.g. a folder of other uploads where this file would go
            _prune_empty(path.parent, root)
            reason = exc.strerror or type(exc).__name__  # str(exc) would hold the server path
            return FileResult(shown, "failed", detail=f"cannot be kept as {shown}: {reason}")
        ingestor = self.ingestor(self.shown_source)
        result = ingestor.ingest_file(path)
        if result.status in ("failed", "duplicate"):
            # Nothing new was stored, so the file must not stay either.
            if previous is None:
                path.unlink(missing_ok=True)
                _prune_empty(path.parent, root)
            else:
                atomic_write(path, lambda f: f.write(previous))
        if result.status in ("added", "updated"):
            self.refresh()
        # A parser's error may quote the path it was given.
        detail = result.detail.replace(str(path.resolve()), shown).replace(str(path), shown)
        return dataclasses.replace(result, path=shown, detail=detail)

    def delete(self, key: str) -> DocumentInfo:
        self.warm_up()
        info = self.resolve_document(key)
        self.corpus.delete(info.id)
        self.calibrator.after_change()
        source = Path(info.source)
        root = self.settings.upload_dir.resolve()
        if source.is_relative_to(root):
            source.unlink(missing_ok=True)  # an upload has no other copy to keep
            _prune_empty(source.parent, root)
        return info

    def document_file(self, document_id: str) -> tuple[DocumentInfo, Path]:
        info = self.store.get_document(document_id)
        if info is None:
            raise DocumentNotFoundError(document_id)
        path = Path(info.source)
        if not path.is_file():
            shown = self.shown_source(info.source)
            raise DocumentNotFoundError(f"{document_id} (its file {shown} is gone)")
        return info, path

    def documents(self) -> list[DocumentInfo]:
        return self.store.list_documents()


__all__ = ["AskResult", "Chunk", "Lectern", "Timings"]
