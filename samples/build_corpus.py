#!/usr/bin/env python3
"""Build the binary documents of the Fenmoor University demo corpus.

Fenmoor University is fictional. The HTML, Markdown and plain-text files in
samples/corpus/ are written by hand; this script generates the two binary
documents from the content defined below:

    samples/corpus/pdf/tuition-fees-and-deadlines-2026-27.pdf   (fpdf2)
    samples/corpus/docx/academic-regulations-2026-27.docx       (python-docx)

Output is deterministic: fixed creation/modification dates in the document
metadata, and the DOCX zip container is rewritten with fixed timestamps, so a
re-run with the same library versions produces the same bytes.

Usage:
    python samples/build_corpus.py           # (re)build PDF and DOCX
    python samples/build_corpus.py --check   # verify corpus and queries.jsonl

--check verifies that every file carries the fictional-content notice, that
the PDF has at least two pages and the DOCX uses Heading 1/Heading 2 styles,
that the binaries on disk match a fresh build, that the corpus is smaller
than 300 KB, and that for every line of samples/queries.jsonl the `expect`
string occurs (whitespace-normalised) in the extracted text of its `source`
file and in no other corpus file. Text is extracted from the PDF with
pdfminer.six and from the DOCX with python-docx.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
QUERIES = HERE / "queries.jsonl"
PDF_PATH = CORPUS / "pdf" / "tuition-fees-and-deadlines-2026-27.pdf"
DOCX_PATH = CORPUS / "docx" / "academic-regulations-2026-27.docx"

FIXED_DATE = dt.datetime(2026, 1, 5, 9, 0, 0, tzinfo=dt.UTC)
ZIP_DATE = (2026, 1, 5, 9, 0, 0)

NOTICE = "Fictional sample content for the Lectern demo — Fenmoor University does not exist."
# The PDF uses a core font (latin-1 only), which has no em dash.
NOTICE_LATIN1 = NOTICE.replace("—", "-")
NOTICE_CORE = "Fenmoor University does not exist."

MAX_CORPUS_BYTES = 300 * 1024

# --------------------------------------------------------------------------
# PDF content: "Tuition Fees and Application Deadlines 2026/27"
# Blocks: ("title", text), ("h1", text), ("h2", text), ("p", text), ("li", text)
# Only latin-1 characters (core font Helvetica): "EUR" instead of the euro sign.
# --------------------------------------------------------------------------
PDF_TITLE = "Tuition Fees and Application Deadlines 2026/27"

PDF_BLOCKS = [
    ("title", PDF_TITLE),
    ("notice", NOTICE_LATIN1),
    ("p", "Fenmoor University - Finance Office and Admissions Office. Version of 15 December 2025."),

    ("h1", "1 About this document"),
    ("p", "This document lists the annual tuition fees and the application deadlines for students "
          "who start a degree programme at Fenmoor University in September 2026. All amounts are in "
          "euros (EUR) per academic year of full-time study. The fees were set by the Board of "
          "Governors on 12 November 2025 and apply to the academic year 2026/27."),

    ("h1", "2 Fee categories"),
    ("p", "The home tuition fee applies to nationals of an EU/EEA country or Switzerland, and to "
          "students who hold a permanent residence permit. The international tuition fee applies to "
          "all other students. Your fee category is determined by your nationality and residence "
          "status on 1 September 2026."),
    ("p", "Home applicants and international applicants also have different application deadlines. "
          "The deadline for international applicants is earlier, because a residence permit may have "
          "to be arranged before the start of the programme."),

    ("h1", "3 Bachelor's programmes"),
    ("h2", "3.1 BSc Computer Science"),
    ("li", "The home tuition fee for the BSc Computer Science is EUR 2,530 per year."),
    ("li", "The international tuition fee for the BSc Computer Science is EUR 11,900 per year."),
    ("li", "The application deadline for the BSc Computer Science is 1 March 2026 for international "
           "applicants and 1 May 2026 for home applicants."),
    ("h2", "3.2 BSc Biology"),
    ("li", "The home tuition fee for the BSc Biology is EUR 2,610 per year."),
    ("li", "The international tuition fee for the BSc Biology is EUR 12,400 per year."),
    ("li", "The application deadline for the BSc Biology is 15 March 2026 for international "
           "applicants and 15 May 2026 for home applicants."),
    ("p", "Laboratory coats and safety equipment are included in the tuition fee. Contributions for "
          "field courses are charged separately by the programme."),
    ("h2", "3.3 BA History"),
    ("li", "The home tuition fee for the BA History is EUR 2,390 per year."),
    ("li", "The international tuition fee for the BA History is EUR 9,750 per year."),
    ("li", "The application deadline for the BA History is 1 April 2026 for international "
           "applicants and 1 June 2026 for home applicants."),

    ("h1", "4 Master's programmes"),
    ("h2", "4.1 MSc Data Science"),
    ("li", "The home tuition fee for the MSc Data Science is EUR 3,150 per year."),
    ("li", "The international tuition fee for the MSc Data Science is EUR 16,800 per year."),
    ("li", "The application deadline for the MSc Data Science is 1 February 2026 for international "
           "applicants and 15 April 2026 for home applicants."),
    ("h2", "4.2 MSc Environmental Engineering"),
    ("li", "The home tuition fee for the MSc Environmental Engineering is EUR 3,080 per year."),
    ("li", "The international tuition fee for the MSc Environmental Engineering is EUR 15,950 per year."),
    ("li", "The application deadline for the MSc Environmental Engineering is 15 February 2026 for "
           "international applicants and 30 April 2026 for home applicants."),

    ("h1", "5 Application fee"),
    ("p", "International applicants pay a non-refundable application fee of EUR 75 per application "
          "when they submit an application in Fenmoor Apply. Home applicants do not pay an "
          "application fee. An application is processed only after the fee has been received."),

    ("h1", "6 Payment and instalments"),
    ("p", "Tuition fees can be paid in full or in ten monthly instalments. Full payment is due by "
          "31 August 2026. Students who pay in instalments authorise a monthly direct debit from "
          "September 2026 to June 2027 and pay an administration surcharge of EUR 40 per year. "
          "Students who have not paid after two written reminders are deregistered."),

    ("h1", "7 Refunds after withdrawal"),
    ("p", "Students who withdraw before 1 October 2026 receive a full refund of the tuition fee minus "
          "an administration charge of EUR 100. Students who withdraw later receive one tenth of the "
          "annual fee for each full month remaining in the academic year. No refunds are made for "
          "withdrawals after 1 May 2027. The application fee is never refunded."),

    ("h1", "8 Scholarships"),
    ("p", "The Fenmoor Global Talent Scholarship reduces the international tuition fee by EUR 6,000 "
          "for the first year of study. It is open to international applicants to the MSc Data "
          "Science or the MSc Environmental Engineering with a cumulative GPA of at least 3.6 on a "
          "4.0 scale. The scholarship application deadline is 20 January 2026; the programme "
          "application must be submitted by the same date."),
    ("p", "The scholarship is renewed for the second year if the student earned at least 54 ECTS in "
          "the first year. It cannot be combined with other Fenmoor scholarships."),

    ("h1", "9 Questions"),
    ("p", "Questions about payments and refunds: Finance Office, finance@fenmoor.example. Questions "
          "about applications and deadlines: Admissions Office, admissions@fenmoor.example."),
]

# --------------------------------------------------------------------------
# DOCX content: "Academic Regulations 2026/27"
# Blocks: ("title", text), ("notice", text), ("h1", text), ("h2", text), ("p", text)
# --------------------------------------------------------------------------
DOCX_TITLE = "Academic Regulations 2026/27"

DOCX_BLOCKS = [
    ("title", DOCX_TITLE),
    ("notice", NOTICE),
    ("p", "These regulations were adopted by the Executive Board of Fenmoor University on "
          "9 December 2025 and take effect on 1 September 2026."),

    ("h1", "1 Scope and definitions"),
    ("h2", "1.1 Scope"),
    ("p", "These Academic Regulations apply to all students enrolled in a bachelor's or master's "
          "programme of Fenmoor University in the academic year 2026/27. Additional programme rules "
          "are published in the course manuals and may not conflict with these regulations."),
    ("h2", "1.2 Examination Board"),
    ("p", "Each faculty has an Examination Board. The Examination Board safeguards the quality of "
          "examinations, decides on requests for exceptions and decides on credit transfer. Requests "
          "are submitted to the Examination Board secretariat."),

    ("h1", "2 Examinations and retakes"),
    ("h2", "2.1 Examination opportunities"),
    ("p", "For each course, two examination opportunities are offered per academic year: the regular "
          "examination at the end of the course and one retake in the resit period published in the "
          "academic calendar."),
    ("h2", "2.2 Retaking a passed examination"),
    ("p", "A student who has passed an examination may retake it once to improve the grade. The "
          "higher of the two grades counts."),
    ("h2", "2.3 Maximum number of attempts"),
    ("p", "A student may sit the examination of a course at most three times in total. A third "
          "attempt requires permission from the Examination Board, requested with form EB-3 at least "
          "20 working days before the examination date."),
    ("h2", "2.4 Illness during the examination period"),
    ("p", "A student who is ill on the day of an examination must report this to the Student Service "
          "Desk before the examination starts and submit a medical certificate within five working "
          "days. The missed examination then does not count as an attempt."),

    ("h1", "3 Coursework and late submission"),
    ("h2", "3.1 Deadlines"),
    ("p", "Deadlines for essays, reports and other coursework are set by the lecturer and published "
          "in the course manual at the start of the course. Coursework is submitted through FenNet; "
          "the FenNet time stamp is decisive."),
    ("h2", "3.2 Late-submission penalty"),
    ("p", "Coursework submitted after the deadline loses 0.5 grade points per calendar day of delay, "
          "on the 10-point scale. Coursework submitted more than five calendar days late is not "
          "marked and receives a grade of 1.0."),
    ("h2", "3.3 Extensions"),
    ("p", "A student may request an extension with form EXT-1 before the deadline has passed, on "
          "grounds of illness, a family emergency or another circumstance beyond the student's "
          "control. The lecturer may grant an extension of at most seven calendar days; a longer "
          "extension requires the approval of the Examination Board."),

    ("h1", "4 Credit transfer"),
    ("h2", "4.1 Eligibility"),
    ("p", "The Examination Board may recognise courses completed at another accredited higher "
          "education institution if they were passed, were completed no more than five years before "
          "the request, and match the content and level of a course in the student's programme."),
    ("h2", "4.2 Maximum number of credits"),
    ("p", "For bachelor's programmes, a maximum of 60 ECTS may be recognised. For master's "
          "programmes, a maximum of 30 ECTS may be recognised. The bachelor project and the master "
          "thesis cannot be replaced by credit transfer."),
    ("h2", "4.3 Procedure"),
    ("p", "A request for credit transfer must be submitted within the first six weeks after "
          "enrolment, together with an official transcript and the course descriptions of the "
          "completed courses. The Examination Board decides within 30 calendar days. Recognised "
          "courses appear on the transcript as \"transferred\" without a grade and do not count "
          "towards the grade average."),

    ("h1", "5 Grading"),
    ("h2", "5.1 Grading scale"),
    ("p", "Results are expressed on a scale from 1.0 to 10.0. Final course grades are rounded to the "
          "nearest half point, except that grades between 5.0 and 6.0 are rounded to 5.0 or 6.0. "
          "The minimum passing grade for a course is 6.0."),
    ("h2", "5.2 Pass/fail components"),
    ("p", "Some components, such as the laboratory safety induction and internships, are assessed "
          "as pass or fail only."),
    ("h2", "5.3 Publication of grades"),
    ("p", "Examiners publish grades in FenNet within 15 working days after the examination."),

    ("h1", "6 Binding study advice"),
    ("p", "At the end of the first year, every bachelor's student receives a binding study advice. "
          "A student who has earned fewer than 45 of the 60 ECTS of the first year receives a "
          "negative advice and may not re-enrol in the same programme for the following three "
          "academic years. Personal circumstances reported in time to the study adviser are taken "
          "into account."),

    ("h1", "7 Academic integrity"),
    ("h2", "7.1 Fraud and plagiarism"),
    ("p", "Fraud includes cheating during examinations, plagiarism, fabricating data and submitting "
          "work written by someone else. All written coursework is checked with plagiarism-detection "
          "software."),
    ("h2", "7.2 Generative AI tools"),
    ("p", "Students may use generative AI tools only to the extent permitted in the course manual, "
          "and must declare any use in a statement attached to the submitted work."),
    ("h2", "7.3 Sanctions"),
    ("p", "In case of fraud, the Examination Board may annul the result concerned and exclude the "
          "student from one or more examinations for a period of up to 12 months."),

    ("h1", "8 Appeals"),
    ("p", "A student can appeal against a decision of an examiner or the Examination Board to the "
          "Board of Appeals for Examinations within six weeks after the decision was announced."),
]


# --------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------
def build_pdf_bytes() -> bytes:
    from fpdf import FPDF

    class CorpusPDF(FPDF):
        def footer(self):
            self.set_y(-15)
            self.set_font("Helvetica", "I", 8)
            self.set_text_color(110, 110, 110)
            self.cell(0, 10, f"Fenmoor University (fictional) - page {self.page_no()}/{{nb}}",
                      align="C")

    pdf = CorpusPDF(format="A4", unit="mm")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(PDF_TITLE)
    pdf.set_author("Lectern demo corpus")
    pdf.set_subject("Fictional sample content - Fenmoor University does not exist")
    pdf.set_creator("samples/build_corpus.py")
    pdf.set_lang("en")
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_page()

    for kind, text in PDF_BLOCKS:
        text.encode("latin-1")  # fail loudly on non-latin-1 characters
        # Keep headings with the text that follows them (no orphaned headings).
        if kind in ("h1", "h2") and pdf.get_y() > pdf.h - pdf.b_margin - 30:
            pdf.add_page()
        if kind == "title":
            pdf.set_font("Helvetica", "B", 20)
            pdf.multi_cell(0, 10, text, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif kind == "notice":
            pdf.set_font("Helvetica", "B", 11)
            pdf.multi_cell(0, 6, text, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif kind == "h1":
            pdf.ln(3)
            pdf.start_section(text, level=0)
            pdf.set_font("Helvetica", "B", 15)
            pdf.multi_cell(0, 8, text, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif kind == "h2":
            pdf.ln(1)
            pdf.start_section(text, level=1)
            pdf.set_font("Helvetica", "B", 12.5)
            pdf.multi_cell(0, 7, text, align="L", new_x="LMARGIN", new_y="NEXT")
        elif kind == "li":
            pdf.set_font("Helvetica", "", 10.5)
            pdf.set_x(pdf.l_margin + 4)
            pdf.multi_cell(0, 5.5, "- " + text, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif kind == "p":
            pdf.set_font("Helvetica", "", 10.5)
            pdf.multi_cell(0, 5.5, text, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        else:
            raise ValueError(kind)

    return bytes(pdf.output())


def _normalise_zip(data: bytes) -> bytes:
    """Rewrite a zip container with fixed timestamps and attributes."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3
            zi.external_attr = 0o644 << 16
            dst.writestr(zi, src.read(info.filename))
    return out.getvalue()


def build_docx_bytes() -> bytes:
    from docx import Document
    from docx.shared import Pt

    doc = Document()
    for kind, text in DOCX_BLOCKS:
        if kind == "title":
            doc.add_heading(text, level=0)  # "Title" style
        elif kind == "notice":
            run = doc.add_paragraph().add_run(text)
            run.bold = True
            run.font.size = Pt(11)
        elif kind == "h1":
            doc.add_heading(text, level=1)  # "Heading 1"
        elif kind == "h2":
            doc.add_heading(text, level=2)  # "Heading 2"
        elif kind == "p":
            doc.add_paragraph(text)
        else:
            raise ValueError(kind)

    naive = FIXED_DATE.replace(tzinfo=None)
    cp = doc.core_properties
    cp.title = DOCX_TITLE
    cp.subject = "Fictional sample content - Fenmoor University does not exist"
    cp.author = "Lectern demo corpus"
    cp.last_modified_by = "Lectern demo corpus"
    cp.comments = "Generated by samples/build_corpus.py"
    cp.keywords = "Lectern, demo, fictional"
    cp.category = ""
    cp.revision = 1
    cp.created = naive
    cp.modified = naive
    cp.last_printed = naive

    buf = io.BytesIO()
    doc.save(buf)
    return _normalise_zip(buf.getvalue())


def build() -> None:
    PDF_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOCX_PATH.parent.mkdir(parents=True, exist_ok=True)
    PDF_PATH.write_bytes(build_pdf_bytes())
    DOCX_PATH.write_bytes(build_docx_bytes())
    for p in (PDF_PATH, DOCX_PATH):
        print(f"wrote {p.relative_to(HERE.parent)} ({p.stat().st_size} bytes)")


# --------------------------------------------------------------------------
# Text extraction and checks
# --------------------------------------------------------------------------
class _HTMLText(HTMLParser):
    BLOCK = {"p", "div", "li", "ul", "ol", "table", "thead", "tbody", "tr", "td", "th",
             "h1", "h2", "h3", "h4", "h5", "h6", "title", "br", "body", "head", "section"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def extract_text(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        parser = _HTMLText()
        parser.feed(path.read_text(encoding="utf-8"))
        return "".join(parser.parts)
    if suffix in (".md", ".txt"):
        return path.read_text(encoding="utf-8")
    if suffix == ".pdf":
        from pdfminer.high_level import extract_text as pdf_text
        return pdf_text(str(path))
    if suffix == ".docx":
        from docx import Document
        doc = Document(str(path))
        parts = [p.text for p in doc.paragraphs]
        for table in doc.tables:
            for row in table.rows:
                parts.extend(cell.text for cell in row.cells)
        return "\n".join(parts)
    raise ValueError(f"unsupported file type: {path}")


def norm(text: str) -> str:
    return " ".join(text.split())


def check() -> int:
    errors: list[str] = []
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file())
    texts = {p.relative_to(CORPUS).as_posix(): norm(extract_text(p)) for p in files}

    # Notice near the top of every document.
    for rel, text in texts.items():
        pos = text.find(NOTICE_CORE)
        if pos < 0 or (NOTICE not in text and NOTICE_LATIN1 not in text):
            errors.append(f"{rel}: fictional-content notice missing")
        elif pos > 400:
            errors.append(f"{rel}: notice not near the top (offset {pos})")

    # No README inside the corpus.
    for rel in texts:
        if Path(rel).name.lower().startswith("readme"):
            errors.append(f"{rel}: README files must not be inside corpus/")

    # Size budget.
    total = sum(p.stat().st_size for p in files)
    if total >= MAX_CORPUS_BYTES:
        errors.append(f"corpus is {total} bytes, limit {MAX_CORPUS_BYTES}")

    # Binaries are up to date and deterministic.
    for path, builder in ((PDF_PATH, build_pdf_bytes), (DOCX_PATH, build_docx_bytes)):
        if not path.exists():
            errors.append(f"{path.name}: missing (run build_corpus.py)")
        elif path.read_bytes() != builder():
            errors.append(f"{path.name}: differs from a fresh build (rebuild, or non-deterministic)")

    # PDF: at least two pages.
    if PDF_PATH.exists():
        from pdfminer.high_level import extract_pages
        n_pages = sum(1 for _ in extract_pages(str(PDF_PATH)))
        if n_pages < 2:
            errors.append(f"{PDF_PATH.name}: {n_pages} page(s), need >= 2")
    # DOCX: real heading styles.
    if DOCX_PATH.exists():
        from docx import Document
        styles = {p.style.name for p in Document(str(DOCX_PATH)).paragraphs}
        for needed in ("Heading 1", "Heading 2"):
            if needed not in styles:
                errors.append(f"{DOCX_PATH.name}: no paragraph with style {needed!r}")

    # Queries.
    lines = [l for l in QUERIES.read_text(encoding="utf-8").splitlines() if l.strip()]
    if not 12 <= len(lines) <= 16:
        errors.append(f"queries.jsonl has {len(lines)} lines, expected 12-16")
    for i, line in enumerate(lines, 1):
        try:
            q = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"query {i}: invalid JSON ({exc})")
            continue
        if set(q) != {"query", "source", "expect"}:
            errors.append(f"query {i}: keys must be query/source/expect, got {sorted(q)}")
            continue
        src, expect = q["source"], norm(q["expect"])
        if len(q["expect"]) > 60:
            errors.append(f"query {i}: expect longer than 60 characters")
        if src not in texts:
            errors.append(f"query {i}: source {src!r} not found in corpus")
            continue
        if expect not in texts[src]:
            errors.append(f"query {i}: expect {expect!r} not in {src}")
        others = [rel for rel, t in texts.items() if rel != src and expect in t]
        if others:
            errors.append(f"query {i}: expect {expect!r} also occurs in {others}")

    print(f"checked {len(files)} corpus files ({total} bytes) and {len(lines)} queries")
    for e in errors:
        print("ERROR:", e)
    if not errors:
        print("OK")
    return 1 if errors else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="verify the corpus and samples/queries.jsonl instead of building")
    args = ap.parse_args(argv)
    if args.check:
        return check()
    build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
