"""Fakes for tests and benchmarks: deterministic, dependency-free stand-ins for models."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from lectern.text import words
from lectern.types import Chunk, ScoredChunk

if TYPE_CHECKING:
    from lectern.settings import Settings


def word_count(text: str) -> int:
    """A token counter that needs no tokenizer: one token per word."""
    return len(words(text))


class HashEmbedder:
    """Bag-of-words vectors by feature hashing: texts sharing words are near each other.

    Good enough to test ranking logic end to end without loading a neural encoder.
    """

    def __init__(self, dimension: int = 64, fingerprint: str = "hash-embedder") -> None:
        if dimension < 2:
            raise ValueError(f"dimension must be at least 2, got {dimension}")
        self._dimension = dimension
        self._fingerprint = fingerprint
        self.calls = 0

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def warm_up(self) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return word_count(text)

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self._dimension, dtype=np.float32)
        for word in words(text):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            v[h % self._dimension] += 1.0 if (h >> 32) & 1 else -1.0
        norm = np.linalg.norm(v)
        if norm == 0:
            v[0] = 1.0
            return v
        return v / norm

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        return np.stack([self._vector(t) for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)


class WindowedEmbedder(HashEmbedder):
    """A HashEmbedder that, like the real encoder, reads at most `max_tokens` tokens (words),
    `passage_overhead` of them spent on special tokens."""

    def __init__(self, max_tokens: int, passage_overhead: int = 2, dimension: int = 64) -> None:
        super().__init__(dimension, fingerprint=f"hash-window-{max_tokens}")
        self.max_tokens = max_tokens
        self.passage_overhead = passage_overhead


class EchoGenerator:
    """Replies with a fixed text, or else the last line of the last message.

    Streams word by word, so streaming paths are exercised without a model.
    """

    def __init__(self, reply: str | None = None) -> None:
        self.reply = reply
        self.seen: list[list[dict[str, str]]] = []

    def warm_up(self) -> None:
        pass

    def generate(self, messages: Sequence[dict[str, str]]) -> str:
        self.seen.append(list(messages))
        if self.reply is not None:
            return self.reply
        text = messages[-1]["content"].strip() if messages else ""
        return text.splitlines()[-1] if text else ""

    def stream(self, messages: Sequence[dict[str, str]]) -> Iterator[str]:
        parts = self.generate(messages).split(" ")
        for i, part in enumerate(parts):
            yield part if i == len(parts) - 1 else part + " "

    def samples(self, messages: Sequence[dict[str, str]], n: int) -> list[str]:
        return [self.generate(messages) for _ in range(n)]

    def close(self) -> None:
        pass


class CountingEchoGenerator(EchoGenerator):
    """An EchoGenerator that counts tokens as words, as a real one counts with its tokenizer."""

    def count_tokens(self, text: str) -> int:
        return word_count(text)

    def count_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        return sum(word_count(m["content"]) for m in messages)


class OverlapReranker:
    """Scores a passage by the share of the query's words it contains.

    A stand-in for a cross-encoder: deterministic, and it reorders candidates the way a
    real reranker should when one passage plainly answers the query.
    """

    def __init__(self) -> None:
        self.candidates: list[int] = []  # how many chunks each call scored
        self.prior_weights: list[float | None] = []  # what each call was given

    @property
    def calls(self) -> int:
        return len(self.candidates)

    def warm_up(self) -> None:
        pass

    def rerank(
        self,
        query: str,
        chunks: Sequence[ScoredChunk],
        top_k: int,
        *,
        prior_weight: float | None = None,
    ) -> list[ScoredChunk]:
        self.candidates.append(len(chunks))
        self.prior_weights.append(prior_weight)
        if top_k < 1 or not chunks:
            return []
        shares = self.score_chunks(query, [hit.chunk for hit in chunks])
        scored = [ScoredChunk(hit.chunk, float(s)) for hit, s in zip(chunks, shares, strict=True)]
        scored.sort(key=lambda h: (-h.score, h.chunk.id))
        return scored[:top_k]

    def score_chunks(self, query: str, chunks: Sequence[Chunk]) -> np.ndarray:
        wanted = set(words(query))
        return np.array(
            [len(wanted & set(words(c.context_text))) / max(len(wanted), 1) for c in chunks],
            dtype=np.float32,
        )


class AdapterGenerator(EchoGenerator):
    """What `model.generators.build` makes for settings naming an adapter, without a model.

    It replies "Adapter <folder name> [1]." ("base" without one) and, like the real
    generator, refuses at warm_up an adapter that does not fit: here, one whose
    adapter_config.json names another `base_model_name_or_path` than `base`.
    """

    def __init__(self, settings: Settings, base: str = "fake-base") -> None:
        from model import prepare

        self.adapter = prepare.adapter(settings)
        super().__init__(f"Adapter {self.adapter.name if self.adapter else 'base'} [1].")
        self.base = base
        self.warmed = 0
        self.closed = 0

    def warm_up(self) -> None:
        import json

        from lectern.errors import AdapterMismatchError
        from model.prepare import ADAPTER_CONFIG

        self.warmed += 1
        if self.adapter is None:
            return
        made_for = json.loads((self.adapter / ADAPTER_CONFIG).read_text()).get(
            "base_model_name_or_path"
        )
        if made_for != self.base:
            raise AdapterMismatchError(str(self.adapter), self.base, f"it was made for {made_for}")

    def close(self) -> None:
        self.closed += 1
