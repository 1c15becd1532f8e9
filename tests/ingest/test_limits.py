"""The caps a file passes before unstructured sees it: unzipped size, ratio, element count."""

from __future__ import annotations

import struct
import threading
import zipfile

import pytest

from ingest.formats import FORMATS, check_file
from ingest.limits import (
    _END_RECORD,
    MAX_ZIP_ENTRIES,
    RATIO_GRACE_BYTES,
    ParseLimits,
    _Matches,
    check_limits,
)
from lectern.errors import CorruptFileError, FileTooLargeError, ParseLimitError
from lectern.settings import IngestSettings
from tests.conftest import SAMPLES
from tests.ingest.files import PARAGRAPH, docx_of_paragraphs, docx_with_body, zip_bomb_docx

DEFAULTS = ParseLimits.of(IngestSettings())


def test_the_zip_bomb_docx_is_refused_within_5_s_with_a_clear_error(service, tmp_path):
    # Issue 15 case 3: 58 KB that unzips to 8 MiB of XML (240,000 paragraphs) held a
    # thread for over 10 minutes. Uploaded, it is refused before it is parsed.
    bomb = zip_bomb_docx(tmp_path / "bomb.docx").read_bytes()
    results = []
    upload = threading.Thread(
        target=lambda: results.append(service.ingest_upload("handbook.docx", bomb)), daemon=True
    )
    upload.start()
    upload.join(timeout=5)
    assert results, "the zip-bomb upload was still being ingested after 5 s"
    (result,) = results
    assert result.status == "failed"
    assert result.detail == (
        "its part word/document.xml inflates 335:1, over the 100:1 limit (a zip bomb?)"
    )
    assert service.documents() == []
    assert not any(service.settings.upload_dir.rglob("*.docx"))  # and the file is not kept


def test_a_docx_that_unzips_past_the_cap_is_refused_by_its_declared_sizes(tmp_path):
    f = docx_of_paragraphs(tmp_path / "big.docx", 2000)  # ~200 KB of XML, 7:1
    with pytest.raises(ParseLimitError, match=r"expands to over 0\.1 MiB when unzipped"):
        check_limits(f, "docx", ParseLimits(100 * 2**10, 100, 10**6))


def test_a_docx_whose_sizes_lie_is_refused_as_corrupt_once_inflated(tmp_path):
    # The central directory says word/document.xml is 1,000 bytes: zipfile inflates no more
    # than that, and the CRC of those 1,000 bytes then fails.
    f = docx_of_paragraphs(tmp_path / "liar.docx", 2000)
    raw = bytearray(f.read_bytes())
    entry = raw.index(b"PK\x01\x02")  # the central directory's first entry
    while True:
        name_len = struct.unpack_from("<H", raw, entry + 28)[0]
        if raw[entry + 46 : entry + 46 + name_len] == b"word/document.xml":
            break
        entry = raw.index(b"PK\x01\x02", entry + 4)
    struct.pack_into("<I", raw, entry + 24, 1000)  # its uncompressed size
    f.write_bytes(bytes(raw))
    assert zipfile.ZipFile(f).getinfo("word/document.xml").file_size == 1000
    with pytest.raises(CorruptFileError, match=r"not a valid DOCX \(Bad CRC-32"):
        check_limits(f, "docx", DEFAULTS)


def test_a_zip_directory_too_big_to_read_is_refused_before_zipfile_reads_it(tmp_path):
    f = tmp_path / "many.docx"
    f.write_bytes(b"PK\x03\x04" + _END_RECORD.pack(b"PK\x05\x06", 0, 0, 1, 1, 100 * 2**20, 4, 0))
    with pytest.raises(ParseLimitError, match=r"its zip directory is 100\.0 MiB, over the 1\.0"):
        check_file(f, 2**20)


def test_a_zip_of_too_many_entries_is_refused(tmp_path):
    f = tmp_path / "many.docx"
    with zipfile.ZipFile(f, "w") as z:
        for i in range(MAX_ZIP_ENTRIES + 1):
            z.writestr(f"p{i}", b"")
    with pytest.raises(ParseLimitError, match="holds 10,001 zip entries, over the 10,000 limit"):
        check_limits(f, "docx", DEFAULTS)


def test_a_dense_part_is_judged_on_the_bytes_it_inflates_to(tmp_path, monkeypatch):
    # Declared sizes pass (the check of them is switched off here); the stream catches it.
    bomb = zip_bomb_docx(tmp_path / "bomb.docx", mib=2)
    monkeypatch.setattr("ingest.limits._check_declared", lambda *a: None)
    with pytest.raises(ParseLimitError, match=r"word/document\.xml inflates \d+:1"):
        check_limits(bomb, "docx", DEFAULTS)


def test_a_small_part_may_inflate_past_the_ratio(tmp_path):
    # 3,000 one-letter paragraphs: 100 KB that deflates over 100:1, and parses in a blink.
    small = docx_with_body(tmp_path / "list.docx", PARAGRAPH * 3000)
    info = zipfile.ZipFile(small).getinfo("word/document.xml")
    assert info.file_size < RATIO_GRACE_BYTES and info.file_size / info.compress_size > 100
    check_limits(small, "docx", DEFAULTS)


def test_a_docx_of_more_paragraphs_than_the_cap_is_refused(tmp_path):
    f = docx_of_paragraphs(tmp_path / "long.docx", 1001)
    check_limits(f, "docx", ParseLimits(2**26, 100, 1001))
    with pytest.raises(ParseLimitError, match="holds over 1,000 paragraphs, the limit per file"):
        check_limits(f, "docx", ParseLimits(2**26, 100, 1000))


def test_an_html_file_of_more_tags_than_the_cap_is_refused(tmp_path):
    f = tmp_path / "page.html"
    f.write_text("<html><body>" + "<p>Fees are due in May.</p>" * 98 + "</body></html>")
    check_limits(f, "html", ParseLimits(2**26, 100, 100))  # 98 paragraphs, html and body
    with pytest.raises(ParseLimitError, match="holds over 99 HTML elements"):
        check_limits(f, "html", ParseLimits(2**26, 100, 99))


def test_other_formats_have_no_element_cap(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("<p>" * 1000)
    check_limits(f, "text", ParseLimits(1, 2, 1))


@pytest.mark.parametrize(
    "rel", ["docx/academic-regulations-2026-27.docx", "html/msc-data-science.html"]
)
def test_the_sample_documents_pass_the_default_caps(rel):
    check_limits(SAMPLES / rel, FORMATS[(SAMPLES / rel).suffix].name, DEFAULTS)


def test_a_match_cut_by_a_chunk_boundary_counts_once():
    p = _Matches(rb"<w:p[\s>/]", 5)
    assert [p.feed(c) for c in (b"ab<w:", b"p>x<w:pPr>", b"<w:p/><w", b":p ")] == [0, 1, 2, 3]
    tags = _Matches(rb"<[A-Za-z]", 2)
    assert [tags.feed(c) for c in (b"<a><", b"b></b><", b"i>")] == [1, 2, 3]


def test_parse_limits_are_read_from_the_settings_and_validated():
    limits = ParseLimits.of(IngestSettings(max_unzipped_mb=2, max_compression_ratio=50,
                                           max_elements=7))
    assert limits == ParseLimits(2 * 2**20, 50, 7)
    assert ParseLimits(64 * 2**20, 100, 40_000) == DEFAULTS
    with pytest.raises(ValueError, match="max_ratio=1"):
        ParseLimits(10, 1, 10)
    assert issubclass(ParseLimitError, FileTooLargeError)  # answered 413 where raised whole
