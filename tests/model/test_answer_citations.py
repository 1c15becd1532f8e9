"""model.answer in detail: snippets, the inferred citation's coverage rule, fact checks."""

from __future__ import annotations

import pytest

from lectern.types import Answer, Chunk
from model.answer import (
    IDK,
    SYSTEM,
    assemble,
    build_messages,
    passage_header,
    snippet,
    unsupported_facts,
)

LOANS = Chunk(
    10,
    "lib",
    "The loan period for library books is 28 days and can be renewed twice.",
    "/d/library.md",
    "Library",
    "Borrowing",
    3,
)
DESK = Chunk(11, "desk", "The desk opens Monday from 09:00 to 16:30.", "/d/desk.txt", "Desk")


# -- snippet -------------------------------------------------------------------------


def test_a_short_text_is_kept_whole_with_its_whitespace_collapsed():
    assert snippet("  one\ttwo \n\n three  ") == "one two three"


def test_a_text_of_exactly_the_limit_is_not_cut():
    assert snippet("abcde fghij", limit=11) == "abcde fghij"


def test_a_long_text_is_cut_before_the_word_at_the_limit():
    # flat[:9] is "aaaa bbbb": the last word may be cut, so it goes.
    assert snippet("aaaa bbbb cccc dddd", limit=10) == "aaaa…"
    # flat[:10] is "aaaa bbbb ": a cut on a space keeps every whole word before it.
    assert snippet("aaaa bbbb cccc dddd", limit=11) == "aaaa bbbb…"


def test_the_default_limit_is_240_characters():
    exact = "x" * 240
    assert snippet(exact) == exact
    over = "word " * 48 + "w"  # 241 characters
    cut = snippet(over)
    assert cut.endswith("…") and len(cut) <= 240
    assert cut == "word " * 46 + "word…"


def test_citations_carry_a_snippet_of_their_passage():
    a = assemble("Books can be renewed twice [1].", [LOANS])
    [c] = a.citations
    assert c.snippet == snippet(LOANS.text)
    assert (c.number, c.chunk_id, c.document_id, c.source, c.title, c.section, c.page) == (
        1, 10, "lib", "/d/library.md", "Library", "Borrowing", 3
    )


# -- the inferred citation -----------------------------------------------------------


def test_an_uncited_answer_mostly_outside_the_passages_abstains():
    # One content word in five ("library") is in a passage: 0.2 coverage, below 0.6.
    a = assemble("Library cards cost nothing whatsoever.", [LOANS, DESK])
    assert a.abstained and a.text == IDK and a.citations == []


def test_coverage_exactly_at_min_support_is_enough():
    # "loan", "period", "lasts", "long", "books": 3 of 5 are in LOANS, 0.6 exactly.
    a = assemble("Loan period lasts long books.", [DESK, LOANS], min_support=0.6)
    assert not a.abstained and [c.number for c in a.citations] == [2]
    assert a.text == "Loan period lasts long books. [2]"
    assert assemble("Loan period lasts long books.", [DESK, LOANS], min_support=0.61).abstained


def test_equal_coverage_cites_the_first_passage():
    twin = Chunk(12, "lib2", LOANS.text, "/d/copy.md", "Library", "Borrowing")
    a = assemble("Books can be renewed twice.", [LOANS, twin])
    assert [c.number for c in a.citations] == [1]


def test_the_best_covering_passage_is_cited_not_the_first():
    a = assemble("The desk opens Monday at 09:00.", [LOANS, DESK])
    assert [(c.number, c.chunk_id) for c in a.citations] == [(2, 11)]


def test_an_uncited_unsupported_answer_quotes_the_fallback():
    a = assemble("Bananas are yellow.", [LOANS, DESK], fallback=(2, "The desk opens Monday."))
    assert a.text == "The desk opens Monday. [2]"
    assert [(c.number, c.chunk_id) for c in a.citations] == [(2, 11)]
    assert not a.abstained


def test_an_answer_of_stop_words_only_is_not_supported():
    assert assemble("It is in the.", [LOANS]).abstained


# -- citations in the text -----------------------------------------------------------


def test_out_of_range_markers_vanish_and_spacing_is_repaired():
    a = assemble("Books can be renewed twice [3] .", [LOANS])
    # [3] names no passage: removed, and the answer is then cited by inference.
    assert a.text == "Books can be renewed twice. [1]"
    assert [c.number for c in a.citations] == [1]


def test_a_marker_list_keeps_only_valid_numbers_in_order():
    a = assemble("Twice [2 , 0, 1, 2] and 28 days [1].", [LOANS, DESK])
    assert a.text == "Twice [2, 1, 2] and 28 days [1]."
    assert [c.number for c in a.citations] == [2, 1]


def test_the_last_passage_number_is_valid():
    a = assemble("The desk opens Monday [2].", [LOANS, DESK])
    assert a.text == "The desk opens Monday [2]." and [c.number for c in a.citations] == [2]


@pytest.mark.parametrize(
    "raw",
    ["I dont know.", "i don't know", "Well, sadly, I do not know that.", "...I don't know!"],
)
def test_abstentions_in_their_usual_forms(raw):
    assert assemble(raw, [LOANS]).abstained


def test_i_dont_know_after_more_than_three_words_is_an_answer():
    a = assemble("Books are renewed twice, so I don't know more [1].", [LOANS])
    assert not a.abstained


def test_whitespace_in_the_reply_is_collapsed():
    a = assemble("  Books can be\n renewed   twice [1].  ", [LOANS])
    assert a.text == "Books can be renewed twice [1]."


def test_a_fact_check_failure_without_fallback_abstains_even_when_cited():
    assert assemble("Books are renewed 3 times [1].", [LOANS]).abstained


# -- facts ---------------------------------------------------------------------------


def test_facts_must_sit_in_the_one_sentence_the_claim_restates():
    passages = [
        Chunk(1, "f", "Home students pay EUR 2,390. Overseas students pay EUR 9,800.", "/f", "Fees")
    ]
    assert unsupported_facts("Overseas students pay EUR 9,800.", passages) == []
    assert unsupported_facts("Overseas students pay EUR 2,390.", passages)  # a neighbour's fee
    # Two claims split by a semicolon are checked on their own.
    assert unsupported_facts("Home students pay EUR 2,390; overseas pay 9,800.", passages) == []


def test_sentence_openers_are_not_names_but_other_capitals_are():
    assert unsupported_facts("The loan period is 28 days.", [LOANS]) == []
    assert unsupported_facts("However, books can be renewed twice.", [LOANS]) == []
    # Capitalised words in a row are one name.
    assert unsupported_facts("Ask Maria Lopez about the loan period.", [LOANS]) == [
        "Ask Maria Lopez"
    ]


def test_the_heading_counts_as_part_of_each_sentence():
    # "Borrowing" is only in the passage's heading.
    assert unsupported_facts("Borrowing books lasts 28 days.", [LOANS]) == []


def test_facts_without_passages_are_all_unsupported():
    assert unsupported_facts("Maria pays 30 euros.", []) == ["30", "Maria"]


def test_times_and_decimals_are_one_fact():
    assert unsupported_facts("The desk opens Monday at 09:00.", [DESK]) == []
    assert unsupported_facts("The desk opens Monday at 09:30.", [DESK]) == ["09:30"]


def test_a_passage_without_sentence_breaks_is_one_window():
    table = Chunk(5, "t", "ECTS 6", "/t", "Courses", "CSC 340")
    assert unsupported_facts("CSC 340 carries 6 ECTS.", [table]) == []
    assert unsupported_facts("CSC 340 carries 7 ECTS.", [table]) == ["7"]


# -- the prompt ----------------------------------------------------------------------


def test_the_prompt_is_the_system_text_then_the_numbered_passages_and_the_question():
    msgs = build_messages("How long is a loan?", [LOANS, DESK])
    assert msgs[0] == {"role": "system", "content": SYSTEM}
    assert msgs[1]["content"] == (
        "Passages:\n"
        "[1] (Library > Borrowing) The loan period for library books is 28 days and can be "
        "renewed twice.\n\n"
        "[2] (Desk) The desk opens Monday from 09:00 to 16:30.\n\n"
        "Question: How long is a loan?"
    )


def test_passage_headers_keep_the_title_and_the_last_heading_only():
    deep = Chunk(1, "d", "x", "/s", "Programme", "Programme > Courses > CSC 340 ")
    assert passage_header(deep) == "Programme > CSC 340"
    assert passage_header(deep, title_given=True) == "CSC 340"
    same = Chunk(2, "d", "x", "/s", "Fees", "Fees")
    assert passage_header(same) == "Fees"
    assert passage_header(same, title_given=True) == ""
    bare = Chunk(3, "d", "x", "/s", "Fees", None)
    assert passage_header(bare) == "Fees"
    assert passage_header(bare, title_given=True) == ""


def test_every_abstention_is_the_same_empty_answer():
    idk = Answer(text=IDK, citations=[], abstained=True)
    assert assemble("I don't know.", [LOANS]) == idk  # the model abstained
    assert assemble("Books are renewed 3 times [1].", [LOANS]) == idk  # a fact not in a passage
    assert assemble("Bananas are yellow.", [LOANS]) == idk  # no passage supports it
    assert assemble("Books can be renewed twice [1].", []) == idk  # nothing to cite
    assert assemble("Books [1].", [], fallback=(1, "Loans last 28 days.")) == idk


def test_an_answer_is_not_an_abstention():
    a = assemble("Books can be renewed twice [1].", [LOANS])
    assert a.abstained is False and a.text == "Books can be renewed twice [1]."


def test_each_claim_is_checked_after_one_without_facts():
    assert unsupported_facts("It is long; Maria Lopez lends the books.", [LOANS]) == [
        "Maria Lopez"
    ]


def test_a_later_supported_claim_does_not_clear_an_earlier_unsupported_one():
    assert unsupported_facts("Maria Lopez lends books; loans last 28 days.", [LOANS]) == [
        "Maria Lopez"
    ]
