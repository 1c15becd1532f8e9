"""Caps on what a file may expand to when parsed, checked before unstructured opens it.

A DOCX is a zip of XML: a 26 KB upload can hold 8 MiB of XML in 240,000 paragraphs, which
unstructured then spends minutes on. Its central directory is read first (the declared sizes
refuse an honest bomb at once); then every member is inflated in a bounded stream, counting
bytes and paragraphs, because a header's sizes can lie. Each count stops at its cap, so
refusing a file costs at most the cap's worth of inflating. An HTML file is not compressed
(its size is capped by ingest.max_file_mb); its tags are counted the same way.
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from lectern.errors import CorruptFileError, ParseLimitError
from lectern.settings import IngestSettings

# Central directories past these are a DoS of their own: zipfile reads the whole directory
# and makes a Python object of each entry before anything can be checked. A real DOCX has
# a few dozen entries in a few KB.
MAX_DIRECTORY_BYTES = 2**20
MAX_ZIP_ENTRIES = 10_000
_END_RECORD = struct.Struct("<4s4H2LH")  # the zip's end of central directory record
# Parts smaller than this may inflate far past any sane ratio (3,000 one-letter paragraphs
# make 100 KB of XML that deflates 116:1) and still cost nothing to parse.
RATIO_GRACE_BYTES = 2**20
_CHUNK = 2**20
# What zipfile raises on archives it cannot read (encrypted members raise RuntimeError).
_ZIP_ERRORS = (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, zlib.error)


class _Matches:
    """Counts a fixed-width pattern across chunks: a match cut by a chunk boundary counts once."""

    def __init__(self, pattern: bytes, width: int) -> None:
        self._pattern = re.compile(pattern)
        self._keep = width - 1  # too short to hold a whole match, so none is counted twice
        self._tail = b""
        self.count = 0

    def feed(self, chunk: bytes) -> int:
        self.count += len(self._pattern.findall(self._tail + chunk))
        self._tail = chunk[-self._keep :]
        return self.count


def _paragraphs() -> _Matches:
    return _Matches(rb"<w:p[\s>/]", 5)  # WordprocessingML's paragraph; never <w:pPr>


def _html_tags() -> _Matches:
    return _Matches(rb"<[A-Za-z]", 2)  # an upper bound: tags in scripts and comments count too


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_unzipped_bytes: int
    max_ratio: float
    max_elements: int

    def __post_init__(self) -> None:
        if self.max_unzipped_bytes < 1 or self.max_ratio <= 1 or self.max_elements < 1:
            raise ValueError(f"parse limits must be positive (ratio above 1), got {self}")

    @classmethod
    def of(cls, settings: IngestSettings) -> ParseLimits:
        return cls(
            max_unzipped_bytes=int(settings.max_unzipped_mb * 2**20),
            max_ratio=settings.max_compression_ratio,
            max_elements=settings.max_elements,
        )


def check_limits(path: Path, format_name: str, limits: ParseLimits) -> None:
    """ParseLimitError if parsing `path` (an ingest.formats name) would pass a cap;
    CorruptFileError for a broken zip."""
    if format_name == "docx":
        _check_zip(path, limits)
    elif format_name == "html":
        tags = _html_tags()
        with path.open("rb") as f:
            while tags.count <= limits.max_elements and (chunk := f.read(_CHUNK)):
                tags.feed(chunk)
        if tags.count > limits.max_elements:
            raise ParseLimitError(
                str(path), f"holds over {limits.max_elements:,} HTML elements, the limit per file"
            )


def check_zip_directory(path: Path) -> None:
    """ParseLimitError if the zip's central directory is too big to be read at all.

    Read from its end record, before zipfile reads the directory. A file without one is
    left for zipfile to refuse.
    """
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - _END_RECORD.size - 65535))  # the record, and a comment after it
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _END_RECORD.size > len(tail):
        return
    directory_bytes = _END_RECORD.unpack_from(tail, at)[5]  # 0xFFFFFFFF for ZIP64: refused
    if directory_bytes > MAX_DIRECTORY_BYTES:
        raise ParseLimitError(
            str(path),
            f"its zip directory is {_mib(directory_bytes)}, over the "
            f"{_mib(MAX_DIRECTORY_BYTES)} limit",
        )


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _check_zip(path: Path, limits: ParseLimits) -> None:
    shown = str(path)
    try:
        with zipfile.ZipFile(path) as z:
            members = [i for i in z.infolist() if not i.is_dir()]
            if len(members) > MAX_ZIP_ENTRIES:
                raise ParseLimitError(
                    shown, f"holds {len(members):,} zip entries, over the {MAX_ZIP_ENTRIES:,} limit"
                )
            _check_declared(shown, members, limits)
            _check_inflated(shown, z, members, limits)
    except _ZIP_ERRORS as exc:  # e.g. the CRC check that a lying size fails once inflated
        raise CorruptFileError(shown, f"not a valid DOCX ({exc})") from exc


def _too_big(shown: str, limits: ParseLimits) -> ParseLimitError:
    cap = _mib(limits.max_unzipped_bytes)
    return ParseLimitError(shown, f"expands to over {cap} when unzipped, the limit per file")


def _too_dense(shown: str, name: str, ratio: float, limits: ParseLimits) -> ParseLimitError:
    return ParseLimitError(
        shown,
        f"its part {name} inflates {ratio:,.0f}:1, over the {limits.max_ratio:g}:1 limit "
        "(a zip bomb?)",
    )


def _check_declared(shown: str, members: list[zipfile.ZipInfo], limits: ParseLimits) -> None:
    if sum(i.file_size for i in members) > limits.max_unzipped_bytes:
        raise _too_big(shown, limits)
    for i in members:
        ratio = i.file_size / max(i.compress_size, 1)
        if i.file_size > RATIO_GRACE_BYTES and ratio > limits.max_ratio:
            raise _too_dense(shown, i.filename, ratio, limits)


def _check_inflated(
    shown: str, z: zipfile.ZipFile, members: list[zipfile.ZipInfo], limits: ParseLimits
) -> None:
    total = paragraphs = 0  # over all members: headers and footnotes hold paragraphs too
    for info in members:
        dense_at = max(RATIO_GRACE_BYTES, limits.max_ratio * max(info.compress_size, 1))
        found = _paragraphs() if info.filename.endswith(".xml") else None
        size = 0
        with z.open(info) as member:
            while chunk := member.read(_CHUNK):
                size += len(chunk)
                total += len(chunk)
                if total > limits.max_unzipped_bytes:
                    raise _too_big(shown, limits)
                if size > dense_at:
                    ratio = size / max(info.compress_size, 1)
                    raise _too_dense(shown, info.filename, ratio, limits)
                if found is not None and paragraphs + found.feed(chunk) > limits.max_elements:
                    raise ParseLimitError(
                        shown, f"holds over {limits.max_elements:,} paragraphs, the limit per file"
                    )
        paragraphs += found.count if found is not None else 0
