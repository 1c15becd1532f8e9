"""GeneratorSlot: a swap serves the next requests with the new generator, while those
already running finish on the old one, which closes after the last of them."""

import pytest

from lectern.errors import NotReadyError
from model.generators.slot import GeneratorSlot

Q = [{"role": "user", "content": "?"}]


class Named:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.closed = 0

    def warm_up(self) -> None:
        pass

    def generate(self, messages):
        if self.fail:
            raise RuntimeError("decoding failed")
        return self.name

    def stream(self, messages):
        yield from (self.name, " and", " more")

    def close(self) -> None:
        self.closed += 1


def test_a_swap_with_nothing_running_closes_the_old_one_at_once():
    old, new = Named("old"), Named("new")
    slot = GeneratorSlot(old)
    assert slot.generate(Q) == "old"
    slot.swap(old)  # the same one: nothing to close
    assert old.closed == 0
    slot.swap(new)
    assert (old.closed, new.closed) == (1, 0)
    assert slot.generate(Q) == "new" and slot.current is new


def test_a_stream_running_at_the_swap_finishes_on_the_old_one_which_closes_after():
    old, new = Named("old"), Named("new")
    slot = GeneratorSlot(old)
    running = slot.stream(Q)
    assert next(running) == "old"
    other = slot.stream(Q)
    assert next(other) == "old"
    slot.swap(new)
    assert slot.generate(Q) == "new"  # the requests after the swap
    assert old.closed == 0
    assert "".join(running) == " and more"  # not cut short
    assert old.closed == 0  # the other stream still holds it
    other.close()  # a reader that went away lets go too
    assert (old.closed, new.closed) == (1, 0)


def test_a_stream_leases_on_its_first_token_not_when_it_is_made():
    old, new = Named("old"), Named("new")
    slot = GeneratorSlot(old)
    later = slot.stream(Q)
    slot.swap(new)
    assert old.closed == 1
    assert next(later) == "new"


def test_a_failed_request_lets_go_of_its_generator():
    old, new = Named("old", fail=True), Named("new")
    slot = GeneratorSlot(old)
    with pytest.raises(RuntimeError, match="decoding failed"):
        slot.generate(Q)
    slot.swap(new)
    assert old.closed == 1


def test_close_closes_the_serving_one_and_those_still_finishing():
    old, new = Named("old"), Named("new")
    slot = GeneratorSlot(old)
    running = slot.stream(Q)
    next(running)
    slot.swap(new)
    slot.close()
    assert (old.closed, new.closed) == (1, 1)
    list(running)  # ends after the shutdown: nothing is closed twice
    assert old.closed == 1


def test_an_empty_slot_is_not_ready():
    with pytest.raises(NotReadyError, match="no generator loaded yet"):
        GeneratorSlot().generate(Q)
