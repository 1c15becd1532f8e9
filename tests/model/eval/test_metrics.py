"""The answer metrics on hand-computed cases, the official SQuAD v1.1 script's quirks included."""

import math

import pytest

from lectern.reporting import mean_se
from model.eval.metrics import (
    answer_scores,
    citation_hits,
    contains,
    exact_match,
    f1,
    normalize,
    strip_citations,
    words,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  a  cat, AN owl and the\tdog. ", "cat owl and dog"),
    ("theatre another anthem", "theatre another anthem"),  # articles only as whole words
    ("1,500 degrees", "1500 degrees"),  # punctuation is dropped, not turned into a space
    ("rock-and-roll", "rockandroll"),
    ("“quoted” – dash", "“quoted” – dash"),  # string.punctuation is ASCII only, as the script's
    ("The", ""),
    ("", ""),
])
def test_normalize_is_the_official_one(text, expected):
    assert normalize(text) == expected


def test_exact_match_is_the_max_over_the_gold_answers():
    assert exact_match("the Denver Broncos", ["Broncos", "Denver Broncos"]) == 1.0
    assert exact_match("Denver Broncos.", ["Carolina Panthers"]) == 0.0
    assert exact_match("Broncos", []) == 0.0
    # A gold answer that normalises to nothing equals an empty prediction (the script's quirk).
    assert exact_match("", ["The"]) == 1.0
    assert exact_match("an", ["the"]) == 1.0


def test_f1_by_hand():
    # prediction "denver broncos won" vs gold "broncos": 1 common, P 1/3, R 1 -> F1 0.5
    assert f1("Denver Broncos won", ["Broncos"]) == pytest.approx(0.5)
    # vs "the denver broncos" -> "denver broncos": 2 common, P 2/3, R 1 -> 0.8; max is 0.8
    assert f1("Denver Broncos won", ["Broncos", "the Denver Broncos"]) == pytest.approx(0.8)
    # a repeated token counts as often as both sides hold it: "x x y" vs "x y y" share
    # one x and one y, P 2/3, R 2/3 -> 2/3
    assert f1("x x y", ["x y y"]) == pytest.approx(2 / 3)
    assert f1("nothing shared", ["Broncos"]) == 0.0
    # v1.1 scores empty against empty 0 (v2.0 would say 1)
    assert f1("", ["The"]) == 0.0
    assert f1("", ["Broncos"]) == 0.0
    assert f1("Broncos", []) == 0.0


def test_strip_citations():
    assert strip_citations("Paris [1].") == "Paris."
    assert strip_citations("It is [1, 2] in Paris [3], France [2,3].") == "It is in Paris, France."
    assert strip_citations("no markers [a] here") == "no markers [a] here"


def test_contains_is_at_token_boundaries():
    golds = ["1,500 degrees"]
    assert contains("Glass melts at about 1,500 degrees [1].", golds)
    assert not contains("Glass melts at about 11,500 degrees.", golds)
    assert contains("They start the art class.", ["Art"])
    assert not contains("They start late.", ["art"])
    assert contains("Denver Broncos", ["Carolina", "the Broncos"])  # any gold answer
    assert not contains("The answer", ["The"])  # a gold that normalises to nothing
    assert not contains("anything", [])


def test_scores_are_computed_on_the_stripped_text_and_an_abstention_scores_zero():
    golds = ["Denver Broncos"]
    # Unstripped, "[1]" would be the token "1" and cost precision.
    assert answer_scores("Denver Broncos [1]", golds, abstained=False) == {
        "em": 1.0, "f1": 1.0, "contains": 1.0}
    idk = "I don't know whether the Denver Broncos won."
    assert answer_scores(idk, golds, abstained=True) == {"em": 0.0, "f1": 0.0, "contains": 0.0}
    scores = answer_scores("The Broncos won [2].", golds, abstained=False)
    # "broncos won" vs "denver broncos": P 1/2, R 1/2
    assert scores == {"em": 0.0, "f1": pytest.approx(0.5), "contains": 0.0}


def test_citation_hits_and_words():
    passages = ["Super Bowl 50 was won by the Denver Broncos.", "Levi's Stadium hosted it."]
    assert citation_hits(passages, ["Denver Broncos", "Broncos"]) == [True, False]
    assert words("The Denver Broncos won [1], 24-10 [1, 2].") == 5


def test_mean_and_standard_error_by_hand():
    mean, se = mean_se([0.0, 1.0, 1.0, 0.0])
    # sample std of 0,1,1,0 = sqrt(1/3); se = sqrt(1/3) / 2
    assert mean == 0.5
    assert se == pytest.approx(math.sqrt(1 / 3) / 2)
    assert mean_se([0.25]) == (0.25, None)
    with pytest.raises(ValueError, match="no values"):
        mean_se([])
