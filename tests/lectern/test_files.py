"""Writing files and folders so a reader sees the old content or the new, never half."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lectern.files import atomic_write, recover_folder, replace_folder, staging_folder


def folder(path: Path, content: str) -> Path:
    path.mkdir(parents=True)
    (path / "weights.bin").write_text(content)
    return path


def leftovers(parent: Path, *keep: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name not in keep)


def test_atomic_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("old")
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_text() == "new"

    def half(f):
        f.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(path, half)
    assert path.read_text() == "new"
    assert leftovers(tmp_path) == ["record.json"]


def test_a_new_folder_is_renamed_into_place(tmp_path):
    staging = folder(tmp_path / "staging", "new")
    replace_folder(staging, tmp_path / "model")
    assert (tmp_path / "model" / "weights.bin").read_text() == "new"
    assert leftovers(tmp_path) == ["model"]


def test_an_existing_folder_is_replaced_and_the_old_one_removed(tmp_path):
    folder(tmp_path / "model", "old")
    (tmp_path / "model" / "only-in-old.txt").write_text("x")
    replace_folder(folder(tmp_path / "staging", "new"), tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["weights.bin"]
    assert (tmp_path / "model" / "weights.bin").read_text() == "new"
    assert leftovers(tmp_path) == ["model"]


def test_a_failed_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = folder(tmp_path / "model", "old")
    staging = folder(tmp_path / "staging", "new")
    rename = Path.rename

    def failing(self: Path, to: Path) -> Path:
        if self == staging:
            raise OSError("disk full")
        return rename(self, to)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError, match="disk full"):
        replace_folder(staging, target)
    assert (target / "weights.bin").read_text() == "old"
    assert (staging / "weights.bin").read_text() == "new", "the new one is not lost either"
    assert leftovers(tmp_path) == ["model", "staging"]


def test_a_staging_folder_is_fresh_beside_its_target_and_removed_on_error(tmp_path):
    target = tmp_path / "models" / "encoder-v2"
    with staging_folder(target) as staging:
        assert staging.parent == target.parent and staging.is_dir()
        assert not list(staging.iterdir())
        (staging / "weights.bin").write_text("new")
        replace_folder(staging, target)
    assert (target / "weights.bin").read_text() == "new"
    assert leftovers(target.parent) == ["encoder-v2"]

    with pytest.raises(KeyboardInterrupt), staging_folder(target) as staging:
        (staging / "weights.bin").write_text("half")
        raise KeyboardInterrupt
    assert not staging.exists()
    assert (target / "weights.bin").read_text() == "new"
    assert leftovers(target.parent) == ["encoder-v2"]


class Crash(BaseException):
    """The process dying: nothing after it runs, no handler puts anything back."""


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def crash_between_the_renames(monkeypatch, staging: Path) -> None:
    """Path.rename as it would behave if the process died as it renamed `staging`."""
    rename = Path.rename
    crashed = []

    def dying(self: Path, to: Path) -> Path:
        if crashed or self == staging:
            crashed.append(self)
            raise Crash
        return rename(self, to)

    monkeypatch.setattr(Path, "rename", dying)


def crashed_replacement(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """(target, staging) after replace_folder died between its two renames."""
    target = folder(tmp_path / "model", "old")
    staging = folder(tmp_path / "staging", "new")
    with monkeypatch.context() as patch:
        crash_between_the_renames(patch, staging)
        with pytest.raises(Crash):
            replace_folder(staging, target)
    return target, staging


def test_a_crash_between_the_renames_is_recovered(tmp_path, monkeypatch, caplog):
    target, _ = crashed_replacement(tmp_path, monkeypatch)
    # What the crash left: no target, the old folder aside.
    assert not target.exists()
    assert leftovers(tmp_path) == [f".model.old-{os.getpid()}", "staging"]

    with caplog.at_level(logging.WARNING, logger="lectern.files"):
        assert recover_folder(target) is True
    assert (target / "weights.bin").read_text() == "old"
    assert leftovers(tmp_path) == ["model", "staging"]
    assert "restored" in caplog.text and str(target) in caplog.text
    assert recover_folder(target) is False, "nothing left to recover"


def test_the_next_replacement_recovers_first(tmp_path, monkeypatch):
    target, staging = crashed_replacement(tmp_path, monkeypatch)
    replace_folder(staging, target)
    assert (target / "weights.bin").read_text() == "new"
    assert leftovers(tmp_path) == ["model"]


def test_the_newest_previous_folder_is_restored_and_the_rest_removed(tmp_path):
    target = tmp_path / "model"
    older = folder(tmp_path / f".model.old-{dead_pid()}", "older")
    newer = folder(tmp_path / f".model.old-{dead_pid()}", "newer")
    half = folder(tmp_path / f".model.gone-{dead_pid()}", "half removed")
    os.utime(older, (1_000, 1_000))
    os.utime(newer, (2_000, 2_000))
    assert recover_folder(target) is True
    assert (target / "weights.bin").read_text() == "newer"
    assert leftovers(tmp_path) == ["model"]
    assert not half.exists()


def test_leftovers_beside_an_existing_folder_are_removed(tmp_path):
    target = folder(tmp_path / "model", "current")
    folder(tmp_path / f".model.old-{dead_pid()}", "previous")
    folder(tmp_path / f".model.gone-{dead_pid()}", "half removed")
    folder(tmp_path / ".other.old-1", "another folder's")
    assert recover_folder(target) is False
    assert (target / "weights.bin").read_text() == "current"
    assert leftovers(tmp_path) == [".other.old-1", "model"]


def test_a_running_replacement_s_folder_is_left_alone(tmp_path):
    # Another process, still running, is between its two renames: not a leftover.
    target = tmp_path / "model"
    aside = folder(tmp_path / f".model.old-{os.getppid()}", "old")
    assert recover_folder(target) is False
    assert not target.exists() and (aside / "weights.bin").read_text() == "old"


def test_recovering_a_folder_in_a_missing_parent_does_nothing(tmp_path):
    assert recover_folder(tmp_path / "missing" / "model") is False
