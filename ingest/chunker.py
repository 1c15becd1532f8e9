"""Element-aware, token-aware chunking.

Blocks are grouped into sections by the titles that head them (a heading stack gives
"Fees > International students"), headings stay with the text under them, sections too
short to stand alone are merged forward, and a section longer than the chunk size is
split by langchain's recursive splitter — at block boundaries first, then lines,
sentences, words — measured in the encoder's own tokens, with overlap.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.partition import Block

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
    def __init__(
        self,
        count_tokens: Callable[[str], int],
        chunk_tokens: int = 200,
        overlap: int = 32,
        min_section_tokens: int = 48,
    ) -> None:
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be positive, got {chunk_tokens}")
        if not 0 <= overlap < chunk_tokens:
            raise ValueError(f"overlap must be in [0, {chunk_tokens}), got {overlap}")
        self.count_tokens = count_tokens
        self.chunk_tokens = chunk_tokens
        self.min_section_tokens = min_section_tokens
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=chunk_tokens,
            chunk_overlap=overlap,
            length_function=count_tokens,
            separators=_SEPARATORS,
            keep_separator="end",
            add_start_index=True,
        )

    def split(self, blocks: Sequence[Block]) -> list[Piece]:
        pieces: list[Piece] = []
        for section in self._merge_small(self._sections(blocks)):
            pieces.extend(self._split_section(section))
        return pieces

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

    def _split_section(self, section: _Section) -> list[Piece]:
        page = next((p for p in section.pages if p is not None), None)
        joined = "\n\n".join(section.texts)
        if section.tokens <= self.chunk_tokens and self.count_tokens(joined) <= self.chunk_tokens:
            return [Piece(joined, section.heading, page)]
        starts, offset = [], 0
        for text in section.texts:
            starts.append(offset)
            offset += len(text) + 2
        pieces = []
        for doc in self._splitter.create_documents([joined]):
            text = doc.page_content.strip()
            if not text:
                continue
            i = max(bisect.bisect_right(starts, doc.metadata["start_index"]) - 1, 0)
            page_here = next((p for p in section.pages[i:] if p is not None), page)
            pieces.append(Piece(text, section.heading, page_here))
        return pieces
