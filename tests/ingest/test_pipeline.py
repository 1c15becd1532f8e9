"""ingest.pipeline with a real SQLite store and the hash embedder: statuses, ids, what is stored."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import FileResult, Ingestor, IngestReport, document_id, expand
from ingest.sqlite_store import SQLiteDocumentStore
from lectern.settings import IngestSettings
from tests.conftest import write_pdf
from tests.fakes import HashEmbedder, WindowedEmbedder, word_count

TEXT = (
    "Loans last 28 days for students and staff alike, counted from the day of the loan.\n\n"
    "Books can be renewed twice online or at the desk, unless another reader reserved them."
    "\n\n   \n\nFines are 20 cents a day."
)


class RecordingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__(dimension=32, fingerprint="recording-v1")
        self.texts: list[list[str]] = []

    def embed_passages(self, texts):
        self.texts.append(list(texts))
        return super().embed_passages(texts)


@pytest.fixture
def store(tmp_path):
    s = SQLiteDocumentStore(tmp_path / "store.sqlite")
    yield s
    s.close()


@pytest.fixture
def embedder():
    return RecordingEmbedder()


@pytest.fixture
def ingestor(store, embedder):
    return Ingestor(
        store, embedder, IngestSettings(chunk_tokens=16, chunk_overlap=2, min_section_tokens=0)
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- small parts -----------------------------------------------------------------------


def test_a_file_result_defaults_to_no_document_chunks_pages_or_detail():
    r = FileResult("a.md", "failed")
    assert (r.document_id, r.chunks, r.pages, r.detail, r.truncated) == (None, 0, 0, "", 0)


def test_a_report_counts_statuses_and_knows_what_changed_and_failed():
    bad = FileResult("c", "failed", detail="no such file")
    report = IngestReport([FileResult("a", "added"), FileResult("b", "unchanged"), bad])
    assert [report.count(s) for s in ("added", "updated", "unchanged", "failed")] == [1, 0, 1, 1]
    assert report.changed and report.failed == [bad]
    assert IngestReport([FileResult("u", "updated")]).changed
    assert not IngestReport([FileResult("a", "unchanged"), FileResult("b", "duplicate")]).changed
    assert IngestReport().results == [] and IngestReport().failed == []
    cut = [FileResult("a", "added", truncated=2), FileResult("b", "updated", truncated=3)]
    assert IngestReport(cut).truncated == 5 and report.truncated == 0


def test_a_document_id_is_the_first_16_hex_digits_of_the_source_s_sha256():
    assert document_id("/d/fees.md") == hashlib.sha256(b"/d/fees.md").hexdigest()[:16]
    assert len(document_id("x")) == 16 and document_id("x") != document_id("y")


def test_expand_lists_supported_visible_files_under_folders_in_order(tmp_path):
    root = tmp_path / "docs"
    b = write(root / "b.md", "b")
    a = write(root / "sub" / "a.txt", "a")
    write(root / "notes.xyz", "unsupported")
    write(root / ".hidden.md", "hidden file")
    write(root / ".git" / "c.md", "in a hidden folder")
    named = write(tmp_path / "named.xyz", "a file named is passed on as it is")
    assert list(expand([root, named])) == [b, a, named]


def test_expand_skips_only_hidden_parts_below_the_folder_named(tmp_path):
    root = tmp_path / ".config" / "docs"
    doc = write(root / "a.md", "a")
    assert list(expand([root])) == [doc]


# -- files ---------------------------------------------------------------------------


def test_a_new_file_is_added_with_its_chunks_vectors_and_metadata(tmp_path, ingestor, store,
                                                                 embedder):
    path = write(tmp_path / "loans.txt", TEXT)
    before = datetime.now(UTC)
    result = ingestor.ingest_file(path)
    doc_id = document_id(str(path.resolve()))
    assert result == FileResult(str(path), "added", doc_id, result.chunks, 0)
    assert result.chunks >= 2
    info = store.get_document(doc_id)
    assert info.source == str(path.resolve())
    assert info.title == "loans"
    assert info.content_hash == hashlib.sha256(TEXT.encode()).hexdigest()
    assert info.media_type == "text/plain"
    assert info.size_bytes == len(TEXT.encode())
    assert info.chunk_count == result.chunks
    assert before <= info.ingested_at <= datetime.now(UTC)
    assert info.ingested_at.tzinfo is not None
    chunks = store.all_chunks()
    assert [c.position for c in chunks] == list(range(result.chunks))
    assert {c.document_id for c in chunks} == {doc_id}
    assert "Fines are 20 cents a day." in chunks[-1].text
    # Each chunk is embedded once, under its heading, under the embedder's fingerprint.
    assert embedder.texts == [[c.model_text for c in chunks]]
    assert all(t.startswith("loans\n") for t in embedder.texts[0])
    ids = store.chunk_ids()
    stored = store.vectors(ids, "recording-v1")
    assert np.allclose(stored, embedder.embed_passages([c.model_text for c in chunks]))


def test_the_same_file_again_is_unchanged_and_not_embedded_again(tmp_path, ingestor, embedder):
    path = write(tmp_path / "loans.txt", TEXT)
    first = ingestor.ingest_file(path)
    again = ingestor.ingest_file(path)
    assert again == FileResult(str(path), "unchanged", first.document_id, first.chunks)
    assert len(embedder.texts) == 1


def test_a_changed_file_is_updated_in_place(tmp_path, ingestor, store):
    path = write(tmp_path / "loans.txt", TEXT)
    first = ingestor.ingest_file(path)
    write(path, "Loans last 21 days now.")
    second = ingestor.ingest_file(path)
    assert (second.status, second.document_id, second.chunks) == ("updated", first.document_id, 1)
    assert [d.id for d in store.list_documents()] == [first.document_id]
    assert [c.text for c in store.all_chunks()] == ["Loans last 21 days now."]


def test_the_same_content_under_another_name_is_a_duplicate(tmp_path, ingestor, store):
    original = write(tmp_path / "a.txt", TEXT)
    first = ingestor.ingest_file(original)
    copy = write(tmp_path / "b.txt", TEXT)
    dup = ingestor.ingest_file(copy)
    assert dup == FileResult(
        str(copy), "duplicate", first.document_id, first.chunks,
        detail=f"same content as {original.resolve()}",
    )
    assert len(store.list_documents()) == 1


def test_a_source_name_given_replaces_the_path(tmp_path, ingestor, store):
    path = write(tmp_path / "upload.txt", TEXT)
    result = ingestor.ingest_file(path, source="uploads/upload.txt")
    assert result.document_id == document_id("uploads/upload.txt")
    assert store.get_document(result.document_id).source == "uploads/upload.txt"


def test_a_missing_file_fails_and_stores_nothing(tmp_path, ingestor, store):
    result = ingestor.ingest_file(tmp_path / "gone.txt")
    assert result == FileResult(str(tmp_path / "gone.txt"), "failed", detail="no such file")
    folder = tmp_path / "a-folder.txt"
    folder.mkdir()
    assert ingestor.ingest_file(folder).detail == "no such file"
    assert store.list_documents() == []


def test_a_file_over_the_size_limit_fails(tmp_path, store, embedder):
    small = Ingestor(store, embedder, IngestSettings(max_file_mb=0.001))  # 1048 bytes
    fits = write(tmp_path / "fits.txt", "x " * 524)  # 1048 bytes
    over = write(tmp_path / "over.txt", "x " * 525)
    assert small.ingest_file(fits).status == "added"
    failed = small.ingest_file(over)
    assert failed.status == "failed" and "over the" in failed.detail


def test_pages_count_the_distinct_pages_with_text(tmp_path, ingestor):
    pdf = write_pdf(
        tmp_path / "guide.pdf",
        [("Loans", "Loans last 28 days."), ("Fines", "Fines are 20 cents a day.")],
    )
    result = ingestor.ingest_file(pdf)
    assert (result.status, result.pages) == ("added", 2)


def test_ingest_paths_reports_every_file_in_order_to_the_callback(tmp_path, ingestor):
    a = write(tmp_path / "docs" / "a.txt", TEXT)
    b = write(tmp_path / "docs" / "b.md", "# Fees\n\nHome students pay EUR 2,390.")
    seen: list[FileResult] = []
    report = ingestor.ingest_paths([tmp_path / "docs", tmp_path / "missing.txt"], seen.append)
    assert [r.path for r in report.results] == [str(a), str(b), str(tmp_path / "missing.txt")]
    assert [r.status for r in report.results] == ["added", "added", "failed"]
    assert seen == report.results
    assert ingestor.ingest_paths([a]).results[0].status == "unchanged"  # no callback is fine


def test_the_chunker_is_built_once_from_the_settings(ingestor, embedder):
    chunker = ingestor.chunker
    assert ingestor.chunker is chunker
    assert chunker.count_tokens == embedder.count_tokens
    assert (chunker.chunk_tokens, chunker.min_section_tokens) == (16, 0)


# -- text ----------------------------------------------------------------------------


def test_text_is_split_into_paragraphs_on_blank_lines(ingestor, store):
    result = ingestor.ingest_text("faq:loans", "Loans FAQ", TEXT)
    assert result == FileResult("faq:loans", "added", document_id("faq:loans"), result.chunks, 0)
    info = store.get_document(result.document_id)
    assert (info.source, info.title, info.media_type) == ("faq:loans", "Loans FAQ", "text/plain")
    assert info.size_bytes == len(TEXT.encode())
    text = " ".join(c.text for c in store.all_chunks())
    assert "Loans last 28 days for students" in text and "Fines are 20 cents a day." in text
    assert {c.title for c in store.all_chunks()} == {"Loans FAQ"}


def test_text_is_sized_in_bytes_and_unchanged_when_sent_again(ingestor, store):
    text = "Café opens at 08:00."
    first = ingestor.ingest_text("faq:cafe", "Café", text)
    assert store.get_document(first.document_id).size_bytes == len(text.encode()) == 21
    assert ingestor.ingest_text("faq:cafe", "Café", text).status == "unchanged"
    assert ingestor.ingest_text("faq:cafe", "Café", text + " Closed Sundays.").status == "updated"


@pytest.mark.parametrize("text", ["", "   ", "\n\n \n\n"])
def test_empty_text_fails(ingestor, store, text):
    assert ingestor.ingest_text("faq:empty", "Empty", text) == FileResult(
        "faq:empty", "failed", detail="text is empty"
    )
    assert store.list_documents() == []


def test_the_configured_pdf_strategy_reaches_the_parser(tmp_path, store, embedder, monkeypatch):
    import ingest.pipeline as pipeline

    seen = []
    real = pipeline.partition

    def recording(path, fmt, strategy="unset"):
        seen.append((path.name, fmt.name, strategy))
        return real(path, fmt, "fast")

    monkeypatch.setattr(pipeline, "partition", recording)
    ingestor = Ingestor(store, embedder, IngestSettings(pdf_strategy="ocr_only"))
    assert ingestor.ingest_file(write(tmp_path / "a.txt", TEXT)).status == "added"
    assert seen == [("a.txt", "text", "ocr_only")]


class RecordingStore(SQLiteDocumentStore):
    """The real store, keeping what each upsert was handed."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.upserts = []

    def upsert_document(self, info, chunks, vectors, encoder):
        self.upserts.append((info, list(chunks), encoder))
        return super().upsert_document(info, chunks, vectors, encoder)


def test_the_store_is_handed_complete_chunks_and_info(tmp_path, embedder):
    store = RecordingStore(tmp_path / "rec.sqlite")
    ingestor = Ingestor(store, embedder, IngestSettings(chunk_tokens=16, chunk_overlap=2,
                                                        min_section_tokens=0))
    pdf = write_pdf(
        tmp_path / "guide.pdf",
        [("Loans", "Loans last 28 days."), ("Fines", "Fines are 20 cents a day.")],
    )
    result = ingestor.ingest_file(pdf)
    [(info, chunks, encoder)] = store.upserts
    source = str(pdf.resolve())
    assert encoder == "recording-v1"
    assert (info.id, info.source, info.chunk_count) == (result.document_id, source, len(chunks))
    assert [(c.id, c.document_id, c.source, c.title) for c in chunks] == [
        (-1, result.document_id, source, info.title)
    ] * len(chunks)  # -1: the store assigns the ids
    assert [c.position for c in chunks] == list(range(len(chunks)))
    # Each chunk keeps its piece's heading and page, as the chunker cut them.
    from ingest.formats import check_file
    from ingest.partition import partition

    pieces = ingestor.chunker.split(partition(pdf, check_file(pdf, 2**20)).blocks)
    expected = [(p.text, p.section, p.page) for p in pieces]
    assert [(c.text, c.section, c.page) for c in chunks] == expected
    assert [(c.text, c.section, c.page) for c in store.all_chunks()] == expected
    assert all(page is not None for _, _, page in expected)
    assert any(section is not None for _, section, _ in expected)
    store.close()


def test_text_keeps_its_paragraphs_and_drops_blank_ones(tmp_path, store, embedder):
    ingestor = Ingestor(store, embedder, IngestSettings())
    ingestor.ingest_text("faq:loans", "Loans FAQ", TEXT)
    [chunk] = store.all_chunks()
    assert chunk.text == (
        "Loans last 28 days for students and staff alike, counted from the day of the loan.\n\n"
        "Books can be renewed twice online or at the desk, unless another reader reserved them."
        "\n\nFines are 20 cents a day."
    )


def test_text_sent_again_is_unchanged_under_its_source(ingestor):
    first = ingestor.ingest_text("faq:loans", "Loans FAQ", TEXT)
    again = ingestor.ingest_text("faq:loans", "Loans FAQ", TEXT)
    assert again == FileResult("faq:loans", "unchanged", first.document_id, first.chunks)
    dup = ingestor.ingest_text("faq:copy", "Copy", TEXT)
    assert dup == FileResult(
        "faq:copy", "duplicate", first.document_id, first.chunks, detail="same content as faq:loans"
    )


# -- the encoder's window ------------------------------------------------------------

URL = "https://news.example.com/2015/03/12/world/library-opening-hours-change-in-spring/index.html"
LONG = "\n\n".join(" ".join(f"p{j}w{i}" for i in range(30)) for j in range(4))


def test_the_encoder_embeds_the_bounded_heading_and_bm25_keeps_the_url(ingestor, store,
                                                                       embedder):
    ingestor.ingest_text("news:1", URL, TEXT)
    chunks = store.all_chunks()
    assert embedder.texts == [[c.model_text for c in chunks]]
    assert all(t.startswith("library opening hours change in spring\n")
               for t in embedder.texts[0])
    assert all(c.context_text.startswith(URL) for c in chunks)


@pytest.mark.parametrize(("window", "truncated"), [(8, "all"), (24, 0), (512, 0)])
def test_chunks_the_encoder_would_cut_are_counted(store, window, truncated):
    embedder = WindowedEmbedder(max_tokens=window)
    settings = IngestSettings(chunk_tokens=40, chunk_overlap=4, min_section_tokens=0)
    ingestor = Ingestor(store, embedder, settings)
    result = ingestor.ingest_text("news:1", URL, LONG)
    chunks = store.all_chunks()
    assert result.status == "added" and result.chunks == len(chunks) >= 3
    longest = max(2 + word_count(c.model_text) for c in chunks)
    if truncated == "all":  # a window smaller than any heading: the chunker cannot help
        assert result.truncated == len(chunks) and longest > window
    else:  # the chunker kept every chunk, heading and special tokens included, inside it
        assert result.truncated == 0 and longest <= window
    assert ingestor.ingest_paths([]).truncated == 0


def test_an_embedder_without_a_window_counts_nothing(ingestor):
    assert ingestor.ingest_text("news:1", URL, LONG).truncated == 0
    assert ingestor.chunker.max_tokens is None
