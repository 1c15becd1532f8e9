import dataclasses
import itertools
import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest

from lectern.errors import AnswerNotFoundError, ConfigError
from lectern.types import LoggedAnswer
from model.answer_log import SQLiteAnswerLog
from tests.threads import run_together

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def entry(n: int, *, minutes: float | None = None, abstained: bool = False, **kw) -> LoggedAnswer:
    fields = dict(
        id=f"a{n}",
        created=T0 + timedelta(minutes=n if minutes is None else minutes),
        question=f"question {n}?",
        standalone_question=f"standalone question {n}?",
        answer=f"answer {n} [1]",
        abstained=abstained,
        passage_ids=[n, n + 10, 3],
        cited_ids=[n],
        mode="hybrid+rerank",
        model="smollm2-135m",
        adapter=None,
        timings={"retrieve_ms": 1.5, "generate_ms": 20.0, "first_token_ms": None},
    )
    return LoggedAnswer(**{**fields, **kw})


@pytest.fixture
def log(tmp_path):
    log = SQLiteAnswerLog(tmp_path / "feedback" / "log.sqlite3")
    yield log
    log.close()


def test_an_entry_comes_back_as_recorded(log):
    e = entry(1, adapter="campus-v2")
    log.record(e)
    assert log.get("a1") == e
    assert log.get("nope") is None
    assert log.count() == 1


def test_record_ignores_rating_fields(log):
    log.record(entry(1, rating="down", comment="sneaked in", rated_at=T0))
    got = log.get("a1")
    assert (got.rating, got.comment, got.rated_at) == (None, None, None)


def test_a_duplicate_id_is_refused(log):
    log.record(entry(1))
    with pytest.raises(ValueError, match="'a1'"):
        log.record(entry(1, question="other"))
    assert log.get("a1").question == "question 1?"


def test_naive_datetimes_are_refused(log):
    with pytest.raises(ValueError, match="time zone"):
        log.record(entry(1, created=datetime(2026, 3, 1, 12, 0)))
    assert log.count() == 0


def test_times_in_other_zones_are_stored_as_utc(log):
    plus2 = timezone(timedelta(hours=2))
    log.record(entry(1, created=datetime(2026, 3, 1, 14, 0, tzinfo=plus2)))
    assert log.get("a1").created == T0
    assert log.get("a1").created.utcoffset() == timedelta(0)


def test_rate_attaches_and_replaces_feedback(log):
    log.record(entry(1))
    rated = log.rate("a1", "down", "wrong fee", at=T0 + timedelta(hours=1))
    assert (rated.rating, rated.comment, rated.rated_at) == ("down", "wrong fee",
                                                              T0 + timedelta(hours=1))
    assert rated.answer == "answer 1 [1]"
    again = log.rate("a1", "up", None, at=T0 + timedelta(hours=2))
    assert (again.rating, again.comment, again.rated_at) == ("up", None, T0 + timedelta(hours=2))
    assert log.get("a1") == again
    with sqlite3.connect(log.path) as db:
        assert db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 1


def test_rate_defaults_to_now(log):
    log.record(entry(1))
    before = datetime.now(UTC)
    rated = log.rate("a1", "up", None)
    assert before <= rated.rated_at <= datetime.now(UTC)


def test_rating_an_unknown_answer_raises_and_stores_nothing(log):
    log.record(entry(1))
    with pytest.raises(AnswerNotFoundError, match="'a2'"):
        log.rate("a2", "down", "no such answer")
    with sqlite3.connect(log.path) as db:
        assert db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 0
    # The failed call left no transaction open: the next one works.
    assert log.rate("a1", "up", None).rating == "up"


def test_a_rating_outside_up_down_is_refused(log):
    log.record(entry(1))
    with pytest.raises(ValueError, match="'meh'"):
        log.rate("a1", "meh", None)  # type: ignore[arg-type]
    assert log.get("a1").rating is None


def test_recent_is_newest_first_bounded_and_since(log):
    for n in (3, 1, 4, 2, 5):
        log.record(entry(n))
    assert [e.id for e in log.recent(10)] == ["a5", "a4", "a3", "a2", "a1"]
    assert [e.id for e in log.recent(2)] == ["a5", "a4"]
    assert log.recent(0) == []
    assert [e.id for e in log.recent(10, since=T0 + timedelta(minutes=3))] == ["a5", "a4", "a3"]
    with pytest.raises(ValueError, match="-1"):
        log.recent(-1)


def test_recent_breaks_ties_by_logging_order(log):
    for n in (1, 2, 3):
        log.record(entry(n, minutes=0))
    assert [e.id for e in log.recent(10)] == ["a3", "a2", "a1"]


def test_recent_missed_only_is_abstained_or_rated_down(log):
    log.record(entry(1, abstained=True))
    log.record(entry(2))
    log.record(entry(3))
    log.record(entry(4))
    log.rate("a2", "down", None)
    log.rate("a3", "up", None)
    assert [e.id for e in log.recent(10, missed_only=True)] == ["a2", "a1"]
    assert [e.id for e in log.recent(10, since=T0 + timedelta(minutes=2), missed_only=True)] == [
        "a2"
    ]


def test_purge_deletes_older_answers_and_their_feedback(log):
    for n in range(1, 6):
        log.record(entry(n))
    log.rate("a1", "down", "old")
    log.rate("a5", "up", None)
    assert log.purge(T0 + timedelta(minutes=3)) == 2  # a1 and a2; a3 is not before it
    assert [e.id for e in log.recent(10)] == ["a5", "a4", "a3"]
    with sqlite3.connect(log.path) as db:
        assert db.execute("SELECT answer_id FROM feedback").fetchall() == [("a5",)]
    assert log.purge(T0 + timedelta(minutes=3)) == 0


def test_many_threads_record_and_rate_at_once(log):
    ids = itertools.count()

    def work(job: int) -> None:
        e = entry(job, id=f"t{next(ids)}")
        log.record(e)
        log.rate(e.id, "down" if job % 2 else "up", f"comment {job}")
        assert log.get(e.id).comment == f"comment {job}"

    run_together(work, jobs=50, threads=8)
    assert log.count() == 400
    assert len(log.recent(1000, missed_only=True)) == 200


def test_the_log_survives_reopening(tmp_path):
    path = tmp_path / "log.sqlite3"
    first = SQLiteAnswerLog(path)
    first.record(entry(1))
    first.rate("a1", "down", "kept", at=T0)
    first.close()
    second = SQLiteAnswerLog(path)
    got = second.get("a1")
    second.close()
    assert (got.question, got.rating, got.comment, got.passage_ids) == (
        "question 1?", "down", "kept", [1, 11, 3]
    )


def test_the_constructor_is_lazy_but_checks_the_path(tmp_path):
    path = tmp_path / "deep" / "er" / "log.sqlite3"
    SQLiteAnswerLog(path)
    assert path.parent.is_dir() and not path.exists()
    with pytest.raises(ValueError, match="is a directory"):
        SQLiteAnswerLog(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file"):
        SQLiteAnswerLog(tmp_path / "file" / "log.sqlite3")


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "log.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    log = SQLiteAnswerLog(path)
    with pytest.raises(ConfigError, match="version 99"):
        log.count()


def test_nothing_stored_names_who_asked(log):
    # The type carries no address, cookie or conversation id, and neither do the tables.
    names = {f.name for f in dataclasses.fields(LoggedAnswer)}
    assert not names & {"ip", "address", "cookie", "conversation_id", "user", "session"}
    log.record(entry(1))
    with sqlite3.connect(log.path) as db:
        columns = {
            row[1]
            for table in ("answers", "feedback")
            for row in db.execute(f"PRAGMA table_info({table})")
        }
    assert columns == {
        "id", "created", "question", "standalone", "answer", "abstained", "passage_ids",
        "cited_ids", "mode", "model", "adapter", "timings",
        "answer_id", "rating", "comment", "rated_at",
    }
