"""Issue 12 over a real fleet: what the trader did, repeated.

* kill -9 the market-data gateway under the window: quotes and the chart move again within
  2 s (scaled) of the restarted gateway's first tick, never frozen as "late" ticks;
* a second window's data side started late: quotes and the chart's history at once (the
  snapshot endpoint), then the live stream;
* the fills blotter of a window started after fills happened is filled from get_fills.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import zmq.asyncio

from tests.procs import scaled, scaled_ms
from tests.ui.test_window import START_TIMEOUT, TIMEOUT, alive, cell, desk, load_ticket  # noqa: F401 (fixtures)
from workers.protocol import OrderType
from app.feeds import Feeds
from app.orders import OrderService
from app.qt import Qt
from app.state import AppState

pytestmark = pytest.mark.slow

SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")


def test_kill_9_of_the_market_data_gateway_quotes_and_chart_move_again(qtbot, desk):
    w = desk.window
    m = desk.state.market
    load_ticket(qtbot, w, "MSFT")
    qtbot.waitUntil(lambda: w.chart.bar_count() >= 2, timeout=TIMEOUT)
    epochs = {s: m.quotes[s].epoch for s in SYMBOLS}
    assert all(epochs.values()), "the gateway gives an epoch"
    qtbot.waitUntil(lambda: m.snapshots_applied >= 1, timeout=TIMEOUT)  # the window's own, at start
    md = desk.sup.workers["marketdata"]
    old = md.pid
    os.kill(old, signal.SIGKILL)
    # the supervisor restarts it; its first tick of each symbol is taken at once
    qtbot.waitUntil(lambda: all(m.quotes[s].epoch not in (0, epochs[s]) for s in SYMBOLS), timeout=START_TIMEOUT)
    t_first = time.monotonic()
    shown = {s: cell(w.market_watch, s, "last") for s in SYMBOLS}
    seqs = {s: m.quotes[s].seq for s in SYMBOLS}
    bars = w.chart.bar_count()
    version = m.bars["MSFT"].version
    qtbot.waitUntil(lambda: all(m.quotes[s].seq > seqs[s] + 3 for s in SYMBOLS)
                    and all(cell(w.market_watch, s, "last") != shown[s] for s in ("MSFT", "AAPL"))
                    and m.bars["MSFT"].version > version, timeout=scaled_ms(2000))
    assert w.chart.bar_count() >= bars
    # nothing was taken for late data, nothing shows stale, and the status bar can say "ticking"
    # (a symbol's epoch changes with its first new tick or with the new gateway's snapshot, whichever comes first)
    assert all(m.quotes[s].epoch not in (0, epochs[s]) for s in SYMBOLS)
    assert m.ticking() and m.stale_count() == 0
    assert time.monotonic() - t_first < scaled(2.0)
    assert md.pid != old and not alive(old)


def test_a_late_joiner_sees_quotes_and_chart_history_at_once(qtbot, desk, qloop):
    # let the fleet trade for a while so that the session has history
    m0 = desk.state.market
    qtbot.waitUntil(lambda: len(m0.bars["AAPL"].series(5)) >= 2, timeout=TIMEOUT)
    late = AppState()
    feeds = Feeds(late, desk.window.session.endpoints, ctx=zmq.asyncio.Context())
    feeds.start()
    try:
        t0 = time.monotonic()
        qtbot.waitUntil(lambda: late.market.snapshots_applied >= 1, timeout=scaled_ms(2000))
        assert time.monotonic() - t0 < scaled(2.0)
        m = late.market
        assert set(SYMBOLS) <= set(m.quotes) and all(m.quotes[s].last for s in SYMBOLS)
        # the chart's 5 s series reaches back to the session's start, as the running window's
        first_here = m0.bars["AAPL"].series(5).view()[0][0]
        assert m.bars["AAPL"].series(5).view()[0][0] <= first_here
        # then the live stream, with no duplicate: the joiner keeps up with the running window
        seq = m.quotes["AAPL"].seq
        qtbot.waitUntil(lambda: m.quotes["AAPL"].seq > seq + 5, timeout=TIMEOUT)
        assert m.quotes["AAPL"].missed == 0  # no gap between the snapshot and the stream
    finally:
        feeds.close()


def test_a_window_started_after_fills_shows_them(qtbot, desk, qloop):
    w = desk.window
    load_ticket(qtbot, w, "MSFT")
    w.ticket.set_order_type(OrderType.MARKET)
    w.ticket.qty.setValue(7)
    qtbot.mouseClick(w.ticket.buy, Qt.MouseButton.LeftButton)
    try:
        qtbot.waitUntil(lambda: any(f.source == "manual" and f.symbol == "MSFT" for f in w.fills.model.rows()), timeout=TIMEOUT)
    except Exception:
        orders = [(o.client_order_id, o.status.value, o.filled_qty, o.reason) for o in desk.state.orders.orders.values()
                  if o.source == "manual"]
        fills = [(f.fill_id, f.source, f.symbol) for f in w.fills.model.rows()]
        ex = desk.state.streams["execution"]
        raise AssertionError(f"no manual fill: ticket {w.ticket.outcome.text()!r}; manual orders {orders}; fills {fills}; "
                             f"exec stream received {ex.received} connected {ex.connected} seq {desk.state.exec_seq}; "
                             f"duplicate fills {desk.state.duplicate_fills}; seen {sorted(desk.state._seen_fills)}; "
                             f"fill rows {[r.fill_id for r in desk.state.fills.items]}")
    mine = {f.fill_id for f in w.fills.model.rows()}
    # a second window's data side, started now: its blotter fills from get_fills
    late = AppState()
    svc = OrderService(late, desk.window.session.endpoints.orders)
    done = {}
    task = asyncio.ensure_future(svc.sync())
    task.add_done_callback(lambda t: done.setdefault("ok", t.result()))
    qtbot.waitUntil(lambda: "ok" in done, timeout=TIMEOUT)
    assert done["ok"]
    if not svc.fills_supported:
        pytest.skip("the exchange gateway does not answer get_fills yet")
    got = {f.fill_id for f in late.fills.items}
    assert mine <= got
    assert len(got) == len(late.fills.items)  # each once
    assert late.manual_position("MSFT") == 7
