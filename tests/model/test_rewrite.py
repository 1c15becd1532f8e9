"""Follow-ups made to stand alone: which questions lean on the earlier turns, and what
is searched for and answered about."""

import pytest

from lectern.types import Turn
from model.answer import IDK
from model.rewrite import (
    AsAsked,
    GeneratorRewriter,
    HistoryRewriter,
    build_rewriter,
    cleaned,
    refers_back,
)

FIRST = Turn("What is the MSc in Data Science?", "A one-year programme in data systems [1].")


@pytest.mark.parametrize(
    "question",
    ["And what is the fee for it?", "How much does it cost?", "Who teaches them?",
     "Where?", "What about the deadline?", "Is that open to international students?"],
)
def test_questions_that_lean_on_earlier_turns(question):
    assert refers_back(question)


@pytest.mark.parametrize(
    "question",
    ["What is the capital of Peru?", "What are the prerequisites for CSC 340?",
     "When does the library open on Sundays?", "Who teaches MAT 220?"],
)
def test_questions_that_stand_alone(question):
    assert not refers_back(question)


def test_history_adds_the_earlier_turns_newest_first_without_citation_marks():
    second = Turn("Who teaches it?", "Dr Okafor teaches it [2].")
    searched = HistoryRewriter(turns=2).rewrite("And when does it start?", [FIRST, second])
    assert searched == (
        "And when does it start? Who teaches it? Dr Okafor teaches it. "
        "What is the MSc in Data Science? A one-year programme in data systems."
    )
    assert "[" not in searched


def test_history_reads_only_the_last_turns():
    older = Turn("Where is the library?", "On Main Street [1].")
    searched = HistoryRewriter(turns=1).rewrite("How much is it?", [older, FIRST])
    assert "library" not in searched and "Data Science" in searched


def test_an_abstention_adds_no_words():
    idk = Turn("What is the fee for it?", IDK)
    searched = HistoryRewriter(turns=1).rewrite("And the deadline for it?", [idk])
    assert searched == "And the deadline for it? What is the fee for it?"


def test_a_change_of_subject_is_searched_as_asked_unless_every_question_takes_history():
    question = "What is the capital of Peru?"
    assert HistoryRewriter().rewrite(question, [FIRST]) == question
    assert HistoryRewriter().focus(question, [FIRST], question) == question
    always = HistoryRewriter(referring_only=False).rewrite(question, [FIRST])
    assert always.startswith(question) and "Data Science" in always


def test_the_focus_keeps_the_earlier_questions_but_not_their_answers():
    rewriter = HistoryRewriter()
    searched = rewriter.rewrite("And what is the fee for it?", [FIRST])
    focus = rewriter.focus("And what is the fee for it?", [FIRST], searched)
    assert focus == "And what is the fee for it? What is the MSc in Data Science?"
    assert "programme" in searched and "programme" not in focus


def test_no_history_is_the_question_itself():
    for rewriter in (HistoryRewriter(), AsAsked()):
        assert rewriter.rewrite("  How much is it?  ", []) == "How much is it?"


class Scripted:
    def __init__(self, reply: str) -> None:
        self.reply, self.seen = reply, []

    def __call__(self, messages):
        self.seen.append(messages)
        return self.reply


def test_the_generator_rewrite_reads_the_turns_and_is_cleaned():
    generate = Scripted('Rewritten question: "What is the fee for the MSc in Data Science?"\nok')
    rewriter = GeneratorRewriter(generate, turns=2)
    out = rewriter.rewrite("And what is the fee for it?", [FIRST])
    assert out == "What is the fee for the MSc in Data Science?"
    prompt = generate.seen[0][-1]["content"]
    assert "Q: What is the MSc in Data Science?" in prompt and "[1]" not in prompt
    assert rewriter.focus("x", [FIRST], out) == out
    assert rewriter.rewrite("First question?", []) == "First question?"
    assert len(generate.seen) == 1  # no model call without history


@pytest.mark.parametrize("reply", ["", "   \n  ", "x" * 500 + "?", "The answer is: 3",
                                   "Rewritten question: the fee"])
def test_an_unusable_rewrite_falls_back_to_the_question(reply):
    assert cleaned(reply, "And the fee?") == "And the fee?"


def test_build_rewriter_checks_its_arguments():
    assert isinstance(build_rewriter("history", 2, Scripted("")), HistoryRewriter)
    assert isinstance(build_rewriter("generator", 2, Scripted("")), GeneratorRewriter)
    assert isinstance(build_rewriter("none", 2, Scripted("")), AsAsked)
    with pytest.raises(ValueError, match="'sometimes'"):
        build_rewriter("sometimes", 2, Scripted(""))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got 0"):
        HistoryRewriter(turns=0)
