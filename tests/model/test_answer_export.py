import csv
import io
import json
from datetime import UTC, datetime

from lectern.types import LoggedAnswer
from model.answer_export import FIELDS, write_csv, write_jsonl

T0 = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
RATED = LoggedAnswer(
    id="a1", created=T0, question="What does CSC 340 cost, in €?",
    standalone_question="What does CSC 340 cost, in €?", answer='It costs "£1,200" [1].\nPer term.',
    abstained=False, passage_ids=[7, 3], cited_ids=[7], mode="hybrid+rerank", model="smollm2",
    adapter="campus-v1", timings={"retrieve_ms": 2.5, "first_token_ms": None},
    rating="down", comment="wrong, it is 1,400", rated_at=datetime(2026, 3, 2, tzinfo=UTC),
)
UNRATED = LoggedAnswer(
    id="a2", created=T0, question="=HYPERLINK(\"http://evil\")", standalone_question="-1+1",
    answer="I don't know.", abstained=True, passage_ids=[], cited_ids=[], mode="hybrid",
    model="smollm2", adapter=None, timings={},
)


def test_jsonl_keeps_every_field():
    out = io.StringIO()
    assert write_jsonl([RATED, UNRATED], out) == 2
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert list(first) == list(FIELDS)
    assert first == {
        "id": "a1", "created": "2026-03-01T12:30:00+00:00",
        "question": "What does CSC 340 cost, in €?",
        "standalone_question": "What does CSC 340 cost, in €?",
        "answer": 'It costs "£1,200" [1].\nPer term.', "abstained": False,
        "passage_ids": [7, 3], "cited_ids": [7], "mode": "hybrid+rerank", "model": "smollm2",
        "adapter": "campus-v1", "timings": {"retrieve_ms": 2.5, "first_token_ms": None},
        "rating": "down", "comment": "wrong, it is 1,400",
        "rated_at": "2026-03-02T00:00:00+00:00",
    }
    # JSONL is for programs: the text exactly as asked, formula-like or not.
    assert (second["question"], second["rating"], second["adapter"]) == (
        '=HYPERLINK("http://evil")', None, None
    )


def test_csv_has_a_header_and_one_row_per_answer():
    out = io.StringIO(newline="")
    assert write_csv([RATED, UNRATED], out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert len(rows) == 2 and list(rows[0]) == list(FIELDS)
    first, second = rows
    assert first["answer"] == 'It costs "£1,200" [1].\nPer term.'  # quoted, not split
    assert json.loads(first["passage_ids"]) == [7, 3]
    assert json.loads(first["timings"]) == {"retrieve_ms": 2.5, "first_token_ms": None}
    assert (first["abstained"], second["abstained"]) == ("false", "true")
    assert first["created"] == "2026-03-01T12:30:00+00:00"
    assert (second["rating"], second["comment"], second["rated_at"], second["adapter"]) == (
        "", "", "", ""
    )


def test_csv_defuses_formulas_in_typed_text():
    out = io.StringIO(newline="")
    write_csv([UNRATED], out)
    [row] = csv.DictReader(io.StringIO(out.getvalue(), newline=""))
    assert row["question"] == "'=HYPERLINK(\"http://evil\")"
    assert row["standalone_question"] == "'-1+1"
    assert row["answer"] == "I don't know."
    assert row["mode"] == "hybrid"


def test_no_entries_is_a_header_only():
    out = io.StringIO()
    assert write_csv([], out) == 0
    assert out.getvalue().strip() == ",".join(FIELDS)
    jsonl = io.StringIO()
    assert write_jsonl(iter([]), jsonl) == 0 and jsonl.getvalue() == ""
