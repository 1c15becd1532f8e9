"""The composition root: builds every component from Settings and keeps them consistent."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ingest.pipeline import FileResult, Ingestor, IngestReport, document_id
from ingest.sqlite_store import SQLiteDocumentStore
from lectern import device
from lectern.errors import DocumentNotFoundError, InvalidRequestError, NotReadyError
from lectern.protocols import Embedder, Generator, Reranker, Retriever
from lectern.settings import Settings
from lectern.types import Answer, Chunk, DocumentInfo, ScoredChunk
from model import prepare
from model.answer import IDK, assemble, build_messages
from model.context import compress
from retriever import fusion_fit, reindex
from retriever.bm25 import BM25Retriever
from retriever.dense import DenseRetriever
from retriever.embedder import SentenceTransformerEmbedder
from retriever.faiss_index import FaissIndex
from retriever.hybrid import HybridRetriever

Mode = Literal["hybrid", "dense", "bm25"]
log = logging.getLogger(__name__)


@dataclass(slots=True)
class Timings:
    retrieve_ms: float = 0.0
    rerank_ms: float = 0.0  # 0 when no reranker is configured or trained
    generate_ms: float = 0.0
    total_ms: float = 0.0
    first_token_ms: float | None = None


@dataclass(slots=True)
class AskResult:
    answer: Answer
    passages: list[Chunk]
    timings: Timings = field(default_factory=Timings)


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


def _safe_name(filename: str) -> str:
    name = Path(filename.replace("\\", "/")).name.strip()
    name = "".join(ch if ch.isalnum() or ch in "._- " else "_" for ch in name).strip(" .")
    if not name:
        raise InvalidRequestError(f"unusable file name {filename!r}")
    return name[:200]


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


@dataclass(frozen=True, slots=True)
class Counts:
    documents: int
    chunks: int
    vectors: int
    indexed: int
    bm25: int


class Lectern:
    """Store, embedder, indexes and retrievers for one data directory.

    Cheap to construct; `warm_up()` loads the encoder and the indexes (idempotent).
    """

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None = None,
        generator: Generator | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.settings = settings
        self.store = SQLiteDocumentStore(settings.store_path)
        self._embedder = embedder
        self._generator = generator
        self._reranker = reranker
        self._reranker_looked_up = reranker is not None
        self._generator_ready = False
        self._index: FaissIndex | None = None
        self._bm25: BM25Retriever | None = None
        self._retrievers: dict[Mode, Retriever] = {}
        self.fusion: dict[str, float] = {}  # the hybrid's RRF settings, once warmed up
        self._write_lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            raise NotReadyError("Lectern used before warm_up()")
        return self._embedder

    def warm_up(self) -> None:
        if self._retrievers:
            return
        plan = device.plan(device.probe(), self.settings.models.device, self.settings.models.dtype)
        if self._embedder is None:
            self._embedder = build_embedder(self.settings, plan.device)
        self.embedder.warm_up()
        r = self.settings.retrieval
        self._index = FaissIndex.from_settings(
            self.embedder.dimension, self.embedder.fingerprint, r, use_gpu=plan.faiss_gpu
        )
        self._index.load(self._index_dir())
        self._bm25 = BM25Retriever(self.store)
        self._retrievers = self._retrievers_for(
            DenseRetriever(self.embedder, self._index, self.store)
        )
        self._warm_up_reranker()
        self.refresh()

    def _retrievers_for(self, dense: DenseRetriever) -> dict[Mode, Retriever]:
        # A tuned encoder carries the fusion fitted for it; a fake embedder has no folder.
        folder = getattr(dense.embedder, "folder", None)
        r = fusion_fit.for_encoder(self.settings.retrieval, folder)
        self.fusion = {name: getattr(r, name) for name in fusion_fit.FIELDS}
        return {
            "dense": dense,
            "bm25": self._bm25,
            "hybrid": HybridRetriever(
                [(self._bm25, r.bm25_weight), (dense, r.dense_weight)],
                rrf_k=r.rrf_k,
                candidates=r.candidates,
            ),
        }

    def warm_up_generator(self) -> None:
        """Load the generator (converting a GGUF once if needed); idempotent."""
        if self._generator_ready:
            return
        if self._generator is None:
            from model.generator import Sampling, TransformersGenerator

            g = self.settings.generation
            m = self.settings.models
            plan = device.plan(device.probe(), m.device, m.dtype, cpu_int8=m.cpu_int8)
            prepared = prepare.generator(self.settings, convert_gguf=True)
            self._generator = TransformersGenerator(
                prepared.load_from,
                plan,
                Sampling(
                    g.max_new_tokens, g.do_sample, g.temperature, g.top_p, g.repetition_penalty
                ),
                max_input_tokens=g.max_input_tokens,
            )
        self._generator.warm_up()
        self._generator_ready = True

    @property
    def ready(self) -> bool:
        return bool(self._retrievers) and self._generator_ready

    def require_ready(self) -> None:
        if not self.ready:
            raise NotReadyError("the models are still loading; retry shortly")

    @property
    def generator(self) -> Generator:
        if not self._generator_ready or self._generator is None:
            raise NotReadyError("generator used before warm_up_generator()")
        return self._generator

    def _passages(self, question: str, top_k: int | None, timings: Timings) -> list[Chunk]:
        start = time.perf_counter()
        g = self.settings.generation
        hits, rerank_ms = self._search(
            question, top_k or g.passages, "hybrid", None, g.rerank_candidates
        )
        timings.rerank_ms = rerank_ms
        timings.retrieve_ms = round(_ms(start) - rerank_ms, 2)
        return [h.chunk for h in hits]

    def ask(self, question: str, top_k: int | None = None) -> AskResult:
        """Answer from the top passages, citing them; abstain when there is nothing to cite."""
        events = list(self.ask_stream(question, top_k))
        return events[-1][1]

    def ask_stream(
        self, question: str, top_k: int | None = None
    ) -> Iterator[tuple[str, str | AskResult]]:
        """("token", text) pieces as they are generated, then ("answer", AskResult)."""
        start = time.perf_counter()
        timings = Timings()
        passages = self._passages(question, top_k, timings)
        if not passages:  # nothing retrieved: no model call, an honest abstention
            timings.total_ms = _ms(start)
            yield "answer", AskResult(Answer(IDK, [], True), [], timings)
            return
        generator = self.generator
        g = self.settings.generation
        context = compress(question, passages, self.embedder, g.context_tokens)
        if context.relevance < g.min_relevance:  # off-topic: nothing here answers it
            timings.total_ms = _ms(start)
            yield "answer", AskResult(Answer(IDK, [], True), context.passages, timings)
            return
        gen_start = time.perf_counter()
        pieces: list[str] = []
        for piece in generator.stream(build_messages(question, context.passages)):
            if timings.first_token_ms is None:
                timings.first_token_ms = _ms(start)
            pieces.append(piece)
            yield "token", piece
        timings.generate_ms = _ms(gen_start)
        answer = assemble("".join(pieces), context.passages, g.min_support, context.best)
        timings.total_ms = _ms(start)
        yield "answer", AskResult(answer, context.passages, timings)

    def refresh(self) -> None:
        """Bring the indexes in line with the store (after writes, or a crash)."""
        if self._index is None or self._bm25 is None:
            raise NotReadyError("Lectern used before warm_up()")
        with self._write_lock:
            missing = self.store.ids_without_vectors(self.embedder.fingerprint)
            if len(missing):  # chunks written by another encoder: embed them for this one
                texts = [c.context_text for c in self.store.get_chunks(missing.tolist())]
                self.store.add_vectors(
                    missing, self.embedder.embed_passages(texts), self.embedder.fingerprint
                )
            added, removed = self._index.sync(self.store)
            folder = self._index_dir()
            if added or removed or not (folder / "vectors.faiss").exists():
                self._index.save(folder)
            self._bm25.sync()

    def _index_dir(self) -> Path:
        return reindex.index_dir(self.settings, self.embedder.fingerprint)

    def switch_encoder(
        self,
        embedder: Embedder,
        ref: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Serve `embedder` instead of the current encoder; return the chunks embedded.

        Every chunk is embedded and a new index built and saved in its own folder while
        searches (and ingests) go on with the old one; then the switch is recorded (a
        restart serves `ref`, the new encoder's model reference) and the old objects are
        swapped out. Any failure before that leaves the old encoder serving. The old
        encoder's vectors stay in the store, so switching back needs no re-embedding.
        """
        self.warm_up()
        embedder.warm_up()
        batch = 8 * self.settings.ingest.embed_batch_size
        # The bulk of the work, without the write lock: ingests go on meanwhile.
        done = reindex.embed_missing(self.store, embedder, batch, on_progress)
        with self._write_lock:
            done += reindex.embed_missing(self.store, embedder, batch)  # written meanwhile
            folder = reindex.versioned_dir(self.settings, embedder.fingerprint)
            index = reindex.build_index(self.store, embedder, self._index, folder)
            active = reindex.record(self.settings, embedder, folder, ref)
            reindex.write_active(self.settings, active)  # the commit point
            retrievers = self._retrievers_for(DenseRetriever(embedder, index, self.store))
            self._embedder, self._index, self._retrievers = embedder, index, retrievers
        return done

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
        self.store.delete_document(info.id)
        self.refresh()
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

    def search(
        self,
        query: str,
        top_k: int | None = None,
        mode: Mode = "hybrid",
        rerank: bool | None = None,
    ) -> list[ScoredChunk]:
        """The best chunks for `query`, reranked when a reranker is loaded.

        rerank=None follows settings.retrieval.rerank. The reranker reorders the top
        `rerank_candidates`; beyond them (top_k larger) the fused order follows.
        """
        return self._search(query, top_k, mode, rerank)[0]

    @property
    def reranker(self) -> Reranker | None:
        return self._reranker

    def _warm_up_reranker(self) -> None:
        """Load the configured or trained reranker; without one, search is not reranked."""
        if not self._reranker_looked_up and self.settings.retrieval.rerank:
            self._reranker_looked_up = True
            from retriever.cross_encoder import SHIPPED_RERANKER, CrossEncoderReranker

            folder = prepare.reranker(self.settings, shipped=SHIPPED_RERANKER)
            if folder is None:
                log.info(
                    "no reranker at %s (train one with `lectern train reranker`); "
                    "search results are not reranked",
                    prepare.default_reranker_dir(self.settings),
                )
            else:
                self._reranker = CrossEncoderReranker(
                    folder, backend=self.settings.models.reranker_backend
                )
                log.info("reranker: %s (%s)", folder, self.settings.models.reranker_backend)
        warm = getattr(self._reranker, "warm_up", None)
        if warm is not None:
            warm()

    def _search(
        self,
        query: str,
        top_k: int | None,
        mode: Mode,
        rerank: bool | None,
        candidates: int | None = None,
    ) -> tuple[list[ScoredChunk], float]:
        """The hits and the milliseconds spent reranking them.

        candidates: how many fused hits the reranker scores (default: the retrieval setting).
        """
        self.warm_up()
        if mode not in self._retrievers:
            raise ValueError(f"unknown search mode {mode!r}; use hybrid, dense or bm25")
        k = top_k or self.settings.retrieval.top_k
        use = self.settings.retrieval.rerank if rerank is None else rerank
        if not use or self._reranker is None:
            return self._retrievers[mode].retrieve(query, k), 0.0
        n = candidates or self.settings.retrieval.rerank_candidates
        hits = self._retrievers[mode].retrieve(query, max(k, n))
        start = time.perf_counter()
        best = self._reranker.rerank(query, hits[:n], min(k, n))
        return [*best, *hits[n:]][:k], _ms(start)

    def counts(self) -> Counts:
        return Counts(
            documents=len(self.store.list_documents()),
            chunks=self.store.chunk_count(),
            vectors=self.store.vector_count(),
            indexed=len(self._index) if self._index is not None else 0,
            bm25=len(self._bm25) if self._bm25 is not None else 0,
        )
