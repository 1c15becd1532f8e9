"""Writing files and folders so a reader sees the old content or the new, never half."""

from pathlib import Path

import pytest

from lectern.files import atomic_write, replace_folder, staging_folder


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
