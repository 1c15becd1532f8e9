import pytest

from lectern.types import Chunk
from model.answer import IDK, assemble, build_messages, unsupported_facts
from tests.model.passages import CSC, FEES

PASSAGES = [FEES, CSC]


def test_prompt_numbers_the_passages_with_their_headings():
    msgs = build_messages("  Who teaches CSC 340? ", PASSAGES)
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert "[1] (Tuition Fees > BA History) Home students pay EUR 2,390." in user
    assert "[2] (BSc Computer Science > CSC 340) CSC 340 Machine" in user
    assert user.endswith("Question: Who teaches CSC 340?")


def test_prompt_gives_a_title_once():
    syllabus = Chunk(3, "csc", "Weekly labs in Python.", "/d/cs.html", "BSc Computer Science",
                     "Programme > CSC 340")
    untitled = Chunk(4, "csc", "Exams are in June.", "/d/cs.html", "BSc Computer Science", None)
    user = build_messages("Labs?", [CSC, FEES, syllabus, untitled])[1]["content"]
    assert "[1] (BSc Computer Science > CSC 340) CSC 340" in user
    assert "[2] (Tuition Fees > BA History) Home" in user
    assert "[3] (CSC 340) Weekly labs in Python." in user
    assert "[4] Exams are in June." in user
    assert user.count("BSc Computer Science") == 1


def test_citations_map_to_prompt_passages_and_bad_numbers_are_dropped():
    a = assemble("It is taught by Dr. Ilse Marrow [2][5], see [0].", PASSAGES)
    assert a.text == "It is taught by Dr. Ilse Marrow [2], see."
    assert [(c.number, c.chunk_id, c.source, c.section) for c in a.citations] == [
        (2, 2, "/d/cs.html", "CSC 340")
    ]
    assert not a.abstained


def test_multiple_citations_keep_first_appearance_order():
    a = assemble("Home EUR 2,390 [1]; CSC 340 needs CSC 210 [2, 1].", PASSAGES)
    assert [c.number for c in a.citations] == [1, 2]
    assert "[2, 1]" in a.text


def test_an_uncited_supported_answer_gets_its_citation():
    a = assemble("CSC 340 requires CSC 210 and MAT 220.", PASSAGES)
    assert a.text.endswith("[2]") and [c.number for c in a.citations] == [2]


def test_wrong_number_from_the_neighbouring_row_is_not_shown():
    assert unsupported_facts("Home students pay EUR 9,800 [1].", PASSAGES) == ["9,800"]
    assert unsupported_facts("Home students pay EUR 2,390 [1].", PASSAGES) == []
    assert unsupported_facts("It is taught by Dr. Ilse Morrow.", PASSAGES) == ["Ilse Morrow"]
    a = assemble(
        "Home students pay EUR 9,800 [1].", PASSAGES, fallback=(1, "Home students pay EUR 2,390.")
    )
    assert a.text == "Home students pay EUR 2,390. [1]" and a.citations[0].number == 1
    assert assemble("Home students pay EUR 9,800 [1].", PASSAGES).abstained


@pytest.mark.parametrize(
    "raw", ["I don't know.", "I do not know the answer", "Sorry, I don't know.", "", "   "]
)
def test_abstentions(raw):
    a = assemble(raw, PASSAGES)
    assert a.abstained and a.text == IDK and a.citations == []


def test_no_passages_always_abstains():
    assert assemble("Paris [1]", []).abstained


def test_unsupported_uncited_answer_without_fallback_abstains():
    assert assemble("Bananas are yellow.", PASSAGES).abstained


def test_quoting_the_idk_phrase_inside_an_answer_is_not_an_abstention():
    raw = 'The answer lies within the passage "I don\'t know."'
    a = assemble(raw, PASSAGES, fallback=(2, "CSC 340 Machine Learning requires CSC 210."))
    assert not a.abstained and a.citations[0].number == 2


def test_earlier_turns_in_the_prompt_are_bounded_and_lose_their_citation_marks():
    from lectern.types import Turn
    from model.answer import TURN_WORDS, build_messages

    long = " ".join(f"w{i}" for i in range(500))
    messages = build_messages("And the fee?", [], [Turn(long, "EUR 3,150 per year [1]."),
                                                  Turn("Who?", long)])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user",
                                             "assistant", "user"]
    assert messages[1]["content"].split()[:-1] == long.split()[:TURN_WORDS]
    assert messages[1]["content"].endswith(" …")
    assert messages[2]["content"] == "EUR 3,150 per year."
    assert len(messages[4]["content"].split()) == TURN_WORDS + 1
