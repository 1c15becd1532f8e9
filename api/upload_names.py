"""Where an uploaded file is kept: its multipart file name made into a safe relative path.

A folder upload sends each file as "folder/sub/name.md". The folders are kept, so two files
of one name in different folders are two documents, while the same relative path uploaded
again replaces the earlier one.

The rules, applied in this order:
- backslashes are folder separators;
- an absolute name ("/home/me/a.md", "C:\\Users\\me\\a.md", as some browsers send) is a
  client's full path, not folders the admin chose: only its last part is kept;
- a name ending in "/", "." or ".." names a folder: refused;
- "." and empty parts are dropped and ".." removes the folder before it (never more than
  there are), so the path stays under the upload folder;
- each part keeps letters, digits and "._- " (anything else becomes "_") and loses leading
  and trailing spaces and dots (so no part is hidden or "..");
- at most MAX_FOLDERS folders, or the name is refused;
- a folder is cut to MAX_FOLDER_BYTES, a file name to MAX_NAME_BYTES (UTF-8, as file
  systems count), the file name before its extension, which is kept whole: the format
  checked is the format of the name stored, and so of the file served.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from lectern.errors import InvalidRequestError

MAX_FOLDERS = 8
MAX_FOLDER_BYTES = 100
# Under the usual 255-byte limit, with room for the "." and ".part" of the temporary file.
MAX_NAME_BYTES = 200
# The longest extension kept whole when a name is cut; no supported one comes close.
MAX_SUFFIX_BYTES = 16

_DRIVE = re.compile(r"^[A-Za-z]:")


def _clean(part: str) -> str:
    kept = "".join(ch if ch.isalnum() or ch in "._- " else "_" for ch in part.strip())
    return kept.strip(" .")


def _cut(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8, never inside a character."""
    return text.encode()[:max_bytes].decode("utf-8", "ignore")


def _cut_name(name: str, filename: str) -> str:
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    suffix = PurePosixPath(name).suffix
    if not suffix or len(suffix.encode()) > MAX_SUFFIX_BYTES:
        raise InvalidRequestError(
            f"unusable file name {filename!r}: over {MAX_NAME_BYTES} bytes, "
            "without an extension short enough to keep"
        )
    stem = _cut(name[: -len(suffix)], MAX_NAME_BYTES - len(suffix.encode())).rstrip(" .")
    return stem + suffix


def upload_path(filename: str) -> PurePosixPath:
    """The path under the upload folder that an upload named `filename` is kept at.

    InvalidRequestError when nothing usable is left of the name, or it is too deep.
    """
    given = filename.replace("\\", "/")
    parts = given.split("/")
    if parts[-1].strip() in ("", ".", ".."):  # a folder, not a file
        raise InvalidRequestError(f"unusable file name {filename!r}")
    if given.startswith("/") or _DRIVE.match(given):
        parts = [_DRIVE.sub("", parts[-1])]
    kept: list[str] = []
    for part in parts:
        if part.strip() in ("", "."):
            continue
        if part.strip() == "..":
            if kept:
                kept.pop()
            continue
        kept.append(part)
    name = _clean(kept[-1]) if kept else ""
    if not name:
        raise InvalidRequestError(f"unusable file name {filename!r}")
    folders = [c for c in map(_clean, kept[:-1]) if c]
    if len(folders) > MAX_FOLDERS:
        raise InvalidRequestError(
            f"file name {filename!r} is {len(folders)} folders deep; the limit is {MAX_FOLDERS}"
        )
    folders = [_cut(f, MAX_FOLDER_BYTES).rstrip(" .") for f in folders]
    return PurePosixPath(*folders, _cut_name(name, filename))
