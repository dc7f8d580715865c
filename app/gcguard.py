"""Python's cyclic garbage collection on the UI thread only, while the window lives.

CPython runs a collection in whichever thread happens to allocate when a generation's
threshold is crossed.  Here that is often the supervisor's thread (``workers.supervisor_thread``),
and a collection there frees whatever Qt objects sit in the garbage cycles it finds: a qasync
timer object, a socket notifier, a panel's helper.  A QObject destroyed outside its own thread
cannot unregister its timers ("Timers cannot be stopped from another thread"), so Qt later
delivers a timer event to freed memory: the suite saw exactly that, a segfault in
``QTimerInfoList::activateTimers`` a few tests after a window was closed.

So while a window runs, automatic collection is off and a UI-thread timer collects instead,
generation by generation under CPython's own thresholds (what the automatic collector would
have done, a little later).  Objects freed by reference counting are unaffected: they die
where their last reference goes, as before.
"""

from __future__ import annotations

import gc

from app.qt import QtCore, QTimer

#: how often the UI thread looks at the allocation counts (ms): short, so that a generation-0
#: collection stays as small as CPython's own (measured: gen 0 at the default fleet's rates
#: stays under a few thousand objects between two looks)
CHECK_MS = 100


class MainThreadGC(QtCore.QObject):
    """Holds automatic GC off while at least one instance is started (windows nest in tests)."""

    _started = 0
    _was_enabled = True

    def __init__(self, parent=None):
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setInterval(CHECK_MS)
        self._timer.timeout.connect(self.check)
        self._on = False
        self.collections = [0, 0, 0]

    def start(self) -> None:
        if self._on:
            return
        if MainThreadGC._started == 0:
            MainThreadGC._was_enabled = gc.isenabled()
            gc.disable()
        MainThreadGC._started += 1
        self._on = True
        self._timer.start()

    def stop(self) -> None:
        """Collect once more here, then give collection back to CPython (if it had it)."""
        if not self._on:
            return
        self._on = False
        self._timer.stop()
        gc.collect()
        MainThreadGC._started -= 1
        if MainThreadGC._started == 0 and MainThreadGC._was_enabled:
            gc.enable()

    def check(self) -> int | None:
        """Collect the oldest generation whose count passed its threshold, as CPython would;
        returns the generation collected (None: nothing due)."""
        t0, t1, t2 = gc.get_threshold()
        c0, c1, c2 = gc.get_count()
        if c0 <= t0:
            return None
        gen = 2 if (c1 > t1 and c2 > t2) else (1 if c1 > t1 else 0)
        gc.collect(gen)
        self.collections[gen] += 1
        return gen
