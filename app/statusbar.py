"""The window's status bar: streams, tick rate, losses, workers, the UI's own timings, the
kill switch, and the newest warning; plus the event-loop lag meter it reports.

``MainWindow`` builds one :class:`StatusBar` on its ``QStatusBar`` and calls
:meth:`StatusBar.refresh` about 4 times a second with what it shows; nothing here reads the
window.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass

from app.models.table import RecordTableModel
from app.panels.live_label import LiveLabel
from app.qt import QtWidgets
from app.theme import repolish

__all__ = ["ALERT_SECONDS", "LagMeter", "StatusBar", "UiTimes"]

#: How long the newest warning stays in the status bar.
ALERT_SECONDS = 15.0
#: A tick stream connected but silent for this long is shown amber (stale).
STALE_TICKS_S = 2.0


class LagMeter:
    """Lateness of a periodic timer, in ms: how long the event loop kept it waiting.

    The owner calls :meth:`tick` from a timer of ``interval_ms``; each call records how much
    later than due it came.
    """

    def __init__(self, interval_ms: float, window: int = 200) -> None:
        self.interval_s = interval_ms / 1000.0
        self._samples: collections.deque[float] = collections.deque(maxlen=window)
        self._expected = 0.0

    def start(self, now: float | None = None) -> None:
        self._expected = (time.monotonic() if now is None else now) + self.interval_s

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._expected:
            self._samples.append(max(0.0, now - self._expected) * 1000.0)
        self._expected = now + self.interval_s

    def p99(self) -> float:
        if not self._samples:
            return 0.0
        s = sorted(self._samples)
        return s[min(len(s) - 1, int(0.99 * len(s)))]


@dataclass(frozen=True)
class UiTimes:
    """The window's own timings, in ms (chart None: no chart frame measured yet)."""

    lag_p99: float
    flush: float
    chart: float | None


KILL_ON = "KILL SWITCH ON"


class StatusBar:
    """The labels of the window's status bar.

    Attributes:
        streams, rate, drops, workers, ui, kill: ``LiveLabel``s (permanent, right side).
        alert: the newest warning or error (left, cleared after ALERT_SECONDS).
    """

    def __init__(self, bar: QtWidgets.QStatusBar) -> None:
        self.bar = bar
        # live labels: their text changes every refresh without re-laying-out the window
        self.streams = LiveLabel(30, parent=bar)
        self.rate = LiveLabel(14, parent=bar)
        self.drops = LiveLabel(44, parent=bar)
        self.workers = LiveLabel(28, parent=bar)
        self.ui = LiveLabel(52, parent=bar)
        self.kill = LiveLabel(16, bold=True, parent=bar)
        #: "REPLAY 10x — 2026-12-03 14:32:05 (35%)" while the market data is a replay (app/panels/replay.py)
        self.replay = LiveLabel(44, bold=True, parent=bar)
        self.replay.setObjectName("statusReplay")
        self.replay.hide()
        # the one label that must always be read whole: it is never squeezed to "KIL…"
        self.kill.setMinimumWidth(self.kill.fontMetrics().horizontalAdvance(KILL_ON) + 8)
        self.alert_label = QtWidgets.QLabel("", bar)
        self.alert_label.setObjectName("statusWarn")
        # a long warning must give way, never push the labels (KILL SWITCH ON above all) off the
        # bar: it takes what width is left and is cut there (the whole text is its tooltip)
        self.alert_label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.alert_label.setMinimumWidth(0)
        for w in (self.replay, self.kill, self.streams, self.rate, self.drops, self.workers, self.ui):
            bar.addPermanentWidget(w)
        bar.addWidget(self.alert_label, 1)
        self._alert_until = 0.0
        #: the labels a narrow window hides first (least needed first); KILL SWITCH ON never
        self.optional = [self.ui, self.drops, self.rate, self.workers]

    def refresh(self, state, totals: dict, workers: dict, kill_engaged: bool, times: UiTimes) -> None:
        """Show ``state``'s streams and market, the supervisor's ``totals`` and ``workers``."""
        now = time.monotonic()
        tones = RecordTableModel.tones
        good, warn, bad = tones.get("up"), tones.get("warn"), tones.get("bad")
        segs: list = []
        for name, label in (("ticks", "ticks"), ("execution", "exec"), ("events", "events")):
            s = state.streams[name]
            age = s.age(now)
            if not s.connected:
                color = bad
            elif name == "ticks" and (age is None or age > STALE_TICKS_S or not state.market.ticking()):
                color = warn  # connected, but no symbol ticks (every quote stale): not green
            else:
                color = good
            segs += [("● ", color), (f"{label}  ", None)]
        self.streams.set_segments(segs)
        stale = state.market.stale_count()
        self.streams.setToolTip(f"ticks: {len(state.market.quotes) - stale} of {len(state.market.quotes)} symbols ticking\n"
                                + "\n".join(
            f"{s.name}: {'connected' if s.connected else 'disconnected'}, {s.received:,} messages, "
            f"{s.decode_errors} decode errors, largest batch {s.max_batch:,}" for s in state.streams.values()))
        m = state.market
        self.rate.setText(f"{m.rate:,.0f} ticks/s")
        decode = sum(s.decode_errors for s in state.streams.values()) + totals["decode_errors"]
        self.drops.set_segments([
            ("gaps ", None), (f"{m.total_missed:,}", warn if m.total_missed else None),
            (" · dropped ", None), (f"{totals['dropped']:,}", warn if totals["dropped"] else None),
            (" · decode errors ", None), (f"{decode:,}", bad if decode else None)])
        self.drops.setToolTip("gaps: ticks this window missed (sequence gaps)\ndropped: messages the workers dropped "
                              "(full queues)\ndecode errors: malformed messages, window and workers")
        up = sum(1 for w in workers.values() if w.state in ("running", "paused"))
        n = len(workers)
        segs = [("workers ", None), (f"{up}/{n}", good if up == n else bad), (f" up · restarts {totals['restarts']}", None)]
        # a crash loop at start-up is the one restart that waits: say which worker, and why
        looping = [w for w in workers.values() if w.state == "backoff"]
        if looping:
            segs.append((f" · crash loop: {', '.join(w.name for w in looping)}", bad))
        self.workers.set_segments(segs)
        self.workers.setToolTip("\n".join(f"{w.name}: {w.reason}" for w in looping) or "every worker is up or was stopped")
        self.ui.setText(f"UI lag p99 {times.lag_p99:.0f} ms · flush {times.flush:.1f} ms"
                        + (f" · chart {times.chart:.1f} ms" if times.chart is not None else ""))
        self.kill.set_segments([(KILL_ON, bad)] if kill_engaged else [])
        if self.alert_label.text() and now > self._alert_until:
            self.alert_label.setText("")
            self.alert_label.setToolTip("")

    def set_replay(self, text: str, color=None) -> None:
        """The replay mark (empty: live market, hidden); like KILL SWITCH ON, never squeezed away."""
        self.replay.set_segments([(text, color)] if text else [])
        if self.replay.isVisible() != bool(text):
            self.replay.setVisible(bool(text))

    def alert(self, text: str, level: int) -> None:
        """Show ``text`` as the newest warning (red from ERROR up)."""
        self._alert_until = time.monotonic() + ALERT_SECONDS
        self.alert_label.setObjectName("statusBad" if level >= logging.ERROR else "statusWarn")
        repolish(self.alert_label)
        self.alert_label.setText(text)
        self.alert_label.setToolTip(text)

    def message(self, text: str, ms: int = 5000) -> None:
        """A transient message (e.g. an export's result), where the warnings go.  Not
        ``QStatusBar.showMessage``: that hides the warning label while it shows, and its text
        is clipped by the permanent labels rather than cut with its whole text in a tooltip."""
        self._alert_until = time.monotonic() + ms / 1000.0
        self.alert_label.setObjectName("statusInfo")
        repolish(self.alert_label)
        self.alert_label.setText(text)
        self.alert_label.setToolTip(text)

    def fit(self, width: int) -> None:
        """Hide the least needed labels until the rest fit ``width`` with room for a
        message; KILL SWITCH ON and the streams' dots always stay."""
        need = self.kill.minimumWidth() + self.streams.sizeHint().width() + 160  # 160: the message's room
        if self.replay.text():
            need += self.replay.sizeHint().width() + 8
        for w in reversed(self.optional):  # most needed first
            need += w.sizeHint().width() + 8
            w.setVisible(need <= width)
