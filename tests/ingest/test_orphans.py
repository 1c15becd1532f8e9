"""Uploads no document came of are removed: at start-up, and on close after a cancelled ingest."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from api.service import Lectern
from ingest.orphans import remove_orphans
from tests.fakes import EchoGenerator, HashEmbedder


def test_files_no_source_names_and_part_files_go_and_empty_folders_with_them(tmp_path):
    up = tmp_path / "uploads"
    (up / "dirA" / "deep").mkdir(parents=True)
    kept = up / "dirA" / "notes.txt"
    for f in (kept, up / "stray.txt", up / ".fees.pdf.part", up / "dirA" / "deep" / "x.md"):
        f.write_text("x")
    (up / "dirB").mkdir()
    removed = remove_orphans(up, [str(kept.resolve()), "/elsewhere/doc.pdf"])
    assert sorted(p.relative_to(up.resolve()).as_posix() for p in removed) == [
        ".fees.pdf.part", "dirA/deep/x.md", "stray.txt"
    ]
    assert sorted(p.relative_to(up).as_posix() for p in up.rglob("*")) == [
        "dirA", "dirA/notes.txt"
    ]


def test_a_missing_upload_folder_has_no_orphans(tmp_path):
    assert remove_orphans(tmp_path / "uploads", []) == []


def test_a_restart_removes_the_upload_an_interrupted_ingest_left(settings, tmp_path):
    # Issue 15 case 4: killed mid-ingest, the server left its upload in uploads/ with no
    # document, and a restart kept it there for good.
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=EchoGenerator("x"))
    svc.warm_up()
    real = svc.ingest_upload("fees.md", b"# Fees\n\nHome students pay EUR 2,390 a year.\n")
    assert real.status == "added"
    up = settings.upload_dir
    (up / "handbook.txt").write_text("an ingest of this was under way when the power went")
    (up / ".guide.pdf.part").write_bytes(b"%PDF-1.7 half a file")
    svc.store.close()

    restarted = Lectern(settings, embedder=HashEmbedder(64), generator=EchoGenerator("x"))
    with TestClient(create_app(settings, restarted)):
        assert sorted(p.name for p in up.rglob("*")) == ["fees.md"]
        assert [d.title for d in restarted.documents()] == ["Fees"]
