"""``python main.py`` (window mode): QApplication, one qasync loop, the fleet, the window.

``--duration S`` closes the window after S seconds; with ``--screenshot PNG`` a picture of
the live window is saved first.  Both work offscreen (``QT_QPA_PLATFORM=offscreen``).
Closing the window stops every worker before this returns.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import logging
import signal
import sys
from pathlib import Path

from workers.config import Endpoints, data_dir, resources_dir
from workers.launcher import make_supervisor
from workers.supervisor import SupervisorError
from app.qt import QApplication, QtCore, QtGui, QtWidgets, QTimer

log = logging.getLogger("tickdesk.app")


def build_session(args: argparse.Namespace, settings, ui):
    """The supervisor on the CLI's endpoints, else the settings' ones, else the defaults
    (the Session runs it on its own thread)."""
    from app.session import Session

    for name in Endpoints.NAMES:
        if not getattr(args, f"ep_{name}", None) and ui.endpoints.get(name):
            setattr(args, f"ep_{name}", ui.endpoints[name])
    sup = make_supervisor(args)
    try:
        limits = ui.limits()
    except ValueError:
        limits = None
    return Session(sup, limits)


#: Qt messages that say nothing to a trader (the offscreen platform has no window manager)
QT_NOISE = ("This plugin does not support propagateSizeHints()",)
_qt_log = logging.getLogger("tickdesk.qt")


def qt_message(mode, context, message: str) -> None:
    """Qt's own warnings go to the log (and so to the log panel), not only to stderr."""
    if message in QT_NOISE:
        return
    M = QtCore.QtMsgType
    level = {M.QtDebugMsg: logging.DEBUG, M.QtInfoMsg: logging.INFO, M.QtWarningMsg: logging.WARNING,
             M.QtCriticalMsg: logging.ERROR, M.QtFatalMsg: logging.CRITICAL}.get(mode, logging.WARNING)
    _qt_log.log(level, "%s", message)


def take_screenshot(window, path: str) -> bool:
    pix = window.grab()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ok = pix.save(path)
    if ok:
        log.info("screenshot saved to %s (%dx%d)", path, pix.width(), pix.height())
    else:
        log.error("could not save the screenshot to %s", path)
    return ok


def no_display() -> bool:
    """Linux with no X11/Wayland display and no platform chosen: Qt would abort."""
    env = os.environ
    return sys.platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") or env.get("QT_QPA_PLATFORM"))


def run_app(args: argparse.Namespace) -> int:
    import qasync

    if no_display():
        if args.screenshot:
            os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a screenshot needs no screen
        else:
            log.error("no display to open the window on: run 'main.py --headless' for the fleet alone, or "
                      "'QT_QPA_PLATFORM=offscreen main.py --screenshot shot.png --duration 10' to see the window")
            return 2

    from app.settings import SETTINGS_FILE, Settings
    from app.window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "tickdesk"])
    app.setApplicationName("TickDesk")
    app.setOrganizationName("TickDesk")
    icon = resources_dir() / "icons" / "tickdesk.png"
    if icon.exists():
        app.setWindowIcon(QtGui.QIcon(str(icon)))
    app.setQuitOnLastWindowClosed(False)  # the loop ends when the window has stopped the fleet
    # A selector loop on every platform: qasync's default on Windows is a proactor loop, on
    # which zmq.asyncio can only watch sockets through tornado's selector thread.  Qt's socket
    # notifiers serve zmq's file descriptors (sockets on Windows too), so one code path serves all.
    loop = qasync.QSelectorEventLoop(app)
    asyncio.set_event_loop(loop)

    data = Path(args.data_dir) if args.data_dir else data_dir()
    data.mkdir(parents=True, exist_ok=True)
    settings = Settings(data / SETTINGS_FILE)
    ui = settings.load()
    session = build_session(args, settings, ui)
    window = MainWindow(session, settings, ui)
    done = loop.create_future()
    window.closed.connect(lambda: done.done() or done.set_result(0))
    result = {"code": 0}

    def finish() -> None:
        if args.screenshot:
            if not take_screenshot(window, args.screenshot):
                result["code"] = 1
        window.close_now()

    # Ctrl-C / SIGTERM: close the window (which stops the fleet) instead of dying mid-way.
    def on_signal(signum, _frame) -> None:
        log.info("%s: closing", signal.Signals(signum).name)
        QTimer.singleShot(0, window.close_now)  # a signal is a decision already: no quit question

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # Python runs signal handlers only between bytecodes; a cheap timer makes sure it gets to.
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(200)

    def excepthook(etype, value, tb) -> None:
        # a bug in a slot must be seen (log panel, status bar, stderr), never swallowed
        log.error("uncaught %s: %s", etype.__name__, value, exc_info=(etype, value, tb))

    sys.excepthook = excepthook
    QtCore.qInstallMessageHandler(qt_message)
    if args.screenshot:
        window.resize(1600, 960)
    window.show()
    try:
        window.start()
    except SupervisorError as e:
        log.error("%s", e)
        if not args.screenshot:
            QtWidgets.QMessageBox.critical(window, "TickDesk cannot start", str(e))
        window.session.close()
        return 2
    if args.duration:
        QTimer.singleShot(int(args.duration * 1000), finish)
    with loop:
        try:
            loop.run_until_complete(done)
            # let cancelled tasks unwind before the loop closes
            loop.run_until_complete(asyncio.sleep(0.05))
        except RuntimeError as e:
            # Qt left its event loop without our close (the display went away, the X server
            # died): stop the fleet in order and say so, instead of a traceback
            log.error("the window's event loop stopped (%s); stopping the workers", e)
            window.session.close()
            result["code"] = result.get("code") or 1
    wake.stop()
    return result["code"]
