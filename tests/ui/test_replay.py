"""The replay's mark and controls in the window.

Over a real fleet whose market data replays a recording ([fleet.marketdata] feed = "recording"):
the orange strip, the status bar and the title say REPLAY; the strip's Pause button pauses the
gateway (its heartbeat's tick counter stands still over several heartbeats) and Resume and the
speed buttons reach it too.  Without a replay nothing of it shows."""

from __future__ import annotations

import numpy as np
import pytest

from tests.procs import scaled_ms
from workers.config import Endpoints
from workers.launcher import parse
from workers.recording import write_ticks
from app.main import build_session
from app.panels.replay import ReplayView, replay_text
from app.qt import Qt
from app.settings import Settings
from app.window import MainWindow

START_TIMEOUT = scaled_ms(10_000)
TIMEOUT = scaled_ms(5_000)
NS = 10**9
T0 = 1_796_308_325 * NS  # 2026-12-03 14:32:05 UTC


def _recording(root):
    n = 12_000  # 10 minutes of ticks every 50 ms: it does not end during the test at 1x or 10x
    for k, sym in enumerate(("AAA", "BBB")):
        last = 50.0 + 10 * k + (np.arange(n) % 40) * 0.01
        write_ticks(root / "parquet" / "ticks", sym, {
            "seq": np.arange(1, n + 1), "ts": T0 + k * 1_000_000 + np.arange(n) * 50_000_000, "last": last,
            "bid": last - 0.01, "ask": last + 0.01, "bid_size": np.full(n, 100), "ask_size": np.full(n, 100),
            "volume": np.arange(n) * 100})
    return root


@pytest.fixture
def replay_desk(qtbot, qloop, tmp_path):
    rec = _recording(tmp_path / "rec")
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(f'[fleet.marketdata]\nfeed = "recording"\nreplay_file = "{rec}"\nspeed = 1.0\n')
    eps = Endpoints.ephemeral_ipc(tmp_path)
    args = parse(["--data-dir", str(tmp_path / "data"), "--fresh", "--no-strategies", "--no-record",
                  "--config", str(cfg), *eps.as_args()])
    settings = Settings(tmp_path / "tickdesk.ini")
    ui = settings.load()
    ui.confirm_quit = False
    session = build_session(args, settings, ui)
    w = MainWindow(session, settings, ui)
    w.resize(1400, 900)
    w.show()
    qtbot.waitExposed(w)
    w.start()
    try:
        qtbot.waitUntil(lambda: all(x.state == "running" for x in session.sup.workers.values()), timeout=START_TIMEOUT)
        yield w
    finally:
        w.close()
        w.deleteLater()


def _gauges(w):
    return w.session.sup.workers["marketdata"].stats.get("gauges", {})


def _ticks_sent(w) -> int:
    return int(w.session.sup.workers["marketdata"].stats.get("counters", {}).get("ticks", 0))


def test_the_replay_is_marked_and_its_pause_button_pauses_the_gateway(qtbot, replay_desk):
    w = replay_desk
    bar = w.replay_bar
    qtbot.waitUntil(lambda: bar.isVisible() and bar.label.text().startswith("REPLAY 1x — 2026-12-03 14:3"), timeout=TIMEOUT)
    assert "[REPLAY]" in w.windowTitle()
    assert w.status_bar.replay.isVisible() and w.status_bar.replay.text().startswith("REPLAY 1x")
    qtbot.waitUntil(lambda: "AAA" in w.state.market.quotes and w.state.market.quotes["AAA"].ticks > 5, timeout=TIMEOUT)
    # the window shows the recorded (market) time, not now
    assert T0 <= w.state.market.quotes["AAA"].ts < T0 + 600 * NS

    qtbot.mouseClick(bar.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _gauges(w).get("replay_paused") is True, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: bar.pause_button.text() == "Resume" and "PAUSED" in bar.label.text(), timeout=TIMEOUT)
    # paused: the gateway's tick counter stands still over three heartbeats
    sup_w = w.session.sup.workers["marketdata"]
    hb0, sent = sup_w.last_heartbeat, _ticks_sent(w)
    seen = []

    def heartbeats_while_paused():
        cur = w.session.sup.workers["marketdata"]
        if cur.last_heartbeat != (seen[-1] if seen else hb0):
            seen.append(cur.last_heartbeat)
            assert _ticks_sent(w) == sent, "the gateway published while paused"
        return len(seen) >= 3

    qtbot.waitUntil(heartbeats_while_paused, timeout=TIMEOUT)

    qtbot.mouseClick(bar.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _gauges(w).get("replay_paused") is False and _ticks_sent(w) > sent, timeout=TIMEOUT)
    qtbot.mouseClick(bar.speed_buttons[10.0], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _gauges(w).get("speed") == 10.0 and bar.label.text().startswith("REPLAY 10x"), timeout=TIMEOUT)
    assert bar.speed_buttons[10.0].isChecked() and not bar.speed_buttons[1.0].isChecked()
    # seek from the strip: half-way through the recording
    bar.seek_fraction(0.5)
    qtbot.waitUntil(lambda: _gauges(w).get("replay_fraction", 0) >= 0.5, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: w.state.market.quotes["AAA"].ts >= T0 + 300 * NS, timeout=TIMEOUT)


def test_no_replay_no_mark(make_window):
    w = make_window()
    w._slow()
    assert not w.replay_bar.isVisible() and w.windowTitle() == "TickDesk"
    assert not w.status_bar.replay.isVisible()


def test_replay_text():
    v = ReplayView("marketdata", 10.0, T0, 0.35, False, "playing", T0, T0 + NS, "rec")
    assert replay_text(v) == "REPLAY 10x — 2026-12-03 14:32:05 (35%)"
    assert replay_text(ReplayView("m", 0.0, T0, 1.0, False, "finished", T0, T0, "")).endswith("(100%) FINISHED")
    assert replay_text(ReplayView("m", 1.0, T0, 0.0, True, "paused", T0, T0, "")).endswith("PAUSED")
