"""The replay mark and controls: shown only while the market data is a replayed recording.

A replay must never be mistaken for the live market, so while the market-data gateway says
(its heartbeat's ``replay`` gauge, workers/marketdata/gateway.py) that it replays a recording:

* an orange strip above the chart: ``REPLAY 10x — 2026-12-03 14:32:05 (35%)`` with the
  controls: Pause/Resume, speed 1x / 10x / Max, and a slider to seek;
* the same text in orange at the left of the status bar's permanent labels;
* ``[REPLAY]`` in the window title.

The controls send the gateway's commands (``pause``/``resume``, ``set_speed``, ``seek``) through
the window's fleet control (app/control.py), as the workers panel does; what the strip shows
comes back with the next heartbeats (the position moves a few times a second), never from
the button itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.qt import QColor, Qt, QtWidgets

__all__ = ["REPLAY_ORANGE", "ReplayBar", "ReplayView", "replay_of", "replay_text", "SPEEDS"]

#: the mark's colour, in both themes (dark text on it)
REPLAY_ORANGE = "#f28c28"
#: status-bar text colour per theme (orange that reads on the bar's background)
_STATUS_ORANGE = {"dark": "#ff9a3c", "light": "#b35900"}
#: the speed buttons: (label, speed); 0 = as fast as possible
SPEEDS = (("1x", 1.0), ("10x", 10.0), ("Max", 0.0))
SLIDER_STEPS = 1000


@dataclass(frozen=True)
class ReplayView:
    """What a market-data worker's heartbeat says of its replay."""

    worker: str
    speed: float
    ts: int
    fraction: float
    paused: bool
    status: str  # playing | paused | finished
    first_ts: int
    last_ts: int
    file: str


def replay_of(workers) -> ReplayView | None:
    """The replay of the first running market-data worker whose heartbeat says it replays a
    recording (``workers``: the supervisor's worker snapshots), else None."""
    for w in workers.values():
        if w.spec.kind != "marketdata" or w.proc is None:
            continue
        g = w.stats.get("gauges", {}) if isinstance(w.stats, dict) else {}
        if g.get("replay") is not True:
            continue
        try:
            return ReplayView(w.name, float(g.get("speed", 1.0)), int(g.get("replay_ts", 0)), float(g.get("replay_fraction", 0.0)),
                              bool(g.get("replay_paused", False)) or w.state == "paused", str(g.get("replay_status", "")),
                              int(g.get("replay_first_ts", 0)), int(g.get("replay_last_ts", 0)), str(g.get("replay_file", "")))
        except (TypeError, ValueError):  # a malformed gauge must not cost the window its mark
            return ReplayView(w.name, 1.0, 0, 0.0, False, "", 0, 0, "")
    return None


def _speed_text(speed: float) -> str:
    return "MAX" if speed <= 0 else f"{speed:g}x"


def replay_text(v: ReplayView) -> str:
    """``REPLAY 10x — 2026-12-03 14:32:05 (35%)``, with PAUSED or FINISHED when so (UTC)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.ts / 1e9)) if v.ts else "—"
    state = " FINISHED" if v.status == "finished" else " PAUSED" if v.paused else ""
    return f"REPLAY {_speed_text(v.speed)} — {when} ({v.fraction * 100:.0f}%){state}"


class ReplayBar(QtWidgets.QFrame):
    """The orange strip with the replay's controls; it also marks the window's title and status
    bar.  ``window``: the MainWindow (its session's supervisor snapshots and fleet control, its
    status bar); :meth:`refresh` is called with the window's slow refresh (4 times a second)."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.view: ReplayView | None = None
        self.setObjectName("replayBar")
        self.setStyleSheet(f"#replayBar {{ background: {REPLAY_ORANGE}; }} #replayBar QLabel {{ color: #000; font-weight: bold; }}")
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(8, 3, 8, 3)
        self.label = QtWidgets.QLabel("REPLAY", self)
        self.label.setObjectName("replayLabel")
        self.label.setToolTip("The market data is a recording replayed, not the live market")
        lay.addWidget(self.label)
        self.pause_button = QtWidgets.QPushButton("Pause", self)
        self.pause_button.setObjectName("replayPause")
        self.pause_button.setToolTip("Pause / resume the replay (the gateway stops publishing while paused)")
        self.pause_button.clicked.connect(self._toggle_pause)
        lay.addWidget(self.pause_button)
        self.speed_buttons: dict[float, QtWidgets.QPushButton] = {}
        group = QtWidgets.QButtonGroup(self)
        for text, speed in SPEEDS:
            b = QtWidgets.QPushButton(text, self)
            b.setObjectName(f"replaySpeed_{text}")
            b.setCheckable(True)
            b.setToolTip("as fast as possible" if speed <= 0 else f"{speed:g} x the recorded pace")
            b.clicked.connect(lambda _=False, s=speed: self.send("set_speed", {"speed": s}))
            group.addButton(b)
            self.speed_buttons[speed] = b
            lay.addWidget(b)
        self.slider = QtWidgets.QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setObjectName("replaySeek")
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setToolTip("Drag to seek in the recording (market time)")
        self.slider.sliderReleased.connect(self._seek_to_slider)
        self.slider.actionTriggered.connect(self._slider_action)
        lay.addWidget(self.slider, 1)
        self.hide()

    # ------------------------------------------------------------------ commands
    def send(self, cmd: str, args: dict | None = None) -> None:
        if self.view is None:
            return
        ctl = self.window.session.control
        ctl.spawn(ctl.strategy_command(self.view.worker, cmd, args), f"replay {cmd}")

    def _toggle_pause(self) -> None:
        if self.view is not None:
            self.send("resume" if self.view.paused else "pause")

    def seek_fraction(self, f: float) -> None:
        self.send("seek", {"fraction": min(1.0, max(0.0, f))})

    def _seek_to_slider(self) -> None:
        self.seek_fraction(self.slider.value() / SLIDER_STEPS)

    def _slider_action(self, action: int) -> None:
        # a click on the groove or a key (not a drag, whose release seeks): seek where it goes
        if action != QtWidgets.QAbstractSlider.SliderAction.SliderMove.value and not self.slider.isSliderDown():
            self.seek_fraction(self.slider.sliderPosition() / SLIDER_STEPS)

    # ------------------------------------------------------------------ showing
    def refresh(self) -> ReplayView | None:
        v = self.view = replay_of(self.window.session.sup.workers)
        w = self.window
        title = "TickDesk [REPLAY]" if v is not None else "TickDesk"
        if w.windowTitle() != title:
            w.setWindowTitle(title)
        status = getattr(w, "status_bar", None)
        if v is None:
            if self.isVisible():
                self.hide()
            if status is not None:
                status.set_replay("")
            return None
        text = replay_text(v)
        if self.label.text() != text:
            self.label.setText(text)
            self.label.setToolTip(f"{v.file}\nThe market data is this recording replayed, not the live market. "
                                  "Latency figures mean nothing in a replay (ticks carry their recorded time).")
        self.pause_button.setText("Resume" if v.paused else "Pause")
        self.pause_button.setEnabled(v.status != "finished")
        for speed, b in self.speed_buttons.items():
            b.setChecked(speed == v.speed)
        if not self.slider.isSliderDown():
            self.slider.blockSignals(True)
            self.slider.setValue(round(v.fraction * SLIDER_STEPS))
            self.slider.blockSignals(False)
        if not self.isVisible():
            self.show()
        if status is not None:
            status.set_replay(text, QColor(_STATUS_ORANGE.get(getattr(w.ui, "theme", "dark"), _STATUS_ORANGE["dark"])))
        return v
