"""What every window test shares: the qasync loop on the Qt loop that qtbot spins."""

from __future__ import annotations

import asyncio
import gc

import pytest
import qasync


@pytest.fixture
def qloop(qapp):
    """One qasync loop on the Qt loop that qtbot spins (already running)."""
    loop = qasync.QSelectorEventLoop(qapp, already_running=True)  # as app/main.py
    asyncio.set_event_loop(loop)
    yield loop
    for t in asyncio.all_tasks(loop):
        t.cancel()
    qapp.processEvents()
    # Not loop.stop(): for an already-running loop it calls QApplication.exit(), after which
    # Qt timers stop firing in the next tests.  Mark it stopped and close it instead.
    loop._QEventLoop__is_running = False
    loop.close()
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(None)
    # The loop's Qt objects (its timer object, with timers still registered, and its socket
    # notifiers) must die here, on the Qt thread, not in a later collection that another
    # thread happens to run (app/gcguard.py: a segfault in QTimerInfoList::activateTimers).
    del loop
    gc.collect()
