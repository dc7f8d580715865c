"""The window's Qt-free state, fed with protocol messages directly."""

from __future__ import annotations

import subprocess
import sys

from tests.procs import REPO
from workers import protocol as P
from workers.protocol import OrderStatus, OrderType, Side
from app.state import AppState, MarketState, OrderBook, OrderRow


class RecordingBars:
    def __init__(self):
        self.ticks = []

    def add_tick(self, ts, price, volume_delta):
        self.ticks.append((ts, price, volume_delta))


def tick(sym="AAPL", seq=1, last=100.0, vol=1000, ts=None):
    return dict(symbol=sym, seq=seq, ts=ts or 1_700_000_000_000_000_000 + seq, last=last, bid=last - 0.01,
                ask=last + 0.01, bid_size=100, ask_size=200, volume=vol)


def test_quotes_are_conflated_and_bars_get_volume_deltas():
    bars = RecordingBars()
    m = MarketState(bars_factory=lambda: bars)
    m.on_tick(**tick(seq=1, last=100.0, vol=1000))
    m.on_tick(**tick(seq=2, last=101.0, vol=1300))
    m.on_tick(**tick(seq=3, last=99.5, vol=1350))
    q = m.quotes["AAPL"]
    assert (q.last, q.volume, q.ticks, q.seq) == (99.5, 1350, 3, 3)
    assert q.ref == 100.0 and q.change == -0.5 and round(q.change_pct, 6) == -0.5
    # the first tick's cumulative volume is the day so far, not a trade
    assert [t[2] for t in bars.ticks] == [0, 300, 50]
    assert m.take_dirty() == {"AAPL"} and m.take_dirty() == set()


def test_sequence_gaps_restarts_and_late_ticks():
    m = MarketState(bars_factory=RecordingBars)
    m.on_tick(**tick(seq=1))
    m.on_tick(**tick(seq=5, last=101.0))
    q = m.quotes["AAPL"]
    assert q.missed == 3 and m.total_missed == 3
    m.on_tick(**tick(seq=4, last=50.0))  # late: must not move the quote back
    assert q.last == 101.0 and q.seq == 5
    m.on_tick(**tick(seq=1, last=102.0, vol=10))  # the gateway restarted
    assert q.restarts == 1 and q.seq == 1 and q.last == 102.0 and q.volume == 10


def test_ticks_go_through_the_shared_sequence_tracker():
    m = MarketState(bars_factory=RecordingBars)
    for seq in (1, 2, 5, 4, 5, 6):  # a gap, then a late and a duplicate tick
        m.on_tick(**tick(seq=seq, last=100.0 + seq))
    q = m.quotes["AAPL"]
    # the late tick left no trace: 6 after 5 is in order, not a second gap
    assert (q.ticks, q.seq, q.last, q.missed) == (4, 6, 106.0, 2)
    c = m.seq.counters()
    assert (c["received"], c["gaps"], c["missing"], c["late"], c["duplicates"]) == (6, 1, 2, 1, 1)
    m.on_tick(**tick(seq=1, last=90.0, vol=5))  # the gateway restarted
    m.on_tick(**tick(seq=2, last=91.0, vol=7))  # and goes on: in order in its new series
    assert (q.restarts, q.seq, q.last, q.volume, q.missed) == (1, 2, 91.0, 7, 2)
    assert m.seq.counters()["restarts"] == 1


def test_rates_per_symbol():
    m = MarketState(bars_factory=RecordingBars)
    t0 = m._rate_t
    for i in range(1, 11):
        m.on_tick(**tick(seq=i))
    m.take_dirty()
    m.update_rates(t0 + 2.0)
    assert m.quotes["AAPL"].rate == 5.0 and m.rate == 5.0
    assert m.take_dirty() == {"AAPL"}


def order_map(coid="c1", status="new", filled=0, **kw):
    d = dict(client_order_id=coid, order_id="O1", symbol="MSFT", side="buy", qty=100, filled_qty=filled,
             avg_price=0.0, status=status, ts=5)
    d.update(kw)
    return d


def test_order_book_never_moves_an_order_backwards():
    b = OrderBook()
    b.add(OrderRow(client_order_id="c1", symbol="MSFT", side=Side.BUY, qty=100, order_type=OrderType.LIMIT, limit_price=99.0, source="manual"))
    new, changed, _ = b.take_changes()
    assert [o.client_order_id for o in new] == ["c1"] and changed == []
    b.apply_map(order_map(status="filled", filled=100, avg_price=99.0))
    b.apply_map(order_map(status="new", filled=0))  # a stale update arriving late
    o = b.get("c1")
    assert o.status is OrderStatus.FILLED and o.filled_qty == 100 and o.avg_price == 99.0
    new, changed, _ = b.take_changes()
    assert new == [] and [x.client_order_id for x in changed] == ["c1"]
    assert b.live() == []


def test_order_book_learns_orders_from_the_stream_and_bounds_itself():
    b = OrderBook(max_orders=3)
    for i in range(5):
        b.apply_map(order_map(coid=f"c{i}", status="filled", filled=100))
    b.apply_map(order_map(coid="w", status="new"))
    assert len(b) == 3 and "w" in b.orders
    new, _, evicted = b.take_changes()
    assert evicted == ["c0", "c1", "c2"]
    assert b.pending_qty("MSFT") == 100
    assert b.apply_map({"client_order_id": "bad", "side": "up"}) is None


def test_unknown_then_terminal():
    b = OrderBook()
    b.add(OrderRow(client_order_id="c1", symbol="MSFT", side=Side.SELL, qty=10))
    b.set_status("c1", OrderStatus.UNKNOWN, "no reply")
    assert b.get("c1").is_live and b.pending_qty("MSFT") == -10
    b.apply_map(order_map(coid="c1", status="cancelled", side="sell", qty=10))
    assert not b.get("c1").is_live
    b.set_status("c1", OrderStatus.UNKNOWN)  # never back from terminal
    assert b.get("c1").status is OrderStatus.CANCELLED


def fill(n=1, sym="MSFT", side=Side.BUY, qty=10, price=100.0, seq=0):
    return P.Fill(fill_id=f"F{n}", client_order_id="c1", order_id="O1", symbol=sym, side=side, qty=qty, price=price,
                  ts=P.now_ns(), source="manual", seq=seq, origin_ts=P.now_ns() - 1000)


def test_fills_update_positions_once_and_collect_marks_to_market():
    st = AppState(bars_factory=RecordingBars)
    st.market.on_tick(**tick(sym="MSFT", seq=1, last=100.0))
    assert st.on_fill(fill(1, qty=10, price=100.0))
    assert not st.on_fill(fill(1, qty=10, price=100.0))  # duplicate
    assert st.duplicate_fills == 1
    ch = st.collect()
    assert ch.positions == {"MSFT"} and len(ch.new_fills) == 1 and ch.symbols == {"MSFT"}
    st.market.on_tick(**tick(sym="MSFT", seq=2, last=101.0))
    ch = st.collect()
    pos = st.position("MSFT")
    assert ch.positions == {"MSFT"} and pos.qty == 10 and pos.unrealized_pnl == 10.0
    st.on_fill(fill(2, side=Side.SELL, qty=10, price=102.0))
    st.collect()
    assert pos.qty == 0 and pos.realized_pnl == 20.0 and st.pnl_totals() == (20.0, 0.0)
    # a flat row still shows the market's last price: it is redrawn when the price moves
    st.market.on_tick(**tick(sym="MSFT", seq=3, last=99.5))
    ch = st.collect()
    assert ch.positions == {"MSFT"} and pos.last == 99.5
    assert not st.collect().positions  # and only then


def test_snapshot_then_replayed_fills():
    st = AppState(bars_factory=RecordingBars)
    st.on_fill(fill(7, qty=5, price=10.0))
    st.load_positions([{"symbol": "MSFT", "qty": 100, "avg_price": 9.0, "realized_pnl": 1.0}], last_fill_seq=6)
    assert st.position("MSFT").qty == 100  # F7 is replayed by OrderService.sync, not here


def test_decisions_and_levels():
    st = AppState(bars_factory=RecordingBars)
    sig = P.Signal(id="s1", strategy="sr", symbol="AAPL", side=Side.SELL, qty=5, price=10.0, ts=1, cause_ts=1, reason="breakdown")
    st.on_decision(P.SignalDecision(signal=sig, accepted=False, ts=2, reason="kill switch is on"))
    st.on_levels(P.Levels(strategy="sr", symbol="AAPL", ts=3, support=9.0, resistance=11.0))
    ch = st.collect()
    s = ch.new_signals[0]
    assert (s.strategy, s.side, s.accepted, s.decision, s.reason) == ("sr", Side.SELL, False, "kill switch is on", "breakdown")
    assert ch.levels[("AAPL", "sr")].support == 9.0
    assert st.collect().empty


def test_event_log_is_bounded_and_hands_over_new_lines():
    st = AppState(bars_factory=RecordingBars)
    for i in range(st.log.items.maxlen + 10):
        st.log.info("x", str(i))
    assert len(st.log) == st.log.items.maxlen
    assert len(st.log.take_new()) == st.log.items.maxlen and st.log.take_new() == []


QT_FREE = ("app.state", "app.feeds", "app.orders", "app.control", "app.session", "app.models.columns", "app.models.tables")


def test_window_core_modules_do_not_import_qt():
    probe = (
        "import sys\n"
        "class Ban:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph', 'qasync'):\n"
        "            raise ImportError('Qt-free module imports ' + name)\n"
        "sys.meta_path.insert(0, Ban())\n"
        f"for m in {QT_FREE!r}: __import__(m)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
