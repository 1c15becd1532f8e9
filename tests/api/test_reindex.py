"""Switching the serving encoder: the old index serves until the new one is complete."""

import threading

import numpy as np
import pytest

from api.service import Lectern
from retriever import reindex
from tests.fakes import HashEmbedder

DOCS = {
    "fees": "Tuition fees for the MSc Data Science are EUR 16,800 per year.",
    "library": "The library opens at 08:00 on weekdays and lends books for 28 days.",
    "housing": "Apply for campus housing by 31 May; rooms have a desk and a bed.",
    "exams": "A failed exam may be retaken twice, in the August retake session.",
    "parking": "Parking permits for the north car park cost EUR 90 per semester.",
    "sports": "The sports centre has a swimming pool and a climbing wall.",
    "clinic": "The student clinic books appointments by phone every morning.",
    "careers": "The careers office reviews CVs on Tuesdays before the job fair.",
    "thesis": "A thesis is submitted through the portal and graded in six weeks.",
    "language": "Dutch courses for beginners start every September.",
}


def assert_consistent(svc: Lectern) -> None:
    """Index and BM25 hold exactly the store's chunks (the store keeps both encoders' vectors)."""
    c = svc.counts()
    assert c.chunks == c.indexed == c.bm25
    assert len(svc.store.ids_without_vectors(svc.embedder.fingerprint)) == 0
    np.testing.assert_array_equal(np.sort(svc.corpus.index.ids), svc.store.chunk_ids())


class GatedEmbedder(HashEmbedder):
    """A new encoder whose passage embedding waits at a gate, or fails on a chosen call."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        super().__init__(dimension=32, fingerprint="hash-v2")
        self.started = threading.Event()
        self.gate = threading.Event()
        self.fail_on_call = fail_on_call

    def embed_passages(self, texts):
        self.started.set()
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        if self.calls + 1 == self.fail_on_call:
            raise RuntimeError("encoder crashed mid-rebuild")
        return super().embed_passages(texts)


@pytest.fixture
def corpus(service):
    service.settings.ingest.embed_batch_size = 1  # re-embedding in batches of 8 chunks
    for name, text in DOCS.items():
        service.ingestor().ingest_text(f"docs/{name}", name.title(), text)
    service.refresh()
    return service


def switch_in_background(service, embedder, ref=None):
    errors = []

    def run():
        try:
            service.switch_encoder(embedder, ref=ref)
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert embedder.started.wait(timeout=30)
    return thread, errors


def test_old_index_serves_during_rebuild_then_new_one(corpus, settings):
    old_dir = settings.index_dir
    new = GatedEmbedder()
    thread, errors = switch_in_background(corpus, new, ref="models/encoder-v2")

    # Mid-rebuild: searches are answered by the old encoder's index...
    for mode in ("dense", "hybrid", "bm25"):
        assert "16,800" in corpus.search("MSc Data Science fee", top_k=1, mode=mode)[0].chunk.text
    assert corpus.embedder.fingerprint == "hash-embedder"
    assert corpus.corpus.index.encoder == "hash-embedder"
    # ...and an upload is ingested and indexed as usual.
    corpus.ingestor().ingest_text("docs/canteen", "Canteen", "The canteen serves lunch at noon.")
    corpus.refresh()
    assert "canteen" in corpus.search("canteen lunch", top_k=1, mode="dense")[0].chunk.text
    assert reindex.read_active(settings) is None

    old_bytes = (old_dir / "vectors.faiss").read_bytes()  # with the upload in it

    new.gate.set()
    thread.join(timeout=30)
    assert not errors and not thread.is_alive()
    assert corpus.embedder is new and corpus.corpus.index.encoder == "hash-v2"
    assert_consistent(corpus)
    assert corpus.store.encoders() == {"hash-embedder", "hash-v2"}  # old kept for rollback
    assert "canteen" in corpus.search("canteen lunch", top_k=1, mode="dense")[0].chunk.text
    assert "16,800" in corpus.search("MSc Data Science fee", top_k=1)[0].chunk.text

    active = reindex.read_active(settings)
    assert active.fingerprint == "hash-v2" and active.encoder == "models/encoder-v2"
    new_dir = settings.data_dir / active.index_dir
    assert new_dir != old_dir and (new_dir / "vectors.faiss").is_file()
    assert (old_dir / "vectors.faiss").read_bytes() == old_bytes  # never touched

    # Later writes land in the new index's folder.
    corpus.delete("docs/canteen")
    assert_consistent(corpus)
    assert (old_dir / "vectors.faiss").read_bytes() == old_bytes


def test_restart_serves_the_switched_encoder(corpus, settings):
    new = GatedEmbedder()
    new.gate.set()
    corpus.switch_encoder(new, ref="models/encoder-v2")
    active = reindex.read_active(settings)
    index_file = settings.data_dir / active.index_dir / "vectors.faiss"
    saved = index_file.stat().st_mtime_ns

    # build_embedder loads the recorded model reference while the settings are unchanged.
    assert reindex.serving_settings(settings).models.encoder == "models/encoder-v2"
    moved = settings.model_copy(deep=True)
    moved.models.encoder = "some/other-encoder"
    assert reindex.serving_settings(moved).models.encoder == "some/other-encoder"
    assert reindex.index_dir(moved, "hash-v2") == moved.index_dir

    again = Lectern(settings, embedder=HashEmbedder(dimension=32, fingerprint="hash-v2"))
    again.warm_up()
    try:
        assert len(again.corpus.index) == again.counts().chunks == len(DOCS)
        assert index_file.stat().st_mtime_ns == saved, "loaded from its folder, not rebuilt"
        assert again.embedder.calls == 0
        assert "16,800" in again.search("MSc Data Science fee", top_k=1, mode="dense")[0].chunk.text
    finally:
        again.store.close()


def test_failure_mid_rebuild_leaves_the_old_encoder_serving(corpus, settings):
    broken = GatedEmbedder(fail_on_call=2)  # the first batch of 8 works, the second fails
    thread, errors = switch_in_background(corpus, broken)
    broken.gate.set()
    thread.join(timeout=30)
    assert isinstance(errors[0], RuntimeError)
    assert corpus.corpus.index.encoder == "hash-embedder"
    assert corpus.embedder.fingerprint == "hash-embedder"
    assert reindex.read_active(settings) is None
    assert "16,800" in corpus.search("MSc Data Science fee", top_k=1, mode="dense")[0].chunk.text
    assert_consistent(corpus)
    left = corpus.store.ids_without_vectors("hash-v2")
    assert 0 < len(left) < len(DOCS)

    # A retry embeds only what the failed run had not.
    retry = GatedEmbedder()
    retry.gate.set()
    assert corpus.switch_encoder(retry) == len(left)
    assert corpus.corpus.index.encoder == "hash-v2"
    np.testing.assert_array_equal(np.sort(corpus.corpus.index.ids), corpus.store.chunk_ids())


def test_empty_like_copies_the_index_configuration(corpus):
    old = corpus.corpus.index
    new = reindex.empty_like(old, 32, "hash-v2")
    assert (new.dimension, new.encoder, new.kind) == (32, "hash-v2", old.kind)
    assert len(new) == 0
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        reindex.embed_missing(corpus.store, HashEmbedder(), batch_size=0)
