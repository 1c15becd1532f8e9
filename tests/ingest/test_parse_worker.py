"""Parsing in warm worker processes: same blocks, errors that cross back, a timeout that kills."""

from __future__ import annotations

import threading

import pytest

from api.service import Lectern
from ingest.formats import FORMATS
from ingest.parse_worker import ParseWorkers
from ingest.partition import partition
from lectern.errors import EmptyFileError, IngestCancelledError, ParseTimeoutError
from lectern.settings import IngestSettings, Settings
from tests.conftest import SAMPLES
from tests.fakes import HashEmbedder
from tests.ingest.files import slow_text

DOCX, TEXT, HTML = FORMATS[".docx"], FORMATS[".txt"], FORMATS[".html"]
REGULATIONS = SAMPLES / "docx" / "academic-regulations-2026-27.docx"
SLOW_PARAGRAPHS = 5000  # about 10 s of partition_text on 2 cores


def test_a_worker_parses_a_file_as_this_process_would():
    assert ParseWorkers(1, 120).parse(REGULATIONS, DOCX) == partition(REGULATIONS, DOCX)


def test_a_parse_error_comes_back_as_the_ingest_error_it_is(tmp_path):
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body><img src='x.png'></body></html>")
    with pytest.raises(EmptyFileError) as caught:
        ParseWorkers(1, 120).parse(blank, HTML)
    assert (caught.value.path, caught.value.reason) == (
        str(blank), "no extractable text in this html file"
    )


def test_threads_parsing_at_once_each_get_their_own_file(tmp_path):
    files = []
    for i in range(6):
        f = tmp_path / f"notes-{i}.txt"
        f.write_text(f"Room {i} opens at 0{i}:00.\n\nIt closes at 1{i}:30.\n")
        files.append(f)
    workers = ParseWorkers(1, 120)
    got: dict[int, list[str]] = {}

    def parse(i: int) -> None:
        got[i] = [b.text for b in workers.parse(files[i], TEXT).blocks]

    threads = [threading.Thread(target=parse, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert got == {i: [f"Room {i} opens at 0{i}:00.", f"It closes at 1{i}:30."] for i in range(6)}


def test_a_parse_past_its_timeout_fails_and_the_next_one_gets_a_fresh_worker(tmp_path):
    slow = slow_text(tmp_path / "slow.txt", SLOW_PARAGRAPHS)
    workers = ParseWorkers(1, timeout_s=1)
    workers.start()
    with pytest.raises(ParseTimeoutError, match="parsing took over 1 s and was stopped"):
        workers.parse(slow, TEXT)
    assert ParseWorkers(1, 120).parse(REGULATIONS, DOCX).blocks


def test_close_fails_the_running_parse_at_once_and_refuses_new_ones(tmp_path):
    slow = slow_text(tmp_path / "slow.txt", SLOW_PARAGRAPHS)
    workers = ParseWorkers(1, 120)
    workers.parse(REGULATIONS, DOCX)  # warm: the slow parse below starts at once
    failed: list[Exception] = []

    def parse() -> None:
        try:
            workers.parse(slow, TEXT)
        except IngestCancelledError as exc:
            failed.append(exc)

    thread = threading.Thread(target=parse, daemon=True)
    thread.start()
    thread.join(timeout=1.5)  # under way
    workers.close()
    thread.join(timeout=10)
    assert [e.reason for e in failed] == ["not ingested: the server is shutting down"]
    with pytest.raises(IngestCancelledError):
        workers.parse(REGULATIONS, DOCX)
    assert ParseWorkers(1, 120).parse(REGULATIONS, DOCX).blocks  # others still parse


def test_workers_are_validated_eagerly():
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        ParseWorkers(0, 10)
    with pytest.raises(ValueError, match="timeout_s must be positive, got -1"):
        ParseWorkers(1, -1)


def test_an_upload_whose_parse_runs_past_the_timeout_fails_and_frees_its_thread(tmp_path):
    # Before: the parse ran in the request thread, as long as it took (here ~10 s; a zip
    # bomb held one for over 10 minutes), and the file was ingested.
    settings = Settings(
        data_dir=tmp_path / "data",
        ingest=IngestSettings(chunk_tokens=64, chunk_overlap=8, parse_timeout_s=1),
    )
    svc = Lectern(settings, embedder=HashEmbedder(64))
    svc.warm_up()
    svc.start_parsers()
    try:
        data = slow_text(tmp_path / "handbook.txt", SLOW_PARAGRAPHS).read_bytes()
        result = svc.ingest_upload("handbook.txt", data)
        assert (result.status, result.detail) == (
            "failed", "parsing took over 1 s and was stopped"
        )
        assert svc.documents() == [] and not any(settings.upload_dir.rglob("*.txt"))
    finally:
        svc.close()
