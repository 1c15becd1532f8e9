"""Each format through unstructured, from small fixtures and the shared real documents."""

import pytest

from ingest.formats import check_file
from ingest.partition import partition
from lectern.errors import CorruptFileError, EmptyFileError
from tests.conftest import SAMPLES, SHARED, require_or_skip, write_docx, write_pdf


def parse(path):
    return partition(path, check_file(path, 50 * 2**20))


def test_html_title_headings_and_text(tmp_path):
    f = tmp_path / "p.html"
    f.write_text(
        "<html><head><title>Course CSC 340</title></head><body><h1>Machine Learning"
        "</h1><p>Requires CSC 210 and MAT 220.</p><ul><li>6 ECTS</li></ul></body></html>"
    )
    parsed = parse(f)
    assert parsed.title == "Course CSC 340"
    kinds = {b.text: b.kind for b in parsed.blocks}
    assert kinds["Machine Learning"] == "title"
    assert kinds["Requires CSC 210 and MAT 220."] == "text"
    assert kinds["6 ECTS"] == "list"


def test_markdown_heading_depths(tmp_path):
    f = tmp_path / "guide.md"
    f.write_text("# Guide\n\n## Fees\n\nHome students pay EUR 2,390 per year.\n")
    parsed = parse(f)
    titles = [(b.text, b.depth) for b in parsed.blocks if b.kind == "title"]
    assert titles == [("Guide", 0), ("Fees", 1)]
    assert parsed.title == "Guide"


def test_plain_text(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("The service desk opens at 09:00.\n\nIt closes at 16:30 on weekdays.\n")
    parsed = parse(f)
    assert "opens at 09:00" in " ".join(b.text for b in parsed.blocks)


def test_docx_headings(tmp_path):
    f = write_docx(tmp_path / "regs.docx", "Exam retakes", ["Students may retake an exam twice."])
    parsed = parse(f)
    assert parsed.blocks[0].kind == "title" and parsed.blocks[0].text == "Exam retakes"
    assert parsed.blocks[1].text == "Students may retake an exam twice."


def test_pdf_pages(tmp_path):
    f = write_pdf(
        tmp_path / "fees.pdf", [("Fees", "Home EUR 2,390."), ("Deadlines", "Apply by 1 May.")]
    )
    parsed = parse(f)
    pages = {b.text: b.page for b in parsed.blocks}
    assert pages["Home EUR 2,390."] == 1
    assert pages["Apply by 1 May."] == 2


def test_truncated_pdf_is_rejected_as_holding_no_text(tmp_path):
    # pdfminer reads a truncated PDF without raising and finds no text in it: the file
    # is refused as empty, with the reason the upload report shows.
    good = write_pdf(tmp_path / "x.pdf", [("A", "b")]).read_bytes()
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(good[:40])
    with pytest.raises(EmptyFileError, match="no extractable text in this pdf file"):
        parse(bad)


def test_pdf_without_header_is_corrupt(tmp_path):
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"just some text, not a PDF at all")
    with pytest.raises(CorruptFileError, match=r"not a PDF \(no %PDF header\)"):
        parse(bad)


def test_html_without_text_is_empty(tmp_path):
    f = tmp_path / "blank.html"
    f.write_text("<html><body><img src='x.png'></body></html>")
    with pytest.raises(EmptyFileError, match="no extractable text"):
        parse(f)


@pytest.mark.parametrize(
    "rel",
    [
        "pdf/tuition-fees-and-deadlines-2026-27.pdf",
        "docx/academic-regulations-2026-27.docx",
        "html/msc-data-science.html",
        "markdown/study-guide.md",
        "txt/contacts-and-office-hours.txt",
    ],
)
def test_sample_corpus_formats(rel):
    parsed = parse(SAMPLES / rel)
    assert len(parsed.blocks) > 3
    assert "Fenmoor" in " ".join(b.text for b in parsed.blocks)


def test_shared_real_documents():
    require_or_skip(SHARED.exists(), f"the shared real documents ({SHARED}) are not here")
    pdf = parse(SHARED / "docs" / "pdf" / "url.pdf")
    assert max(b.page or 0 for b in pdf.blocks) > 1
    assert any("url" in b.text.lower() for b in pdf.blocks)
    html = parse(SHARED / "docs" / "html" / "python-tutorial" / "controlflow.html")
    assert "Control Flow" in html.title
    assert any(b.kind == "title" for b in html.blocks)


def test_a_missing_requirement_skips_outside_ci_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    require_or_skip(True, "present")  # a met requirement does nothing
    with pytest.raises(pytest.skip.Exception, match="no data"):
        require_or_skip(False, "no data")
    monkeypatch.setenv("CI", "true")
    require_or_skip(True, "present")
    with pytest.raises(pytest.fail.Exception, match="required in CI.*no data"):
        require_or_skip(False, "no data")
