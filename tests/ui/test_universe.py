"""A rogue tick publisher in front of the window: 50,000 distinct valid symbols.

What the outside check did (it took the window from 140 MB to 3.3 GB, ~80 KB per symbol):
a real publisher process on the window's ticks endpoint, the window running offscreen on
its real loop (qasync, the 30 Hz flush, the feeds).  The window must hold at most its cap
plus the watched symbols, keep every watched one ticking, tell the trader, and its memory
must grow with the cap, not with the publisher's universe.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.procs import REPO, scaled, stop
from workers import protocol as P
from workers.config import Endpoints
from workers.protocol import Side
from workers.supervisor import Supervisor
from app.models.table import RecordTableModel
from app.models.tables import MARKET_COLUMNS
from app.panels.market_watch import MarketWatchPanel
from app.session import Session
from app.settings import Settings
from app.state import AppState, OrderRow
from app.window import MainWindow

UNIVERSE = 50_000
CAP = 200
#: RSS the window may gain under the flood.  Held symbols cost ~7 KB each (1.4 MB for the
#: cap); the rest is the flood in flight (frames queued in the SUB socket, a drained batch).
#: The old window passed this after ~2,000 of the 50,000 symbols.
RSS_BOUND = 160 * 2**20


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def publisher(tmp_path):
    made = []

    def start(endpoint: str, watched: list[str], rate: int = 50_000) -> subprocess.Popen:
        log = open(tmp_path / "publisher.log", "wb")
        p = subprocess.Popen([sys.executable, "-m", "tests.flood_publisher", endpoint, "--symbols", str(UNIVERSE),
                              "--rate", str(rate), "--watched", ",".join(watched)], cwd=REPO, stdout=log, stderr=log)
        made.append(p)
        return p

    yield start
    for p in made:
        stop(p)
        assert p.returncode is not None


def test_50000_symbols_from_a_publisher_keep_the_window_bounded(qtbot, qloop, tmp_path, publisher):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    settings = Settings(tmp_path / "tickdesk.ini")
    ui = settings.load()
    ui.watchlist, ui.max_symbols = ["WL1"], CAP
    session = Session(Supervisor(eps, []))
    w = MainWindow(session, settings, ui)
    qtbot.addWidget(w)
    st = w.state
    assert st.market.max_symbols == CAP and st.market.is_watched("WL1")  # Settings > Market, applied
    # a symbol with a position and one with a working order are watched too
    st.on_fill(P.Fill(fill_id="F1", client_order_id="c0", order_id="O0", symbol="POS1", side=Side.BUY, qty=5,
                      price=50.0, ts=P.now_ns()))
    st.orders.add(OrderRow(client_order_id="c1", symbol="ORD1", side=Side.BUY, qty=1))
    watched = ["WL1", "POS1", "ORD1"]
    w.resize(1400, 900)
    w.show()
    qtbot.waitExposed(w)
    w.start()
    try:
        base = rss()
        peak = 0

        def bounded(cond):
            def check():
                nonlocal peak
                peak = max(peak, rss() - base)
                assert peak < RSS_BOUND, f"{len(st.market.quotes)} symbols held, RSS +{peak / 2**20:.0f} MB"
                return cond()
            return check

        pub = publisher(eps.ticks, watched)
        m = st.market
        t = 1000 * scaled(30)
        qtbot.waitUntil(bounded(lambda: w.chart.symbol != "" and w.market_watch.model.rowCount() >= CAP), timeout=t)
        # the trader puts a flood symbol on the chart: it is watched from then on
        flood_sym = next(s for s in sorted(m.quotes) if s.startswith("U") and s not in m.watched)
        assert w.market_watch.select_symbol(flood_sym)
        qtbot.waitUntil(lambda: w.chart.symbol == flood_sym, timeout=t)
        assert flood_sym in m.watched
        # two full rounds of the universe: every symbol past the cap was offered twice
        qtbot.waitUntil(bounded(lambda: m.refused_ticks >= 2 * (UNIVERSE - CAP)), timeout=1000 * scaled(60))
        seqs = {s: m.quotes[s].seq for s in [*watched, flood_sym]}
        qtbot.waitUntil(bounded(lambda: all(m.quotes[s].seq > seqs[s] for s in seqs)), timeout=t)
        assert pub.poll() is None
        held = len(m.quotes)
        assert held <= CAP + len(m.watched) and m.held_unwatched() <= CAP
        assert w.market_watch.model.rowCount() == held
        assert all(s in m.quotes and s in w.market_watch.model for s in seqs)
        assert peak < RSS_BOUND
        # the trader was told, in the log and the status bar, and not once per symbol
        qtbot.waitUntil(lambda: any("universe cap" in ln.text for ln in w.log_panel.log.items), timeout=t)
        told = [ln for ln in st.log.items if "universe cap" in ln.text]
        assert 1 <= len(told) <= 20 and f"universe cap {CAP} reached" in told[-1].text
        qtbot.waitUntil(lambda: "universe cap" in w.status_bar.alert_label.toolTip(), timeout=t)
        print(f"\nheld {held}, refused ticks {m.refused_ticks:,}, RSS +{peak / 2**20:.1f} MB, "
              f"UI lag p99 {w.ui_lag_p99():.0f} ms, notices {len(told)}")
    finally:
        w.close()
        w.deleteLater()


def test_market_watch_drops_the_rows_of_replaced_symbols(qtbot):
    st = AppState(max_symbols=2, idle_evict_s=5)
    panel = MarketWatchPanel(st.market)
    qtbot.addWidget(panel)
    m = st.market
    t = m._rate_t
    for i, sym in enumerate(["A", "B"]):
        m.on_tick(sym, 1, P.now_ns(), 10.0 + i, 9.9, 10.1 + i, 1, 1, 1)
    panel.apply(st.collect(now=t + 1))
    assert sorted(panel.model.keys()) == ["A", "B"]
    m.on_tick("C", 1, P.now_ns(), 30.0, 29.9, 30.1, 1, 1, 1)  # refused: no one idle yet
    panel.apply(st.collect(now=t + 7))  # A and B idle 6 s: candidates, idlest first
    for sym in ("C", "D"):
        m.on_tick(sym, 2, P.now_ns(), 30.0, 29.9, 30.1, 1, 1, 1)
    panel.apply(st.collect(now=t + 7.1))
    assert sorted(panel.model.keys()) == ["C", "D"] and [q.symbol for q in panel.visible_rows()] == ["C", "D"]
    assert panel.model.row_for("A") is None and panel.model.row_for("D") is not None


def test_market_settings_round_trip_and_a_bad_watch_list_is_refused(qtbot, tmp_path):
    from workers.config import Endpoints as E
    from app.settings import SettingsDialog

    s = Settings(tmp_path / "t.ini")
    ui = s.load()
    assert (ui.watchlist, ui.max_symbols, ui.idle_evict_s) == ([], 500, 0.0)
    ui.watchlist, ui.max_symbols, ui.idle_evict_s = ["AAPL", "BRK.B"], 1234, 90.0
    s.save(ui)
    back = Settings(tmp_path / "t.ini").load()
    assert (back.watchlist, back.max_symbols, back.idle_evict_s) == (["AAPL", "BRK.B"], 1234, 90.0)
    # a hand-edited file: the words that are symbols survive, an absurd cap is clamped
    s.set_value("market/watchlist", "aapl, ÄPL msft")
    s.set_value("market/max_symbols", "10000000000")
    s.sync()
    back = Settings(tmp_path / "t.ini").load()
    assert back.watchlist == ["AAPL", "MSFT"] and back.max_symbols == 100_000
    dlg = SettingsDialog(back, E())
    qtbot.addWidget(dlg)
    dlg.watchlist.setText("goog ÄPL")
    dlg._accept()
    assert dlg.result_settings() is None and "watch list" in dlg.error.text()
    dlg.watchlist.setText("goog, amzn")
    dlg.max_symbols.setValue(42)
    dlg._accept()
    r = dlg.result_settings()
    assert r is not None and r.watchlist == ["GOOG", "AMZN"] and r.max_symbols == 42
