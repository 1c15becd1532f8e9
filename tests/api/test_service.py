"""Ingest, re-ingest, replace and delete keep store, FAISS and BM25 consistent."""

import shutil

import numpy as np

from api.service import Lectern
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

    again = service.ingest([docs])
    assert [r.status for r in again.results] == ["unchanged", "unchanged"]
    assert service.counts() == first
    assert service.embedder.calls == 2, "unchanged files are not embedded again"

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


def test_restart_and_crash_recovery(settings, embedder, tmp_path):
    svc = Lectern(settings, embedder=embedder)
    svc.ingest([SAMPLES / "markdown"])
    n = svc.counts().chunks
    svc.store.close()

    reopened = Lectern(settings, embedder=embedder)
    reopened.warm_up()
    assert reopened.counts().indexed == n
    assert reopened.search("library loan period", top_k=1)

    # A crash after the store committed but before the index was saved: the index on
    # disk is stale. The next start reconciles it with the store.
    stale = tmp_path / "stale-index"
    shutil.copytree(settings.index_dir, stale)
    reopened.ingest([SAMPLES / "txt"])
    reopened.store.close()
    shutil.rmtree(settings.index_dir)
    shutil.copytree(stale, settings.index_dir)
    recovered = Lectern(settings, embedder=embedder)
    recovered.warm_up()
    assert_consistent(recovered)
    assert recovered.counts().indexed > n
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
