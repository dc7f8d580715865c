"""While a window runs, Python's cyclic GC runs on the UI thread only (app/gcguard.py)."""

from __future__ import annotations

import gc
import threading

from app.gcguard import MainThreadGC


class Cycle:
    def __init__(self):
        self.me = self


def test_collection_is_held_to_the_ui_thread_and_given_back(qtbot):
    assert gc.isenabled()
    a, b = MainThreadGC(), MainThreadGC()
    a.start()
    b.start()
    assert not gc.isenabled()
    # garbage cycles made by another thread are not collected there...
    freed = []

    def make():
        import weakref
        for _ in range(20_000):
            c = Cycle()
            weakref.finalize(c, lambda: freed.append(threading.current_thread().name))
            del c

    t = threading.Thread(target=make, name="other")
    t.start()
    t.join()
    assert freed == []
    # ...but by the guard's timer, on this thread
    qtbot.waitUntil(lambda: len(freed) == 20_000, timeout=5000)
    assert set(freed) == {threading.current_thread().name}
    assert sum(a.collections) + sum(b.collections) >= 1
    a.stop()
    assert not gc.isenabled()  # b still runs
    b.stop()
    assert gc.isenabled()


def test_check_collects_only_when_a_threshold_is_passed(qtbot):
    g = MainThreadGC()
    gc.collect()
    assert g.check() is None
    g.start()
    try:
        junk = [Cycle() for _ in range(gc.get_threshold()[0] + 10)]
        del junk
        assert g.check() == 0
    finally:
        g.stop()
