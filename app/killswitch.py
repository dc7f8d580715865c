"""The kill switch's buttons and what pressing them does.

The steps themselves (the account's kill switch at the exchange, cancel all, pause the
strategies, the executor's kill switch, the report) are
:meth:`app.control.FleetControl.engage_kill_switch`, which has no Qt; this module is the
trader's end of it: the toolbar buttons, their state, and the banner text, which it emits
rather than showing itself, so the window decides where it goes.

The buttons follow ``FleetControl.kill_engaged`` whoever changed it: the switch found on at the
exchange when the window starts (or switched on by another client) shows ON here too.
"""

from __future__ import annotations

from app import prompts
from app.qt import QObject, QtWidgets, Signal
from app.theme import repolish

__all__ = ["KillSwitch"]

ENGAGING_TEXT = ("KILL SWITCH: account kill switch on, cancelling every working order, pausing strategies, "
                 "executor kill switch on…")
#: the answers of the release question (prompts.choose keys)
RESUME, KEEP_PAUSED = "resume", "keep"


class KillSwitch(QObject):
    """The KILL SWITCH and Release buttons on a toolbar, over a ``FleetControl``.

    Attributes:
        button: the KILL SWITCH button; the window connects it (and F12) to :meth:`engage`.
        release_button, release_action: Release (connected to :meth:`ask_release`), shown
            while the switch is engaged.
        last_report: the ``KillReport`` of the last completed engagement (None before).

    Signals:
        banner(str, str): text and tone ("bad", "warn", "ok") to show above the chart; an
            empty text takes the banner away.
        changed(bool): the switch went on or off (button, release, or the account's state).
    """

    banner = Signal(str, str)
    changed = Signal(bool)

    def __init__(self, control, toolbar: QtWidgets.QToolBar, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.control = control
        self.last_report = None
        self._task = None
        self._closed = False
        self.release_button = QtWidgets.QPushButton("Release", toolbar)
        self.release_button.setObjectName("releaseKill")
        self.release_button.setToolTip("Switch the kill switch off: executor accepts signals, strategies resume")
        self.release_action = toolbar.addWidget(self.release_button)
        self.release_action.setVisible(False)
        self.button = QtWidgets.QPushButton("KILL SWITCH  F12", toolbar)
        self.button.setObjectName("killSwitch")
        self.button.setToolTip("Cancel every working order, pause every strategy, switch the executor's "
                               "kill switch on (F12 or Ctrl+Shift+K)")
        self.button.setMinimumHeight(28)
        toolbar.addWidget(self.button)
        control.kill_listeners.append(self._on_control)
        if control.kill_engaged:
            self._show_engaged(True)

    def _on_control(self, on: bool, reason: str) -> None:
        if self._closed:
            return
        self._show_engaged(on)
        if on and self._task is None:  # not this button: the account was found on
            self.banner.emit(f"KILL SWITCH ON: the account's kill switch is on at the exchange ({reason}). "
                             "Strategies are paused; only orders that reduce a position (Flatten) are accepted. "
                             "Release to trade again.", "bad")
        self.changed.emit(on)

    def close(self) -> None:
        """The window is going: results that arrive later are not shown."""
        self._closed = True

    def engage(self) -> None:
        """Never asks: a kill switch acts at once.  Pressing it again runs it again."""
        if self._task is not None and not self._task.done():
            return
        self.banner.emit(ENGAGING_TEXT, "bad")
        self._show_engaged(True)
        self._task = self.control.spawn(self.control.engage_kill_switch())
        self._task.add_done_callback(self._engaged)

    def _engaged(self, task) -> None:
        if self._closed or task.cancelled():
            return
        e = task.exception()
        if e is not None:
            self.banner.emit(f"KILL SWITCH FAILED: {type(e).__name__}: {e}", "bad")
            return
        rep = task.result()
        self.last_report = rep
        self.banner.emit(rep.text(), "warn" if rep.ok else "bad")

    def ask_release(self) -> None:
        """Ask, then release: resume the strategies, or keep them paused (trading by hand)."""
        prompts.choose(self.button.window(), "Release kill switch",
                       "Switch the account's kill switch off? Orders that open positions are accepted again.\n\n"
                       "Resume the strategies too, or keep them paused?",
                       [(RESUME, "Release and resume strategies"), (KEEP_PAUSED, "Release, keep strategies paused")],
                       lambda key: key and self.release(resume=key == RESUME), object_name="confirmRelease",
                       warning=True)

    def release(self, resume: bool = True):
        """Switch it off at once (no question); returns the task."""
        t = self.control.spawn(self.control.release_kill_switch(resume))
        self._task = None
        self.banner.emit("", "")  # the engaged report no longer holds

        def done(task) -> None:
            if not self._closed and not task.cancelled() and task.exception() is None:
                text = task.result()
                self.banner.emit(text, "ok" if "account off" in text else "bad")

        t.add_done_callback(done)
        return t

    def _show_engaged(self, on: bool) -> None:
        self.button.setProperty("engaged", on)
        repolish(self.button)
        self.button.setText("KILL SWITCH ON  F12" if on else "KILL SWITCH  F12")
        self.release_action.setVisible(on)
        self.button.setToolTip(f"KILL SWITCH ON: {self.control.kill_reason}. Press again to run it again; Release "
                               "to switch it off" if on else
                               "Switch the account's kill switch on at the exchange, cancel every working order, "
                               "pause every strategy, switch the executor's kill switch on (F12 or Ctrl+Shift+K)")
