"""Versioned re-indexing: move the serving encoder to another one without a gap.

Vectors live in the store per encoder fingerprint, so a new encoder's vectors are added
beside the old ones while the old index goes on serving. The new FAISS index is built
and saved in a folder of its own; only then is `active-encoder.json` replaced (the commit
point: a restart serves whatever it names) and the service's objects swapped. A failure
at any step before the commit leaves the old encoder, index and file untouched, and the
vectors already written are reused by the next attempt.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lectern.files import atomic_write
from lectern.protocols import DocumentStore, Embedder
from lectern.sentences import passage_sentences, sentence_key
from lectern.settings import Settings
from retriever.faiss_index import FaissIndex

log = logging.getLogger(__name__)
ACTIVE_FILE = "active-encoder.json"


@dataclass(frozen=True, slots=True)
class ActiveEncoder:
    """The encoder a data directory serves, recorded when it was switched to."""

    fingerprint: str
    index_dir: str  # relative to the data dir
    encoder: str | None  # the model reference to load; None for an embedder handed in
    replaces: str  # settings.models.encoder at the switch
    switched_at: str


def read_active(settings: Settings) -> ActiveEncoder | None:
    """The recorded switch, if there is one and the settings have not moved on since.

    An operator who sets LECTERN_MODELS__ENCODER after a switch means that encoder: the
    record is honoured only while the setting is still the one it replaced.
    """
    path = settings.data_dir / ACTIVE_FILE
    if not path.exists():
        return None
    try:
        active = ActiveEncoder(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None
    if active.replaces != settings.models.encoder:
        log.debug("models.encoder changed since the switch to %s; the setting wins", active.encoder)
        return None
    return active


def serving_settings(settings: Settings) -> Settings:
    """The settings with models.encoder set to the encoder a switch made active."""
    active = read_active(settings)
    if active is None or active.encoder is None:
        return settings
    models = settings.models.model_copy(update={"encoder": active.encoder})
    return settings.model_copy(update={"models": models})


def index_dir(settings: Settings, fingerprint: str) -> Path:
    """Where the index for this encoder is kept: its versioned folder after a switch."""
    active = read_active(settings)
    if active is not None and active.fingerprint == fingerprint:
        return settings.data_dir / active.index_dir
    return settings.index_dir


def versioned_dir(settings: Settings, fingerprint: str) -> Path:
    key = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    return settings.data_dir / "indexes" / key


def embed_missing(
    store: DocumentStore,
    embedder: Embedder,
    batch_size: int = 256,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Give every chunk a vector from `embedder`, a batch per transaction; return how many.

    Resumable: chunks that already have one (from an interrupted run) are skipped.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    missing = store.ids_without_vectors(embedder.fingerprint)
    for start in range(0, len(missing), batch_size):
        ids = missing[start : start + batch_size]
        # A chunk deleted meanwhile is left out here; its vector would cascade away anyway.
        chunks = store.get_chunks(ids.tolist())
        vectors = embedder.embed_passages([c.model_text for c in chunks])
        store.add_vectors([c.id for c in chunks], vectors, embedder.fingerprint)
        if on_progress is not None:
            on_progress(min(start + batch_size, len(missing)), len(missing))
    return len(missing)


def embed_missing_sentences(
    store: DocumentStore, embedder: Embedder, batch_size: int = 256
) -> int:
    """Give every chunk its sentence vectors from `embedder` (see lectern.sentences), a
    batch of chunks per transaction; return how many chunks. Resumable as embed_missing."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    key = sentence_key(embedder.fingerprint)
    missing = store.ids_without_sentence_vectors(key)
    for start in range(0, len(missing), batch_size):
        chunks = store.get_chunks(missing[start : start + batch_size].tolist())
        if not chunks:  # deleted meanwhile
            continue
        split = [passage_sentences(c) for c in chunks]
        vectors = embedder.embed_passages([s for group in split for s in group])
        ends = np.cumsum([len(g) for g in split])
        store.add_sentence_vectors(
            [c.id for c in chunks], np.split(vectors, ends[:-1]), key
        )
    return len(missing)


def empty_like(index: FaissIndex, dimension: int, encoder: str) -> FaissIndex:
    """A new, empty index for `encoder`, configured as `index` is (type, parameters, GPU).

    Read from FaissIndex's own constructor, so a parameter added there is carried over
    without a change here.
    """
    params = inspect.signature(FaissIndex.__init__).parameters
    kwargs = {
        name: getattr(index, name)
        for name in params
        if name not in ("self", "dimension", "encoder") and hasattr(index, name)
    }
    if dimension != index.dimension and "pq_m" in kwargs:
        kwargs["pq_m"] = 0  # sized for the old dimension; let the index pick again
    return FaissIndex(dimension, encoder, **kwargs)


def build_index(
    store: DocumentStore, embedder: Embedder, like: FaissIndex, folder: Path
) -> FaissIndex:
    """The index of every chunk's `embedder` vector, saved to `folder`."""
    index = empty_like(like, embedder.dimension, embedder.fingerprint)
    index.sync(store)
    index.save(folder)
    return index


def write_active(settings: Settings, active: ActiveEncoder) -> None:
    """Record the switch atomically: a reader sees the old record or the new, never half."""
    path = settings.data_dir / ACTIVE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(asdict(active), indent=2) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def record(settings: Settings, embedder: Embedder, folder: Path, ref: str | None) -> ActiveEncoder:
    return ActiveEncoder(
        fingerprint=embedder.fingerprint,
        index_dir=os.path.relpath(folder, settings.data_dir),
        encoder=ref,
        replaces=settings.models.encoder,
        switched_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
