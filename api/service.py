"""The composition root: builds the components from Settings and answers with them.

`Lectern` composes a `Corpus` (store + indexes + reranker) and a generator. Which store,
encoder, reranker and generator backend serve is decided here and nowhere below.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ingest.pipeline import FileResult, Ingestor, IngestReport, document_id
from ingest.sqlite_store import SQLiteDocumentStore
from lectern import device
from lectern.device import DevicePlan
from lectern.errors import DocumentNotFoundError, InvalidRequestError, NotReadyError
from lectern.protocols import DocumentStore, Embedder, Generator, Reranker
from lectern.settings import Settings
from lectern.timing import elapsed_ms
from lectern.types import (
    Answer,
    AnswerEvent,
    AskResult,
    Chunk,
    DocumentInfo,
    ScoredChunk,
    StreamEvent,
    Timings,
    TokenEvent,
)
from model import generators, prepare
from model.answer import IDK, assemble, build_messages
from model.context import Compressed, compress
from retriever import reindex
from retriever.corpus import Corpus, Counts, Mode
from retriever.embedder import SentenceTransformerEmbedder

log = logging.getLogger(__name__)


def device_plan(settings: Settings) -> DevicePlan:
    m = settings.models
    return device.plan(device.probe(), m.device, m.dtype, cpu_int8=m.cpu_int8)


def build_embedder(settings: Settings, device_name: str) -> SentenceTransformerEmbedder:
    """The encoder the settings name, on onnxruntime when that backend is chosen."""
    enc = prepare.encoder(reindex.serving_settings(settings))  # a switch outlives restarts
    onnx_path = None
    if settings.models.encoder_backend == "onnx":
        key = hashlib.sha256(enc.fingerprint.encode()).hexdigest()[:16]
        onnx_path = settings.model_cache_dir / f"encoder-{key}.onnx"
    return SentenceTransformerEmbedder(
        enc.folder, enc.fingerprint, device=device_name,
        batch_size=settings.ingest.embed_batch_size, onnx_path=onnx_path,
    )


def build_reranker(settings: Settings) -> Reranker | None:
    """The configured, trained or shipped reranker; None when reranking is off or none exists."""
    if not settings.retrieval.rerank:
        return None
    from retriever.cross_encoder import SHIPPED_RERANKER, CrossEncoderReranker

    folder = prepare.reranker(settings, shipped=SHIPPED_RERANKER)
    if folder is None:
        log.info(
            "no reranker at %s (train one with `lectern train reranker`); "
            "search results are not reranked",
            prepare.default_reranker_dir(settings),
        )
        return None
    log.info("reranker: %s (%s)", folder, settings.models.reranker_backend)
    return CrossEncoderReranker(folder, backend=settings.models.reranker_backend)


def open_corpus(
    settings: Settings,
    store: DocumentStore | None = None,
    embedder: Embedder | None = None,
    reranker: Reranker | None = None,
) -> Corpus:
    """A warmed-up Corpus on settings.data_dir; components not given are built.

    A store opened here is closed again when warming up fails.
    """
    plan = device_plan(settings)
    opened = store is None
    store = SQLiteDocumentStore(settings.store_path) if store is None else store
    try:
        embedder = build_embedder(settings, plan.device) if embedder is None else embedder
        corpus = Corpus(settings, store, embedder, reranker, use_gpu=plan.faiss_gpu)
        corpus.warm_up()
    except BaseException:
        if opened:
            store.close()
        raise
    return corpus


def _safe_name(filename: str) -> str:
    name = Path(filename.replace("\\", "/")).name.strip()
    name = "".join(ch if ch.isalnum() or ch in "._- " else "_" for ch in name).strip(" .")
    if not name:
        raise InvalidRequestError(f"unusable file name {filename!r}")
    return name[:200]


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
    ) -> None:
        self.settings = settings
        self.store = SQLiteDocumentStore(settings.store_path) if store is None else store
        self._embedder = embedder
        self._generator = generator
        self._reranker = reranker
        self._corpus: Corpus | None = None
        self._generator_ready = False
        # Request threads and the start-up loader may warm up at once: one of them loads.
        # Two locks: a search need not wait for the generator's load.
        self._corpus_lock = threading.Lock()
        self._generator_lock = threading.Lock()

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

    def warm_up_generator(self) -> None:
        """Load the generator (converting a GGUF once if needed); idempotent."""
        if self._generator_ready:
            return
        with self._generator_lock:
            if self._generator_ready:
                return
            if self._generator is None:
                self._generator = generators.build(self.settings, device_plan(self.settings))
            self._generator.warm_up()
            self._generator_ready = True

    @property
    def ready(self) -> bool:
        return self._corpus is not None and self._generator_ready

    def require_ready(self) -> None:
        if not self.ready:
            raise NotReadyError("the models are still loading; retry shortly")

    @property
    def generator(self) -> Generator:
        return self._require_generator()

    def _require_generator(self) -> Generator:
        if not self._generator_ready or self._generator is None:
            raise NotReadyError("generator used before warm_up_generator()")
        return self._generator

    # -- answering -------------------------------------------------------------------

    def _context(
        self, question: str, top_k: int | None, timings: Timings, start: float
    ) -> AskResult | Compressed:
        """The compressed passages to answer from, or the abstention when there are none."""
        g = self.settings.generation
        self.warm_up()
        hits, rerank_ms = self.corpus.search_timed(
            question, top_k or g.passages, "hybrid", None, g.rerank_candidates
        )
        timings.rerank_ms = rerank_ms
        timings.retrieve_ms = round(elapsed_ms(start) - rerank_ms, 2)
        passages = [h.chunk for h in hits]
        if not passages:  # nothing retrieved: no model call, an honest abstention
            timings.total_ms = elapsed_ms(start)
            return AskResult(Answer(IDK, [], True), [], timings)
        self._require_generator()  # before compressing: a request then fails fast
        context = compress(question, passages, self.embedder, g.context_tokens)
        if context.relevance < g.min_relevance:  # off-topic: nothing here answers it
            timings.total_ms = elapsed_ms(start)
            return AskResult(Answer(IDK, [], True), context.passages, timings)
        return context

    def _result(
        self, reply: str, context: Compressed, timings: Timings, start: float
    ) -> AskResult:
        g = self.settings.generation
        answer = assemble(reply, context.passages, g.min_support, context.best)
        timings.total_ms = elapsed_ms(start)
        return AskResult(answer, context.passages, timings)

    def ask(self, question: str, top_k: int | None = None) -> AskResult:
        """Answer from the top passages, citing them; abstain when there is nothing to cite."""
        start = time.perf_counter()
        timings = Timings()
        context = self._context(question, top_k, timings, start)
        if isinstance(context, AskResult):
            return context
        gen_start = time.perf_counter()
        reply = self.generator.generate(build_messages(question, context.passages))
        timings.generate_ms = elapsed_ms(gen_start)  # no first token: the reply comes whole
        return self._result(reply, context, timings, start)

    def ask_stream(self, question: str, top_k: int | None = None) -> Iterator[StreamEvent]:
        """TokenEvents as the answer is generated, then one AnswerEvent with the checked answer."""
        start = time.perf_counter()
        timings = Timings()
        context = self._context(question, top_k, timings, start)
        if isinstance(context, AskResult):
            yield AnswerEvent(context)
            return
        gen_start = time.perf_counter()
        pieces: list[str] = []
        for piece in self.generator.stream(build_messages(question, context.passages)):
            if timings.first_token_ms is None:
                timings.first_token_ms = elapsed_ms(start)
            pieces.append(piece)
            yield TokenEvent(piece)
        timings.generate_ms = elapsed_ms(gen_start)
        yield AnswerEvent(self._result("".join(pieces), context, timings, start))

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
        self.corpus.refresh()

    def switch_encoder(
        self,
        embedder: Embedder,
        ref: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Serve `embedder` from now on (see Corpus.switch_encoder)."""
        self.warm_up()
        return self.corpus.switch_encoder(embedder, ref, on_progress)

    def counts(self) -> Counts:
        if self._corpus is None:
            return Counts(len(self.store.list_documents()), self.store.chunk_count(),
                          self.store.vector_count(), 0, 0)
        return self._corpus.counts()

    # -- documents ---------------------------------------------------------------------

    def ingestor(self) -> Ingestor:
        return Ingestor(self.store, self.embedder, self.settings.ingest)

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

    def ingest_upload(self, filename: str, data: bytes) -> FileResult:
        """Keep an uploaded file under the data dir and ingest it from there.

        Uploading a file of the same name again replaces the earlier document.
        """
        self.warm_up()
        safe = _safe_name(filename)
        folder = self.settings.upload_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / safe
        tmp = folder / f".{safe}.part"
        tmp.write_bytes(data)
        previous = path.read_bytes() if path.exists() else None
        tmp.replace(path)
        result = self.ingestor().ingest_file(path)
        if result.status in ("failed", "duplicate"):
            # Nothing new was stored, so the file must not stay either.
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(previous)
        if result.status in ("added", "updated"):
            self.refresh()
        return FileResult(
            safe, result.status, result.document_id, result.chunks, result.pages, result.detail
        )

    def delete(self, key: str) -> DocumentInfo:
        self.warm_up()
        info = self.resolve_document(key)
        self.corpus.delete(info.id)
        source = Path(info.source)
        if source.parent == self.settings.upload_dir.resolve():
            source.unlink(missing_ok=True)  # an upload has no other copy to keep
        return info

    def document_file(self, document_id: str) -> tuple[DocumentInfo, Path]:
        info = self.store.get_document(document_id)
        if info is None:
            raise DocumentNotFoundError(document_id)
        path = Path(info.source)
        if not path.is_file():
            raise DocumentNotFoundError(f"{document_id} (its file {info.source} is gone)")
        return info, path

    def documents(self) -> list[DocumentInfo]:
        return self.store.list_documents()


__all__ = ["AskResult", "Chunk", "Lectern", "Timings", "build_embedder", "open_corpus"]
