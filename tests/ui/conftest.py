"""What every window test shares: the qasync loop on the Qt loop that qtbot spins."""

from __future__ import annotations

import asyncio
import gc

import pytest
import qasync

from workers.config import Endpoints
from workers.supervisor import Supervisor
from app.session import Session
from app.settings import Settings
from app.window import MainWindow


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


@pytest.fixture
def make_window(qtbot, tmp_path):
    """Windows without a fleet (an empty supervisor): ``make(**ui_changes)``, closed after the test."""
    made = []

    def make(**ui_changes):
        settings = Settings(tmp_path / "tickdesk.ini")
        ui = settings.load()
        ui.confirm_quit = False  # tests of the quit question turn it on
        for k, v in ui_changes.items():
            setattr(ui, k, v)
        session = Session(Supervisor(Endpoints.ephemeral_ipc(tmp_path), []))
        w = MainWindow(session, settings, ui)
        qtbot.addWidget(w)
        w.resize(1400, 900)
        w.show()
        qtbot.waitExposed(w)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
        w.deleteLater()  # closed windows must not linger: a theme change restyles every widget alive
