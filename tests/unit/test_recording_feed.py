"""The recording feed's windows: the rows a replay takes are the recording's, in its order,
whatever the slicing; depth goes after the ticks before it; seek and loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workers import protocol as P
from workers.marketdata.recording_feed import RecordingFeed
from workers.recording import Recording

T0 = 1_700_000_000 * 10**9


def cols(n: int, t0: int, step: int, px: float) -> dict[str, np.ndarray]:
    last = np.round(px + np.arange(n) * 0.01, 2)
    return {"seq": np.arange(1, n + 1), "ts": t0 + np.arange(n) * step, "last": last, "bid": last - 0.01,
            "ask": last + 0.01, "bid_size": np.full(n, 5), "ask_size": np.full(n, 6), "volume": np.arange(n)}


class WithDepth(Recording):
    depth: dict = {}

    def depth_by_symbol(self):
        return self.depth


def rec() -> WithDepth:
    # AAPL every 3 ms, MSFT every 5 ms and GOOG in one burst: interleaved, with equal times
    r = WithDepth(Path("mem"), {"AAPL": cols(400, T0, 3_000_000, 100.0), "MSFT": cols(300, T0, 5_000_000, 200.0),
                                "GOOG": cols(50, T0 + 600_000_000, 1, 50.0)})
    r.depth = {"MSFT": [P.Depth("MSFT", k, T0 + k * 100_000_000, [(199.0, 1)], [(201.0, 1)]) for k in range(1, 10)]}
    return r


def recorded_order(r: Recording) -> list[tuple[str, int]]:
    every = [(int(t), s, q) for s in r.symbols for t, q in zip(r.columns[s]["ts"], r.columns[s]["seq"])]
    every.sort(key=lambda e: e[0])  # stable: ties in symbol order, as the feed merges
    return [(s, q) for _, s, q in every]


def drain(feed: RecordingFeed, step_ns: int | None, max_rows: int, max_slice: int):
    out, until = [], feed.first_ts
    while feed.next_ts() is not None:
        for kind, sym, payload in feed.take(until if step_ns else None, max_rows, max_slice):
            out.append((kind, sym, payload))
        until += step_ns or 0
    return out


def test_slices_of_one_row_are_exactly_the_recorded_order_and_depth_follows_its_ticks():
    r = rec()
    evs = drain(RecordingFeed(r), 7_000_000, 1000, 1)
    ticks = [(s, row[0]) for k, s, rows in evs if k == "ticks" for row in rows]
    assert all(len(rows) == 1 for k, _, rows in evs if k == "ticks")
    assert ticks == recorded_order(r)
    # each depth comes after every tick at or before its time, before any later one
    seen_ts = -1
    for k, s, p in evs:
        if k == "ticks":
            seen_ts = max(seen_ts, p[0][1])
        else:
            assert seen_ts <= p.ts
    assert [p.seq for k, _, p in evs if k == "depth"] == list(range(1, 10))
    # the rows are the recorded rows, every field
    c = r.columns["AAPL"]
    aapl = [rows[0] for k, s, rows in evs if k == "ticks" and s == "AAPL"]
    assert [tuple(r) for r in aapl] == list(zip(*(c[f].tolist() for f in P.TICK_ROW_FIELDS)))


def test_grouped_windows_keep_each_symbols_order_and_their_caps():
    r = rec()
    for step, max_rows, max_slice in ((None, 1000, 256), (11_000_000, 64, 16), (2_000_000, 1000, 256)):
        evs = drain(RecordingFeed(r), step, max_rows, max_slice)
        for s in r.symbols:
            got = [row[0] for k, sym, rows in evs if k == "ticks" and sym == s for row in rows]
            assert got == r.columns[s]["seq"].tolist(), (s, step)
        assert all(1 <= len(rows) <= max_slice for k, _, rows in evs if k == "ticks")
        assert sum(1 for k, *_ in evs if k == "depth") == 9


def test_a_window_stops_at_the_market_time_and_the_position_follows():
    r = rec()
    f = RecordingFeed(r)
    evs = f.take(T0 + 10_000_000, 1000, 256)
    assert max(row[1] for k, _, rows in evs if k == "ticks" for row in rows) <= T0 + 10_000_000
    assert f.position_ts <= T0 + 10_000_000 < f.next_ts()


def test_seek_and_loop():
    r = rec()
    f = RecordingFeed(r, loop=True)
    target = T0 + 700_000_000
    assert f.seek(target) == target
    first = f.take(None, 5, 256)
    assert all(row[1] >= target for k, _, rows in first if k == "ticks" for row in rows)
    # the rest of this pass, then the start again: loops moves and the first rows come back
    while f.loops == 0:
        f.take(None, 1000, 256)
    again = [row for k, s, rows in f.take(None, 3, 1) if k == "ticks" for row in rows]
    assert f.loops == 1 and again[0][1] == T0
