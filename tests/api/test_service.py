"""Ingest, re-ingest, replace and delete keep store, FAISS and BM25 consistent."""

import shutil

import numpy as np

from api.service import Lectern
from retriever.corpus import MODES
from tests.conftest import SAMPLES, write_docx


def assert_consistent(svc: Lectern) -> None:
    c = svc.counts()
    assert c.chunks == c.vectors == c.indexed == c.bm25
    assert c.chunks == sum(d.chunk_count for d in svc.documents())
    np.testing.assert_array_equal(np.sort(svc.corpus.index.ids), svc.store.chunk_ids())


def test_ingest_dedup_replace_delete(service, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "fees.md").write_text("# Fees\n\nThe MSc Data Science fee is EUR 16,800 per year.\n")
    (docs / "hours.txt").write_text("The library opens at 08:00 on weekdays.\n")
    report = service.ingest([docs])
    assert [r.status for r in report.results] == ["added", "added"]
    assert_consistent(service)
    first = service.counts()
    # A call per file, and one for the new chunks' sentence vectors (the refresh).
    assert service.embedder.calls == 3

    again = service.ingest([docs])
    assert [r.status for r in again.results] == ["unchanged", "unchanged"]
    assert service.counts() == first
    assert service.embedder.calls == 3, "unchanged files are not embedded again"

    (docs / "copy.md").write_bytes((docs / "fees.md").read_bytes())
    dup = service.ingest([docs / "copy.md"])
    assert dup.results[0].status == "duplicate" and "fees.md" in dup.results[0].detail
    assert service.counts() == first

    (docs / "fees.md").write_text("# Fees\n\nThe MSc Data Science fee rose to EUR 17,500.\n")
    assert service.ingest([docs / "fees.md"]).results[0].status == "updated"
    assert_consistent(service)
    hit = service.search("MSc Data Science fee", top_k=1)[0].chunk
    assert "17,500" in hit.text
    assert not any("16,800" in h.chunk.text for h in service.search("fee 16,800", top_k=10))

    gone = service.delete(str(docs / "fees.md"))
    assert gone.source.endswith("fees.md")
    assert_consistent(service)
    assert [d.source for d in service.documents()] == [str((docs / "hours.txt").resolve())]
    assert all("fee" not in h.chunk.text for h in service.search("fee", top_k=10))


def test_bad_files_fail_alone(service, tmp_path):
    (tmp_path / "good.md").write_text("# Housing\n\nApply for housing by 31 May.\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 garbage that is not a pdf")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "fake.docx").write_bytes(b"not a zip")
    service.settings.ingest.max_file_mb = 0.0001
    (tmp_path / "big.txt").write_text("x " * 1000)
    files = sorted(tmp_path.iterdir())
    before = service.ingest([tmp_path / "good.md"])
    assert before.results[0].status == "added"
    report = service.ingest(files)
    status = {r.path.rsplit("/", 1)[-1]: (r.status, r.detail) for r in report.results}
    assert status["good.md"][0] == "unchanged"
    assert status["empty.txt"] == ("failed", "file is empty")
    assert (
        status["image.png"][0] == "failed"
        and "unsupported file type '.png'" in status["image.png"][1]
    )
    assert status["fake.docx"][0] == "failed" and "not a zip" in status["fake.docx"][1]
    assert status["big.txt"][0] == "failed" and "limit" in status["big.txt"][1]
    assert status["broken.pdf"][0] == "failed"
    assert len(service.documents()) == 1
    assert_consistent(service)


def test_failed_reingest_keeps_the_previous_version(service, tmp_path):
    f = write_docx(tmp_path / "regs.docx", "Retakes", ["Students may retake an exam twice."])
    service.ingest([f])
    f.write_bytes(b"PK\x03\x04 truncated")
    assert service.ingest([f]).results[0].status == "failed"
    assert "retake" in service.search("retake exam", top_k=1)[0].chunk.text
    assert_consistent(service)


def chunk_ids_of(svc: Lectern, document_id: str) -> set[int]:
    return {c.id for c in svc.store.all_chunks() if c.document_id == document_id}


def top_documents(svc: Lectern, query: str, top_k: int) -> dict[str, list[str]]:
    """The documents of the top `top_k` hits of each search mode, in rank order."""
    return {
        mode: [h.chunk.document_id for h in svc.search(query, top_k=top_k, mode=mode)]
        for mode in MODES
    }


def saved_index_ids(svc: Lectern) -> set[int]:
    """The chunk ids of the FAISS index saved on disk (not the one in memory)."""
    from retriever.faiss_index import FaissIndex

    index = FaissIndex.from_settings(
        svc.embedder.dimension, svc.embedder.fingerprint, svc.settings.retrieval
    )
    assert index.load(svc.corpus.index_dir), "no index saved"
    return set(index.ids.tolist())


def crash_before_index_save(settings, embedder, tmp_path, write) -> tuple[Lectern, set[int]]:
    """Run `write` on a service, put back the index saved before it, and restart.

    That is the disk after a crash between the store's commit and the index's save.
    Returns the restarted service and the chunk ids of the index put back.
    """
    svc = Lectern(settings, embedder=embedder)
    svc.warm_up()
    stale_ids = saved_index_ids(svc)
    stale = tmp_path / "stale-index"
    shutil.rmtree(stale, ignore_errors=True)
    shutil.copytree(settings.index_dir, stale)
    write(svc)
    svc.store.close()
    shutil.rmtree(settings.index_dir)
    shutil.copytree(stale, settings.index_dir)
    recovered = Lectern(settings, embedder=embedder)
    recovered.warm_up()
    return recovered, stale_ids


def test_restart_and_crash_recovery(settings, embedder, tmp_path):
    svc = Lectern(settings, embedder=embedder)
    svc.ingest([SAMPLES / "markdown"])
    n = svc.counts().chunks
    library = svc.resolve_document(str(SAMPLES / "markdown" / "library-faq.md"))
    svc.store.close()

    reopened = Lectern(settings, embedder=embedder)
    reopened.warm_up()
    assert reopened.counts().indexed == n
    assert_consistent(reopened)
    for mode, docs in top_documents(reopened, "library loan period", 3).items():
        assert library.id in docs, mode
    reopened.store.close()

    # Crash 1: a document's chunks committed to the store, not to the saved index.
    added: dict[str, str] = {}

    def add(s: Lectern) -> None:
        (result,) = s.ingest([SAMPLES / "txt"]).results
        assert result.status == "added"
        added["id"] = result.document_id

    recovered, stale_ids = crash_before_index_save(settings, embedder, tmp_path, add)
    new_chunks = chunk_ids_of(recovered, added["id"])
    assert new_chunks and not new_chunks & stale_ids, "the index put back lacks the new chunks"
    assert_consistent(recovered)
    assert recovered.counts().chunks > n
    assert new_chunks <= saved_index_ids(recovered), "the repaired index is saved"
    for mode, docs in top_documents(recovered, "service desk opening hours", 3).items():
        assert added["id"] in docs, f"{mode} search misses the document added before the crash"
    recovered.store.close()

    # Crash 2: a document deleted from the store, still in the saved index.
    gone: set[int] = set()

    def delete(s: Lectern) -> None:
        gone.update(chunk_ids_of(s, library.id))
        assert s.delete(library.id).id == library.id

    recovered, stale_ids = crash_before_index_save(settings, embedder, tmp_path, delete)
    assert gone and gone <= stale_ids, "the index put back still holds the deleted chunks"
    assert recovered.store.get_document(library.id) is None
    assert_consistent(recovered)
    assert not gone & saved_index_ids(recovered), "the repaired index is saved"
    everything = recovered.counts().chunks
    for query in ("library loan period", "How long can I borrow a book from the library?"):
        for mode, docs in top_documents(recovered, query, everything).items():
            assert library.id not in docs, f"{mode} search returns the deleted document"
    # The document added before the first crash is still found after the second.
    for mode, docs in top_documents(recovered, "service desk opening hours", 3).items():
        assert added["id"] in docs, mode
    recovered.store.close()


def test_switching_encoder_reembeds(settings, tmp_path):
    from tests.fakes import HashEmbedder

    first = Lectern(settings, embedder=HashEmbedder(64, "enc-a"))
    first.ingest([SAMPLES / "txt"])
    first.store.close()
    second = Lectern(settings, embedder=HashEmbedder(32, "enc-b"))
    second.warm_up()
    assert second.store.ids_without_vectors("enc-b").size == 0
    assert second.counts().indexed == second.counts().chunks
    assert second.search("service desk opening hours", top_k=3, mode="dense")
    second.store.close()


def test_unknown_document_is_a_clear_error(service):
    import pytest

    from lectern.errors import DocumentNotFoundError

    with pytest.raises(DocumentNotFoundError, match="no document with id or source 'nope'"):
        service.delete("nope")
