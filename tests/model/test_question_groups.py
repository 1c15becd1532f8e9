from datetime import UTC, datetime, timedelta

import pytest

from lectern.types import LoggedAnswer
from model.question_groups import (
    DEFAULT_THRESHOLD,
    MAX_QUESTIONS,
    QuestionGroup,
    group_questions,
    normalise_question,
)
from tests.fakes import HashEmbedder

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PREREQ = "What are the prerequisites for CSC 340?"


def asked(
    n: int, question: str, *, standalone: str | None = None, abstained: bool = False,
    rating: str | None = None,
) -> LoggedAnswer:
    return LoggedAnswer(
        id=f"a{n}", created=T0 + timedelta(minutes=n), question=question,
        standalone_question=question if standalone is None else standalone,
        answer="…", abstained=abstained, passage_ids=[], cited_ids=[], mode="hybrid",
        model="m", adapter=None, timings={}, rating=rating,
    )


def test_normal_form():
    assert normalise_question("  What are  the\tprerequisites for CSC 340 ?! ") == (
        "what are the prerequisites for csc 340"
    )
    assert normalise_question("What is C++?") == "what is c++"
    assert normalise_question("") == ""


def test_paraphrases_group_and_other_questions_do_not():
    entries = [
        asked(1, PREREQ, rating="down"),
        asked(2, "What are the prerequisites of CSC 340?", abstained=True),
        asked(3, "How late is the library open on Sundays?", abstained=True),
        asked(4, "what are the prerequisites for csc 340"),  # PREREQ's normal form
        asked(5, "What is the tuition fee for CSC 340?", rating="down"),  # same course
        asked(6, "What are the prerequisites for the CSC 340 course?", abstained=True),
        asked(7, "Is the library open late on Sundays?", rating="down"),
    ]
    groups = group_questions(entries, HashEmbedder())
    assert groups == [
        QuestionGroup(
            count=4,
            example="what are the prerequisites for csc 340",  # asked twice: nearest the mean
            example_searched=None,
            questions=(
                "what are the prerequisites for csc 340",  # the newest wording of that form
                "What are the prerequisites for the CSC 340 course?",
                "What are the prerequisites of CSC 340?",
            ),
            abstained=2,
            rated_down=1,
            answer_ids=("a6", "a4", "a2", "a1"),
            last_asked=T0 + timedelta(minutes=6),
        ),
        QuestionGroup(
            count=2,
            example="Is the library open late on Sundays?",
            example_searched=None,
            questions=(
                "Is the library open late on Sundays?",
                "How late is the library open on Sundays?",
            ),
            abstained=1,
            rated_down=1,
            answer_ids=("a7", "a3"),
            last_asked=T0 + timedelta(minutes=7),
        ),
        QuestionGroup(
            count=1,
            example="What is the tuition fee for CSC 340?",
            example_searched=None,
            questions=("What is the tuition fee for CSC 340?",),
            abstained=0,
            rated_down=1,
            answer_ids=("a5",),
            last_asked=T0 + timedelta(minutes=5),
        ),
    ]


def test_groups_of_one_size_are_most_recent_first():
    entries = [asked(1, "Where is the registry office?"), asked(3, PREREQ),
               asked(2, "How late is the library open on Sundays?")]
    groups = group_questions(entries, HashEmbedder())
    assert [g.answer_ids for g in groups] == [("a3",), ("a2",), ("a1",)]


def test_none_one_and_identical_entries():
    assert group_questions([], HashEmbedder()) == []
    [one] = group_questions([asked(1, PREREQ)], HashEmbedder())
    assert (one.count, one.example, one.questions) == (1, PREREQ, (PREREQ,))
    [same] = group_questions([asked(1, PREREQ), asked(2, PREREQ.upper())], HashEmbedder())
    assert (same.count, same.questions, same.answer_ids) == (2, (PREREQ.upper(),), ("a2", "a1"))


def test_grouping_reads_the_standalone_question():
    follow_up = asked(2, "And what does it cost?",
                      standalone="What is the tuition fee for CSC 340?")
    unrewritten = asked(3, "And what does it cost?", standalone="")  # falls back to asked
    groups = group_questions(
        [asked(1, "What is the tuition fee for CSC 340?"), follow_up, unrewritten],
        HashEmbedder(),
    )
    # Grouped by what was searched; shown as asked (the newest wording), with the search.
    assert [(g.count, g.example, g.example_searched) for g in groups] == [
        (2, "And what does it cost?", "What is the tuition fee for CSC 340?"),
        (1, "And what does it cost?", None),
    ]
    assert groups[0].questions == ("And what does it cost?", "What is the tuition fee for CSC 340?")


def test_the_threshold_decides_how_far_a_group_reaches():
    entries = [asked(1, PREREQ), asked(2, "What are the prerequisites of CSC 340?"),
               asked(3, "How late is the library open on Sundays?")]
    assert len(group_questions(entries, HashEmbedder(), threshold=0.0)) == 3
    assert len(group_questions(entries, HashEmbedder())) == 2
    assert len(group_questions(entries, HashEmbedder(), threshold=1.5)) == 1
    assert 0 < DEFAULT_THRESHOLD < 0.5
    with pytest.raises(ValueError, match="-0.1"):
        group_questions(entries, HashEmbedder(), threshold=-0.1)


def test_wordings_are_bounded_most_asked_first():
    entries = [asked(n, f"What are the prerequisites for CSC {300 + n}?") for n in range(12)]
    entries += [asked(20, "What are the prerequisites for CSC 305?"),
                asked(21, "what are the prerequisites for csc 305")]
    [group] = group_questions(entries, HashEmbedder(), threshold=2.0)
    assert group.count == 14
    assert len(group.questions) == MAX_QUESTIONS
    assert group.questions[0] == "what are the prerequisites for csc 305"
    # Then the rest, asked once each, newest first.
    assert group.questions[1:4] == tuple(
        f"What are the prerequisites for CSC {300 + n}?" for n in (11, 10, 9)
    )
