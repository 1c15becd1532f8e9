"""Ingest files into the store: check, hash, partition, chunk, embed, replace.

Each file is its own unit of work. A file that fails leaves the store exactly as it was
(its previous version, if any, stays), and the rest of the batch goes on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from ingest.chunker import Chunker, Piece
from ingest.formats import Format, check_file, supported
from ingest.gate import IngestGate
from ingest.limits import ParseLimits, check_limits
from ingest.partition import Block, Parsed, partition
from lectern.errors import IngestError
from lectern.protocols import DocumentStore, Embedder
from lectern.settings import IngestSettings
from lectern.types import Chunk, DocumentInfo

Status = Literal["added", "updated", "unchanged", "duplicate", "failed"]
Parse = Callable[[Path, Format], Parsed]
# Chunks embedded per call: between calls a closing gate stops the ingest, so a shutdown
# waits for one slice (about a second on 2 cores), not for a whole large document.
EMBED_SLICE = 128


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    status: Status
    document_id: str | None = None
    chunks: int = 0
    pages: int = 0
    detail: str = ""
    # Chunks longer, under their heading, than the encoder reads: their end is not
    # embedded (BM25 and the answer still see it). The chunker aims for none.
    truncated: int = 0


@dataclass(slots=True)
class IngestReport:
    results: list[FileResult] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def changed(self) -> bool:
        return any(r.status in ("added", "updated") for r in self.results)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def truncated(self) -> int:
        """Chunks stored by this ingest that the encoder read only in part."""
        return sum(r.truncated for r in self.results)


def document_id(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def expand(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and supported files under folders named (hidden ones skipped)."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path).parts
                if child.is_file() and supported(child) and not any(p.startswith(".") for p in rel):
                    yield child
        else:
            yield path


class Ingestor:
    """Ingests files and texts into `store`.

    `show` names a stored source in messages ("same content as ..."): by default the source
    itself, a full path, for the operator at the CLI; the API passes a rule that shows no
    server path.

    `parse` turns a checked file into blocks: by default unstructured in this thread;
    the service passes ParseWorkers.parse, which runs it in a process a timeout can kill.
    A file passes the parse limits (ingest.limits) first either way. `gate` lets a
    shutdown stop the ingests under way (IngestGate).
    """

    def __init__(
        self,
        store: DocumentStore,
        embedder: Embedder,
        settings: IngestSettings,
        show: Callable[[str], str] = str,
        *,
        parse: Parse | None = None,
        gate: IngestGate | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.show = show
        self.parse: Parse = parse or self._parse_here
        self.gate = gate or IngestGate()
        self.limits = ParseLimits.of(settings)
        self._chunker: Chunker | None = None

    def _parse_here(self, path: Path, fmt: Format) -> Parsed:
        return partition(path, fmt, self.settings.pdf_strategy)

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            window, special = self._window()
            self._chunker = Chunker(
                self.embedder.count_tokens,
                self.settings.chunk_tokens,
                self.settings.chunk_overlap,
                self.settings.min_section_tokens,
                max_tokens=window,
                special_tokens=special,
            )
        return self._chunker

    def _window(self) -> tuple[int | None, int]:
        """(tokens the encoder reads of a passage, how many of them are not its text).

        The Embedder protocol does not ask an encoder for its window; one that tells
        (SentenceTransformerEmbedder) bounds the chunks. (None, 0): no bound.
        """
        window = getattr(self.embedder, "max_tokens", None)
        if window is None:
            return None, 0
        return int(window), int(getattr(self.embedder, "passage_overhead", 0))

    def truncated(self, chunks: list[Chunk]) -> int:
        """How many of `chunks` the encoder reads only in part (0 when it has no window)."""
        window, special = self._window()
        if window is None:
            return 0
        count = self.embedder.count_tokens
        return sum(special + count(c.model_text) > window for c in chunks)

    def ingest_paths(
        self, paths: Iterable[Path], on_file: Callable[[FileResult], None] | None = None
    ) -> IngestReport:
        report = IngestReport()
        for path in expand(paths):
            result = self.ingest_file(path)
            report.results.append(result)
            if on_file is not None:
                on_file(result)
        return report

    def ingest_file(self, path: Path, source: str | None = None) -> FileResult:
        """Ingest one file; `source` names it in the store (default: its absolute path)."""
        shown = str(path)
        try:
            with self.gate.ingesting(shown):
                return self._ingest_file(path, shown, source)
        except IngestError as exc:
            return FileResult(shown, "failed", detail=exc.reason)

    def _ingest_file(self, path: Path, shown: str, source: str | None) -> FileResult:
        if not path.is_file():
            raise IngestError(shown, "no such file")
        fmt = check_file(path, self.settings.max_file_bytes)
        data = path.read_bytes()
        source = source or str(path.resolve())
        content_hash = hashlib.sha256(data).hexdigest()
        skip = self._unchanged_or_duplicate(shown, source, content_hash)
        if skip is not None:
            return skip
        check_limits(path, fmt.name, self.limits)  # before unstructured sees the file
        self.gate.check(shown)
        parsed = self.parse(path, fmt)
        return self._store(
            shown, source, parsed.title, parsed.blocks, content_hash, fmt.media_type, len(data)
        )

    def ingest_text(self, source: str, title: str, text: str) -> FileResult:
        """Ingest text that is already extracted (paragraphs split on blank lines)."""
        try:
            with self.gate.ingesting(source):
                return self._ingest_text(source, title, text)
        except IngestError as exc:
            return FileResult(source, "failed", detail=exc.reason)

    def _ingest_text(self, source: str, title: str, text: str) -> FileResult:
        data = text.encode()
        content_hash = hashlib.sha256(data).hexdigest()
        skip = self._unchanged_or_duplicate(source, source, content_hash)
        if skip is not None:
            return skip
        blocks = [Block(p.strip(), "text") for p in text.split("\n\n") if p.strip()]
        if not blocks:
            return FileResult(source, "failed", detail="text is empty")
        return self._store(source, source, title, blocks, content_hash, "text/plain", len(data))

    def _unchanged_or_duplicate(
        self, shown: str, source: str, content_hash: str
    ) -> FileResult | None:
        doc_id = document_id(source)
        existing = self.store.get_document(doc_id)
        if existing is not None and existing.content_hash == content_hash:
            return FileResult(shown, "unchanged", doc_id, existing.chunk_count)
        twin = self.store.find_by_hash(content_hash)
        if twin is not None and twin.id != doc_id:
            return FileResult(
                shown,
                "duplicate",
                twin.id,
                twin.chunk_count,
                detail=f"same content as {self.show(twin.source)}",
            )
        return None

    def _store(
        self,
        shown: str,
        source: str,
        title: str,
        blocks: list[Block],
        content_hash: str,
        media_type: str,
        size: int,
    ) -> FileResult:
        doc_id = document_id(source)
        pieces: list[Piece] = self.chunker.split(blocks, title)
        chunks = [
            Chunk(
                id=-1,
                document_id=doc_id,
                text=p.text,
                source=source,
                title=title,
                section=p.section,
                page=p.page,
                position=i,
            )
            for i, p in enumerate(pieces)
        ]
        vectors = self._embed(shown, [c.model_text for c in chunks])
        self.gate.check(shown)  # the last point to stop: the store's write is all or nothing
        existed = self.store.get_document(doc_id) is not None
        info = DocumentInfo(
            id=doc_id,
            source=source,
            title=title,
            content_hash=content_hash,
            media_type=media_type,
            size_bytes=size,
            chunk_count=len(chunks),
            ingested_at=datetime.now(UTC),
        )
        self.store.upsert_document(info, chunks, vectors, self.embedder.fingerprint)
        pages = len({b.page for b in blocks if b.page is not None})
        return FileResult(
            shown, "updated" if existed else "added", doc_id, len(chunks), pages,
            truncated=self.truncated(chunks),
        )

    def _embed(self, shown: str, texts: list[str]) -> np.ndarray:
        if len(texts) <= EMBED_SLICE:
            self.gate.check(shown)
            return self.embedder.embed_passages(texts)
        parts = []
        for start in range(0, len(texts), EMBED_SLICE):
            self.gate.check(shown)
            parts.append(self.embedder.embed_passages(texts[start : start + EMBED_SLICE]))
        return np.concatenate(parts)
