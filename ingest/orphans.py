"""Uploaded files that no document came of: what a crash or a kill in mid-ingest leaves."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


def remove_orphans(folder: Path, sources: Iterable[str]) -> list[Path]:
    """Remove the files under `folder` no source names, `.part` files, then empty folders.

    `sources` are the stored documents' sources, resolved absolute paths as the ingest
    stores them. Only call this while nothing is being uploaded into `folder`: a file
    whose ingest is under way has no document yet.
    """
    if not folder.is_dir():
        return []
    root = folder.resolve()
    kept = set(sources)
    removed = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and (path.name.endswith(".part") or str(path) not in kept):
            path.unlink(missing_ok=True)
            removed.append(path)
    for sub in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):  # a folder that holds kept files stays
            sub.rmdir()  # deepest first, so a folder emptied by its children goes too
    if removed:
        log.warning(
            "removed %d upload(s) no document came of (left by an interrupted ingest): %s",
            len(removed), ", ".join(p.relative_to(root).as_posix() for p in removed),
        )
    return removed
