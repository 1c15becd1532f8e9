"""Which files Lectern reads, and the checks a file passes before it is parsed."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from ingest.limits import check_zip_directory
from lectern.errors import (
    CorruptFileError,
    EmptyFileError,
    FileTooLargeError,
    UnsupportedFileTypeError,
)


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    media_type: str
    binary: bool


FORMATS: dict[str, Format] = {
    ".pdf": Format("pdf", "application/pdf", True),
    ".docx": Format(
        "docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", True
    ),
    ".html": Format("html", "text/html", False),
    ".htm": Format("html", "text/html", False),
    ".md": Format("markdown", "text/markdown", False),
    ".markdown": Format("markdown", "text/markdown", False),
    ".txt": Format("text", "text/plain", False),
    ".text": Format("text", "text/plain", False),
}


def supported(path: Path) -> bool:
    return path.suffix.lower() in FORMATS


def format_of(name: str) -> Format:
    """The format a file name's suffix says, or UnsupportedFileTypeError."""
    suffix = Path(name).suffix.lower()
    fmt = FORMATS.get(suffix)
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise UnsupportedFileTypeError(
            name, f"unsupported file type {suffix or '(none)'!r}; supported: {known}"
        )
    return fmt


def check_file(path: Path, max_bytes: int) -> Format:
    """Return the file's format, or raise the IngestError that says what is wrong with it."""
    fmt = format_of(str(path))
    size = path.stat().st_size
    if size == 0:
        raise EmptyFileError(str(path), "file is empty")
    if size > max_bytes:
        raise FileTooLargeError(
            str(path), f"file is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.1f} MiB limit"
        )
    with path.open("rb") as f:
        head = f.read(8192)
    if fmt.name == "pdf" and b"%PDF-" not in head[:1024]:
        raise CorruptFileError(str(path), "not a PDF (no %PDF header)")
    if fmt.name == "docx":
        check_zip_directory(path)
        try:
            with zipfile.ZipFile(path) as z:
                if "word/document.xml" not in z.namelist():
                    raise CorruptFileError(str(path), "not a DOCX (no word/document.xml)")
        except zipfile.BadZipFile as exc:
            raise CorruptFileError(str(path), "not a DOCX (not a zip archive)") from exc
    if not fmt.binary:
        if b"\x00" in head:
            raise CorruptFileError(str(path), f"binary content in a {fmt.name} file")
        if not head.strip():
            raise EmptyFileError(str(path), "file holds only whitespace")
    return fmt
