import pytest

from ingest.formats import check_file
from lectern.errors import (
    CorruptFileError,
    EmptyFileError,
    FileTooLargeError,
    UnsupportedFileTypeError,
)
from tests.conftest import write_docx


def test_unsupported_type_names_the_suffix(tmp_path):
    f = tmp_path / "slides.pptx"
    f.write_bytes(b"x")
    with pytest.raises(UnsupportedFileTypeError, match="'.pptx'"):
        check_file(f, 1000)


def test_empty_and_whitespace_files(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"")
    (tmp_path / "b.md").write_text("  \n\n ")
    with pytest.raises(EmptyFileError, match="empty"):
        check_file(tmp_path / "a.txt", 1000)
    with pytest.raises(EmptyFileError, match="whitespace"):
        check_file(tmp_path / "b.md", 1000)


def test_size_limit(tmp_path):
    f = tmp_path / "big.txt"
    f.write_text("word " * 1000)
    with pytest.raises(FileTooLargeError, match="over the"):
        check_file(f, 100)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("fake.pdf", b"<html>not a pdf</html>", "no %PDF header"),
        ("fake.docx", b"plain text", "not a zip"),
        ("bin.txt", b"abc\x00\x01\x02", "binary content"),
    ],
)
def test_corrupt_files(tmp_path, name, data, reason):
    f = tmp_path / name
    f.write_bytes(data)
    with pytest.raises(CorruptFileError, match=reason):
        check_file(f, 10_000)


def test_valid_files_pass(tmp_path):
    docx = write_docx(tmp_path / "ok.docx", "Rules", ["One rule."])
    assert check_file(docx, 10**6).name == "docx"
    html = tmp_path / "page.HTML"
    html.write_text("<p>hi</p>")
    assert check_file(html, 10**6).name == "html"
