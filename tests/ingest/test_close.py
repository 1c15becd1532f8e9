"""Closing stops the ingests under way: at their parse at once, in embedding at the next slice."""

from __future__ import annotations

import threading
import time

import pytest

from api.service import Lectern
from ingest.gate import IngestGate
from ingest.pipeline import EMBED_SLICE, Ingestor
from ingest.sqlite_store import SQLiteDocumentStore
from lectern.errors import IngestCancelledError
from lectern.settings import IngestSettings
from tests.fakes import HashEmbedder
from tests.ingest.files import sentences, slow_text

SHUTTING_DOWN = "not ingested: the server is shutting down"


def test_a_closed_gate_lets_no_ingest_in_and_waits_for_those_inside():
    gate = IngestGate()
    with gate.ingesting("a.md"):
        gate.check("a.md")
        gate.close()
        assert gate.closed and not gate.wait_idle(0.01)  # a.md is still inside
        with pytest.raises(IngestCancelledError, match=SHUTTING_DOWN):
            gate.check("a.md")
    assert gate.wait_idle(0.01)
    with pytest.raises(IngestCancelledError, match="b.md"), gate.ingesting("b.md"):
        pass


class ClosingEmbedder(HashEmbedder):
    """Closes the gate while it embeds the first slice, as a shutdown would."""

    def __init__(self, gate: IngestGate) -> None:
        super().__init__(dimension=32)
        self.gate = gate
        self.slices: list[int] = []

    def embed_passages(self, texts):
        self.slices.append(len(texts))
        self.gate.close()
        return super().embed_passages(texts)


def test_an_ingest_closed_in_mid_embedding_stops_at_the_next_slice_and_stores_nothing(tmp_path):
    store = SQLiteDocumentStore(tmp_path / "store.sqlite")
    gate = IngestGate()
    embedder = ClosingEmbedder(gate)
    settings = IngestSettings(chunk_tokens=16, chunk_overlap=2, min_section_tokens=0)
    f = tmp_path / "handbook.txt"
    f.write_text("\n\n".join(sentences(3 * EMBED_SLICE)))  # one 12-word chunk each
    try:
        result = Ingestor(store, embedder, settings, gate=gate).ingest_file(f)
        assert (result.status, result.detail) == ("failed", SHUTTING_DOWN)
        assert embedder.slices == [EMBED_SLICE]  # the other two slices were never embedded
        assert store.list_documents() == [] and store.chunk_count() == 0
    finally:
        store.close()


def test_a_document_of_more_chunks_than_a_slice_is_embedded_in_slices(tmp_path):
    store = SQLiteDocumentStore(tmp_path / "store.sqlite")
    embedder = HashEmbedder(32)
    f = tmp_path / "handbook.txt"
    f.write_text("\n\n".join(sentences(EMBED_SLICE + 1)))
    try:
        settings = IngestSettings(chunk_tokens=16, chunk_overlap=2, min_section_tokens=0)
        result = Ingestor(store, embedder, settings).ingest_file(f)
        assert (result.status, result.chunks, embedder.calls) == ("added", EMBED_SLICE + 1, 2)
        store_vectors = store.vectors(store.chunk_ids(), embedder.fingerprint)
        assert store_vectors.shape == (EMBED_SLICE + 1, 32)
    finally:
        store.close()


def test_close_fails_an_upload_in_mid_parse_at_once_and_removes_its_file(settings, tmp_path):
    svc = Lectern(settings, embedder=HashEmbedder(64))
    svc.warm_up()
    svc.start_parsers()
    data = slow_text(tmp_path / "handbook.txt", 5000).read_bytes()  # ~10 s to parse
    results = []
    upload = threading.Thread(
        target=lambda: results.append(svc.ingest_upload("handbook.txt", data)), daemon=True
    )
    upload.start()
    kept = settings.upload_dir / "handbook.txt"
    deadline = time.monotonic() + 60
    while not kept.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    upload.join(timeout=1.0)  # the parse is under way
    assert not results, results
    svc.close()
    upload.join(timeout=10)
    assert [(r.status, r.detail) for r in results] == [("failed", SHUTTING_DOWN)]
    assert list(settings.upload_dir.rglob("*")) == []
    svc.close()  # twice is fine
    after = svc.ingestor().ingest_text("faq", "FAQ", "Open at nine.")
    assert (after.status, after.detail) == ("failed", SHUTTING_DOWN)
