"""A FAISS vector index keyed by chunk id, persisted atomically, reconciled with the store.

The store holds every vector, so the index is a cache of it: `sync()` adds what the store
has and the index lacks, drops what the index has and the store lost, and rebuilds when
the index type cannot delete in place (HNSW), when a trained index (IVF, IVF-PQ) was
trained on less than half of the corpus, or when the kind to use changes with the corpus
size (`auto`, or IVF/IVF-PQ that fall back to flat until there is enough to train on).
A crash between a store commit and an index save is repaired by the next `sync()`.

A save is one file, `vectors.faiss`: a header naming what it holds (the meta), then the
FAISS index and, for IVF-PQ, its refine store. One rename commits it, so a crash leaves the
previous save or the new one. Saves from before the header keep their meta in
`vectors.json` beside a bare FAISS file; they still load, and the next save replaces both.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, Literal, get_args

import numpy as np

from lectern.files import atomic_write
from lectern.optional import require
from lectern.protocols import DocumentStore
from lectern.settings import RetrievalSettings
from retriever.faiss_choice import IndexKind, auto_kind, default_memory_budget, default_pq_m
from retriever.faiss_filter import IdFilter

log = logging.getLogger(__name__)

IndexType = Literal["auto", "flat", "hnsw", "ivf", "ivfpq"]
Refine = Literal["flat", "sq8", "none"]
_INDEX_FILE = "vectors.faiss"
_LEGACY_META_FILE = "vectors.json"  # the meta of a save from before the header
# Starts a saved file with a header. A bare FAISS file starts with its index type's
# fourcc ("IxM2", "IwPQ", ...), never with this.
_MAGIC = b"LECTERN-FAISS/1\n"
_HEADER_SIZE_BYTES = 4  # the meta's length, little-endian, after the magic

# k-means wants this many training points per centroid (faiss warns below it).
_POINTS_PER_CENTROID = 39
# IVF trains on at most this many points per list: more costs minutes at 1M vectors and
# barely moves the centroids.
_TRAIN_PER_LIST = 48
_MIN_IVF_LISTS = 4  # fewer lists is a flat scan with extra steps
# IVF-PQ candidates re-ranked at least: a top-1 taken from 4 PQ candidates is fragile, and
# re-scoring a few dozen vectors costs microseconds.
_MIN_REFINE_DEPTH = 32
# The largest k faiss's GPU indexes search for (GPU_MAX_SELECTION_K); a filter keeping out
# more than this can leave a GPU search short of k.
_GPU_MAX_K = 2048


def _faiss() -> ModuleType:
    """The faiss module (imported on first use: `lectern --help` need not load it)."""
    return require("faiss", "retrieval")


class FaissIndex:
    @classmethod
    def from_settings(
        cls, dimension: int, encoder: str, r: RetrievalSettings, use_gpu: bool = False
    ) -> FaissIndex:
        """An index configured by `settings.retrieval`, the one place that maps them."""
        return cls(
            dimension,
            encoder,
            r.index_type,
            hnsw_m=r.hnsw_m,
            hnsw_ef_search=r.hnsw_ef_search,
            ivf_nlist=r.ivf_nlist,
            ivf_nprobe=r.ivf_nprobe,
            pq_m=r.pq_m,
            pq_nbits=r.pq_nbits,
            pq_refine=r.pq_refine,
            pq_refine_factor=r.pq_refine_factor,
            use_gpu=use_gpu,
        )

    def __init__(
        self,
        dimension: int,
        encoder: str,
        kind: IndexType = "auto",
        hnsw_m: int = 32,
        hnsw_ef_search: int = 64,
        ivf_nlist: int = 0,
        ivf_nprobe: int = 16,
        pq_m: int = 0,
        pq_nbits: int = 8,
        pq_refine: Refine = "flat",
        pq_refine_factor: int = 8,
        use_gpu: bool = False,
        memory_budget: int | None = None,
        search_threads: int | None = 1,
    ) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be positive, got {dimension}")
        if kind not in get_args(IndexType):
            raise ValueError(
                f"unknown index type {kind!r}; use {', '.join(get_args(IndexType))}"
            )
        if not 4 <= pq_nbits <= 8:
            raise ValueError(f"pq_nbits must be between 4 and 8, got {pq_nbits}")
        if pq_m < 0 or (pq_m and dimension % pq_m):
            raise ValueError(f"pq_m ({pq_m}) must divide the dimension ({dimension})")
        if pq_refine not in get_args(Refine):
            raise ValueError(f"unknown pq_refine {pq_refine!r}; use flat, sq8 or none")
        if pq_refine_factor < 1 or hnsw_ef_search < 1 or ivf_nprobe < 1:
            raise ValueError(
                f"pq_refine_factor ({pq_refine_factor}), hnsw_ef_search ({hnsw_ef_search}) "
                f"and ivf_nprobe ({ivf_nprobe}) must be positive"
            )
        self.dimension = dimension
        self.encoder = encoder
        self.kind = kind
        self.hnsw_m = hnsw_m
        self.hnsw_ef_search = hnsw_ef_search
        self.ivf_nlist = ivf_nlist
        self.ivf_nprobe = ivf_nprobe
        self.pq_m = pq_m or default_pq_m(dimension)
        self.pq_nbits = pq_nbits
        self.pq_refine = pq_refine
        self.pq_refine_factor = pq_refine_factor
        self.use_gpu = use_gpu
        self.memory_budget = memory_budget if memory_budget is not None else default_memory_budget()
        # One query has little to split across OpenMP threads, yet faiss forks a team for
        # flat and HNSW; on the busy 2-core bench machine, waiting for the second thread
        # made queries 5-30x slower (flat at 50k: 56 ms, not 9.6; HNSW at 500k: 11.9 ms,
        # not 0.35; bench/results/faiss_scale.md). None: faiss's default.
        self.search_threads = search_threads
        self._index = None
        self._refine = None  # IVF-PQ only: the vectors that re-rank its candidates, by id
        self._active: IndexKind | None = None
        self._on_gpu = False
        self._ids = np.zeros(0, dtype=np.int64)
        self._lock = threading.RLock()  # the index as searched
        self._writing = threading.RLock()  # one sync or build at a time

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    @property
    def active_kind(self) -> IndexKind | None:
        """The kind built: `kind` resolved by corpus size; None before the first build."""
        return self._active

    def min_train_count(self, kind: IndexKind) -> int:
        """Vectors a kind needs before it is built; below this, a flat index stands in."""
        if kind == "ivfpq":  # every PQ sub-quantizer learns 2**nbits centroids
            return _POINTS_PER_CENTROID * max(2**self.pq_nbits, _MIN_IVF_LISTS)
        if kind == "ivf":
            return _POINTS_PER_CENTROID * _MIN_IVF_LISTS
        return 0

    def target_kind(self, count: int) -> IndexKind:
        """The kind to build for `count` vectors, given the configured one."""
        kind: IndexKind = (
            auto_kind(
                count,
                self.dimension,
                current=self._active,
                memory_budget=self.memory_budget,
                hnsw_m=self.hnsw_m,
            )
            if self.kind == "auto"
            else self.kind
        )
        return "flat" if count < self.min_train_count(kind) else kind

    def _structure(self, kind: IndexKind | None) -> dict:
        """What a saved index of this kind was built with, beyond dimension and encoder."""
        if kind == "hnsw":
            return {"hnsw_m": self.hnsw_m}
        if kind == "ivfpq":
            return {"pq_m": self.pq_m, "pq_nbits": self.pq_nbits, "pq_refine": self.pq_refine}
        return {}

    def _meta(self) -> dict:
        return {
            "dimension": self.dimension,
            "encoder": self.encoder,
            "kind": self.kind,
            "active": self._active,
            "structure": self._structure(self._active),
            "count": len(self._ids),
        }

    def _new_index(self, kind: IndexKind, vectors: np.ndarray) -> tuple:
        """(index, refine store or None), trained on `vectors` where the kind needs it."""
        faiss = _faiss()
        d, ip = self.dimension, faiss.METRIC_INNER_PRODUCT
        if kind == "hnsw":
            return faiss.IndexIDMap2(faiss.IndexHNSWFlat(d, self.hnsw_m, ip)), None
        if kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(d)), None
        # Each list needs some dozens of training points; small corpora get few lists.
        nlist = self.ivf_nlist or max(1, int(4 * math.sqrt(max(len(vectors), 1))))
        nlist = max(1, min(nlist, len(vectors) // _POINTS_PER_CENTROID or 1))
        quantizer = faiss.IndexFlatIP(d)
        refine = None
        # Not IndexIVFPQFastScan: no faster in a 100k trial of the bench, and in faiss 1.15.1 a
        # vector added after a remove_ids gets a wrong code, which sync() would do.
        index = (
            faiss.IndexIVFFlat(quantizer, d, nlist, ip)
            if kind == "ivf"
            else faiss.IndexIVFPQ(quantizer, d, nlist, self.pq_m, self.pq_nbits, ip)
        )
        if kind == "ivfpq" and self.pq_refine != "none":
            store = (
                faiss.IndexFlatIP(d)
                if self.pq_refine == "flat"
                else faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, ip)
            )
            refine = faiss.IndexIDMap2(store)
        if len(vectors):
            sample = _sample(vectors, max(_TRAIN_PER_LIST * nlist, self.min_train_count(kind)))
            index.train(sample)
            if refine is not None:
                refine.train(sample)
        return index, refine

    def _apply_search_params(self) -> None:
        faiss = _faiss()
        if self._index is None:
            return
        if self._active == "hnsw":
            faiss.downcast_index(self._index.index).hnsw.efSearch = self.hnsw_ef_search
        elif self._active in ("ivf", "ivfpq") and self._on_gpu:
            nprobe = min(self.ivf_nprobe, self._index.nlist)
            faiss.GpuParameterSpace().set_index_parameter(self._index, "nprobe", nprobe)
        elif self._active in ("ivf", "ivfpq"):
            ivf = faiss.extract_index_ivf(self._index)
            ivf.nprobe = min(self.ivf_nprobe, ivf.nlist)

    def set_search_params(
        self,
        hnsw_ef_search: int | None = None,
        ivf_nprobe: int | None = None,
        pq_refine_factor: int | None = None,
    ) -> None:
        """Change the speed/recall trade-off of the built index without rebuilding it."""
        for name, value in (
            ("hnsw_ef_search", hnsw_ef_search),
            ("ivf_nprobe", ivf_nprobe),
            ("pq_refine_factor", pq_refine_factor),
        ):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        with self._lock:
            self.hnsw_ef_search = hnsw_ef_search or self.hnsw_ef_search
            self.ivf_nprobe = ivf_nprobe or self.ivf_nprobe
            self.pq_refine_factor = pq_refine_factor or self.pq_refine_factor
            self._apply_search_params()

    def _gpu_for(self, kind: IndexKind) -> bool:
        # faiss has no GPU HNSW, and GPU IVF-PQ wants 8-bit codes; those stay on the CPU.
        # An IVF-PQ refine store stays there too: it is only read by id.
        return self.use_gpu and kind != "hnsw" and not (kind == "ivfpq" and self.pq_nbits != 8)

    def _on_device(self, index, kind: IndexKind):  # noqa: ANN001, ANN202
        if not self._gpu_for(kind):
            return index
        faiss = _faiss()
        return faiss.index_cpu_to_all_gpus(index)

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = self._check(vectors, len(ids))
        with self._writing:
            with self._lock:
                kind = self.target_kind(len(ids))
            # Built without the search lock (an HNSW of 1M vectors takes minutes):
            # searches meanwhile use the previous index.
            index, refine = self._new_index(kind, vectors)
            if len(ids):
                index.add_with_ids(vectors, ids)
                if refine is not None:
                    refine.add_with_ids(vectors, ids)
            with self._lock:
                if kind != self._active:
                    log.info("FAISS index %s: %d vectors, built as %s", self.kind, len(ids), kind)
                self._index, self._refine = self._on_device(index, kind), refine
                self._active, self._on_gpu = kind, self._gpu_for(kind)
                self._ids = np.sort(ids)
                self._apply_search_params()

    def _check(self, vectors: np.ndarray, n: int) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        if len(vectors) != n:
            raise ValueError(f"{n} ids but {len(vectors)} vectors")
        return vectors

    def sync(self, store: DocumentStore) -> tuple[int, int]:
        """Make the index hold exactly the store's chunks; return (added, removed)."""
        with self._writing:
            want = store.chunk_ids()
            have = self._ids
            stale = np.setdiff1d(have, want, assume_unique=True)
            new = np.setdiff1d(want, have, assume_unique=True)
            with self._lock:
                kind = self.target_kind(len(want))
            if (
                self._index is None
                or kind != self._active
                or (len(stale) and kind == "hnsw")
                # A coarse quantizer or codebook trained on the old vectors: when the
                # corpus more than doubles, retrain on all of them.
                or (kind in ("ivf", "ivfpq") and len(new) > len(have))
            ):
                self.build(want, store.vectors(want, self.encoder))
                return len(new), len(stale)
            vectors = self._check(store.vectors(new, self.encoder), len(new)) if len(new) else None
            with self._lock:
                if len(stale):
                    self._index.remove_ids(stale)
                    if self._refine is not None:
                        self._refine.remove_ids(stale)
                if vectors is not None:
                    self._index.add_with_ids(vectors, new)
                    if self._refine is not None:
                        self._refine.add_with_ids(vectors, new)
                self._ids = want
            return len(new), len(stale)

    def search(
        self,
        query: np.ndarray,
        k: int,
        exclude: np.ndarray | None = None,
        only: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) of the k nearest vectors by inner product, best first.

        `exclude`: ids never returned; `only`: when given, no other id is returned. The
        filter works inside the search (a FAISS IDSelector), so k come back whenever k
        allowed vectors exist: when an approximate index finds fewer (an HNSW walk or the
        probed IVF lists mostly kept out), every allowed vector is searched instead.
        """
        faiss = _faiss()
        empty = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        with self._lock:
            if self._index is None or not len(self._ids) or k < 1:
                return empty
            allowed = IdFilter.of(self._ids, exclude, only)
            k = min(k, len(self._ids) if allowed is None else allowed.count)
            if k < 1:
                return empty
            q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dimension)
            # The OpenMP thread count is per calling thread: this leaves builds alone.
            threads = faiss.omp_get_max_threads()
            if self.search_threads:
                faiss.omp_set_num_threads(self.search_threads)
            try:
                ids, scores = self._nearest(q, k, allowed, exhaustive=False)
                if allowed is not None and len(ids) < k:
                    ids, scores = self._nearest(q, k, allowed, exhaustive=True)
            finally:
                faiss.omp_set_num_threads(threads)
        return ids, scores

    def _nearest(
        self, q: np.ndarray, k: int, allowed: IdFilter | None, exhaustive: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """search() with the lock held: (ids, scores), re-ranked exactly for IVF-PQ."""
        if self._refine is None:
            return self._candidates(q, k, allowed, exhaustive)
        # IVF-PQ scores are approximate: take more candidates, re-score them exactly.
        n = len(self._ids) if allowed is None else allowed.count
        depth = min(max(k * self.pq_refine_factor, _MIN_REFINE_DEPTH), n)
        cand, _ = self._candidates(q, depth, allowed, exhaustive)
        exact = self._refine.reconstruct_batch(cand) @ q[0]
        best = np.argsort(-exact, kind="stable")[:k]
        return cand[best], exact[best]

    def _candidates(
        self, q: np.ndarray, k: int, allowed: IdFilter | None, exhaustive: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """The index's own top k (ids, scores) among the allowed ids, without the -1s.

        exhaustive: visit every vector (every IVF list; HNSW's flat storage, not its graph).
        """
        faiss = _faiss()
        if allowed is None:
            scores, ids = self._index.search(q, k)
        elif self._on_gpu:
            return self._post_filtered(q, k, allowed)
        elif exhaustive and self._active == "hnsw":
            # The vectors sit in a flat index inside the HNSW, by row: select its rows
            # through the id map, then name them by id.
            storage = faiss.downcast_index(faiss.downcast_index(self._index.index).storage)
            rows_sel = faiss.IDSelectorTranslated(self._index.id_map, allowed.selector())
            scores, rows = storage.search(q, k, params=faiss.SearchParameters(sel=rows_sel))
            id_map = self._index.id_map
            ids = np.array([[id_map.at(int(r)) if r >= 0 else -1 for r in rows[0]]])
        else:
            scores, ids = self._index.search(q, k, params=self._params(allowed, exhaustive))
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def _params(self, allowed: IdFilter, exhaustive: bool):  # noqa: ANN202
        """Search parameters carrying the selector, for the kind built (CPU).

        Parameters passed to a search replace the index's own, so HNSW's efSearch and
        IVF's nprobe are restated: left out, faiss would use its defaults (16 and 1).
        """
        faiss = _faiss()
        sel = allowed.selector()
        if self._active == "hnsw":
            return faiss.SearchParametersHNSW(sel=sel, efSearch=self.hnsw_ef_search)
        if self._active in ("ivf", "ivfpq"):
            nlist = faiss.extract_index_ivf(self._index).nlist
            nprobe = nlist if exhaustive else min(self.ivf_nprobe, nlist)
            return faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
        return faiss.SearchParameters(sel=sel)

    def _post_filtered(
        self, q: np.ndarray, k: int, allowed: IdFilter
    ) -> tuple[np.ndarray, np.ndarray]:
        """A GPU index's top k allowed: faiss's GPU indexes take no IDSelector, so search
        deep enough that k remain after dropping every id kept out, then drop them.
        """
        kept_out = len(self._ids) - allowed.count
        depth = min(k + kept_out, len(self._ids), _GPU_MAX_K)
        scores, ids = self._index.search(q, depth)
        ids, scores = ids[0], scores[0]
        keep = (ids >= 0) & allowed.allows(ids)
        return ids[keep][:k], scores[keep][:k]

    def _parts(self) -> list:
        """What is saved, on the CPU: the index, then the refine store if there is one."""
        faiss = _faiss()
        index = faiss.index_gpu_to_cpu(self._index) if self._on_gpu else self._index
        return [index, *([self._refine] if self._refine is not None else [])]

    def serialized_bytes(self) -> int:
        """Size of what `save` writes for the index: its memory footprint, near enough."""
        sizes: list[int] = []
        with self._lock:
            if self._index is not None:
                _write_indexes(self._parts(), lambda chunk: sizes.append(len(chunk)))
        return sum(sizes)

    @staticmethod
    def saved(folder: Path) -> bool:
        """Whether `folder` holds a save, of any configuration (`load` tells if it fits)."""
        try:
            with (folder / _INDEX_FILE).open("rb") as f:
                headed = f.read(len(_MAGIC)) == _MAGIC
        except FileNotFoundError:
            return False
        return headed or (folder / _LEGACY_META_FILE).exists()

    def save(self, folder: Path) -> None:
        """Write the index so that a crash at any point leaves the previous one readable.

        The meta and the index go in one file committed by one rename: two files renamed
        one after the other could pair a new index with the previous meta, which `load`
        refuses.
        """
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._index is None:
                return
            parts = self._parts()
            meta = json.dumps(self._meta()).encode()
            header = _MAGIC + len(meta).to_bytes(_HEADER_SIZE_BYTES, "little") + meta

            def write(f: BinaryIO) -> None:
                f.write(header)
                _write_indexes(parts, f.write)

            atomic_write(folder / _INDEX_FILE, write)
            _drop_legacy_meta(folder)

    def load(self, folder: Path) -> bool:
        """Load a saved index if it matches this encoder and type; False when there is none.

        False, too, for a save that is unreadable or disagrees with its meta: the store holds
        every vector, so the caller rebuilds the index from it rather than failing.
        """
        try:
            with (folder / _INDEX_FILE).open("rb") as f:
                meta = _read_header(f)
                if meta is None:
                    meta = _read_legacy_meta(folder)
                    f.seek(0)  # a bare FAISS file: no header to skip
                read = self._read(f, meta) if meta is not None else None
        except FileNotFoundError:
            return False
        # faiss raises RuntimeError on bad data; _read raises ValueError on a disagreement.
        except (RuntimeError, ValueError) as e:
            log.warning("FAISS index in %s not loaded (%s): rebuilt from the store", folder, e)
            return False
        if read is None:
            return False
        index, refine, active = read
        ids = _stored_ids(index)
        with self._lock:
            self._index, self._refine = self._on_device(index, active), refine
            self._active, self._on_gpu = active, self._gpu_for(active)
            self._ids = np.sort(ids)
            self._apply_search_params()
        log.info("FAISS index %s: loaded %d vectors as %s", self.kind, len(ids), active)
        return True

    def _read(self, f: BinaryIO, meta: dict) -> tuple | None:
        """(index, refine store or None, kind) read from `f` as `meta` describes them.

        None when the meta is for another configuration; ValueError when the data disagrees
        with the meta.
        """
        faiss = _faiss()
        # Saves from before `auto` name neither the kind built nor its structure.
        active = meta.get("active", meta.get("kind"))
        if (
            {k: meta.get(k) for k in ("dimension", "encoder", "kind")}
            != {"dimension": self.dimension, "encoder": self.encoder, "kind": self.kind}
            or active not in get_args(IndexKind)
            or meta.get("structure", self._structure(active)) != self._structure(active)
        ):
            return None
        reader = faiss.PyCallbackIOReader(f.read)
        index = faiss.read_index(reader)
        has_refine = active == "ivfpq" and self.pq_refine != "none"
        refine = faiss.read_index(reader) if has_refine else None
        # The reader takes only the bytes each index needs, so anything left over is a
        # part the meta does not name (a refine store saved under another setting).
        trailing = bool(f.read(1))
        problem = _disagreement(index, refine, self.pq_refine, meta.get("count"), trailing)
        if problem:
            raise ValueError(f"the data disagrees with its meta: {problem}")
        return index, refine, active


def _read_header(f: BinaryIO) -> dict | None:
    """The meta at the start of a saved file; None for a bare FAISS file (an older save)."""
    if f.read(len(_MAGIC)) != _MAGIC:
        return None
    size = int.from_bytes(f.read(_HEADER_SIZE_BYTES), "little")
    raw = f.read(size)
    if len(raw) != size:
        raise ValueError("the header is cut short")
    return _as_meta(raw)


def _read_legacy_meta(folder: Path) -> dict | None:
    try:
        return _as_meta((folder / _LEGACY_META_FILE).read_bytes())
    except FileNotFoundError:
        return None


def _as_meta(raw: bytes) -> dict:
    meta = json.loads(raw)  # json.JSONDecodeError is a ValueError
    if not isinstance(meta, dict):
        raise ValueError(f"the meta is a {type(meta).__name__}, not an object")
    return meta


def _disagreement(
    index,  # noqa: ANN001
    refine,  # noqa: ANN001
    refine_kind: Refine,
    count: object,
    trailing: bool,
) -> str | None:
    """What makes the data read differ from its meta, or None when they agree."""
    faiss = _faiss()
    if index.ntotal != count:
        return f"{index.ntotal} vectors, the meta says {count}"
    if refine is not None:
        by_id = isinstance(refine, faiss.IndexIDMap2)
        store = faiss.downcast_index(refine.index) if by_id else refine
        expected = faiss.IndexFlat if refine_kind == "flat" else faiss.IndexScalarQuantizer
        if not by_id or not isinstance(store, expected):
            return f"a refine store of type {type(store).__name__}, not {refine_kind}"
        if not np.array_equal(np.sort(_stored_ids(refine)), np.sort(_stored_ids(index))):
            return "a refine store holding other ids than the index"
    if trailing:
        return "data beyond the parts the meta names"
    return None


def _drop_legacy_meta(folder: Path) -> None:
    """Remove an older save's meta file once the save that replaces it is committed.

    Left in place it would describe nothing, and an older Lectern would read the new file
    as bare FAISS and fail; without it, that version just rebuilds. Best effort: `load`
    ignores the file beside a headed save.
    """
    legacy = folder / _LEGACY_META_FILE
    if not legacy.exists():
        return
    try:
        # The rename must reach the disk before the unlink: after a power cut, the old
        # bare file without its meta would not load.
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        legacy.unlink(missing_ok=True)
    except OSError as e:
        log.warning("could not remove %s (%s); it is ignored", legacy, e)


def _sample(vectors: np.ndarray, size: int) -> np.ndarray:
    if len(vectors) <= size:
        return vectors
    rows = np.random.default_rng(0).choice(len(vectors), size, replace=False)
    return np.ascontiguousarray(vectors[np.sort(rows)])


def _stored_ids(index) -> np.ndarray:  # noqa: ANN001
    faiss = _faiss()
    if isinstance(index, faiss.IndexIDMap2 | faiss.IndexIDMap):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    invlists = faiss.extract_index_ivf(index).invlists
    parts = [
        faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
        for i in range(invlists.nlist)
        if invlists.list_size(i)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def _write_indexes(indexes: list, sink: Callable[[bytes], object]) -> None:
    """Stream indexes one after the other: serialize_index would copy a 1.5 GB index."""
    faiss = _faiss()
    def write(chunk: bytes) -> int:
        sink(chunk)
        return len(chunk)

    writer = faiss.PyCallbackIOWriter(write)
    for index in indexes:
        faiss.write_index(index, writer)
    del writer  # flushes its last buffer
