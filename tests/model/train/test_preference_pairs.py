import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from lectern.errors import ConfigError
from lectern.types import LoggedAnswer
from model.train.preference_pairs import (
    PairReport,
    PreferencePair,
    pairs_from_feedback,
    read_pairs,
    write_pairs,
)
from tests.fakes import HashEmbedder

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PREREQ = "What are the prerequisites for CSC 340?"
FEE = "What is the tuition fee for CSC 340?"
CHUNKS = {1: "CSC 340 requires CSC 210.", 2: "MATH 150 is also required.",
          3: "CSC 340 is taught in spring.", 4: "CSC 340 costs £1,200."}


def rated(n: int, question: str, answer: str, rating: str | None, passages=(1,),
          standalone: str | None = None) -> LoggedAnswer:
    return LoggedAnswer(
        id=f"e{n}", created=T0 + timedelta(minutes=n), question=question,
        standalone_question=question if standalone is None else standalone, answer=answer,
        abstained=False, passage_ids=list(passages), cited_ids=list(passages)[:1],
        mode="hybrid+rerank", model="m", adapter=None, timings={}, rating=rating,
    )


class Chunks:
    """The store's chunk texts; None when one of the ids is gone."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, ids: Sequence[int]) -> list[str] | None:
        self.calls.append(list(ids))
        if any(i not in CHUNKS for i in ids):
            return None
        return [CHUNKS[i] for i in ids]


FIXTURE = [
    rated(1, PREREQ, "CSC 210 [1]", "up", passages=[1, 2]),
    rated(2, PREREQ, "There are none.", "down"),
    rated(3, "what are the prerequisites  for csc 340", "CSC 210 and MATH 150 [1][2]", "up",
          passages=[1, 2, 3]),
    rated(4, PREREQ + "!", "CSC 210 [1]", "down"),  # what e1 said: pairs with e3 instead
    rated(5, FEE, "£1,200 [1]", "up", passages=[4, 99]),  # chunk 99 was deleted
    rated(6, FEE, "£900 [1]", "down"),
    rated(7, "When does the library open?", "At 9 [1]", "down"),  # nobody rated one up
    rated(8, PREREQ, "CSC 110", None),  # not rated: not used
    rated(9, "Where is the café?", "In the hall [1].", "up"),
]


def test_the_fixture_gives_exactly_these_pairs():
    chunks = Chunks()
    report = pairs_from_feedback(FIXTURE, chunks)
    newest_up = dict(question="what are the prerequisites  for csc 340",  # as e3 asked it
                     passages=[CHUNKS[1], CHUNKS[2], CHUNKS[3]],
                     chosen="CSC 210 and MATH 150 [1][2]", chosen_id="e3")
    assert report == PairReport(
        pairs=[
            PreferencePair(**newest_up, rejected="There are none.", rejected_id="e2"),
            PreferencePair(**newest_up, rejected="CSC 210 [1]", rejected_id="e4"),
        ],
        rated=8, up=4, down=4, unmatched=1, skipped_identical=0, skipped_passages_gone=1,
    )
    assert report.pairs[0].version == 1 and report.pairs[0].source == "feedback"
    # Each up answer's chunks are looked up once, however many down answers it meets.
    assert sorted(chunks.calls) == [[1, 2, 3], [4, 99]]


def test_every_down_answer_is_accounted_for():
    r = pairs_from_feedback(FIXTURE, Chunks())
    assert len(r.pairs) + r.unmatched + r.skipped_identical + r.skipped_passages_gone == r.down


def test_the_order_of_the_entries_does_not_matter():
    assert pairs_from_feedback(FIXTURE[::-1], Chunks()) == pairs_from_feedback(FIXTURE, Chunks())


def test_identical_answers_never_pair():
    entries = [rated(1, PREREQ, "CSC 210 [1]", "up"),
               rated(2, PREREQ, "  CSC 210\n[1] ", "down")]
    report = pairs_from_feedback(entries, Chunks())
    assert (report.pairs, report.skipped_identical, report.unmatched) == ([], 1, 0)


def test_a_gone_passage_falls_back_to_the_next_up_answer():
    entries = [rated(1, PREREQ, "CSC 210 [1]", "up", passages=[1]),
               rated(2, PREREQ, "CSC 210 or 220 [1]", "up", passages=[99]),  # newer, gone
               rated(3, PREREQ, "None.", "down")]
    [pair] = pairs_from_feedback(entries, Chunks()).pairs
    assert (pair.chosen_id, pair.passages) == ("e1", [CHUNKS[1]])


def test_near_identical_questions_pair_through_the_embedder():
    up = rated(1, PREREQ, "CSC 210 [1]", "up")
    down = rated(2, "What are the prerequisites of CSC 340?", "None.", "down")
    assert pairs_from_feedback([up, down], Chunks()).unmatched == 1  # no embedder: text only
    # HashEmbedder: the two share 6 of 7 words, a cosine of about 0.86.
    assert pairs_from_feedback([up, down], Chunks(), HashEmbedder()).unmatched == 1  # < 0.9
    [pair] = pairs_from_feedback([up, down], Chunks(), HashEmbedder(), similarity=0.8).pairs
    assert (pair.chosen_id, pair.rejected_id, pair.question) == ("e1", "e2", PREREQ)


def test_a_down_answer_pairs_with_the_most_similar_up_answer_only():
    entries = [
        rated(1, PREREQ, "CSC 210 [1]", "up"),  # cosine about 0.91 with the down question
        rated(2, "What are the prerequisites of CSC 340?", "CSC 220 [1]", "up"),  # about 0.80
        rated(3, "What are the prerequisites for the CSC 340 course?", "None.", "down"),
    ]
    report = pairs_from_feedback(entries, Chunks(), HashEmbedder(), similarity=0.75)
    assert [(p.chosen_id, p.rejected_id) for p in report.pairs] == [("e1", "e3")]


def test_the_question_is_the_standalone_one():
    up = rated(1, "And its prerequisites?", "CSC 210 [1]", "up", standalone=PREREQ)
    down = rated(2, "What about prerequisites?", "None.", "down", standalone=PREREQ)
    other = rated(3, "And its prerequisites?", "No idea.", "down", standalone=FEE)
    report = pairs_from_feedback([up, down, other], Chunks())
    assert [(p.question, p.rejected_id) for p in report.pairs] == [(PREREQ, "e2")]
    assert report.unmatched == 1


def test_similarity_must_be_a_cosine_above_zero():
    with pytest.raises(ValueError, match="1.5"):
        pairs_from_feedback(FIXTURE, Chunks(), similarity=1.5)


def test_pairs_round_trip_through_a_file(tmp_path):
    pairs = pairs_from_feedback(FIXTURE, Chunks()).pairs
    path = tmp_path / "pairs.jsonl"
    with path.open("w", encoding="utf-8") as out:
        assert write_pairs(pairs, out) == 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["version"] == 1
    assert read_pairs(path) == pairs


def test_reading_refuses_what_is_not_a_pair(tmp_path):
    good = PreferencePair(question="q", passages=["p"], chosen="a", rejected="b",
                          chosen_id="e1", rejected_id="e2").model_dump_json()
    path = tmp_path / "pairs.jsonl"
    path.write_text(good + "\n\n" + json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ConfigError, match=r"pairs.jsonl:3 "):
        read_pairs(path)
    newer = json.loads(good) | {"version": 2}
    path.write_text(json.dumps(newer) + "\n")
    with pytest.raises(ConfigError, match="version 2 is newer"):
        read_pairs(path)


def test_a_pair_must_prefer_one_text_over_another():
    with pytest.raises(ValidationError, match="same answer"):
        PreferencePair(question="q", passages=[], chosen="a b", rejected="a  b",
                       chosen_id="e1", rejected_id="e2")
    with pytest.raises(ValidationError, match="extra"):
        PreferencePair(question="q", passages=[], chosen="a", rejected="b", chosen_id="e1",
                       rejected_id="e2", ip="10.0.0.1")
