"""Uploads in folders (issue 15 case 7) and no server path in what the API says (case 10).

A real store and indexes with the fake models; the API through TestClient.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.service import Lectern
from lectern.settings import ApiSettings, IngestSettings, Settings
from tests.fakes import EchoGenerator, HashEmbedder

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOTES_A = b"# Notes\n\nThe chemistry lab opens at 09:00 on weekdays.\n"
NOTES_B = b"# Notes\n\nThe music rooms can be booked for two hours a day.\n"
PASSWD = b"root:x:0:0:the reading room keeps old theses on the second floor\n"


@pytest.fixture
def api(tmp_path):
    settings = Settings(
        data_dir=tmp_path / "data",
        ingest=IngestSettings(chunk_tokens=64, chunk_overlap=8, min_section_tokens=8),
        api=ApiSettings(admin_token=TOKEN),
    )
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=EchoGenerator("ok"))
    svc.warm_up()
    svc.warm_up_generator()
    with TestClient(create_app(settings, svc)) as client:
        yield client
    svc.store.close()


def upload(client: TestClient, *files: tuple[str, bytes]):
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
    return client.post("/api/v1/documents", headers=AUTH, files=parts)


def results(response) -> list[dict]:
    assert response.status_code == 200, response.text
    return response.json()["results"]


def listed(client: TestClient) -> dict[str, dict]:
    docs = client.get("/api/v1/documents", headers=AUTH).json()["documents"]
    return {d["id"]: d for d in docs}


# -- case 7: one file name in two folders -----------------------------------------------


def test_one_file_name_in_two_folders_is_two_documents(api):
    (a,) = results(upload(api, ("dirA/notes.txt", NOTES_A)))
    (b,) = results(upload(api, ("dirB/notes.txt", NOTES_B)))
    assert (a["filename"], a["status"]) == ("dirA/notes.txt", "added")
    assert (b["filename"], b["status"]) == ("dirB/notes.txt", "added"), "not an update of A"
    assert a["document_id"] != b["document_id"]
    uploads = api.app.state.settings.upload_dir
    assert (uploads / "dirA" / "notes.txt").read_bytes() == NOTES_A
    assert (uploads / "dirB" / "notes.txt").read_bytes() == NOTES_B
    assert {d["source"] for d in listed(api).values()} == {"dirA/notes.txt", "dirB/notes.txt"}


def test_the_same_relative_path_again_replaces_its_document(api):
    (first,) = results(upload(api, ("dirA/notes.txt", NOTES_A)))
    (again,) = results(upload(api, ("dirA/notes.txt", NOTES_A.replace(b"09:00", b"08:30"))))
    assert (again["status"], again["document_id"]) == ("updated", first["document_id"])
    assert len(listed(api)) == 1


def test_the_cli_keeps_two_folders_files_of_one_name_apart(service, tmp_path):
    for folder, text in (("dirA", NOTES_A), ("dirB", NOTES_B)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "notes.txt").write_bytes(text)
    report = service.ingest([tmp_path / "dirA", tmp_path / "dirB"])
    assert [r.status for r in report.results] == ["added", "added"]
    sources = sorted(d.source for d in service.documents())
    assert sources == [str(tmp_path / f / "notes.txt") for f in ("dirA", "dirB")]


def test_deleting_an_upload_removes_its_emptied_folder_only(service, settings):
    a = service.ingest_upload("dirA/sub/notes.txt", NOTES_A)
    service.ingest_upload("dirA/other.txt", NOTES_B)
    service.delete(a.document_id)
    uploads = settings.upload_dir
    assert not (uploads / "dirA" / "sub").exists(), "an emptied folder goes with its file"
    assert (uploads / "dirA" / "other.txt").exists() and uploads.is_dir()


def test_a_failed_upload_in_a_new_folder_leaves_no_folder(service, settings):
    result = service.ingest_upload("new/deep/empty.txt", b"")
    assert (result.path, result.status) == ("new/deep/empty.txt", "failed")
    assert list(settings.upload_dir.iterdir()) == []


def test_a_file_where_a_folder_of_uploads_is_fails_clearly(service, settings):
    service.ingest_upload("notes.txt/inner.md", NOTES_A)
    result = service.ingest_upload("notes.txt", NOTES_B)
    assert (result.status, result.detail) == (
        "failed",
        "cannot be kept as notes.txt: Is a directory",
    )
    assert (settings.upload_dir / "notes.txt" / "inner.md").read_bytes() == NOTES_A
    assert not list(settings.upload_dir.glob("**/.*.part"))


# -- case 5: a long name keeps its extension, checked on the name stored ------------------


def test_a_long_name_keeps_its_extension(api):
    (r,) = results(upload(api, ("a" * 300 + ".md", NOTES_A)))
    assert (r["status"], r["filename"]) == ("added", "a" * 197 + ".md")


def test_a_long_name_is_checked_stored_and_served_as_one_format(api):
    name = "a" * 195 + ".html" + "b" * 50 + ".txt"
    page = b"<html><body><script>alert(1)</script><p>The library opens at 08:00.</p></body></html>"
    (r,) = results(upload(api, (name, page)))
    assert r["status"] == "added" and r["filename"] == "a" * 195 + ".txt"
    assert (api.app.state.settings.upload_dir / r["filename"]).read_bytes() == page
    served = api.get(f"/api/v1/documents/{r['document_id']}/file")
    assert served.headers["content-type"].startswith("text/plain"), "checked as .txt, so served"


# -- case 10: no absolute server path in the API ----------------------------------------


def assert_no_server_path(text: str, tmp_path) -> None:
    assert str(tmp_path) not in text and str(tmp_path.resolve()) not in text, text


def test_a_duplicate_upload_names_its_twin_relative_to_the_uploads(api, tmp_path):
    results(upload(api, ("dirA/passwd.txt", PASSWD)))
    r = upload(api, ("copy.txt", PASSWD))
    (dup,) = results(r)
    assert (dup["status"], dup["detail"]) == ("duplicate", "same content as dirA/passwd.txt")
    assert_no_server_path(r.text, tmp_path)


def test_listed_and_deleted_documents_show_no_server_path(api, tmp_path):
    svc = api.app.state.service
    data_dir = api.app.state.settings.data_dir
    (inside := data_dir / "docs" / "hours.txt").parent.mkdir(parents=True)
    inside.write_bytes(NOTES_B)
    (outside := tmp_path / "elsewhere" / "rules.txt").parent.mkdir()
    outside.write_bytes(PASSWD)
    svc.ingest([inside, outside])
    results(upload(api, ("dirA/notes.txt", NOTES_A)))
    svc.ingestor().ingest_text("faq:loans", "Loans", "Loans last four weeks.")

    r = api.get("/api/v1/documents", headers=AUTH)
    assert_no_server_path(r.text, tmp_path)
    shown = {d["source"]: d["id"] for d in r.json()["documents"]}
    # Uploads by their path under the uploads, other data-dir files by their path there,
    # files elsewhere by their name, and sources that are no path as they are.
    assert set(shown) == {"dirA/notes.txt", "docs/hours.txt", "rules.txt", "faq:loans"}

    gone = api.delete(f"/api/v1/documents/{shown['dirA/notes.txt']}", headers=AUTH)
    assert gone.json()["deleted"]["source"] == "dirA/notes.txt"
    assert_no_server_path(gone.text, tmp_path)


def test_a_missing_file_is_named_without_its_server_path(api, tmp_path):
    (added,) = results(upload(api, ("dirA/notes.txt", NOTES_A)))
    (api.app.state.settings.upload_dir / "dirA" / "notes.txt").unlink()
    r = api.get(f"/api/v1/documents/{added['document_id']}/file")
    assert r.status_code == 404
    assert "its file dirA/notes.txt is gone" in r.json()["error"]["message"]
    assert_no_server_path(r.text, tmp_path)


def test_a_parser_error_quoting_the_file_shows_its_upload_name(api, tmp_path, monkeypatch):
    from ingest import partition

    def unreadable(path, fmt, strategy):
        raise PermissionError(13, "Permission denied", str(path))

    # Parsed here, not in a worker process, so that the parser can be made to fail.
    monkeypatch.setattr(partition, "_elements", unreadable)
    svc = api.app.state.service
    ingestor = svc.ingestor

    def parsing_here(*args, **kwargs):
        made = ingestor(*args, **kwargs)
        made.parse = lambda path, fmt: partition.partition(path, fmt)
        return made

    monkeypatch.setattr(svc, "ingestor", parsing_here)
    r = upload(api, ("dirA/notes.txt", NOTES_A))
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert message == (
        "dirA/notes.txt: cannot parse text: [Errno 13] Permission denied: 'dirA/notes.txt'"
    )
    assert_no_server_path(r.text, tmp_path)
