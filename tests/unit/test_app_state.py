"""The window's Qt-free state, fed with protocol messages directly."""

from __future__ import annotations

import subprocess
import sys

from tests.procs import REPO
from workers import protocol as P
from workers.protocol import OrderStatus, OrderType, Side
from app.state import UNIVERSE_NOTICE_S as S_NOTICE, AppState, MarketState, OrderBook, OrderRow


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


def feed_symbols(m, names, seq=1):
    for sym in names:
        m.on_tick(**tick(sym=sym, seq=seq))


def test_universe_cap_refuses_new_symbols_but_never_a_watched_one():
    m = MarketState(bars_factory=RecordingBars, max_symbols=3, idle_evict_s=0)
    m.configure(watchlist=["WL"])
    feed_symbols(m, [f"U{i}" for i in range(10)])
    assert sorted(m.quotes) == ["U0", "U1", "U2"] and m.refused_ticks == 7
    assert "U5" not in m.seq and "U5" not in m.bars  # a refused tick leaves nothing behind
    feed_symbols(m, ["WL"])  # watched: held past the cap
    m.set_watched("chart", ["U9"])  # the chart's symbol too, from its next tick on
    feed_symbols(m, ["U9", "U8"], seq=2)
    assert "WL" in m.quotes and "U9" in m.quotes and "U8" not in m.quotes
    assert m.held_unwatched() == 3 and len(m.quotes) <= m.max_symbols + len(m.watched)
    assert m.refused_ticks == 8 and m.take_refused() == (7, False) and m.take_refused() == (0, False)
    # the chart moves on: U9 is one of the others now, and the cap still holds for new ones
    m.set_watched("chart", ["U0"])
    assert m.held_unwatched() == 3  # U1 U2 U9 (U0 is watched now)
    feed_symbols(m, ["NEW"], seq=3)
    assert "NEW" not in m.quotes


def test_distinct_refused_symbols_are_remembered_within_a_bound(monkeypatch):
    import app.state as S

    monkeypatch.setattr(S, "REFUSED_REMEMBERED", 5)
    m = MarketState(bars_factory=RecordingBars, max_symbols=0, idle_evict_s=0)
    feed_symbols(m, [f"U{i}" for i in range(20)])
    assert len(m._refused_recent) == 5 and m.take_refused() == (5, True) and m.refused_ticks == 20


def test_idle_symbols_give_their_place_to_new_ones_watched_ones_never():
    m = MarketState(bars_factory=RecordingBars, max_symbols=2, idle_evict_s=60)
    t0 = m._rate_t
    m.set_watched("trading", ["POS"])
    feed_symbols(m, ["POS", "OLD", "BUSY"])
    m.update_rates(t0 + 1)  # all three ticked: active at t0 + 1
    m.take_dirty()
    feed_symbols(m, ["NEW1"])  # no one idle long enough: refused
    assert "NEW1" not in m.quotes and m.refused_ticks == 1
    m.on_tick(**tick(sym="BUSY", seq=2))
    m.update_rates(t0 + 30)  # BUSY active again at t0 + 30; OLD and POS idle since t0 + 1
    m.on_tick(**tick(sym="BUSY", seq=3))
    feed_symbols(m, ["NEW2"])
    m.update_rates(t0 + 62)  # OLD idle 61 s: a candidate; POS is watched, BUSY ticked at t0 + 62
    feed_symbols(m, ["NEW3"])
    assert "OLD" not in m.quotes and "NEW3" in m.quotes and "POS" in m.quotes and "BUSY" in m.quotes
    assert m.take_evicted() == ["OLD"] and "OLD" not in m.seq and "OLD" not in m.bars
    feed_symbols(m, ["NEW4"])  # no other candidate: refused
    assert "NEW4" not in m.quotes and m.held_unwatched() == 2 and m.evicted_total == 1


def test_candidate_that_ticked_again_is_not_evicted():
    m = MarketState(bars_factory=RecordingBars, max_symbols=1, idle_evict_s=10)
    t0 = m._rate_t
    feed_symbols(m, ["A"])
    m.update_rates(t0 + 1)
    feed_symbols(m, ["B"])  # refused: pressure
    m.update_rates(t0 + 20)  # A idle 19 s: a candidate
    m.on_tick(**tick(sym="A", seq=2))  # but it ticks before the new symbol comes
    feed_symbols(m, ["C"])
    assert sorted(m.quotes) == ["A"] and m.take_evicted() == []


def test_orders_and_fills_make_their_symbols_watched_and_the_trader_is_told_once_per_interval():
    st = AppState(bars_factory=RecordingBars, max_symbols=2, idle_evict_s=0)
    feed_symbols(st.market, ["A", "B", "C", "D"])
    st.orders.add(OrderRow(client_order_id="c1", symbol="ORD", side=Side.BUY, qty=1))
    st.on_fill(fill(1, sym="FIL"))
    t = st.market._rate_t
    ch = st.collect(now=t + 1)
    assert {"ORD", "FIL"} <= st.market.watched
    notices = [ln for ln in st.log.items if "universe cap" in ln.text]
    assert len(notices) == 1 and notices[0].level >= 30
    assert "2 symbols ignored: universe cap 2 reached" in notices[0].text and "2 ticks dropped" in notices[0].text
    assert notices[0] in ch.new_log
    feed_symbols(st.market, ["ORD", "FIL", "E", "F", "G"])
    assert "ORD" in st.market.quotes and "FIL" in st.market.quotes and "E" not in st.market.quotes
    st.collect(now=t + 2)  # within the interval: counted, not told again yet
    assert len([ln for ln in st.log.items if "universe cap" in ln.text]) == 1
    st.collect(now=t + 2 + S_NOTICE)
    notices = [ln for ln in st.log.items if "universe cap" in ln.text]
    assert len(notices) == 2 and "3 symbols ignored" in notices[1].text and "5 in all" in notices[1].text
    st.collect(now=t + 3 + 2 * S_NOTICE)  # nothing refused since: nothing said
    assert len([ln for ln in st.log.items if "universe cap" in ln.text]) == 2


def test_evicted_symbols_leave_the_changes():
    st = AppState(bars_factory=RecordingBars, max_symbols=1, idle_evict_s=5)
    m = st.market
    t = m._rate_t
    feed_symbols(m, ["A"])
    st.collect(now=t + 1)
    feed_symbols(m, ["B"])
    st.collect(now=t + 10)  # A idle 9 s, and B was refused: A is a candidate
    feed_symbols(m, ["B"], seq=2)
    ch = st.collect(now=t + 10.1)
    assert ch.evicted_symbols == ["A"] and ch.symbols == {"B"} and not ch.empty


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


QT_FREE = ("app.state", "app.depth", "app.feeds", "app.orders", "app.control", "app.session", "app.models.columns", "app.models.tables")


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
