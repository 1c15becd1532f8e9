"""Writing a file or a folder so a reader (or a crash) sees the old content or the new,
never half; a folder's replacement cut short by a crash is undone by recover_folder."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write` on a temporary file beside `path`, fsync it, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staging_folder(target: Path) -> Iterator[Path]:
    """A new, empty folder beside `target` in which to build what will replace it.

    Beside, so that replace_folder is a rename within one file system. The block moves it
    into place with replace_folder; if the block raises, the folder is removed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.part-", dir=target.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_folder(staging: Path, target: Path) -> None:
    """Rename the complete folder `staging` to `target`, replacing any folder there.

    First recovers what an interrupted replacement left (recover_folder). An existing
    `target` is then renamed aside to `.<name>.old-<pid>` beside it, the new one renamed
    into place, and the old one renamed to `.<name>.gone-<pid>` and removed. What holds
    at every moment, a crash included:

    - `target` is the old folder or the new one, except between the first two renames,
      when it is absent and the old folder is whole at `.<name>.old-<pid>`;
    - if putting the new one in place fails, the old one is renamed back before the
      error is raised (the new one stays at `staging`);
    - a crash between those renames leaves `target` absent and the old folder at
      `.<name>.old-<pid>`; a crash after them can leave it there or, partly removed, at
      `.<name>.gone-<pid>`. recover_folder(target), which the next replace_folder calls
      first and readers call before they look for `target`, renames the first back and
      removes the rest.

    One writer per `target` at a time.
    """
    recover_folder(target)
    key = target.absolute()
    with _replacing_lock:
        _replacing.add(key)
    try:
        if not target.exists():
            staging.rename(target)
            return
        old, gone = (_leftover(target, kind, os.getpid()) for kind in (_OLD, _GONE))
        shutil.rmtree(old, ignore_errors=True)  # left by a crashed process of our id
        target.rename(old)
        try:
            staging.rename(target)
        except BaseException:
            old.rename(target)
            raise
        # Renamed before removal, so a folder named `.old-` is always whole.
        shutil.rmtree(gone, ignore_errors=True)
        try:
            old.rename(gone)
        except OSError:
            gone = old
        shutil.rmtree(gone, ignore_errors=True)
    finally:
        with _replacing_lock:
            _replacing.discard(key)


_OLD, _GONE = "old", "gone"  # a whole previous folder; one being removed
# The targets this process is replacing right now: their leftovers are not leftovers yet.
_replacing: set[Path] = set()
_replacing_lock = threading.Lock()


def _leftover(target: Path, kind: str, pid: int) -> Path:
    return target.with_name(f".{target.name}.{kind}-{pid}")


def _leftovers(target: Path, kind: str) -> list[tuple[Path, int]]:
    """The folders of `kind` replace_folder left beside `target`, each with its pid."""
    prefix = f".{target.name}.{kind}-"
    try:
        beside = list(target.parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [(p, int(p.name[len(prefix):])) for p in beside
            if p.name.startswith(prefix) and p.name[len(prefix):].isdigit() and p.is_dir()]


def _in_use(target: Path, pid: int) -> bool:
    """Whether a replace_folder of `target` by process `pid` may still be running."""
    if pid == os.getpid():
        with _replacing_lock:
            return target.absolute() in _replacing
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another user
        return True
    except OSError:
        return False
    return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile
        return float("-inf")


def recover_folder(target: Path) -> bool:
    """Undo what an interrupted replace_folder left of `target`; True if it restored one.

    When `target` is missing and a previous folder of it is left (`.<name>.old-<pid>`
    beside it, whose process is gone), the newest (by modification time) is renamed back
    to `target`. Every other leftover of a process that is gone (previous folders beside
    an existing `target`, `.<name>.gone-<pid>` ones being removed) is removed. What a
    replacement that is still running left is its own, and is left alone.
    """
    old = [p for p, pid in _leftovers(target, _OLD) if not _in_use(target, pid)]
    gone = [p for p, pid in _leftovers(target, _GONE) if not _in_use(target, pid)]
    restored = False
    if old and not target.exists():
        newest = max(old, key=lambda p: (_mtime(p), p.name))
        try:
            newest.rename(target)
            restored = True
            log.warning("%s was missing after an interrupted replacement; restored the "
                        "previous folder from %s", target, newest.name)
        except OSError:
            if not target.exists():  # not put back by another reader meanwhile
                raise
        old.remove(newest)
    for leftover in old + gone:
        shutil.rmtree(leftover, ignore_errors=True)
    return restored
