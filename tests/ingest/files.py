"""Files that cost a parser dearly, built in the test that needs them."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

PARAGRAPH = b"<w:p><w:r><w:t>x</w:t></w:r></w:p>"
WORDS = [
    "students", "may", "retake", "an", "exam", "twice", "each", "year", "unless", "the",
    "board", "decides", "otherwise", "and", "late", "fees", "apply", "to", "every",
    "registration", "after", "the", "first", "week", "of", "the", "autumn", "term",
]


def docx_with_body(path: Path, body: bytes, level: int = 9) -> Path:
    """A real DOCX (python-docx's template) whose <w:body> holds `body`."""
    import docx

    template = io.BytesIO()
    docx.Document().save(template)
    with zipfile.ZipFile(template) as src, zipfile.ZipFile(
        path, "w", zipfile.ZIP_DEFLATED, compresslevel=level
    ) as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "word/document.xml":
                head, _, tail = data.partition(b"<w:body>")
                data = head + b"<w:body>" + body + tail
            out.writestr(item.filename, data)
    return path


def zip_bomb_docx(path: Path, mib: float = 8) -> Path:
    """The issue's bomb: ~8 MiB of one-letter paragraphs that deflate over 300:1."""
    return docx_with_body(path, PARAGRAPH * int(mib * 2**20 / len(PARAGRAPH)))


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "." for _ in
            range(count)]


def docx_of_paragraphs(path: Path, count: int) -> Path:
    """A DOCX of `count` varied paragraphs: it deflates like a real one (under 10:1)."""
    body = b"".join(f"<w:p><w:r><w:t>{s}</w:t></w:r></w:p>".encode() for s in sentences(count))
    return docx_with_body(path, body)


def slow_text(path: Path, paragraphs: int) -> Path:
    """Plain text under every cap that parses slowly for a real reason.

    partition_text tags each paragraph's parts of speech: about 2 ms a paragraph on 2 cores.
    """
    path.write_text("\n\n".join(sentences(paragraphs)))
    return path
