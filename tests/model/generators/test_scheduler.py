"""BatchScheduler on a fake batch: rows join while others decode, leave when done, and
the queue's bound, cancelling, failures and shutdown behave."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from lectern.errors import NotReadyError, OverloadedError
from model.generators.decode_batch import Prefilled
from model.generators.scheduler import BatchScheduler

EOS = 0


class CountingBatch:
    """Each row's next token is its last one plus one; a step can be held at a gate."""

    def __init__(self) -> None:
        self.rows: list[int] = []  # each row's newest token
        self.widest = 0  # most rows ever decoded in one step
        self.gate = threading.Event()
        self.gate.set()
        self.stepping = threading.Event()
        self.fail_next = False

    def __len__(self) -> int:
        return len(self.rows)

    def prefill(self, ids: list[int], cache: Any = None, cached: int = 0) -> Prefilled:
        return Prefilled(cache, len(ids), ids[-1])

    def join(self, row: Prefilled, token: int) -> None:
        self.rows.append(token)

    def step(self) -> list[int]:
        self.stepping.set()
        assert self.gate.wait(10), "a test left the gate shut"
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the model broke")
        self.widest = max(self.widest, len(self.rows))
        return list(self.rows)

    def feed(self, tokens: list[int]) -> None:
        self.rows = list(tokens)

    def keep(self, rows: list[int]) -> None:
        self.rows = [self.rows[i] for i in rows]


def next_token(logits: Any, ids: list[int], first: bool) -> int:
    return (logits + 1) % 10  # 9 -> 0, the end of the reply


@pytest.fixture
def batch() -> CountingBatch:
    return CountingBatch()


@pytest.fixture
def scheduler(batch):
    s = BatchScheduler(batch, next_token, {EOS}, max_batch=4, max_waiting=2)
    s.start()
    yield s
    batch.gate.set()
    s.close(timeout=5)


def reply(ticket) -> list[int]:
    return list(ticket.ids(timeout=10))


def test_each_reply_counts_up_to_the_end_token(scheduler):
    assert reply(scheduler.submit([5], max_new_tokens=50)) == [6, 7, 8, 9]
    assert reply(scheduler.submit([1], max_new_tokens=3)) == [2, 3, 4]  # max_new_tokens


def test_requests_arriving_while_one_decodes_join_its_batch(scheduler, batch):
    batch.gate.clear()
    first = scheduler.submit([1], max_new_tokens=50)
    assert batch.stepping.wait(10)  # the first row is mid-decoding, held at the gate
    later = [scheduler.submit([i], max_new_tokens=50) for i in (3, 5)]
    batch.gate.set()
    assert reply(first) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert [reply(t) for t in later] == [[4, 5, 6, 7, 8, 9], [6, 7, 8, 9]]
    assert batch.widest == 3


def test_a_full_queue_refuses_at_once_with_a_retry_time(scheduler, batch):
    batch.gate.clear()
    held = [scheduler.submit([1], max_new_tokens=50)]
    assert batch.stepping.wait(10)
    held += [scheduler.submit([1], max_new_tokens=50) for _ in range(5)]  # 4 rows + 2 waiting
    with pytest.raises(OverloadedError, match="queue is full; retry in") as refused:
        scheduler.submit([1], max_new_tokens=50)
    assert refused.value.retry_after >= 1
    assert scheduler.load == (1, 5)  # one row was decoding when the gate shut
    batch.gate.set()
    assert all(reply(t) == [2, 3, 4, 5, 6, 7, 8, 9] for t in held)
    assert reply(scheduler.submit([7], max_new_tokens=50)) == [8, 9]  # room again


def test_a_cancelled_request_leaves_the_batch_and_the_others_go_on(scheduler, batch):
    batch.gate.clear()
    gone = scheduler.submit([1], max_new_tokens=50)
    assert batch.stepping.wait(10)
    stays = scheduler.submit([1], max_new_tokens=50)
    gone.cancel()
    batch.gate.set()
    assert reply(stays) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert len(reply(gone)) < 8


def test_a_failed_step_fails_its_rows_and_the_next_request_is_served(scheduler, batch):
    batch.fail_next = True
    with pytest.raises(RuntimeError, match="the model broke"):
        reply(scheduler.submit([1], max_new_tokens=50))
    assert reply(scheduler.submit([6], max_new_tokens=50)) == [7, 8, 9]


def test_close_fails_the_waiting_and_refuses_new_requests(batch):
    s = BatchScheduler(batch, next_token, {EOS}, max_batch=1, max_waiting=4)
    s.start()
    batch.gate.clear()
    decoding = s.submit([1], max_new_tokens=50)
    assert batch.stepping.wait(10)
    waiting = s.submit([1], max_new_tokens=50)
    closer = threading.Thread(target=s.close, kwargs={"timeout": 0.2})
    closer.start()
    with pytest.raises(NotReadyError, match="shutting down"):
        reply(waiting)
    closer.join(10)  # the decoding row did not finish within close's bound
    assert not closer.is_alive()
    batch.gate.set()
    with pytest.raises(NotReadyError, match="shutting down"):
        reply(decoding)  # cut short: not a whole reply
    with pytest.raises(NotReadyError, match="not running"):
        s.submit([1], max_new_tokens=5)


def test_not_started_or_bad_values_are_clear_errors(batch):
    s = BatchScheduler(batch, next_token, {EOS})
    with pytest.raises(NotReadyError, match="not running"):
        s.submit([1], max_new_tokens=5)
    s.start()
    with pytest.raises(ValueError, match="an empty prompt"):
        s.submit([], max_new_tokens=5)
    with pytest.raises(ValueError, match="max_new_tokens must be at least 1, got 0"):
        s.submit([1], max_new_tokens=0)
    s.close()
    with pytest.raises(ValueError, match="max_batch must be at least 1, got 0"):
        BatchScheduler(batch, next_token, {EOS}, max_batch=0)
    with pytest.raises(ValueError, match="max_waiting must be at least 0, got -1"):
        BatchScheduler(batch, next_token, {EOS}, max_waiting=-1)


def test_choose_is_told_which_token_opens_the_reply(batch):
    seen: list[tuple[int, bool]] = []

    def recording(logits: Any, ids: list[int], first: bool) -> int:
        seen.append((len(ids), first))
        return next_token(logits, ids, first)

    s = BatchScheduler(batch, recording, {EOS}, max_batch=2)
    s.start()
    try:
        list(s.submit([1, 2, 3], max_new_tokens=4).ids(timeout=10))
    finally:
        s.close()
    assert seen[0] == (3, True)  # chosen from the prompt alone
    assert seen[1:] and all(not first for _, first in seen[1:])
    assert [n for n, _ in seen] == list(range(3, 3 + len(seen)))
