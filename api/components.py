"""Components built from the settings: the device plan, encoder, reranker and corpus.

Which store, encoder, reranker and index serve is decided here; the CLI, the harnesses
and `Lectern` build them through these functions.
"""

from __future__ import annotations

import hashlib
import logging

from ingest.sqlite_store import SQLiteDocumentStore
from lectern import device
from lectern.device import DevicePlan
from lectern.protocols import DocumentStore, Embedder, Reranker
from lectern.settings import Settings
from model import prepare
from retriever import reindex
from retriever.corpus import Corpus
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
