"""BM25Retriever: its tokenizer, its terms, and retrieving from many threads at once."""

from __future__ import annotations

import random
import threading

import pytest

from lectern.types import Chunk
from retriever import bm25
from retriever.bm25 import BM25Retriever
from tests.threads import run_together

pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

SUFFIXES = ("", "s", "ing", "ed", "ly", "ness", "ation", "er")


def words(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choice("bcdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))
            for _ in range(n)]


def corpus(seed: int = 0, size: int = 120) -> tuple[list[Chunk], list[str]]:
    """Chunks of inflected made-up words, and queries of indexed and unseen words alike."""
    rng = random.Random(seed)
    bases = words(rng, 60)
    unseen = words(random.Random(seed + 1), 40)
    chunks = [
        Chunk(i, f"d{i}", " ".join(rng.choice(bases) + rng.choice(SUFFIXES)
                                   for _ in range(rng.randint(5, 30))), "s", "Title")
        for i in range(size)
    ]
    queries = [
        " ".join(rng.choice(bases if rng.random() < 0.6 else unseen) + rng.choice(SUFFIXES)
                 for _ in range(rng.randint(1, 6)))
        for _ in range(200)
    ]
    return chunks, queries


def built(chunks: list[Chunk]) -> BM25Retriever:
    r = BM25Retriever(store=None)  # type: ignore[arg-type]  # build() reads no store
    r.build(chunks)
    return r


def hits(r: BM25Retriever, query: str) -> list[tuple[int, float]]:
    return [(h.chunk.id, h.score) for h in r.retrieve(query, 10)]


def test_the_tokenizer_lowercases_drops_stopwords_and_stems():
    tok = bm25.tokenizer()
    got = tok.tokenize(["The Cats are RUNNING quickly, and the dog barked at a car"],
                       return_as="string", show_progress=False)
    # bm25s's English stopwords (Lucene's 33: "the", "are", "and", "at", "a", ...) are gone.
    assert got == [["cat", "run", "quick", "dog", "bark", "car"]]
    assert bm25.tokenizer() is not tok, "a new one each call: tokenizing changes it"
    assert bm25.stem("connections") == bm25.stem("connected") == "connect"


def test_retrieve_scores_the_stems_bm25s_s_tokenizer_gives():
    chunks, queries = corpus()
    r = built(chunks)
    reference = bm25.tokenizer()
    reference.tokenize([c.context_text for c in chunks], show_progress=False)
    vocab = reference.get_vocab_dict()
    for q in queries:
        stems = reference.tokenize([q], update_vocab=False, return_as="string",
                                   show_progress=False)[0]
        indexed = [s for s in stems if s in vocab and s != ""]
        assert r.terms(q) == indexed, q


def test_a_query_with_no_indexed_word_finds_nothing():
    # bm25s turns such a query into its empty token, which the chunks without a single
    # word hold: they used to come back for any query of unknown words or stopwords.
    r = built([Chunk(1, "d1", "cats and dogs", "s", ""), Chunk(2, "d2", "?", "s", ""),
               Chunk(3, "d3", "to be or not to be", "s", "")])
    assert r.retrieve("zebras", 5) == []
    assert r.retrieve("the of and", 5) == []
    assert [h.chunk.id for h in r.retrieve("a cat", 5)] == [1]
    assert r.terms("zebras") == []


def test_many_threads_retrieving_at_once_get_what_one_thread_gets():
    chunks, queries = corpus(seed=3)
    alone = built(chunks)
    expected = [hits(alone, q) for q in queries]
    assert sum(bool(e) for e in expected) > len(queries) // 2, "the queries find things"
    shared = built(chunks)
    for results in run_together(lambda n: hits(shared, queries[n]), len(queries), threads=8):
        assert results == expected


def test_no_stemmer_is_called_from_two_threads(monkeypatch):
    """PyStemmer: "The algorithm has internal state, so must not be called concurrently"."""
    real = Stemmer.Stemmer
    used: dict[int, set[int]] = {}
    made: list[object] = []  # kept alive, so that no two share an id()

    class Recording:
        def __init__(self, language: str) -> None:
            self._real = real(language)
            made.append(self)

        def stemWord(self, word: str) -> str:
            used.setdefault(id(self), set()).add(threading.get_ident())
            return self._real.stemWord(word)

        def stemWords(self, batch: list[str]) -> list[str]:
            used.setdefault(id(self), set()).add(threading.get_ident())
            return self._real.stemWords(batch)

    monkeypatch.setattr(Stemmer, "Stemmer", Recording)
    chunks, queries = corpus(seed=5)
    r = built(chunks)
    run_together(lambda n: r.retrieve(queries[n], 10), len(queries), threads=8)
    assert used, "the recording stemmer was used"
    shared = {k: v for k, v in used.items() if len(v) > 1}
    assert not shared, f"stemmers called from several threads: {shared}"


def test_a_rebuild_while_threads_retrieve_serves_one_build_or_the_other():
    chunks, queries = corpus(seed=7)
    first, second = chunks[:60], chunks[60:]
    expect = {
        id_: [hits(built(c), q) for q in queries] for id_, c in (("a", first), ("b", second))
    }
    r = built(first)

    def work(n: int) -> list[tuple[int, float]]:
        if n % 50 == 0:
            r.build(second if (n // 50) % 2 else first)
        return hits(r, queries[n])

    for results in run_together(work, len(queries), threads=4):
        for n, got in enumerate(results):
            assert got in (expect["a"][n], expect["b"][n])


def test_an_index_without_a_store_is_built_from_chunks_and_cannot_sync():
    bm25 = BM25Retriever()
    bm25.build([Chunk(1, "d", "fees are due in October", "s", "Fees")])
    assert [h.chunk.id for h in bm25.retrieve("when are fees due", 3)] == [1]
    with pytest.raises(ValueError, match="no store"):
        bm25.sync()
