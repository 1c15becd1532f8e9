import threading

from lectern.threads import PerThread


def test_each_thread_gets_its_own_instance_made_once():
    made: list[int] = []
    per_thread = PerThread(lambda: made.append(threading.get_ident()) or object())
    mine = per_thread.get()
    assert per_thread.get() is mine  # made once per thread
    theirs = []
    t = threading.Thread(target=lambda: theirs.extend([per_thread.get(), per_thread.get()]))
    t.start()
    t.join()
    assert theirs[0] is theirs[1] and theirs[0] is not mine
    assert len(made) == 2


def test_copies_of_a_prototype_are_deep_and_leave_it_alone():
    prototype = {"settings": {"padding": None}}
    copies = PerThread.copies_of(prototype)
    mine = copies.get()
    mine["settings"]["padding"] = "longest"
    assert mine == {"settings": {"padding": "longest"}}
    assert prototype == {"settings": {"padding": None}}
