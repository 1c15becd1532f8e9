"""model.context: the passages cut to the sentences that bear on the question, scored by
the stored sentence vectors where the store has them."""

import numpy as np
import pytest

from lectern.sentences import passage_sentences
from lectern.types import Chunk
from model.context import compress
from tests.fakes import HashEmbedder
from tests.model.passages import CSC

LIBRARY = Chunk(
    3,
    "lib",
    "The library opens at eight. Loans last 28 days. Fines are EUR 0.20 a day. "
    "Study rooms are booked online. The café closes at six. Lockers need a card.",
    "/d/lib.md",
    "Library",
)


def test_compress_keeps_relevant_sentences_within_budget():
    long = Chunk(
        3,
        "x",
        " ".join(f"Filler sentence number {i} about nothing." for i in range(30))
        + " The library loan period is 28 days.",
        "/d/lib.md",
        "Library",
    )
    out = compress("library loan period", [long, CSC], HashEmbedder(256), budget_tokens=20)
    assert out.passages[0].id == 3 and "28 days" in out.passages[0].text
    # The best sentences across all passages, while the budget lasts.
    assert sum(len(p.text.split()) for p in out.passages) <= 20
    assert out.best == (1, "The library loan period is 28 days.")
    with pytest.raises(ValueError, match="at least one passage"):
        compress("q", [], HashEmbedder(8))


def test_compress_drops_passages_without_a_kept_sentence_and_renumbers_best():
    table = Chunk(4, "x", "Code Course ECTS " * 40, "/d/t.md", "Table")
    out = compress("CSC 340 prerequisites", [table, CSC], HashEmbedder(256), budget_tokens=30)
    # The long table row does not fit next to the answer, so only CSC's passage remains,
    # and the best sentence is numbered by its place in the shortened prompt.
    assert [p.id for p in out.passages] == [CSC.id]
    assert out.best == (1, "CSC 340 Machine Learning requires CSC 210 and MAT 220.")


def test_compress_prefers_passages_that_name_the_question_s_identifiers():
    project = Chunk(5, "b", "What are the prerequisites for CSC? At least 120 ECTS for CSC.",
                    "/d/bsc.html", "BSc", "Courses > CSC 390 Bachelor Project")
    course = Chunk(6, "b", "Students need MAT 220 first.", "/d/bsc.html", "BSc",
                   "Courses > CSC 340 Machine Learning")
    embedder = HashEmbedder(256)
    # Without an identifier the closest sentence wins, whichever passage it is in.
    plain = compress("What are the prerequisites for CSC?", [project, course], embedder)
    assert plain.best == (1, "At least 120 ECTS for CSC.")
    # "340" is named only by the second passage's heading: its sentence is the best one,
    # though the first passage's sentence shares more words with the question.
    named = compress("What are the prerequisites for CSC 340?", [project, course], embedder)
    assert named.best == (1, "Students need MAT 220 first.")
    # The passage that does not name it is left out of the prompt.
    assert [p.id for p in named.passages] == [6]
    # An identifier no passage names (a year) changes nothing.
    unnamed = compress("What are the prerequisites for CSC in 1998?", [project, course],
                       embedder)
    assert unnamed.best[0] == 1
    assert [p.id for p in unnamed.passages] == [5, 6]


def stored_for(embedder: HashEmbedder, *chunks: Chunk) -> dict[int, np.ndarray]:
    return {c.id: embedder.embed_passages(passage_sentences(c)) for c in chunks}


@pytest.mark.parametrize("question", ["How long do loans last?", "Who teaches CSC 340?",
                                      "When does the café close?"])
def test_stored_sentence_vectors_give_the_same_context_without_embedding_a_sentence(question):
    embedder = HashEmbedder(256)
    passages = [LIBRARY, CSC]
    embedded = compress(question, passages, embedder, budget_tokens=25)
    stored = stored_for(embedder, *passages)
    calls = embedder.calls
    read = compress(question, passages, embedder, budget_tokens=25, stored=stored)
    assert embedder.calls == calls, "no sentence was embedded"
    assert read == embedded


def test_a_passage_without_matching_stored_rows_has_its_sentences_embedded():
    embedder = HashEmbedder(256)
    passages = [LIBRARY, CSC]
    expected = compress("How long do loans last?", passages, embedder, budget_tokens=25)
    # CSC's matrix is missing; the library's has a row too few (another split wrote it):
    # both are embedded here, and the stored rows are never paired with other sentences.
    wrong = {LIBRARY.id: stored_for(embedder, LIBRARY)[LIBRARY.id][:-1]}
    calls = embedder.calls
    got = compress("How long do loans last?", passages, embedder, budget_tokens=25, stored=wrong)
    assert embedder.calls == calls + 1  # one call for every sentence that needs a vector
    assert got == expected
    # A stored matrix is what is scored: rows that disagree with the text change the pick.
    flipped = stored_for(embedder, LIBRARY, CSC)
    flipped[LIBRARY.id] = flipped[LIBRARY.id][::-1].copy()
    assert compress("How long do loans last?", passages, embedder, budget_tokens=25,
                    stored=flipped).best != expected.best
