"""What the reranker reads: the heading bounded to a share of its window, the passage the rest
(retriever.cross_encoder.model_inputs, which training uses too)."""

import pytest

from lectern.types import Chunk
from retriever.cross_encoder import (
    HEADING_SHARE,
    SHIPPED_RERANKER,
    QueryFocus,
    bound_headings,
    head_and_body,
    model_inputs,
)
from retriever.train.reranker_fit import _texts as training_texts

MAX_LENGTH = 64  # the shipped reranker's window
URL = (
    "https://www.cnn.com/2015/03/12/politics/senate-committee-votes-on-budget-proposal-after-"
    "long-debate-over-defence-spending/index.html?eref=rss_topstories&utm_source=feed"
)
QUERY = "When is the library open on Saturdays?"
FILLER = [f"Item {i} of the regulations concerns something else entirely." for i in range(12)]
ANSWER = "On Saturdays the library is open from ten to four."
BODY = " ".join([*FILLER[:6], ANSWER, *FILLER[6:]])


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(SHIPPED_RERANKER))


@pytest.fixture(scope="module")
def focus():
    return QueryFocus()


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def read(tokenizer, text: str) -> tuple[int, int, int]:
    """(heading tokens, passage tokens, whole pair) of what the model reads of `text`."""
    head, _, body = text.rpartition("\n")
    pair = len(tokenizer(QUERY, text)["input_ids"])
    return n_tokens(tokenizer, head), n_tokens(tokenizer, body), pair


def test_a_url_title_leaves_the_passage_most_of_the_window(tokenizer, focus):
    assert n_tokens(tokenizer, URL) >= 40, "the case of issue 17: a title of ~40 tokens"
    chunk = Chunk(1, "d", BODY, "news.html", URL)
    (text,) = model_inputs(tokenizer, focus, QUERY, [head_and_body(chunk)], MAX_LENGTH)
    heading, passage, pair = read(tokenizer, text)
    assert text.startswith("senate committee votes")
    assert pair <= MAX_LENGTH, "nothing is left for the tokenizer to cut"
    query = n_tokens(tokenizer, QUERY)
    assert heading <= MAX_LENGTH // HEADING_SHARE
    assert passage >= MAX_LENGTH - 3 - query - MAX_LENGTH // HEADING_SHARE - 8
    assert ANSWER in text, "the passage kept is the part that answers"


def test_a_heading_long_after_shortening_gets_its_share_and_no_more(tokenizer, focus):
    # The raw URL as the heading: model_inputs bounds whatever it is given.
    for use in (focus, None):
        (text,) = model_inputs(tokenizer, use, QUERY, [(URL, BODY)], MAX_LENGTH)
        heading = read(tokenizer, text)[0]
        assert heading == MAX_LENGTH // HEADING_SHARE
        assert URL.startswith(text.split("\n")[0]), "the heading is cut, not rewritten"
        assert text.endswith(BODY) if use is None else ANSWER in text
    (text,) = model_inputs(tokenizer, focus, QUERY, [(URL, BODY)], MAX_LENGTH)
    assert read(tokenizer, text)[1] >= MAX_LENGTH - 3 - n_tokens(tokenizer, QUERY) - 16 - 8


def test_a_short_heading_and_no_heading_are_left_as_they_are(tokenizer, focus):
    short = [("Library > Opening hours", "Open from nine."), ("", "No heading here.")]
    assert model_inputs(tokenizer, focus, QUERY, short, MAX_LENGTH) == [
        "Library > Opening hours\nOpen from nine.", "No heading here."
    ]


@pytest.mark.parametrize("limit", [0, 1, 5, 16])
def test_token_starts_after_a_cut_are_those_of_the_new_text(tokenizer, limit):
    passages = [(URL, BODY), ("Short", "Body text."), ("", "Only a body.")]
    texts = [f"{h}\n{b}" if h else b for h, b in passages]

    def starts(text_list):
        rows = tokenizer(text_list, add_special_tokens=False, return_offsets_mapping=True)
        return [[a for a, _ in row] for row in rows["offset_mapping"]]

    cut, shifted = bound_headings(passages, starts(texts), limit)
    assert [b for _, b in cut] == [b for _, b in passages], "bodies are never touched"
    assert all(n_tokens(tokenizer, h) <= limit for h, _ in cut if h)
    assert shifted == starts([f"{h}\n{b}" if h else b for h, b in cut])


def test_training_reads_the_bounded_heading_too(tokenizer, focus):
    chunk = Chunk(1, "d", BODY, "news.html", URL, "World > Politics > Reactions")
    (text,) = training_texts(focus, tokenizer, QUERY, [chunk], MAX_LENGTH)
    assert text == model_inputs(tokenizer, focus, QUERY, [head_and_body(chunk)], MAX_LENGTH)[0]
    assert text.split("\n")[0].endswith("> Reactions") and "https" not in text
