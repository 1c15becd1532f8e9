"""The one word splitter of query focus, training data, question writing and the fakes."""

import pytest

from lectern.text import words


def test_words_are_lower_cased_word_character_runs_in_order():
    assert words("Which courses need CSC 210?") == ["which", "courses", "need", "csc", "210"]
    assert words("Renewed twice -- twice!") == ["renewed", "twice", "twice"]
    assert words("snake_case, e-mail & Straße") == ["snake_case", "e", "mail", "straße"]
    assert words("") == [] and words(" ...!? ") == []


@pytest.mark.parametrize(("text", "expected"), [
    ("The library loan period is 28 days. Renewals are allowed twice.",
     ["the", "library", "loan", "period", "is", "28", "days", "renewals", "are", "allowed",
      "twice"]),
    ("Fees: EUR 16,800 per year; due by 1 October (two instalments).",
     ["fees", "eur", "16", "800", "per", "year", "due", "by", "1", "october", "two",
      "instalments"]),
    ("Die Straße heißt Café-Allee. ÉCOLE, Ärzte und CSC_210.",
     ["die", "straße", "heißt", "café", "allee", "école", "ärzte", "und", "csc_210"]),
])
def test_words_are_what_the_reranker_was_trained_on(text, expected):
    # The shipped reranker's inputs were chosen by this split (lower-cased runs of word
    # characters: letters of any script, digits, "_"): it must not drift.
    assert words(text) == expected
