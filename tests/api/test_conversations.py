"""The conversations the server keeps: bounded in number, turns and age; and the
history a client sends, checked against the limits."""

import threading

import pytest

from api.conversations import ConversationStore, checked_history
from lectern.errors import ConversationNotFoundError, InvalidRequestError
from lectern.settings import ConversationSettings
from lectern.types import Turn


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def turn(i: int) -> Turn:
    return Turn(f"question {i}?", f"answer {i}.")


def test_a_conversation_keeps_its_turns_in_order_up_to_the_limit():
    store = ConversationStore(ConversationSettings(max_turns=3))
    cid = store.start([turn(0)])
    assert cid is not None
    for i in range(1, 5):
        store.append(cid, turn(i))
    assert store.history(cid) == [turn(2), turn(3), turn(4)]


def test_an_unknown_or_expired_conversation_is_not_found():
    clock = Clock()
    store = ConversationStore(ConversationSettings(expiry_minutes=1), clock)
    with pytest.raises(ConversationNotFoundError, match="'nope'"):
        store.history("nope")
    cid = store.start([turn(0)])
    clock.now = 59
    assert store.history(cid) == [turn(0)]  # used: its minute starts again
    clock.now = 59 + 61
    with pytest.raises(ConversationNotFoundError):
        store.history(cid)
    store.append(cid, turn(1))  # gone: not brought back
    with pytest.raises(ConversationNotFoundError):
        store.history(cid)


def test_the_least_recently_used_conversation_goes_first():
    store = ConversationStore(ConversationSettings(kept=2))
    a, b = store.start([turn(0)]), store.start([turn(1)])
    store.history(a)  # a is now the more recent
    c = store.start([turn(2)])
    assert len(store) == 2
    assert store.history(a) == [turn(0)] and store.history(c) == [turn(2)]
    with pytest.raises(ConversationNotFoundError):
        store.history(b)


def test_kept_zero_keeps_none():
    store = ConversationStore(ConversationSettings(kept=0))
    assert store.start([turn(0)]) is None and len(store) == 0


def test_threads_appending_at_once_lose_no_turn():
    store = ConversationStore(ConversationSettings(max_turns=100))
    cid = store.start()
    assert cid is not None

    def work(base: int) -> None:
        for i in range(20):
            store.append(cid, turn(base + i))

    threads = [threading.Thread(target=work, args=(k * 100,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.history(cid)) == 100


def test_checked_history_trims_and_refuses_what_is_over_the_limits():
    settings = ConversationSettings(max_turns=2, max_turn_chars=30)
    assert checked_history([Turn("  q?  ", " a. ")], settings) == [Turn("q?", "a.")]
    with pytest.raises(InvalidRequestError, match="3 turns, over the limit of 2"):
        checked_history([turn(1)] * 3, settings)
    with pytest.raises(InvalidRequestError, match=r"history\[1\]: 31 characters"):
        checked_history([turn(1), Turn("q" * 16, "a" * 15)], settings)
    with pytest.raises(InvalidRequestError, match=r"history\[0\].question: must not be blank"):
        checked_history([Turn(" \n", "a.")], settings)
