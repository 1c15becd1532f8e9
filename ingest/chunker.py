"""Element-aware, token-aware chunking.

Blocks are grouped into sections by the titles that head them (a heading stack gives
"Fees > International students"), headings stay with the text under them, sections too
short to stand alone are merged forward, and a section longer than the chunk size is
split by langchain's recursive splitter — at block boundaries first, then lines,
sentences, words — measured in the encoder's own tokens, with overlap.

The encoder embeds a chunk under its heading (Chunk.model_text) and reads at most
`max_tokens` tokens, its special tokens included; a chunk's text is kept to what is left
of that after its heading, so the encoder does not cut off its end.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.partition import Block
from lectern.headings import model_heading

_SEPARATORS = ["\n\n", "\n", ". ", "; ", ", ", " ", ""]


@dataclass(frozen=True, slots=True)
class Piece:
    text: str
    section: str | None
    page: int | None


@dataclass(slots=True)
class _Section:
    heading: str | None
    texts: list[str] = field(default_factory=list)
    pages: list[int | None] = field(default_factory=list)
    tokens: int = 0
    has_body: bool = False


class Chunker:
    """Splits a document's blocks into pieces of at most `chunk_tokens` tokens.

    max_tokens: what the encoder reads of a text (None: no limit); a piece is kept to
    max_tokens - special_tokens - its heading's tokens when that is smaller.
    special_tokens: what every encoder input spends besides its text ([CLS], [SEP], a
    passage prefix).
    """

    def __init__(
        self,
        count_tokens: Callable[[str], int],
        chunk_tokens: int = 200,
        overlap: int = 32,
        min_section_tokens: int = 48,
        *,
        max_tokens: int | None = None,
        special_tokens: int = 0,
    ) -> None:
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be positive, got {chunk_tokens}")
        if not 0 <= overlap < chunk_tokens:
            raise ValueError(f"overlap must be in [0, {chunk_tokens}), got {overlap}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        if special_tokens < 0:
            raise ValueError(f"special_tokens must be >= 0, got {special_tokens}")
        self.count_tokens = count_tokens
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        self.min_section_tokens = min_section_tokens
        self.max_tokens = max_tokens
        self.special_tokens = special_tokens
        self._splitters: dict[int, RecursiveCharacterTextSplitter] = {}

    def split(self, blocks: Sequence[Block], title: str = "") -> list[Piece]:
        """The pieces of a document titled `title`, each sized to what its heading leaves."""
        pieces: list[Piece] = []
        for section in self._merge_small(self._sections(blocks)):
            pieces.extend(self._split_section(section, self.budget(title, section.heading)))
        return pieces

    def budget(self, title: str, section: str | None) -> int:
        """Tokens a piece's text may have under this title and section.

        chunk_tokens, or less when the encoder's window, after its special tokens and
        the heading the piece is embedded under, leaves less. Never below a quarter of
        chunk_tokens: a heading is bounded (lectern.headings), so that floor only matters
        for a window set smaller than any heading, and the ingest report counts what the
        encoder then cuts.
        """
        if self.max_tokens is None:
            return self.chunk_tokens
        head = model_heading(title, section)
        # The newline between heading and text is no token of its own.
        heading = self.count_tokens(head) if head else 0
        room = self.max_tokens - self.special_tokens - heading
        return max(min(self.chunk_tokens, room), max(self.chunk_tokens // 4, 1))

    def _splitter(self, budget: int) -> RecursiveCharacterTextSplitter:
        splitter = self._splitters.get(budget)
        if splitter is None:
            splitter = self._splitters[budget] = RecursiveCharacterTextSplitter(
                chunk_size=budget,
                # The overlap must stay below the size: a budget cut that far halves it.
                chunk_overlap=self.overlap if self.overlap < budget else budget // 2,
                length_function=self.count_tokens,
                separators=_SEPARATORS,
                keep_separator="end",
                add_start_index=True,
            )
        return splitter

    def _sections(self, blocks: Sequence[Block]) -> list[_Section]:
        stack: list[tuple[int, str]] = []
        sections: list[_Section] = []
        current = _Section(heading=None)
        for block in blocks:
            if block.kind == "title":
                if current.texts:
                    sections.append(current)
                depth = block.depth or 0
                while stack and stack[-1][0] >= depth:
                    stack.pop()
                stack.append((depth, block.text))
                current = _Section(heading=" > ".join(t for _, t in stack))
            else:
                current.has_body = True
            current.texts.append(block.text)
            current.pages.append(block.page)
            current.tokens += self.count_tokens(block.text)
        if current.texts:
            sections.append(current)
        return sections

    def _merge_small(self, sections: list[_Section]) -> list[_Section]:
        merged: list[_Section] = []
        pending: _Section | None = None
        for section in sections:
            if pending is not None:
                # A heading-only run ("Faculty of Science" then "BSc Biology") is named by
                # the section whose body it introduces; otherwise the first name stays.
                heading = section.heading if not pending.has_body else pending.heading
                section = _Section(
                    heading=heading,
                    texts=pending.texts + section.texts,
                    pages=pending.pages + section.pages,
                    tokens=pending.tokens + section.tokens,
                    has_body=pending.has_body or section.has_body,
                )
                pending = None
            if section.tokens < self.min_section_tokens:
                pending = section
            else:
                merged.append(section)
        if pending is not None:
            if merged and merged[-1].tokens + pending.tokens <= self.chunk_tokens:
                last = merged[-1]
                last.texts += pending.texts
                last.pages += pending.pages
                last.tokens += pending.tokens
            else:
                merged.append(pending)
        return merged

    def _split_section(self, section: _Section, budget: int) -> list[Piece]:
        page = next((p for p in section.pages if p is not None), None)
        joined = "\n\n".join(section.texts)
        if section.tokens <= budget and self.count_tokens(joined) <= budget:
            return [Piece(joined, section.heading, page)]
        starts, offset = [], 0
        for text in section.texts:
            starts.append(offset)
            offset += len(text) + 2
        pieces = []
        for doc in self._splitter(budget).create_documents([joined]):
            text = doc.page_content.strip()
            if not text:
                continue
            i = max(bisect.bisect_right(starts, doc.metadata["start_index"]) - 1, 0)
            page_here = next((p for p in section.pages[i:] if p is not None), page)
            pieces.append(Piece(text, section.heading, page_here))
        return pieces
