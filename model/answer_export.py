"""The answer log exported for staff: CSV for a spreadsheet, JSONL for scripts.

One row per answer with every `LoggedAnswer` field, in the type's order. JSONL keeps the
values as they are; CSV writes lists and the timings as JSON, booleans as true/false,
None as an empty cell.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TextIO

from lectern.types import LoggedAnswer

FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(LoggedAnswer))
# Text anyone can type (the public ask route, the feedback comment). A spreadsheet runs a
# cell that starts with one of these as a formula, so the CSV puts a ' before it (OWASP's
# advice); the JSONL, read by programs, keeps the text exactly.
_FREE_TEXT = frozenset({"question", "standalone_question", "answer", "comment"})
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def as_record(entry: LoggedAnswer) -> dict[str, Any]:
    """`entry` as a JSON-ready dict: datetimes as ISO text."""
    return {name: _json_value(getattr(entry, name)) for name in FIELDS}


def _csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    text = _json_value(value) if isinstance(value, datetime) else str(value)
    if name in _FREE_TEXT and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def write_csv(entries: Iterable[LoggedAnswer], out: TextIO) -> int:
    """The entries as CSV with a header row; how many rows were written. Open a file
    for it with newline="" (the csv module writes its own line ends)."""
    writer = csv.writer(out)
    writer.writerow(FIELDS)
    n = 0
    for entry in entries:
        writer.writerow([_csv_cell(name, getattr(entry, name)) for name in FIELDS])
        n += 1
    return n


def write_jsonl(entries: Iterable[LoggedAnswer], out: TextIO) -> int:
    """The entries as JSON lines, one object per answer; how many were written."""
    n = 0
    for entry in entries:
        out.write(json.dumps(as_record(entry), ensure_ascii=False) + "\n")
        n += 1
    return n
