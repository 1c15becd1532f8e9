"""The answer log: every answer given and the feedback on it, in one SQLite file.

What the admin Questions view reads and feedback is exported from (`AnswerLog`). It keeps
the answer and how it was made, never who asked: `LoggedAnswer` has no address, cookie or
conversation id, and neither has a table here.

The conventions are the document store's (ingest/sqlite_store.py): one connection behind
a lock, WAL, foreign keys on (feedback cascades with its answer). Datetimes are stored as
fixed-width ISO strings in UTC, so comparing the text compares the times.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from lectern.errors import AnswerNotFoundError, ConfigError
from lectern.types import LoggedAnswer, Rating

SCHEMA_VERSION = 1  # PRAGMA user_version; a file of a newer version is refused
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    question TEXT NOT NULL,
    standalone TEXT NOT NULL,
    answer TEXT NOT NULL,
    abstained INTEGER NOT NULL,
    passage_ids TEXT NOT NULL,  -- JSON list of chunk ids
    cited_ids TEXT NOT NULL,  -- JSON list of chunk ids
    mode TEXT NOT NULL,
    model TEXT NOT NULL,
    adapter TEXT,
    timings TEXT NOT NULL  -- JSON object
);
CREATE INDEX IF NOT EXISTS answers_created ON answers(created);
CREATE TABLE IF NOT EXISTS feedback (
    answer_id TEXT PRIMARY KEY REFERENCES answers(id) ON DELETE CASCADE,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment TEXT,
    rated_at TEXT NOT NULL
);
"""
_SELECT = (
    "SELECT a.id, a.created, a.question, a.standalone, a.answer, a.abstained, a.passage_ids, "
    "a.cited_ids, a.mode, a.model, a.adapter, a.timings, f.rating, f.comment, f.rated_at "
    "FROM answers a LEFT JOIN feedback f ON f.answer_id = a.id"
)
_RATINGS = ("up", "down")


def _stamp(when: datetime) -> str:
    """`when` as the fixed-width UTC text the tables hold."""
    if when.tzinfo is None:
        # A naive time is ambiguous (local or UTC?); guessing would shift the retention.
        raise ValueError(f"datetime {when.isoformat()} has no time zone; give it in UTC")
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _entry(row: tuple) -> LoggedAnswer:
    return LoggedAnswer(
        id=row[0],
        created=datetime.fromisoformat(row[1]),
        question=row[2],
        standalone_question=row[3],
        answer=row[4],
        abstained=bool(row[5]),
        passage_ids=json.loads(row[6]),
        cited_ids=json.loads(row[7]),
        mode=row[8],
        model=row[9],
        adapter=row[10],
        timings=json.loads(row[11]),
        rating=row[12],
        comment=row[13],
        rated_at=datetime.fromisoformat(row[14]) if row[14] is not None else None,
    )


class SQLiteAnswerLog:
    """`AnswerLog` in a SQLite file; opened on first use, safe across request threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"answer log path {self.path} is a directory")
        try:  # a bad data_dir shows at start, not at the first answer
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"answer log folder {self.path.parent} cannot be made: {exc}") from exc
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        with self._lock:
            if self._db is None:
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                try:
                    version = db.execute("PRAGMA user_version").fetchone()[0]
                    if version > SCHEMA_VERSION:
                        raise ConfigError(
                            f"answer log {self.path} is schema version {version}, newer than "
                            f"this Lectern reads ({SCHEMA_VERSION})"
                        )
                    db.execute("PRAGMA foreign_keys = ON")
                    db.execute("PRAGMA journal_mode = WAL")
                    db.executescript(_SCHEMA)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                except BaseException:
                    db.close()
                    raise
                self._db = db
            return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def record(self, entry: LoggedAnswer) -> None:
        """Keep `entry`; its rating fields are ignored (feedback comes through `rate`)."""
        row = (
            entry.id,
            _stamp(entry.created),
            entry.question,
            entry.standalone_question,
            entry.answer,
            int(entry.abstained),
            json.dumps([int(i) for i in entry.passage_ids]),
            json.dumps([int(i) for i in entry.cited_ids]),
            entry.mode,
            entry.model,
            entry.adapter,
            json.dumps(entry.timings),
        )
        with self._lock:
            try:
                self.db.execute(f"INSERT INTO answers VALUES ({','.join('?' * len(row))})", row)
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"answer id {entry.id!r} is already logged") from exc

    def get(self, answer_id: str) -> LoggedAnswer | None:
        with self._lock:
            row = self.db.execute(f"{_SELECT} WHERE a.id = ?", (answer_id,)).fetchone()
        return _entry(row) if row else None

    def rate(
        self,
        answer_id: str,
        rating: Rating,
        comment: str | None,
        *,
        at: datetime | None = None,
    ) -> LoggedAnswer:
        """Attach feedback to the answer, replacing any it had; AnswerNotFoundError (and
        nothing stored) when no answer has this id. `at` defaults to now."""
        if rating not in _RATINGS:
            raise ValueError(f"rating must be one of {_RATINGS}, got {rating!r}")
        stamp = _stamp(at or datetime.now(UTC))
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                found = db.execute("SELECT 1 FROM answers WHERE id = ?", (answer_id,)).fetchone()
                if found:
                    db.execute(
                        "INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?)",
                        (answer_id, rating, comment, stamp),
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            if not found:
                raise AnswerNotFoundError(f"no answer with id {answer_id!r}")
            rated = self.get(answer_id)
        assert rated is not None  # inside the lock: nothing purged it since the commit
        return rated

    def recent(
        self, limit: int, since: datetime | None = None, *, missed_only: bool = False
    ) -> list[LoggedAnswer]:
        """At most `limit` answers created at or after `since`, newest first; missed_only:
        those abstained on or rated down."""
        if limit < 0:
            raise ValueError(f"limit must be at least 0, got {limit}")
        where, args = [], []
        if since is not None:
            where.append("a.created >= ?")
            args.append(_stamp(since))
        if missed_only:
            where.append("(a.abstained = 1 OR f.rating = 'down')")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        # rowid breaks ties between answers logged in the same microsecond: later is newer.
        sql = f"{_SELECT}{clause} ORDER BY a.created DESC, a.rowid DESC LIMIT ?"
        with self._lock:
            rows = self.db.execute(sql, (*args, limit)).fetchall()
        return [_entry(r) for r in rows]

    def purge(self, older_than: datetime) -> int:
        """Delete the answers created before `older_than`, their feedback with them."""
        with self._lock:
            cur = self.db.execute("DELETE FROM answers WHERE created < ?", (_stamp(older_than),))
        return cur.rowcount

    def count(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
