"""The embedded document store: documents, chunks and their vectors in one SQLite file.

It is the source of truth. A document's chunks and vectors are replaced in a single
transaction and cascade on delete, so the store never holds orphans; the FAISS and BM25
indexes are derived from it and reconciled against it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np

from lectern.types import Chunk, DocumentInfo

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    ingested_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_hash ON documents(content_hash);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a stale index id cannot alias
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    section TEXT,
    page INTEGER
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE TABLE IF NOT EXISTS vectors (
    chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
    encoder TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (chunk_id, encoder)
);
-- A chunk's sentence vectors (lectern.sentences), one float32 row per sentence.
CREATE TABLE IF NOT EXISTS sentence_vectors (
    chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    vectors BLOB NOT NULL,
    PRIMARY KEY (chunk_id, key)
);
"""
_MAX_PARAMS = 900  # SQLite's bound-parameter limit (999 before 3.32), with room to spare
_CHUNK_SELECT = (
    "SELECT c.id, c.document_id, c.text, d.source, d.title, c.section, c.page, c.position "
    "FROM chunks c JOIN documents d ON d.id = c.document_id"
)


def _chunk(row: tuple) -> Chunk:
    return Chunk(*row)


def _info(row: tuple) -> DocumentInfo:
    return DocumentInfo(*row[:7], ingested_at=datetime.fromisoformat(row[7]))


class SQLiteDocumentStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise ValueError(f"store path {self.path} is a directory")
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, all or nothing, with the store's lock held."""
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def upsert_document(
        self, info: DocumentInfo, chunks: Sequence[Chunk], vectors: np.ndarray, encoder: str
    ) -> list[int]:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        blobs = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._write() as db:
            db.execute("DELETE FROM documents WHERE id = ?", (info.id,))
            db.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    info.id,
                    info.source,
                    info.title,
                    info.content_hash,
                    info.media_type,
                    info.size_bytes,
                    len(chunks),
                    info.ingested_at.isoformat(),
                ),
            )
            ids = []
            for chunk, vector in zip(chunks, blobs, strict=True):
                cur = db.execute(
                    "INSERT INTO chunks (document_id, position, text, section, page) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (info.id, chunk.position, chunk.text, chunk.section, chunk.page),
                )
                ids.append(cur.lastrowid)
                db.execute(
                    "INSERT INTO vectors VALUES (?, ?, ?)",
                    (cur.lastrowid, encoder, vector.tobytes()),
                )
        return ids

    def delete_document(self, document_id: str) -> int:
        with self._lock:
            row = self.db.execute(
                "SELECT chunk_count FROM documents WHERE id = ?", (document_id,)
            ).fetchone()
            self.db.execute("DELETE FROM documents WHERE id = ?", (document_id,))
        return row[0] if row else 0

    def get_document(self, document_id: str) -> DocumentInfo | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM documents WHERE id = ?", (document_id,)).fetchone()
        return _info(row) if row else None

    def find_by_source(self, source: str) -> DocumentInfo | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM documents WHERE source = ?", (source,)).fetchone()
        return _info(row) if row else None

    def find_by_hash(self, content_hash: str) -> DocumentInfo | None:
        with self._lock:
            row = self.db.execute(
                "SELECT * FROM documents WHERE content_hash = ? LIMIT 1", (content_hash,)
            ).fetchone()
        return _info(row) if row else None

    def list_documents(self) -> list[DocumentInfo]:
        with self._lock:
            rows = self.db.execute("SELECT * FROM documents ORDER BY source").fetchall()
        return [_info(r) for r in rows]

    def get_chunks(self, ids: Sequence[int]) -> list[Chunk]:
        """The chunks with these ids, in the order asked; unknown ids are left out."""
        if not len(ids):
            return []
        wanted = [int(i) for i in ids]
        with self._lock:
            rows = self.db.execute(
                f"{_CHUNK_SELECT} WHERE c.id IN ({','.join('?' * len(wanted))})", wanted
            ).fetchall()
        by_id = {r[0]: _chunk(r) for r in rows}
        return [by_id[i] for i in wanted if i in by_id]

    def all_chunks(self) -> list[Chunk]:
        with self._lock:
            rows = self.db.execute(f"{_CHUNK_SELECT} ORDER BY c.id").fetchall()
        return [_chunk(r) for r in rows]

    def chunk_ids(self) -> np.ndarray:
        with self._lock:
            rows = self.db.execute("SELECT id FROM chunks ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def chunk_ids_of(self, document_ids: Collection[str]) -> np.ndarray:
        """The ids of these documents' chunks, ascending; an unknown document has none.

        One indexed lookup (chunks_document) per 900 documents: a filtered search calls
        this once per query.
        """
        wanted = sorted(set(document_ids))
        found: list[int] = []
        with self._lock:
            for start in range(0, len(wanted), _MAX_PARAMS):
                part = wanted[start : start + _MAX_PARAMS]
                found.extend(
                    r[0]
                    for r in self.db.execute(
                        f"SELECT id FROM chunks WHERE document_id IN ({','.join('?' * len(part))})",
                        part,
                    )
                )
        return np.sort(np.fromiter(found, dtype=np.int64, count=len(found)))

    def chunk_count(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    def vectors(self, ids: Sequence[int], encoder: str) -> np.ndarray:
        """Vectors for `ids` (in that order) as written by `encoder`; KeyError if any is missing."""
        wanted = [int(i) for i in ids]
        found: dict[int, bytes] = {}
        with self._lock:
            for start in range(0, len(wanted), _MAX_PARAMS):
                part = wanted[start : start + _MAX_PARAMS]
                found.update(
                    self.db.execute(
                        f"SELECT chunk_id, vector FROM vectors WHERE encoder = ? AND chunk_id IN "
                        f"({','.join('?' * len(part))})",
                        [encoder, *part],
                    ).fetchall()
                )
        missing = [i for i in wanted if i not in found]
        if missing:
            raise KeyError(f"{len(missing)} chunks have no {encoder} vector, e.g. {missing[:5]}")
        if not wanted:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([np.frombuffer(found[i], dtype=np.float32) for i in wanted])

    def encoders(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self.db.execute("SELECT DISTINCT encoder FROM vectors")}

    def vector_count(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def ids_without_vectors(self, encoder: str) -> np.ndarray:
        with self._lock:
            rows = self.db.execute(
                "SELECT c.id FROM chunks c LEFT JOIN vectors v "
                "ON v.chunk_id = c.id AND v.encoder = ? WHERE v.chunk_id IS NULL ORDER BY c.id",
                (encoder,),
            ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def add_vectors(self, ids: Sequence[int], vectors: np.ndarray, encoder: str) -> None:
        blobs = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                [(int(i), encoder, v.tobytes()) for i, v in zip(ids, blobs, strict=True)],
            )

    def ids_without_sentence_vectors(self, key: str) -> np.ndarray:
        with self._lock:
            rows = self.db.execute(
                "SELECT c.id FROM chunks c LEFT JOIN sentence_vectors v "
                "ON v.chunk_id = c.id AND v.key = ? WHERE v.chunk_id IS NULL ORDER BY c.id",
                (key,),
            ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def add_sentence_vectors(
        self, ids: Sequence[int], matrices: Sequence[np.ndarray], key: str
    ) -> None:
        if len(ids) != len(matrices):
            raise ValueError(f"{len(ids)} chunks but {len(matrices)} sentence matrices")
        rows = []
        for i, m in zip(ids, matrices, strict=True):
            m = np.ascontiguousarray(m, dtype=np.float32)
            if m.ndim != 2 or not len(m):
                raise ValueError(f"chunk {i}: sentence vectors must be a non-empty matrix, "
                                 f"got shape {m.shape}")
            rows.append((int(i), key, m.shape[1], m.tobytes()))
        with self._write() as db:
            # A chunk deleted meanwhile has no row to refer to: its vectors are dropped.
            db.executemany(
                "INSERT OR REPLACE INTO sentence_vectors SELECT ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?)",
                [(*r, r[0]) for r in rows],
            )

    def sentence_vectors(self, ids: Sequence[int], key: str) -> dict[int, np.ndarray]:
        """The sentence vectors kept under `key` of those of `ids` that have them."""
        wanted = [int(i) for i in ids]
        out: dict[int, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(wanted), _MAX_PARAMS):
                part = wanted[start : start + _MAX_PARAMS]
                for chunk_id, dimension, blob in self.db.execute(
                    "SELECT chunk_id, dimension, vectors FROM sentence_vectors WHERE key = ? "
                    f"AND chunk_id IN ({','.join('?' * len(part))})",
                    [key, *part],
                ):
                    out[chunk_id] = np.frombuffer(blob, dtype=np.float32).reshape(-1, dimension)
        return out
