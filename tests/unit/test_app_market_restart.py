"""Issue 12, items 1 and 2 on the window's state: a new epoch is a restart (never stale data),
quotes that stop ticking are marked stale, and a snapshot joins the live stream with no gap and
no duplicate (MarketState, no Qt, no sockets)."""

from __future__ import annotations

import numpy as np

from workers import protocol as P
from app.chart.bars import MultiIntervalBars
from app.state import MarketState

T0 = 1_700_000_000_000_000_000
E1, E2 = 1_700_000_000_000_000_111, 1_700_000_000_999_000_222


def tk(sym="AAPL", seq=1, last=100.0, vol=1000, ts=None, epoch=E1):
    return dict(symbol=sym, seq=seq, ts=ts or T0 + seq * 1_000_000_000, last=last, bid=last - 0.01,
                ask=last + 0.01, bid_size=100, ask_size=200, volume=vol, epoch=epoch)


def test_a_new_epoch_is_a_restart_whatever_its_seq():
    m = MarketState()
    for i in range(1, 101):
        m.on_tick(**tk(seq=i, last=100 + i * 0.01, vol=1000 + i))
    m.snapshot_wanted = False
    # the restarted gateway's first ticks reach us from seq 7 (its 1..6 went before we reconnected)
    m.on_tick(**tk(seq=7, last=90.0, vol=50, ts=T0 + 500 * 10**9, epoch=E2))
    q = m.quotes["AAPL"]
    assert (q.last, q.seq, q.epoch, q.volume) == (90.0, 7, E2, 50)
    assert q.restarts == 1 and m.snapshot_wanted  # ... and the new gateway's history is asked for
    m.on_tick(**tk(seq=8, last=90.5, ts=T0 + 501 * 10**9, epoch=E2))
    assert q.last == 90.5
    # within one epoch a step back is late: it never moves the quote back
    m.on_tick(**tk(seq=5, last=1.0, ts=T0 + 502 * 10**9, epoch=E2))
    assert q.last == 90.5 and q.seq == 8
    # a late tick of the old incarnation is not taken either (it is the old epoch's, and old)
    assert m.seq.stats("AAPL").epoch == E2


def test_without_an_epoch_the_old_step_back_rule_holds():
    m = MarketState()
    for i in range(1, 50):
        m.on_tick(**tk(seq=i, epoch=0))
    m.on_tick(**tk(seq=10, last=1.0, epoch=0))  # late
    assert m.quotes["AAPL"].seq == 49
    m.on_tick(**tk(seq=1, last=77.0, epoch=0))  # a restart: back to seq 1
    assert m.quotes["AAPL"].last == 77.0 and m.quotes["AAPL"].restarts == 1


def test_quotes_without_ticks_go_stale_and_ticking_says_so():
    m = MarketState()
    m.configure(stale_after_s=5.0)
    now = 1000.0
    m._rate_t = now
    for s in ("AAPL", "MSFT"):
        m.on_tick(**tk(sym=s, seq=1))
    assert not m.ticking() or m.stale_count() == 0
    m.update_rates(now + 1)
    assert m.ticking() and m.stale_count() == 0
    m.take_dirty()
    # MSFT keeps ticking, AAPL stops
    for i, t in enumerate(np.arange(now + 2, now + 9, 1.0)):
        m.on_tick(**tk(sym="MSFT", seq=2 + i))
        m.update_rates(float(t))
    assert m.quotes["AAPL"].stale and not m.quotes["MSFT"].stale
    assert "AAPL" in m.take_dirty()  # the market watch repaints it greyed
    assert m.stale() == ["AAPL"] and m.ticking()
    m.update_rates(now + 20)
    assert not m.ticking() and m.stale_count() == 2
    m.on_tick(**tk(sym="AAPL", seq=2))
    m.update_rates(now + 21)
    assert not m.quotes["AAPL"].stale and m.ticking()


def test_no_symbol_at_all_is_not_ticking():
    assert not MarketState().ticking()


def bars_rows(start_s: int, n: int, interval: int, px=100.0):
    return [((start_s + i * interval) * 10**9, px + i, px + i + 0.5, px + i - 0.5, px + i + 0.25, 10 + i)
            for i in range(n)]


def snapshot(seq=40, last=140.0, epoch=E1, bars=None, sym="AAPL"):
    t = P.Tick(sym, seq, T0 + seq * 10**9, last, last - 0.01, last + 0.01, 100, 200, 5000, epoch=epoch)
    return P.GetSnapshotReply(ok=True, epoch=epoch, ticks=[t],
                              bars=bars if bars is not None else [P.SymbolBars(sym, 1, bars_rows(1_700_000_000, 40, 1))])


def test_snapshot_sets_the_quote_and_loads_the_session_bars_then_joins_the_stream():
    m = MarketState(bars_factory=lambda: MultiIntervalBars(intervals=(1, 5, 60)))
    m.begin_snapshot()
    # live ticks before the reply: 38..42 (the snapshot holds up to 40)
    for seq in range(38, 43):
        m.on_tick(**tk(seq=seq, last=100.0 + seq, ts=(1_700_000_000 + seq) * 10**9))
    quotes, bars = m.apply_snapshot(snapshot(seq=40, last=140.0))
    q = m.quotes["AAPL"]
    # the live stream was ahead (42): the quote stays the live one
    assert quotes == 0 and q.seq == 42 and q.last == 142.0
    assert bars == 1
    one = m.bars["AAPL"].series(1)
    # 40 snapshot bars (ts 0..39) and the replayed live ticks 41 and 42 (40 was in the snapshot)
    times = one.view()[0]
    assert len(one) == 42 and times[0] == 1_700_000_000 and times[-1] == 1_700_000_042
    assert len(m.bars["AAPL"].series(60)) >= 1 and len(m.bars["AAPL"].series(5)) == 9


def test_snapshot_ahead_of_the_live_stream_drops_the_ticks_it_holds():
    m = MarketState(bars_factory=lambda: MultiIntervalBars(intervals=(1,)))
    m.begin_snapshot()
    m.on_tick(**tk(seq=30, last=130.0, ts=(1_700_000_000 + 30) * 10**9))
    quotes, _ = m.apply_snapshot(snapshot(seq=40, last=140.0))
    q = m.quotes["AAPL"]
    assert quotes == 1 and (q.seq, q.last, q.volume) == (40, 140.0, 5000)
    ticks = q.ticks
    for seq in (31, 39, 40):  # already in the snapshot: no duplicate
        m.on_tick(**tk(seq=seq, last=1.0))
    assert q.ticks == ticks and q.last == 140.0 and q.missed == 0
    m.on_tick(**tk(seq=41, last=141.0, ts=(1_700_000_000 + 41) * 10**9))
    assert q.last == 141.0 and q.missed == 0  # no gap either


def test_a_snapshot_that_holds_less_history_never_shortens_the_chart():
    m = MarketState(bars_factory=lambda: MultiIntervalBars(intervals=(1,)))
    for seq in range(1, 11):
        m.on_tick(**tk(seq=seq, ts=(1_700_000_000 + seq) * 10**9))
    m.begin_snapshot()
    # a restarted gateway that only holds bars from ts +5 on
    m.apply_snapshot(snapshot(seq=3, epoch=E2, bars=[P.SymbolBars("AAPL", 1, bars_rows(1_700_000_005, 3, 1))]))
    assert len(m.bars["AAPL"].series(1)) == 10


def test_a_failed_snapshot_is_asked_again():
    m = MarketState()
    assert m.snapshot_wanted
    m.begin_snapshot()
    assert not m.snapshot_wanted
    m.abandon_snapshot()
    assert m.snapshot_wanted and m._recording is None
