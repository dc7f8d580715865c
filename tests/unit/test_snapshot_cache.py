"""The market-data gateway's last-value cache (workers/marketdata/snapshot.py): bars from the
published rows, the last tick, and a reply that stays within its size."""

from __future__ import annotations

from workers import protocol as P
from workers.marketdata.snapshot import LastValueCache

S = 1_000_000_000


def row(seq, ts, last, volume):
    return [seq, ts, last, last - 0.01, last + 0.01, 100, 100, volume]


def test_bars_follow_the_rows_and_the_last_tick_is_the_last_published():
    c = LastValueCache(bar_seconds=5)
    c.update("AAPL", [row(1, 10 * S, 100.0, 100)])
    c.update("AAPL", [row(2, 11 * S, 101.0, 300), row(3, 11 * S, 99.5, 400)])
    c.update("AAPL", [row(4, 16 * S, 100.5, 450)])
    r = c.snapshot(epoch=7)
    assert [(t.symbol, t.seq, t.epoch, t.last) for t in r.ticks] == [("AAPL", 4, 7, 100.5)]
    (b,) = r.bars
    assert b.interval == 5
    assert b.bars == [(10 * S, 100.0, 101.0, 99.5, 99.5, 400), (15 * S, 100.5, 100.5, 100.5, 100.5, 50)]
    assert not r.truncated
    P.decode_reply(r.pack(), P.GetSnapshot)  # readable by its own declaration


def test_a_cumulative_volume_that_starts_again_counts_its_whole_value():
    """The replay's volume is per day: a new day starts counting again."""
    c = LastValueCache(bar_seconds=5)
    c.update("IBM", [row(1, 0, 50.0, 900), row(2, 0, 50.0, 1000), row(3, 0, 51.0, 40), row(4, 0, 51.0, 90)])
    assert c.snapshot(1).bars[0].bars[0][5] == 1000 + 90


def test_a_clock_step_back_keeps_the_bars_in_order():
    c = LastValueCache(bar_seconds=5)
    c.update("A", [row(1, 20 * S, 10.0, 1)])
    c.update("A", [row(2, 3 * S, 9.0, 2)])
    bars = c.snapshot(1).bars[0].bars
    assert len(bars) == 1 and bars[0][3] == 9.0 and bars[0][4] == 9.0


def test_forgotten_and_left_out_bars_are_said_truncated():
    c = LastValueCache(bar_seconds=1, max_bars=3)
    for i in range(5):
        c.update("A", [row(i + 1, i * S, 10.0 + i, i + 1)])
    r = c.snapshot(1)
    assert [b[0] for b in r.bars[0].bars] == [2 * S, 3 * S, 4 * S] and r.truncated
    c = LastValueCache(bar_seconds=1, max_bars=1000)
    for sym in ("A", "B"):
        for i in range(1000):
            c.update(sym, [row(i + 1, i * S, 10.0, i + 1)])
    r = c.snapshot(1, max_bytes=40_000)
    assert r.truncated and len(r.pack()) <= 40_000
    kept = [len(b.bars) for b in r.bars]
    assert kept[0] == kept[1] > 0 and r.bars[0].bars[-1][0] == 999 * S  # the newest are kept
    assert not c.snapshot(1).truncated


def test_symbols_asked_for_that_never_ticked_are_left_out():
    c = LastValueCache()
    c.update("A", [row(1, 0, 10.0, 1)])
    r = c.snapshot(1, ["B", "A", "A"])
    assert [t.symbol for t in r.ticks] == ["A"] and [(b.symbol, b.interval) for b in r.bars] == [("A", 1), ("A", 5)]


def test_every_series_gets_the_frame_and_keeps_its_own_length():
    # 1 s bars for the chart's finest interval, 5 s ones for the longer history
    c = LastValueCache(intervals=((1, 3), (5, 100)))
    for k in range(10):  # ten seconds, one tick each
        c.update("A", [row(k + 1, k * S, 100.0 + k, k + 1)])
    one, five = c.snapshot(1).bars
    assert one.interval == 1 and [b[0] for b in one.bars] == [7 * S, 8 * S, 9 * S]  # the newest 3
    assert five.interval == 5 and [b[0] for b in five.bars] == [0, 5 * S]
    assert five.bars[0][1:5] == (100.0, 104.0, 100.0, 104.0) and c.snapshot(1).truncated
