"""Turn a file into typed blocks of text with unstructured."""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.formats import Format
from lectern.errors import CorruptFileError, EmptyFileError
from lectern.optional import require

# Page furniture and non-text elements carry nothing worth retrieving.
_SKIP = {"Header", "Footer", "PageBreak", "PageNumber", "Image", "Figure", "FigureCaption"}
_KIND = {"Title": "title", "ListItem": "list", "Table": "table", "CodeSnippet": "code"}
_HTML_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class Block:
    text: str
    kind: str  # "title" | "text" | "list" | "table" | "code"
    page: int | None = None
    depth: int | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    title: str
    blocks: list[Block]


def _quiet_unstructured() -> None:
    # unstructured phones home for analytics and prints an advert on import; neither is
    # wanted on a server, and the network call cannot succeed on offline machines.
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
    os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")


# The languages unstructured records on each element. Left to detect them ("auto", its
# default), it runs langdetect over the whole text, and when that finds more than one
# language, once more per element: minutes for a document of 78,000 paragraphs. Lectern
# never reads the languages it records (its encoder is English), and for these formats
# they change nothing else: element types are judged with English word lists either way.
# For a PDF they also pick the OCR language of the hi_res and ocr_only strategies.
LANGUAGES = ["eng"]


def _elements(path: Path, fmt: Format, pdf_strategy: str) -> list[Any]:
    _quiet_unstructured()
    name = str(path)
    if fmt.name == "pdf":
        pdf = require("unstructured.partition.pdf", "ingest")
        return pdf.partition_pdf(filename=name, strategy=pdf_strategy, languages=LANGUAGES)
    if fmt.name == "docx":
        docx = require("unstructured.partition.docx", "ingest")
        return docx.partition_docx(filename=name, languages=LANGUAGES)
    if fmt.name == "html":
        html = require("unstructured.partition.html", "ingest")
        return html.partition_html(filename=name, languages=LANGUAGES)
    if fmt.name == "markdown":
        md = require("unstructured.partition.md", "ingest")
        return md.partition_md(filename=name, languages=LANGUAGES)
    text = require("unstructured.partition.text", "ingest")
    return text.partition_text(filename=name, languages=LANGUAGES)


def warm_imports() -> None:
    """Import every partitioner now (seconds: they load torch), so a first file need not wait."""
    _quiet_unstructured()
    for fmt in ("pdf", "docx", "html", "md", "text"):
        try:
            importlib.import_module(f"unstructured.partition.{fmt}")
        except ImportError:  # the `ingest` extra is missing: the parse itself says so
            return


def _html_title(path: Path) -> str | None:
    with path.open("rb") as f:
        m = _HTML_TITLE.search(f.read(65536))
    if not m:
        return None
    from html import unescape

    title = " ".join(unescape(m.group(1).decode("utf-8", "replace")).split())
    return title or None


def partition(path: Path, fmt: Format, pdf_strategy: str = "fast") -> Parsed:
    try:
        elements = _elements(path, fmt, pdf_strategy)
    except (ValueError, TypeError, KeyError, OSError, UnicodeDecodeError) as exc:
        raise CorruptFileError(str(path), f"cannot parse {fmt.name}: {exc}") from exc
    except Exception as exc:  # parser libraries raise their own types (PDFSyntaxError, ...)
        if type(exc).__module__.startswith(("pdfminer", "docx", "lxml", "pypdf", "zipfile")):
            raise CorruptFileError(str(path), f"cannot parse {fmt.name}: {exc}") from exc
        raise
    blocks = []
    for el in elements:
        category = type(el).__name__
        text = " ".join((el.text or "").split())
        if category in _SKIP or not text:
            continue
        blocks.append(
            Block(
                text=text,
                kind=_KIND.get(category, "text"),
                page=getattr(el.metadata, "page_number", None),
                depth=getattr(el.metadata, "category_depth", None),
            )
        )
    if not blocks:
        raise EmptyFileError(str(path), f"no extractable text in this {fmt.name} file")
    title = (
        (_html_title(path) if fmt.name == "html" else None)
        or next((b.text for b in blocks if b.kind == "title"), None)
        or path.stem
    )
    return Parsed(title=title[:300], blocks=blocks)
