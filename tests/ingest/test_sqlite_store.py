from datetime import UTC, datetime

import numpy as np
import pytest

from ingest.sqlite_store import SQLiteDocumentStore
from lectern.types import Chunk, DocumentInfo


def info(doc_id: str, n: int, content_hash: str = "h") -> DocumentInfo:
    return DocumentInfo(
        doc_id,
        f"/docs/{doc_id}",
        doc_id.upper(),
        content_hash,
        "text/plain",
        10,
        n,
        datetime(2026, 1, 1, tzinfo=UTC),
    )


def chunks(doc_id: str, n: int) -> list[Chunk]:
    return [Chunk(-1, doc_id, f"{doc_id} text {i}", "", "", None, None, i) for i in range(n)]


@pytest.fixture
def store(tmp_path):
    s = SQLiteDocumentStore(tmp_path / "s.sqlite3")
    yield s
    s.close()


def test_upsert_replaces_and_delete_cascades(store):
    ids_a = store.upsert_document(info("a", 3), chunks("a", 3), np.ones((3, 4)), "enc")
    store.upsert_document(info("b", 2), chunks("b", 2), np.ones((2, 4)), "enc")
    assert store.chunk_count() == 5 and store.vector_count() == 5
    new_a = store.upsert_document(info("a", 1, "h2"), chunks("a", 1), np.zeros((1, 4)), "enc")
    assert not set(new_a) & set(ids_a), "ids are never reused"
    assert store.chunk_count() == 3 and store.vector_count() == 3
    assert store.get_document("a").content_hash == "h2"
    assert store.delete_document("a") == 1
    assert store.chunk_count() == 2 and store.vector_count() == 2
    assert store.get_document("a") is None
    assert store.delete_document("a") == 0


def test_chunks_come_back_in_the_order_asked_with_document_fields(store):
    ids = store.upsert_document(info("a", 3), chunks("a", 3), np.eye(3, 4), "enc")
    got = store.get_chunks([ids[2], 999, ids[0]])
    assert [c.id for c in got] == [ids[2], ids[0]]
    assert got[0].source == "/docs/a" and got[0].title == "A" and got[0].position == 2
    np.testing.assert_array_equal(
        store.vectors([ids[1]], "enc"), np.eye(3, 4, dtype=np.float32)[[1]]
    )


def test_vectors_per_encoder(store):
    ids = store.upsert_document(info("a", 2), chunks("a", 2), np.ones((2, 4)), "old")
    assert store.ids_without_vectors("new").tolist() == ids
    with pytest.raises(KeyError, match="no new vector"):
        store.vectors(ids, "new")
    store.add_vectors(ids, np.zeros((2, 4)), "new")
    assert store.ids_without_vectors("new").size == 0
    assert store.encoders() == {"old", "new"}


def test_failed_upsert_leaves_the_previous_version(store):
    store.upsert_document(info("a", 2), chunks("a", 2), np.ones((2, 4)), "enc")
    with pytest.raises(ValueError, match="2 chunks but 1 vectors"):
        store.upsert_document(info("a", 2, "h2"), chunks("a", 2), np.ones((1, 4)), "enc")
    bad = [*chunks("a", 2), Chunk(-1, "a", None, "", "", None, None, 9)]  # NOT NULL text
    with pytest.raises(Exception, match="NOT NULL"):
        store.upsert_document(info("a", 3, "h3"), bad, np.ones((3, 4)), "enc")
    assert store.get_document("a").content_hash == "h"
    assert store.chunk_count() == 2 and store.vector_count() == 2


def test_find_by_hash_and_source(store):
    store.upsert_document(info("a", 1, "abc"), chunks("a", 1), np.ones((1, 4)), "enc")
    assert store.find_by_hash("abc").id == "a"
    assert store.find_by_source("/docs/a").id == "a"
    assert store.find_by_hash("zzz") is None

