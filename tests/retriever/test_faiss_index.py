import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO
from unittest import mock

import numpy as np
import pytest

from lectern.files import atomic_write
from lectern.settings import RetrievalSettings
from retriever.faiss_choice import AUTO_FLAT_MAX, AUTO_HNSW_MAX, auto_kind, hnsw_bytes
from retriever.faiss_index import FaissIndex, _write_indexes


class VectorStore:
    """Just the part of DocumentStore the index reads."""

    def __init__(self, vectors: dict[int, np.ndarray]) -> None:
        self.data = vectors

    def chunk_ids(self) -> np.ndarray:
        return np.array(sorted(self.data), dtype=np.int64)

    def vectors(self, ids, encoder):
        return np.stack([self.data[int(i)] for i in ids]) if len(ids) else np.zeros((0, 8))


def unit(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf", "ivfpq", "auto"])
def test_sync_adds_and_removes_and_search_finds_exact_vectors(kind):
    rng = np.random.default_rng(0)
    vecs = unit(rng, 200)
    store = VectorStore({i + 10: vecs[i] for i in range(200)})
    index = FaissIndex(8, "enc", kind, ivf_nprobe=64)
    assert index.sync(store) == (200, 0)
    ids, scores = index.search(vecs[5], 3)
    assert ids[0] == 15 and scores[0] == pytest.approx(1.0, abs=1e-4)
    assert list(scores) == sorted(scores, reverse=True)

    for i in range(10, 60):
        del store.data[i]
    store.data[500] = vecs[0]
    assert index.sync(store) == (1, 50)
    assert len(index) == 151
    assert set(index.ids.tolist()) == set(store.data)
    assert index.search(vecs[0], 1)[0][0] == 500  # id 10 held the same vector; it is gone
    assert index.sync(store) == (0, 0)


def test_empty_index_and_bad_arguments():
    index = FaissIndex(8, "enc")
    assert index.search(np.ones(8), 5)[0].size == 0
    index.sync(VectorStore({}))
    assert len(index) == 0 and index.search(np.ones(8), 5)[0].size == 0
    with pytest.raises(ValueError, match="unknown index type 'lsh'"):
        FaissIndex(8, "enc", "lsh")
    with pytest.raises(ValueError, match="dimension must be positive, got 0"):
        FaissIndex(0, "enc")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf", "ivfpq", "auto"])
def test_save_load_roundtrip(tmp_path, kind):
    rng = np.random.default_rng(1)
    store = VectorStore({i: v for i, v in enumerate(unit(rng, 120))})
    index = FaissIndex(8, "enc", kind)
    index.sync(store)
    index.save(tmp_path)
    loaded = FaissIndex(8, "enc", kind)
    assert loaded.load(tmp_path)
    assert np.array_equal(np.sort(loaded.ids), store.chunk_ids())
    q = store.data[7]
    assert loaded.search(q, 1)[0][0] == index.search(q, 1)[0][0] == 7
    assert not FaissIndex(8, "other-encoder", kind).load(tmp_path)
    assert not FaissIndex(16, "enc", kind).load(tmp_path)


def test_a_save_whose_renames_fail_raises_and_leaves_the_previous_index(tmp_path):
    rng = np.random.default_rng(2)
    store = VectorStore({i: v for i, v in enumerate(unit(rng, 20))})
    index = FaissIndex(8, "enc")
    index.sync(store)
    index.save(tmp_path)
    store.data[99] = unit(rng, 1)[0]
    index.sync(store)
    with (
        mock.patch("lectern.files.os.replace", side_effect=OSError("disk full")),
        pytest.raises(OSError, match="disk full"),
    ):
        index.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.faiss"]  # no temp file left
    previous = FaissIndex(8, "enc")
    assert previous.load(tmp_path) and len(previous) == 20
    previous.sync(store)  # and the next sync catches up with the store
    assert len(previous) == 21


def write_previous_format(index: FaissIndex, folder: Path, meta: dict | None = None) -> None:
    """A save as Lectern wrote it before the header: a bare FAISS file, then vectors.json."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = index._parts()
    atomic_write(folder / "vectors.faiss", lambda f: _write_indexes(parts, f.write))
    if meta is None:
        meta = {
            "dimension": index.dimension,
            "encoder": index.encoder,
            "kind": index.kind,
            "active": index.active_kind,
            "structure": index._structure(index.active_kind),
            "count": len(index),
        }
    (folder / "vectors.json").write_text(json.dumps(meta))


class Killed(BaseException):
    """The process dying mid-save. A BaseException, so no `except OSError` in the code under
    test catches it and carries on, which a killed process could not."""


class StepFile:
    """A file whose every write is a step of the save."""

    def __init__(self, f: BinaryIO, step: Callable[[str], None]) -> None:
        self._f, self._step = f, step

    def write(self, data: bytes) -> int:
        self._step("write")
        return self._f.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._f, name)

    def __enter__(self) -> "StepFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


class FailingSteps:
    """Counts the file-system steps of a save (write, fsync, rename, unlink); fails the at-th.

    kill: that step and every later one raise Killed, so nothing cleans up after it, as after
    a real crash. Otherwise only that step raises OSError, as a full disk would, and the
    save's own error handling runs.
    """

    def __init__(self, at: int | None = None, kill: bool = True) -> None:
        self.at, self.kill = at, kill
        self.steps: list[str] = []
        self.committed = False  # a rename onto vectors.faiss went through

    def _step(self, name: str) -> None:
        self.steps.append(name)
        n = len(self.steps)
        if self.at is not None and (n == self.at or (self.kill and n > self.at)):
            raise Killed(name) if self.kill else OSError(f"disk full at {name}")

    @contextlib.contextmanager
    def patched(self) -> Iterator["FailingSteps"]:
        real_replace, real_fsync, real_unlink, real_fdopen = (
            os.replace,
            os.fsync,
            os.unlink,
            os.fdopen,
        )

        def replace(src: str, dst: str) -> None:
            self._step(f"replace {Path(dst).name}")
            real_replace(src, dst)
            self.committed |= Path(dst).name == "vectors.faiss"

        def fsync(fd: int) -> None:
            self._step("fsync")
            real_fsync(fd)

        def unlink(path: str, *args: object, **kwargs: object) -> None:
            name = Path(path).name
            self._step("unlink temp file" if name.startswith(".") else f"unlink {name}")
            real_unlink(path, *args, **kwargs)

        def fdopen(fd: int, *args: object, **kwargs: object) -> StepFile:
            return StepFile(real_fdopen(fd, *args, **kwargs), self._step)

        with mock.patch.multiple(os, replace=replace, fsync=fsync, unlink=unlink, fdopen=fdopen):
            yield self


def holds(index: FaissIndex, store: VectorStore, probes: tuple[int, ...]) -> bool:
    """Whether the index holds just the store's ids and finds the probed ones by vector."""
    return set(index.ids.tolist()) == set(store.data) and all(
        index.search(store.data[i], 1)[0][0] == i for i in probes
    )


@pytest.mark.parametrize("failure", ["kill", "oserror"])
@pytest.mark.parametrize("previous", ["current", "before-header"])
@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_a_save_failing_at_any_step_leaves_the_old_or_the_new_index(
    tmp_path: Path, kind: str, previous: str, failure: str
) -> None:
    rng = np.random.default_rng(12)
    vecs = unit(rng, 700 if kind == "ivfpq" else 20)
    old_store = VectorStore({i: vecs[i] for i in range(len(vecs))})
    added = unit(rng, 2)
    new_store = VectorStore({**old_store.data, 998: added[0], 999: added[1]})
    # Old and new differ both ways, and in count, which a meta paired with the other
    # save's index would contradict.
    del new_store.data[0]

    def make() -> FaissIndex:
        return pq_index() if kind == "ivfpq" else FaissIndex(8, "enc", kind)

    old, new = make(), make()
    old.sync(old_store)
    new.sync(new_store)
    assert old.active_kind == new.active_kind == kind

    def previous_save(folder: Path) -> None:
        if previous == "current":
            old.save(folder)
        else:
            write_previous_format(old, folder)

    total = FailingSteps()  # fails no step: counts them
    folder = tmp_path / "count"
    previous_save(folder)
    with total.patched():
        new.save(folder)
    assert {"write", "fsync", "replace vectors.faiss"} <= set(total.steps)

    for at in range(1, len(total.steps) + 1):
        folder = tmp_path / f"fail-at-{at}"
        previous_save(folder)
        failing = FailingSteps(at, kill=failure == "kill")
        with contextlib.suppress(Killed, OSError), failing.patched():
            new.save(folder)
        assert len(failing.steps) >= at, "the failure was injected"
        loaded = make()
        assert loaded.load(folder), f"refused after failing at {total.steps[at - 1]!r}"
        # 0 is only in the old index, 999 only in the new one.
        expected, probes = (new_store, (999, 5)) if failing.committed else (old_store, (0, 5))
        assert holds(loaded, expected, probes), f"failed at {total.steps[at - 1]!r}"
        if failure == "oserror":  # the save cleaned up after itself
            assert {p.name for p in folder.iterdir()} <= {"vectors.faiss", "vectors.json"}
        new.save(folder)  # and what a crash left behind does not stop the next save
        again = make()
        assert again.load(folder) and holds(again, new_store, (999, 5))


@pytest.mark.gpu
def test_gpu_index_matches_cpu():
    import faiss

    if faiss.get_num_gpus() == 0:
        pytest.skip("needs faiss-gpu and a CUDA device")
    rng = np.random.default_rng(3)
    store = VectorStore({i: v for i, v in enumerate(unit(rng, 100))})
    gpu, cpu = FaissIndex(8, "enc", use_gpu=True), FaissIndex(8, "enc")
    gpu.sync(store)
    cpu.sync(store)
    assert gpu.search(store.data[3], 5)[0].tolist() == cpu.search(store.data[3], 5)[0].tolist()


# --- IVF-PQ and `auto` ------------------------------------------------------------------
# d=8 with 4-bit codes: 4 sub-quantizers of 16 centroids, trainable from 624 vectors.


def pq_index(**kw) -> FaissIndex:
    return FaissIndex(8, "enc", "ivfpq", pq_nbits=4, pq_m=4, ivf_nprobe=64, **kw)


@pytest.mark.parametrize("refine", ["flat", "sq8"])
def test_ivfpq_finds_exact_vectors_and_deletes_in_place(refine):
    rng = np.random.default_rng(4)
    vecs = unit(rng, 1000)
    store = VectorStore({i: vecs[i] for i in range(1000)})
    index = pq_index(pq_refine=refine)
    assert index.pq_m == 4 and index.sync(store) == (1000, 0)
    assert index.active_kind == "ivfpq"
    ids, scores = index.search(vecs[5], 10)
    assert ids[0] == 5 and scores[0] == pytest.approx(1.0, abs=1e-4 if refine == "flat" else 2e-2)
    assert list(scores) == sorted(scores, reverse=True) and len(set(ids.tolist())) == 10

    built = index._index
    for i in range(50):
        del store.data[i]
    store.data[2000] = vecs[0]
    assert index.sync(store) == (1, 50)
    assert index._index is built  # removed and added in place, not rebuilt
    assert set(index.ids.tolist()) == set(store.data)
    assert index.search(vecs[0], 1)[0][0] == 2000
    assert not set(index.search(vecs[1], 10)[0].tolist()) & set(range(50))


def test_ivfpq_without_refine_returns_its_approximate_ranking():
    rng = np.random.default_rng(5)
    store = VectorStore({i: v for i, v in enumerate(unit(rng, 800))})
    index = pq_index(pq_refine="none")
    index.sync(store)
    ids, scores = index.search(store.data[3], 10)
    assert index.active_kind == "ivfpq" and len(ids) == 10
    assert list(scores) == sorted(scores, reverse=True)
    assert set(ids.tolist()) <= set(store.data)
    # A vector added after a removal gets the same code as before (fast-scan IVF-PQ in
    # faiss 1.15.1 does not: the reason it is not used).
    score_of = dict(zip(ids.tolist(), scores.tolist(), strict=True))
    store.data[5000] = store.data.pop(3)
    for i in range(10, 20):
        del store.data[i]
    assert index.sync(store) == (1, 11)
    ids, scores = index.search(store.data[5000], 10)
    assert dict(zip(ids.tolist(), scores.tolist(), strict=True))[5000] == pytest.approx(
        score_of[3]
    )


def test_ivfpq_stands_in_flat_until_it_can_train():
    rng = np.random.default_rng(6)
    vecs = unit(rng, 700)
    store = VectorStore({i: vecs[i] for i in range(100)})
    index = pq_index()
    assert index.min_train_count("ivfpq") == 39 * 16
    assert index.sync(store) == (100, 0) and index.active_kind == "flat"
    assert index.search(vecs[7], 1)[0][0] == 7
    store.data.update({i: vecs[i] for i in range(100, 700)})
    assert index.sync(store) == (600, 0) and index.active_kind == "ivfpq"
    assert index.search(vecs[650], 1)[0][0] == 650
    for i in range(200):
        del store.data[i]
    assert index.sync(store) == (0, 200) and index.active_kind == "flat"
    assert len(index) == 500


def test_ivfpq_save_load_roundtrip_and_structure_check(tmp_path):
    rng = np.random.default_rng(7)
    store = VectorStore({i + 3: v for i, v in enumerate(unit(rng, 700))})
    index = pq_index()
    index.sync(store)
    index.save(tmp_path)
    loaded = pq_index()
    assert loaded.load(tmp_path) and loaded.active_kind == "ivfpq"
    assert np.array_equal(loaded.ids, store.chunk_ids())
    q = store.data[42]
    assert loaded.search(q, 5)[0].tolist() == index.search(q, 5)[0].tolist()
    assert loaded.sync(store) == (0, 0)
    # Built with other codes or another refine store: rebuilt from the store instead.
    assert not pq_index(pq_refine="sq8").load(tmp_path)
    assert not FaissIndex(8, "enc", "ivfpq", pq_nbits=8).load(tmp_path)
    assert not FaissIndex(8, "enc", "flat").load(tmp_path)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_a_save_from_before_auto_still_loads(tmp_path, kind):
    rng = np.random.default_rng(8)
    store = VectorStore({i: v for i, v in enumerate(unit(rng, 300))})
    index = FaissIndex(8, "enc", kind)
    index.sync(store)
    write_previous_format(
        index, tmp_path, {"dimension": 8, "encoder": "enc", "kind": kind, "count": 300}
    )
    old = FaissIndex(8, "enc", kind)
    assert old.load(tmp_path) and old.active_kind == kind and len(old) == 300
    assert old.search(store.data[4], 1)[0][0] == 4


@pytest.mark.parametrize(
    ("kind", "refine"), [("flat", "flat"), ("hnsw", "flat"), ("ivfpq", "flat"), ("ivfpq", "sq8")]
)
def test_a_save_in_the_format_before_the_header_loads_and_the_next_save_replaces_it(
    tmp_path: Path, kind: str, refine: str
) -> None:
    rng = np.random.default_rng(13)
    store = VectorStore({i: v for i, v in enumerate(unit(rng, 700))})

    def make() -> FaissIndex:
        return pq_index(pq_refine=refine) if kind == "ivfpq" else FaissIndex(8, "enc", kind)

    index = make()
    index.sync(store)
    write_previous_format(index, tmp_path)
    assert FaissIndex.saved(tmp_path)
    old = make()
    assert old.load(tmp_path) and old.active_kind == kind
    assert np.array_equal(old.ids, store.chunk_ids()) and old.search(store.data[4], 1)[0][0] == 4
    assert old.sync(store) == (0, 0)
    old.save(tmp_path)
    # The header now describes the file: the old meta beside it would describe nothing.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.faiss"]
    again = make()
    assert again.load(tmp_path) and again.search(store.data[4], 1)[0][0] == 4


def test_saved_tells_whether_a_folder_holds_a_save(tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    index = FaissIndex(8, "enc", "flat")
    index.sync(VectorStore({i: v for i, v in enumerate(unit(rng, 20))}))
    assert not FaissIndex.saved(tmp_path / "missing")
    index.save(tmp_path / "current")
    assert FaissIndex.saved(tmp_path / "current")
    write_previous_format(index, tmp_path / "before-header")
    assert FaissIndex.saved(tmp_path / "before-header")
    (tmp_path / "before-header" / "vectors.json").unlink()  # a bare FAISS file says nothing
    assert not FaissIndex.saved(tmp_path / "before-header")
    assert not FaissIndex(8, "enc", "flat").load(tmp_path / "before-header")


def save_with_meta(index: FaissIndex, folder: Path, **changes: object) -> None:
    """Save `index` under a meta that says otherwise, as a bug or a damaged disk might."""
    real = FaissIndex._meta
    with mock.patch.object(FaissIndex, "_meta", lambda self: {**real(self), **changes}):
        index.save(folder)


def assert_refused_then_rebuilt(
    fresh: FaissIndex, folder: Path, store: VectorStore, caplog: pytest.LogCaptureFixture
) -> None:
    """`load` refuses without raising and leaves nothing loaded; `sync` rebuilds it all."""
    with caplog.at_level("WARNING", logger="retriever.faiss_index"):
        assert not fresh.load(folder)
    assert "not loaded" in caplog.text and "rebuilt from the store" in caplog.text
    assert len(fresh) == 0 and fresh.active_kind is None
    assert fresh.sync(store) == (len(store.data), 0)
    assert fresh.search(store.data[5], 1)[0][0] == 5


@pytest.mark.parametrize("previous", ["current", "before-header"])
def test_load_refuses_a_save_holding_another_count_than_its_meta(
    tmp_path: Path, previous: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(15)
    store = VectorStore({i: v for i, v in enumerate(unit(rng, 21))})
    index = FaissIndex(8, "enc", "flat")
    index.sync(store)
    if previous == "current":
        save_with_meta(index, tmp_path, count=20)
    else:  # what the two-rename save left when it crashed between its renames
        write_previous_format(index, tmp_path)
        meta = json.loads((tmp_path / "vectors.json").read_text())
        (tmp_path / "vectors.json").write_text(json.dumps({**meta, "count": 20}))
    assert_refused_then_rebuilt(FaissIndex(8, "enc", "flat"), tmp_path, store, caplog)
    assert "21 vectors, the meta says 20" in caplog.text


@pytest.fixture(scope="module")
def pq_vectors() -> VectorStore:
    return VectorStore({i: v for i, v in enumerate(unit(np.random.default_rng(16), 700))})


def test_load_refuses_a_refine_store_holding_other_ids_than_the_index(
    tmp_path: Path, pq_vectors: VectorStore, caplog: pytest.LogCaptureFixture
) -> None:
    index = pq_index()
    index.sync(pq_vectors)
    index._refine.remove_ids(np.array([3, 4], dtype=np.int64))
    index.save(tmp_path)
    assert_refused_then_rebuilt(pq_index(), tmp_path, pq_vectors, caplog)
    assert "a refine store holding other ids than the index" in caplog.text


@pytest.mark.parametrize(
    ("saved", "claimed", "message"),
    [
        ("sq8", "flat", "a refine store of type IndexScalarQuantizer, not flat"),
        ("flat", "sq8", "a refine store of type IndexFlatIP, not sq8"),
        ("none", "flat", None),  # faiss fails reading past the end for the store named
        ("flat", "none", "data beyond the parts the meta names"),
    ],
    ids=["sq8-named-flat", "flat-named-sq8", "none-named-flat", "flat-named-none"],
)
def test_load_refuses_a_refine_store_of_another_kind_than_its_meta_names(
    tmp_path: Path,
    pq_vectors: VectorStore,
    caplog: pytest.LogCaptureFixture,
    saved: str,
    claimed: str,
    message: str | None,
) -> None:
    index = pq_index(pq_refine=saved)
    index.sync(pq_vectors)
    save_with_meta(index, tmp_path, structure={"pq_m": 4, "pq_nbits": 4, "pq_refine": claimed})
    assert_refused_then_rebuilt(pq_index(pq_refine=claimed), tmp_path, pq_vectors, caplog)
    assert message is None or message in caplog.text


@pytest.mark.parametrize("damage", ["garbage", "cut-in-the-index", "cut-in-the-header"])
def test_load_refuses_a_damaged_save_instead_of_raising(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(17)
    store = VectorStore({i: v for i, v in enumerate(unit(rng, 20))})
    index = FaissIndex(8, "enc", "flat")
    index.sync(store)
    index.save(tmp_path)
    path = tmp_path / "vectors.faiss"
    data = path.read_bytes()
    if damage == "garbage":
        write_previous_format(index, tmp_path)
        path.write_bytes(b"not a FAISS index at all")
    else:
        path.write_bytes(data[: len(data) - 100 if damage == "cut-in-the-index" else 30])
    assert_refused_then_rebuilt(FaissIndex(8, "enc", "flat"), tmp_path, store, caplog)


@pytest.mark.parametrize(
    ("count", "current", "budget", "kind"),
    [
        (0, None, None, "flat"),
        (AUTO_FLAT_MAX - 1, None, None, "flat"),
        (AUTO_FLAT_MAX, None, None, "hnsw"),
        (AUTO_HNSW_MAX - 1, None, None, "hnsw"),
        (AUTO_HNSW_MAX, None, None, "ivfpq"),
        (50_000_000, None, None, "ivfpq"),
        # A corpus shrinking below a threshold keeps its kind until it halves.
        (AUTO_FLAT_MAX // 2, "hnsw", None, "hnsw"),
        (AUTO_FLAT_MAX // 2 - 1, "hnsw", None, "flat"),
        (AUTO_HNSW_MAX // 2, "ivfpq", None, "ivfpq"),
        (AUTO_HNSW_MAX // 2 - 1, "ivfpq", None, "hnsw"),
        (AUTO_HNSW_MAX // 2, "flat", None, "hnsw"),  # growing switches at once
        # HNSW that would not fit the memory budget gives way to IVF-PQ.
        (AUTO_FLAT_MAX, None, hnsw_bytes(AUTO_FLAT_MAX, 384), "hnsw"),
        (AUTO_FLAT_MAX, None, hnsw_bytes(AUTO_FLAT_MAX, 384) - 1, "ivfpq"),
    ],
)
def test_auto_kind(count, current, budget, kind):
    assert auto_kind(count, 384, current=current, memory_budget=budget) == kind


def test_auto_follows_the_corpus_and_says_what_it_built(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr("retriever.faiss_choice.AUTO_FLAT_MAX", 100)
    monkeypatch.setattr("retriever.faiss_choice.AUTO_HNSW_MAX", 700)
    rng = np.random.default_rng(9)
    vecs = unit(rng, 800)
    store = VectorStore({i: vecs[i] for i in range(50)})
    index = FaissIndex(8, "enc", "auto", pq_nbits=4, pq_m=4, ivf_nprobe=64, memory_budget=None)
    assert index.active_kind is None
    index.sync(store)
    assert index.active_kind == "flat"
    store.data.update({i: vecs[i] for i in range(50, 150)})
    with caplog.at_level("INFO", logger="retriever.faiss_index"):
        assert index.sync(store) == (100, 0)
    assert index.active_kind == "hnsw"
    assert "FAISS index auto: 150 vectors, built as hnsw" in caplog.text
    store.data.update({i: vecs[i] for i in range(150, 800)})
    index.sync(store)
    assert index.active_kind == "ivfpq" and index.search(vecs[777], 1)[0][0] == 777
    index.save(tmp_path)
    loaded = FaissIndex(8, "enc", "auto", pq_nbits=4, pq_m=4, ivf_nprobe=64, memory_budget=None)
    assert loaded.load(tmp_path) and loaded.active_kind == "ivfpq"
    assert not FaissIndex(8, "enc", "ivfpq", pq_nbits=4).load(tmp_path)  # configured kind
    for i in range(150):  # 650 left: below 700, but not below half of it
        del store.data[i]
    assert loaded.sync(store) == (0, 150) and loaded.active_kind == "ivfpq"


def test_ivfpq_and_search_arguments_are_validated():
    with pytest.raises(ValueError, match=r"pq_m \(50\) must divide the dimension \(384\)"):
        FaissIndex(384, "enc", "ivfpq", pq_m=50)
    with pytest.raises(ValueError, match="pq_nbits must be between 4 and 8, got 9"):
        FaissIndex(384, "enc", "ivfpq", pq_nbits=9)
    with pytest.raises(ValueError, match="unknown pq_refine 'exact'"):
        FaissIndex(384, "enc", "ivfpq", pq_refine="exact")
    with pytest.raises(ValueError, match=r"pq_refine_factor \(0\)"):
        FaissIndex(384, "enc", "ivfpq", pq_refine_factor=0)
    assert FaissIndex(384, "enc", "ivfpq").pq_m == 48
    assert FaissIndex(100, "enc", "ivfpq").pq_m == 10  # the largest divisor up to d/8
    index = FaissIndex(8, "enc", "hnsw")
    with pytest.raises(ValueError, match="ivf_nprobe must be positive, got 0"):
        index.set_search_params(ivf_nprobe=0)


def test_search_params_change_without_rebuild_and_threads_are_restored():
    import faiss

    rng = np.random.default_rng(10)
    store = VectorStore({i: v for i, v in enumerate(unit(rng, 300))})
    index = FaissIndex(8, "enc", "hnsw")
    index.sync(store)
    index.set_search_params(hnsw_ef_search=200)
    assert faiss.downcast_index(index._index.index).hnsw.efSearch == 200
    before = faiss.omp_get_max_threads()
    assert index.search(store.data[9], 1)[0][0] == 9
    assert faiss.omp_get_max_threads() == before


def test_the_settings_defaults_make_an_auto_index():
    r = RetrievalSettings()
    index = FaissIndex.from_settings(384, "enc", r)
    assert index.kind == "auto" and index.target_kind(10) == "flat"


def test_searches_go_on_during_a_rebuild():
    import threading

    rng = np.random.default_rng(11)
    store = VectorStore({i: v for i, v in enumerate(unit(rng, 200))})
    index = FaissIndex(8, "enc", "hnsw")
    index.sync(store)
    started, release = threading.Event(), threading.Event()
    real = index._new_index

    def slow(kind, vectors):
        started.set()
        assert release.wait(10)
        return real(kind, vectors)

    index._new_index = slow
    del store.data[0]  # HNSW cannot delete: sync rebuilds
    worker = threading.Thread(target=index.sync, args=(store,))
    worker.start()
    assert started.wait(10)
    assert index.search(store.data[5], 1)[0][0] == 5  # the previous index answers
    assert len(index) == 200
    release.set()
    worker.join(10)
    assert len(index) == 199 and 0 not in index.ids
