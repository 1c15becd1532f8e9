"""The sentences of a passage, as the answer's context compressor picks among them.

The compressor scores a passage's sentences against the question by the retrieval
encoder. Embedding them per question costs a large part of a first-token budget on a CPU,
so the store keeps each chunk's sentence vectors, written where its chunk vectors are
(refresh after ingest, and an encoder switch), and the compressor reads them. Both sides
split a passage here, so the vectors line up with the sentences row by row; the key they
are kept under names the split's version, so a change to the split cannot pair old
vectors with new sentences.
"""

from __future__ import annotations

import re

from lectern.types import Chunk

# The version of the split below: part of the key sentence vectors are stored under.
SPLIT_VERSION = 1

# Split after . ! ? ; : before a capital or digit, but not after a title ("Dr. Marrow").
_SENTENCE = re.compile(
    r"(?<!\bDr\.)(?<!\bMr\.)(?<!\bMs\.)(?<!\bSt\.)(?<!\bNo\.)(?<!\bMrs\.)(?<!\bProf\.)"
    r"(?<=[.!?;:])\s+(?=[A-Z0-9(\"'])|\n+"
)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def _is_heading(sentence: str, chunk: Chunk) -> bool:
    # The chunker keeps a heading with its text; the prompt already names it.
    heads = {chunk.title, *(chunk.section or "").split(" > ")}
    return sentence.strip().rstrip(":").strip() in {h.strip() for h in heads}


def passage_sentences(chunk: Chunk) -> list[str]:
    """The sentences of the chunk's text that the compressor may keep, in order: its
    headings left out, the whole text when nothing else is left."""
    return [s for s in sentences(chunk.text) if not _is_heading(s, chunk)] or [chunk.text]


def sentence_key(encoder: str) -> str:
    """What a chunk's sentence vectors from `encoder` (a passage fingerprint) are kept
    under."""
    return f"{encoder}|sentences-v{SPLIT_VERSION}"
