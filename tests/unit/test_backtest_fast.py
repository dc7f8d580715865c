"""The backtest's column path (PriceColumn, scan_column) decides exactly like the per-tick path."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest

from workers import protocol as P
from workers.backtest import engine
from workers.backtest.engine import BacktestConfig, run_backtest
from workers.recording import Recording
from workers.strategy.levels import PriceColumn, RollingRange, SRStrategy, StrategyParams, _trailing


def walk(n: int, seed: int, step: float = 0.05, tick: float = 0.01, start: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Prices rounded to ``tick`` (a coarse tick gives many ties at the levels), 10 ticks/s."""
    rng = np.random.default_rng(seed)
    last = np.maximum(np.round((start + np.cumsum(rng.normal(0, step, n))) / tick) * tick, 1.0)
    last = np.round(last, 2)
    ts = 1_700_000_000 * 10**9 + np.arange(n, dtype=np.int64) * 100_000_000 + seed
    return last, ts


def rows_of(last: np.ndarray, ts: np.ndarray) -> list[tuple]:
    n = len(last)
    return list(zip(range(1, n + 1), ts.tolist(), last.tolist(), (last - 0.01).tolist(), (last + 0.01).tolist(),
                    [100] * n, [100] * n, range(n)))


def key(s: P.Signal) -> tuple:
    return (s.id, s.side, s.qty, s.price, s.ts, s.cause_ts, s.reason)


def state(strategy: SRStrategy, sym: str) -> tuple:
    b = strategy.books[sym]
    return (b.position, b.support, b.resistance, b.range.fill, list(b.range._lo), list(b.range._hi), b._sup_touch,
            b._res_touch, b._sup_touch_n, b._res_touch_n, b._ticks, b._last_signal_ts)


def drive(strategy: SRStrategy, sym: str, scan, n: int, slice_: int, drop_every: int) -> list[P.Signal]:
    """Signals of ``scan(start, stop)`` over ``n`` ticks in slices, giving every
    ``drop_every``-th signal's position back before the next tick is judged (a refused order)."""
    out: list[P.Signal] = []
    start = 0
    while start < n:
        stop = min(n, start + slice_)
        hit = scan(start, stop)
        if hit is None:
            start = stop
            continue
        i, sig = hit
        out.append(sig)
        if drop_every and len(out) % drop_every == 0:
            strategy.on_rejected(sig)
        start = i + 1
    return out


CASES = [
    # mode, window, min_fill, breakout_bps, bounce_bps, turn_bps, min_range_bps, cooldown
    ("both", 200, 50, 3.0, 5.0, 5.0, 20.0, 10.0),
    ("both", 30, 10, 3.0, 5.0, 5.0, 20.0, 0.5),
    ("both", 5, 5, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("both", 2, 1, 1.0, 30.0, 2.0, 0.0, 0.0),
    ("breakout", 50, 20, 2.0, 5.0, 5.0, 20.0, 1.0),
    ("breakout", 400, 400, 0.0, 5.0, 5.0, 0.0, 0.0),
    ("bounce", 100, 30, 3.0, 8.0, 4.0, 10.0, 0.0),
    ("bounce", 20, 50, 5.0, 2.0, 1.0, 50.0, 0.3),  # min_fill above the window: capped at it
    ("bounce", 3000, 50, 3.0, 5.0, 5.0, 0.0, 2.0),  # a window longer than the data
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_column_scan_gives_the_per_tick_signals(case, seed):
    mode, window, min_fill, brk, bounce, turn, min_range, cooldown = case
    params = StrategyParams(window=window, min_fill=min_fill, mode=mode, breakout_bps=brk, bounce_bps=bounce,
                            turn_bps=turn, min_range_bps=min_range, cooldown=cooldown, qty=100, max_position=300,
                            allow_short=seed != 3)
    rng = random.Random(seed)
    last, ts = walk(2500, seed, step=rng.choice([0.02, 0.05, 0.2]), tick=rng.choice([0.01, 0.05]))
    rows = rows_of(last, ts)
    drop_every = seed  # 1: every signal refused, 2 and 3: some

    live = SRStrategy("sr", params, session="s")
    expected = []
    for r in rows:  # the live strategy, fed tick by tick
        sig = live.on_price("X", r[2], r[1], now=r[1])
        if sig is not None:
            expected.append(sig)
            if len(expected) % drop_every == 0:
                live.on_rejected(sig)

    per_row = SRStrategy("sr", params, session="s", market_clock=True)
    got_rows = drive(per_row, "X", lambda a, b: per_row.next_signal("X", rows, a, stop=b), len(rows), 700, drop_every)

    fast = SRStrategy("sr", params, session="s", market_clock=True)
    col = fast.column(last, ts)
    assert col is not None
    got_col = drive(fast, "X", lambda a, b: fast.next_signal_in("X", col, a, stop=b), len(rows), 700, drop_every)

    assert len(expected) > 0 or mode == "bounce"
    assert [key(s) for s in got_col] == [key(s) for s in got_rows] == [key(s) for s in expected]
    assert state(fast, "X") == state(per_row, "X") == state(live, "X")


@pytest.mark.parametrize("seed", range(6))
def test_random_parameter_sets_on_random_walks(seed):
    rng = random.Random(100 + seed)
    for _ in range(8):
        params = StrategyParams(window=rng.choice([2, 7, 40, 150, 600]), min_fill=rng.choice([1, 10, 100]),
                                mode=rng.choice(["both", "breakout", "bounce"]),
                                breakout_bps=rng.choice([0.0, 1.0, 3.0, 10.0]), bounce_bps=rng.choice([0.0, 2.0, 5.0, 30.0]),
                                turn_bps=rng.choice([0.0, 2.0, 5.0, 12.0]), min_range_bps=rng.choice([0.0, 5.0, 20.0, 80.0]),
                                cooldown=rng.choice([0.0, 0.05, 1.0, 10.0]), qty=rng.choice([1, 100]),
                                max_position=rng.choice([0, 100, 300]), allow_short=rng.random() < 0.7)
        last, ts = walk(rng.randint(1, 3000), rng.randrange(1000), step=rng.choice([0.01, 0.05, 0.3]),
                        tick=rng.choice([0.01, 0.1]))
        rows = rows_of(last, ts)
        slice_ = rng.choice([1, 13, 256, 10_000])
        drop_every = rng.choice([0, 1, 2])
        ref = SRStrategy("sr", params, session="s", market_clock=True)
        want = drive(ref, "X", lambda a, b: ref.next_signal("X", rows, a, stop=b), len(rows), slice_, drop_every)
        fast = SRStrategy("sr", params, session="s", market_clock=True)
        col = fast.column(last, ts)
        got = drive(fast, "X", lambda a, b: fast.next_signal_in("X", col, a, stop=b), len(rows), slice_, drop_every)
        assert [key(s) for s in got] == [key(s) for s in want], params
        assert state(fast, "X") == state(ref, "X"), params


def test_an_inactive_strategy_scans_the_column_without_signals_and_keeps_its_levels():
    last, ts = walk(1000, 4)
    params = StrategyParams(window=50, min_fill=10, cooldown=0.0)
    ref, fast = SRStrategy("sr", params, session="s"), SRStrategy("sr", params, session="s")
    ref.active = fast.active = False
    assert ref.next_signal("X", rows_of(last, ts), 0) is None
    assert fast.next_signal_in("X", fast.column(last, ts), 0) is None
    assert state(fast, "X") == state(ref, "X")


def test_the_book_reads_right_mid_column_and_the_scan_goes_on():
    last, ts = walk(3000, 5)
    params = StrategyParams(window=60, min_fill=10, cooldown=0.5)
    rows = rows_of(last, ts)
    ref, fast = SRStrategy("sr", params, session="s"), SRStrategy("sr", params, session="s")
    col = fast.column(last, ts)
    a = b = 0
    for _ in range(30):
        ha, hb = ref.next_signal("X", rows, a, now=0), fast.next_signal_in("X", col, b, now=0)
        assert (ha is None) == (hb is None)
        if ha is None:
            break
        assert ha[0] == hb[0] and key(ha[1]) == key(hb[1])
        # reading the levels (as the worker does) rebuilds the deques and leaves the scan bound
        assert state(fast, "X") == state(ref, "X") and fast.warmed_up("X") == ref.warmed_up("X")
        a = b = ha[0] + 1
    # a tick fed by hand after the column ends it: the book is an ordinary one again
    assert (ref.on_price("X", 150.0, 10**19, now=0) is None) == (fast.on_price("X", 150.0, 10**19, now=0) is None)
    assert state(fast, "X") == state(ref, "X")
    with pytest.raises(ValueError):
        fast.next_signal_in("X", col, b)


def test_the_column_scan_refuses_what_it_cannot_continue():
    last, ts = walk(500, 6)
    s = SRStrategy("sr", StrategyParams(window=20, min_fill=5), session="s")
    col = s.column(last, ts)
    with pytest.raises(ValueError):
        s.next_signal_in("X", col, 10)  # a fresh book starts at 0
    s.next_signal_in("X", col, 0, stop=100)
    with pytest.raises(ValueError):
        s.next_signal_in("X", col, 50)  # not where it stopped
    with pytest.raises(ValueError):
        s.next_signal_in("X", s.column(last, ts), 100)  # another column
    s.set_params(StrategyParams(window=30, min_fill=5))
    with pytest.raises(ValueError):
        s.next_signal_in("X", col, 100)  # prepared for another window
    t = SRStrategy("sr", StrategyParams(window=20, min_fill=5), session="s")
    col = t.column(last, ts)
    t.next_signal_in("X", col, 0, stop=100)
    t.books["X"].range.clear()
    with pytest.raises(ValueError):
        t.next_signal_in("X", col, 100)


def test_prices_the_column_cannot_take_are_refused():
    last, ts = walk(100, 7)
    s = SRStrategy("sr", StrategyParams(), session="s")
    for bad in (np.where(np.arange(100) == 50, np.nan, last), np.where(np.arange(100) == 50, 0.0, last),
                np.where(np.arange(100) == 50, -1.0, last), np.round(last).astype(np.int64), last.astype(np.float32)):
        assert s.column(bad, ts) is None
    assert s.column(last, ts) is not None and s.column(last[:0], ts[:0]) is not None


@pytest.mark.parametrize("w", [1, 2, 3, 7, 64, 99, 100, 101, 250])
def test_trailing_min_and_max_are_the_brute_force_ones(w):
    x = np.round(np.random.default_rng(w).normal(0, 1, 100), 1)  # ties too
    for ufunc, pad, ref in ((np.minimum, np.inf, min), (np.maximum, -np.inf, max)):
        got = _trailing(x, w, ufunc, pad).tolist()
        assert got == [ref(x[max(0, j - w + 1):j + 1].tolist()) for j in range(len(x))]
    assert len(_trailing(x[:0], w, np.minimum, np.inf)) == 0


def test_a_loaded_range_is_the_pushed_one():
    x = np.round(np.random.default_rng(3).normal(100, 0.3, 400), 1)
    for w, k in itertools.product([1, 2, 5, 50, 500], [0, 1, 2, 49, 50, 51, 399, 400]):
        pushed, loaded = RollingRange(w), RollingRange(w)
        for v in x[:k].tolist():
            pushed.push(v)
        loaded.load(x, k)
        assert (list(loaded._lo), list(loaded._hi), loaded._n, loaded._first) == (
            list(pushed._lo), list(pushed._hi), pushed._n, pushed._first)


def _recording(n: int, seeds) -> Recording:
    cols = {}
    for k, seed in enumerate(seeds):
        last, ts = walk(n, seed, start=50.0 + 30 * k)
        size = np.random.default_rng(seed).integers(1, 6, n) * 100  # orders of 300 often outgrow the touch
        cols[f"S{k}"] = {"seq": np.arange(1, n + 1), "ts": ts, "last": last, "bid": np.round(last - 0.01, 2),
                         "ask": np.round(last + 0.01, 2), "bid_size": size, "ask_size": size[::-1].copy(),
                         "volume": np.arange(n) * 10}
    return Recording(Path("mem"), cols)


@pytest.mark.parametrize("params", [
    {"window": 40, "min_fill": 10, "cooldown": 0.5, "qty": 300, "max_position": 600},
    {"window": 100, "min_fill": 100, "cooldown": 0.0, "mode": "bounce", "min_range_bps": 5.0},
    {"window": 15, "min_fill": 5, "cooldown": 0.2, "mode": "breakout", "qty": 100},
])
def test_the_engine_on_columns_equals_the_engine_on_rows(monkeypatch, params):
    """Signals, risk decisions (the default limits refuse some) and fills of a multi-symbol
    backtest, with partial fills on later ticks, against the per-row path."""
    rec = _recording(4000, [11, 12, 13])
    fast = run_backtest(rec, BacktestConfig(params=params))
    monkeypatch.setattr(SRStrategy, "column", lambda self, last, ts: None)
    slow = run_backtest(rec, BacktestConfig(params=params))

    def fills(res):  # the venue stamps fills on later ticks with the wall clock: not compared
        return [(f.fill.client_order_id, f.fill.symbol, f.fill.side, f.fill.qty, f.fill.price, f.price, f.fee)
                for f in res.fills]

    assert len(fast.signals) > 20
    assert [key(s) for s in fast.signals] == [key(s) for s in slow.signals]
    assert fast.decisions == slow.decisions
    assert fills(fast) == fills(slow)
    assert fast.stats["net_pnl"] == slow.stats["net_pnl"]


def test_rows_are_made_from_the_columns_as_tolist_makes_them():
    rec = _recording(50, [1])
    cols = rec.columns["S0"]
    lazy = engine._Rows(cols)
    assert len(lazy) == 50
    want = list(zip(*(cols[c].tolist() for c in P.TICK_ROW_FIELDS)))
    got = [lazy[i] for i in range(50)]
    assert got == want and all(type(a) is type(b) for g, w in zip(got, want) for a, b in zip(g, w))


# ----------------------------------------------------------------------------- sweeps


def _written(root: Path, depth: bool) -> Path:
    from workers.recording import message_row, write_table, write_ticks

    for k, sym in enumerate(("AAPL", "MSFT")):
        last, ts = walk(3000, 20 + k, start=100.0 - 40 * k)
        # with the depth table, orders of 100 fill 30 at the touch and the rest behind it; without
        # it the touch holds them (fills on later ticks get the venue's wall clock as their time)
        size = np.full(3000, 30 if depth else 500)
        cols = {"seq": np.arange(1, 3001), "ts": ts, "last": last, "bid": np.round(last - 0.01, 2),
                "ask": np.round(last + 0.01, 2), "bid_size": size, "ask_size": size, "volume": np.arange(3000)}
        write_ticks(root / "parquet" / "ticks", sym, cols)
        if depth:
            rows = [message_row(P.Depth(sym, j + 1, t, [(b, 30), (round(b - 0.01, 2), 500)], [(a, 30), (round(a + 0.01, 2), 500)]))[2]
                    for j, (t, b, a) in enumerate(zip(cols["ts"].tolist(), cols["bid"].tolist(), cols["ask"].tolist()))]
            write_table(root / "parquet" / "depth", "depth", sym, rows)
    return root


@pytest.mark.parametrize("depth", [False, True])
def test_a_sweep_on_its_own_pool_gives_the_serial_rows(tmp_path, monkeypatch, depth):
    """The workers get the columns (and the recording's depth) this process read, not their
    own read of the data: the rows are the serial backtests' all the same, and the copy is gone
    afterwards."""
    import tempfile

    from workers.backtest.sweep import grid, run_sweep
    from workers.recording import open_recording

    root = _written(tmp_path / "rec", depth)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    sets = grid({"window": [20, 40], "cooldown": [0.2, 1.0]})
    base = BacktestConfig(params={"min_fill": 10, "qty": 100})
    rows = run_sweep(root, sets, base, workers=2)
    rec = open_recording(root)
    want = [run_backtest(rec, BacktestConfig(params={**base.params, **s})).stats for s in sets]
    assert [r.params for r in rows] == sets and not any(r.error for r in rows)
    for r, w in zip(rows, want):
        assert {k: v for k, v in r.stats.items() if k not in ("seconds", "ticks_per_s")} == {
            k: v for k, v in w.items() if k not in ("seconds", "ticks_per_s")}
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_sweep_of_a_bad_path_fails_once_with_its_reason(tmp_path):
    from workers.backtest.sweep import run_sweep
    from workers.recording import RecordingError

    with pytest.raises(RecordingError, match="no such file"):
        run_sweep(tmp_path / "nope", [{"window": 20}, {"window": 30}], workers=2)
