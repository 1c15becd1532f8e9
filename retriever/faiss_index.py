"""A FAISS vector index keyed by chunk id, persisted atomically, reconciled with the store.

The store holds every vector, so the index is a cache of it: `sync()` adds what the store
has and the index lacks, drops what the index has and the store lost, and rebuilds when
the index type cannot delete in place (HNSW). A crash between a store commit and an index
save is repaired by the next `sync()`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Literal

import numpy as np

from lectern.protocols import DocumentStore

IndexType = Literal["flat", "hnsw", "ivf"]
_INDEX_FILE = "vectors.faiss"
_META_FILE = "vectors.json"


class FaissIndex:
    def __init__(
        self,
        dimension: int,
        encoder: str,
        kind: IndexType = "flat",
        hnsw_m: int = 32,
        hnsw_ef_search: int = 64,
        ivf_nlist: int = 0,
        ivf_nprobe: int = 16,
        use_gpu: bool = False,
    ) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be positive, got {dimension}")
        if kind not in ("flat", "hnsw", "ivf"):
            raise ValueError(f"unknown index type {kind!r}; use flat, hnsw or ivf")
        self.dimension = dimension
        self.encoder = encoder
        self.kind = kind
        self.hnsw_m = hnsw_m
        self.hnsw_ef_search = hnsw_ef_search
        self.ivf_nlist = ivf_nlist
        self.ivf_nprobe = ivf_nprobe
        self.use_gpu = use_gpu
        self._index = None
        self._ids = np.zeros(0, dtype=np.int64)
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    def _meta(self) -> dict:
        return {
            "dimension": self.dimension,
            "encoder": self.encoder,
            "kind": self.kind,
            "count": len(self._ids),
        }

    def _new_index(self, vectors: np.ndarray):  # noqa: ANN202 - a faiss.Index
        import faiss

        d = self.dimension
        if self.kind == "hnsw":
            base = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efSearch = self.hnsw_ef_search
            index = faiss.IndexIDMap2(base)
        elif self.kind == "ivf":
            # Each list needs some dozens of training points; small corpora get few lists.
            nlist = self.ivf_nlist or max(1, int(4 * math.sqrt(max(len(vectors), 1))))
            nlist = max(1, min(nlist, len(vectors) // 39 or 1))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            if len(vectors):
                index.train(vectors)
            index.nprobe = min(self.ivf_nprobe, nlist)
        else:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        return index

    def _on_device(self, index):  # noqa: ANN001, ANN202
        if not self.use_gpu or self.kind == "hnsw":  # faiss has no GPU HNSW
            return index
        import faiss

        return faiss.index_cpu_to_all_gpus(index)

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = self._check(vectors, len(ids))
        index = self._new_index(vectors)
        if len(ids):
            index.add_with_ids(vectors, ids)
        with self._lock:
            self._index = self._on_device(index)
            self._ids = np.sort(ids)

    def _check(self, vectors: np.ndarray, n: int) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        if len(vectors) != n:
            raise ValueError(f"{n} ids but {len(vectors)} vectors")
        return vectors

    def sync(self, store: DocumentStore) -> tuple[int, int]:
        """Make the index hold exactly the store's chunks; return (added, removed)."""
        want = store.chunk_ids()
        with self._lock:
            have = self._ids
            stale = np.setdiff1d(have, want, assume_unique=True)
            new = np.setdiff1d(want, have, assume_unique=True)
            if self._index is None or (len(stale) and self.kind == "hnsw"):
                self.build(want, store.vectors(want, self.encoder))
                return len(new), len(stale)
            if self.kind == "ivf" and len(new) > len(have):
                # The coarse quantizer was trained on the old vectors; when the corpus
                # more than doubles, retrain on all of them.
                self.build(want, store.vectors(want, self.encoder))
                return len(new), len(stale)
            if len(stale):
                self._index.remove_ids(stale)
            if len(new):
                self._index.add_with_ids(
                    self._check(store.vectors(new, self.encoder), len(new)), new
                )
            self._ids = want
            return len(new), len(stale)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) of the k nearest vectors by inner product, best first."""
        with self._lock:
            if self._index is None or not len(self._ids) or k < 1:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dimension)
            scores, ids = self._index.search(q, min(k, len(self._ids)))
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def save(self, folder: Path) -> None:
        """Write the index so that a crash at any point leaves the previous one readable."""
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._index is None:
                return
            index = (
                faiss.index_gpu_to_cpu(self._index)
                if self.use_gpu and self.kind != "hnsw"
                else self._index
            )
            _atomic_write(folder / _INDEX_FILE, faiss.serialize_index(index).tobytes())
            # The meta file is written last and names the count, so a reader can tell an
            # index file from a previous save that the meta does not describe.
            _atomic_write(folder / _META_FILE, json.dumps(self._meta()).encode())

    def load(self, folder: Path) -> bool:
        """Load a saved index if it matches this encoder and type; False when there is none."""
        import faiss

        index_file, meta_file = folder / _INDEX_FILE, folder / _META_FILE
        if not index_file.exists() or not meta_file.exists():
            return False
        meta = json.loads(meta_file.read_text())
        if {k: meta.get(k) for k in ("dimension", "encoder", "kind")} != {
            "dimension": self.dimension,
            "encoder": self.encoder,
            "kind": self.kind,
        }:
            return False
        index = faiss.deserialize_index(np.frombuffer(index_file.read_bytes(), dtype=np.uint8))
        if index.ntotal != meta["count"]:
            return False
        ids = _stored_ids(index)
        with self._lock:
            self._index = self._on_device(index)
            self._ids = np.sort(ids)
        return True


def _stored_ids(index) -> np.ndarray:  # noqa: ANN001
    import faiss

    if isinstance(index, faiss.IndexIDMap2 | faiss.IndexIDMap):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    invlists = faiss.extract_index_ivf(index).invlists
    parts = [
        faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
        for i in range(invlists.nlist)
        if invlists.list_size(i)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
