"""Unit tests of the market-data feeds (no sockets): the simulated market and bar replay."""

from __future__ import annotations

import datetime
import itertools
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers import protocol as P
from workers.marketdata.gateway import build_parser, rate_to_speed, speed_to_rate
from workers.marketdata.replay_feed import (
    Bar,
    ReplayFeed,
    bar_path,
    bar_ticks,
    default_data_file,
    load_bars,
    quote,
    split_volume,
)
from workers.marketdata.sim_feed import DEFAULT_SYMBOLS, SimFeed, SymbolParams, params_for


def _fields(t: P.Tick) -> tuple:
    """Everything but the wall-clock timestamp."""
    return (t.symbol, t.seq, t.last, t.bid, t.ask, t.bid_size, t.ask_size, t.volume)


def _on_grid(price: float, step: float) -> bool:
    k = price / step
    return abs(k - round(k)) < 1e-6


def _by_symbol(ticks):
    out = defaultdict(list)
    for t in ticks:
        out[t.symbol].append(t)
    return out


# ============================================================================ simulated feed


def test_same_seed_same_sequence_and_different_seed_differs():
    a = [_fields(t) for t in SimFeed(seed=7).ticks(20_000)]
    b = [_fields(t) for t in SimFeed(seed=7).ticks(20_000)]
    c = [_fields(t) for t in SimFeed(seed=8).ticks(20_000)]
    assert a == b
    assert a != c


def test_a_symbols_sequence_does_not_depend_on_the_other_symbols():
    feed_alone = SimFeed(["AAPL"], seed=3)
    feed_mixed = SimFeed(["MSFT", "AAPL", "XYZ"], seed=3)
    alone = [_fields(feed_alone.tick("AAPL")) for _ in range(5000)]
    mixed = [_fields(t) for t in feed_mixed.ticks(15_000) if t.symbol == "AAPL"]
    assert alone == mixed


def test_default_universe_round_robin_and_seq_from_one_per_symbol():
    feed = SimFeed(seed=1)
    ticks = feed.ticks(4 * 5000)
    assert [t.symbol for t in ticks[:8]] == list(DEFAULT_SYMBOLS) * 2
    for sym, ts in _by_symbol(ticks).items():
        assert [t.seq for t in ts] == list(range(1, len(ts) + 1)), sym


def test_quotes_are_consistent_on_the_grid_and_in_lots():
    feed = SimFeed(seed=11)
    for t in feed.ticks(40_000):
        p = feed.sims[t.symbol].p
        assert t.bid < t.ask
        assert t.bid <= t.last <= t.ask
        assert 1 <= round((t.ask - t.bid) / p.tick_size) <= p.max_spread_ticks
        for price in (t.bid, t.ask, t.last):
            assert _on_grid(price, p.tick_size)
        assert t.bid_size % p.lot == 0 and p.lot <= t.bid_size <= 20 * p.lot
        assert t.ask_size % p.lot == 0 and p.lot <= t.ask_size <= 20 * p.lot


def test_volume_is_cumulative_and_grows_by_whole_lots():
    ts = SimFeed(["AAPL"], seed=2).ticks(10_000)
    steps = np.diff([0] + [t.volume for t in ts])
    assert (steps >= 100).all() and (steps <= 1000).all() and (steps % 100 == 0).all()


@pytest.mark.parametrize("tick_size", [0.05, 0.25, 1.0])
def test_other_tick_sizes_stay_on_their_grid(tick_size):
    params = {"X": SymbolParams(base=500.0, tick_size=tick_size, max_spread_ticks=2)}
    for t in SimFeed(["X"], seed=5, params=params).ticks(5000):
        assert _on_grid(t.bid, tick_size) and _on_grid(t.ask, tick_size) and _on_grid(t.last, tick_size)
        assert 1 <= round((t.ask - t.bid) / tick_size) <= 2


def test_price_stays_near_base_over_50k_ticks():
    """Mean reversion: fair value is pulled back to base, the price back to fair value."""
    for seed in (1, 2):
        feed = SimFeed(seed=seed)
        for sym, ts in _by_symbol(feed.ticks(4 * 50_000)).items():
            base = feed.sims[sym].p.base
            mids = np.array([(t.bid + t.ask) / 2 for t in ts])
            assert np.abs(mids / base - 1).max() < 0.10, (seed, sym)


def test_price_mean_reverts_unlike_a_random_walk():
    """Variance ratio: for a random walk var(k-tick change) ~= k * var(1-tick change); a range
    with bounces makes it far smaller.  This is what lets support and resistance form."""
    ts = [t for t in SimFeed(["AAPL"], seed=4).ticks(60_000)]
    mid = np.array([(t.bid + t.ask) / 2 for t in ts])
    k = 200
    v1 = np.var(np.diff(mid))
    vk = np.var(mid[k:] - mid[:-k])
    assert vk / (k * v1) < 0.5


def test_ts_is_stamped_by_the_clock_at_creation():
    counter = itertools.count(1000)
    feed = SimFeed(["AAPL", "MSFT"], seed=1, clock=lambda: next(counter))
    assert [t.ts for t in feed.ticks(5)] == [1000, 1001, 1002, 1003, 1004]


def test_real_clock_stamps_are_nanoseconds_and_non_decreasing():
    ts = [t.ts for t in SimFeed(seed=1).ticks(1000)]
    assert ts == sorted(ts) and ts[0] > 1_600_000_000 * 10**9


def test_ticks_survive_the_wire():
    for t in SimFeed(seed=9).ticks(200):
        topic, back = P.decode_pub(P.pub(t), P.Tick)
        assert topic == b"tick." + t.symbol.encode()
        assert back == t


def test_unknown_symbols_get_stable_plausible_parameters():
    p1, p2 = params_for("ZZZ"), params_for("ZZZ")
    assert p1 == p2 and 20 <= p1.base < 500
    assert params_for("AAA") != params_for("ZZZ")


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        SymbolParams(base=-1)
    with pytest.raises(ValueError):
        SymbolParams(base=100, tick_size=0)
    with pytest.raises(ValueError):
        SymbolParams(base=100, max_spread_ticks=0)
    with pytest.raises(ValueError):
        SymbolParams(base=100, reversion=2)


# ============================================================================ replay: bars -> ticks

UP = Bar("AAA", datetime.date(2020, 1, 2), open=10.00, high=10.50, low=9.80, close=10.40, volume=12_345)
DOWN = Bar("AAA", datetime.date(2020, 1, 3), open=10.40, high=10.45, low=9.90, close=9.95, volume=999)


def test_up_bar_visits_low_before_high_and_down_bar_high_before_low():
    up = bar_path(UP, 20)
    assert up.index(UP.low) < up.index(UP.high)
    down = bar_path(DOWN, 20)
    assert down.index(DOWN.high) < down.index(DOWN.low)


@settings(max_examples=300, deadline=None)
@given(
    o=st.integers(100, 100_000),
    c=st.integers(100, 100_000),
    up=st.integers(0, 5_000),
    dn=st.integers(0, 5_000),
    v=st.integers(0, 10**9),
    n=st.integers(4, 60),
)
def test_bar_ticks_reproduce_the_bar(o, c, up, dn, v, n):
    """Whatever the bar: n ticks, open first, close last, the extremes hit exactly, nothing
    outside them, volume adding up to the bar's, bid < last < ask."""
    o, c = o / 100, c / 100
    hi = max(o, c) + up / 100
    lo = max(0.01, min(o, c) - dn / 100)
    bar = Bar("X", UP.date, o, hi, lo, c, v)
    pts = bar_ticks(bar, n, spread_bps=2.0, rng=np.random.default_rng(0))
    last = [p.last for p in pts]
    assert len(pts) == n
    assert last[0] == o and last[-1] == c
    assert max(last) == hi and min(last) == lo
    assert pts[-1].volume == v
    incs = np.diff([0] + [p.volume for p in pts])
    assert (incs >= 0).all() and incs.sum() == v
    for p in pts:
        assert p.bid < p.last < p.ask or (p.bid == p.last == 0.01 < p.ask)  # no quote below a cent
        assert _on_grid(p.bid, 0.01) and _on_grid(p.ask, 0.01)


def test_split_volume_is_even_and_exact():
    assert split_volume(10, 4) == [3, 3, 2, 2]
    assert sum(split_volume(12_345, 7)) == 12_345


def test_quote_spread_in_basis_points():
    bid, ask = quote(400.0, 2.0)  # 2 bp of 400 = 8 cents
    assert (bid, ask) == (399.96, 400.04)
    bid, ask = quote(26.60, 2.0)  # less than a cent: widened to a cent each side
    assert (bid, ask) == (26.59, 26.61)
    bid, ask = quote(347.681, 0.0)
    assert bid < 347.681 < ask and (bid, ask) == (347.68, 347.69)


# ============================================================================ replay: files

FIXTURE = """\
date,open,high,low,close,volume,symbol
2020-01-02,10.00,10.50,9.80,10.40,12345,AAA
2020-01-02,50.00,51.00,49.00,49.50,1000,BBB
2020-01-03,10.40,10.45,9.90,9.95,999,AAA
2020-01-03,49.50,50.25,49.25,50.00,2000,BBB
"""


def _write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_replay_turns_each_bar_into_ticks_matching_it(tmp_path):
    path = _write(tmp_path, FIXTURE)
    n = 8
    feed = ReplayFeed(path, ticks_per_bar=n, seed=1)
    assert feed.symbols == ("AAA", "BBB")
    ticks = feed.ticks(10_000)
    assert len(ticks) == 4 * n and feed.next() is None and feed.finished
    # the k-th ticks of a date's symbols are interleaved
    assert [t.symbol for t in ticks[:4]] == ["AAA", "BBB", "AAA", "BBB"]
    per = _by_symbol(ticks)
    bars = {(b.symbol, i): b for i, (_, day) in enumerate(feed.data.days) for b in day}
    for sym, ts in per.items():
        assert [t.seq for t in ts] == list(range(1, 2 * n + 1))
        for i in range(2):
            bar, chunk = bars[(sym, i)], ts[i * n : (i + 1) * n]
            lasts = [t.last for t in chunk]
            assert lasts[0] == bar.open and lasts[-1] == bar.close
            assert max(lasts) == bar.high and min(lasts) == bar.low
            assert chunk[-1].volume == bar.volume
            assert all(t.bid < t.last < t.ask for t in chunk)


def test_replay_loop_restarts_and_keeps_counting_seq(tmp_path):
    feed = ReplayFeed(_write(tmp_path, FIXTURE), ticks_per_bar=4, loop=True, seed=1)
    ticks = feed.ticks(3 * 16)
    assert len(ticks) == 48 and feed.loops == 2
    aaa = [t.seq for t in ticks if t.symbol == "AAA"]
    assert aaa == list(range(1, 25))
    assert [t.last for t in ticks[:16]] == [t.last for t in ticks[16:32]]


def test_replay_symbol_filter_keeps_the_callers_order(tmp_path):
    feed = ReplayFeed(_write(tmp_path, FIXTURE), symbols=["bbb", "AAA"], ticks_per_bar=4)
    assert feed.symbols == ("BBB", "AAA")
    assert {t.symbol for t in ReplayFeed(_write(tmp_path, FIXTURE), symbols=["BBB"], ticks_per_bar=4)} == {"BBB"}


def test_replay_same_seed_same_sizes(tmp_path):
    path = _write(tmp_path, FIXTURE)
    a = [_fields(t) for t in ReplayFeed(path, seed=5)]
    b = [_fields(t) for t in ReplayFeed(path, seed=5)]
    assert a == b


def test_file_without_symbol_column_uses_the_file_name(tmp_path):
    text = "Date,Open,High,Low,Close,Volume\n2020-01-02,1.0,1.2,0.9,1.1,100\n"
    feed = ReplayFeed(_write(tmp_path, text, "msft.csv"), ticks_per_bar=4)
    assert feed.symbols == ("MSFT",)


def test_bad_rows_are_skipped_and_counted(tmp_path):
    text = FIXTURE + "2020-01-04,1,0.5,0.9,1,10,AAA\nnot-a-date,1,2,1,1,1,AAA\n2020-01-05,1,2,x,1,1,AAA\n2020-01-06,1,2,1,1,1,BAD SYMBOL\n"
    data = load_bars(_write(tmp_path, text))
    assert data.skipped == 4 and data.bar_count == 4
    assert data.first_error.startswith("line 6")


def test_unusable_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="missing column"):
        load_bars(_write(tmp_path, "date,open,close\n2020-01-02,1,1\n"))
    with pytest.raises(ValueError, match="no usable bars"):
        load_bars(_write(tmp_path, "date,open,high,low,close,volume\n"))
    with pytest.raises(ValueError, match="no usable bars for ZZZ"):
        load_bars(_write(tmp_path, FIXTURE), symbols=["ZZZ"])
    with pytest.raises(ValueError):
        ReplayFeed(_write(tmp_path, FIXTURE), ticks_per_bar=3)


def test_bundled_data_set_loads_cleanly():
    data = load_bars(default_data_file())
    assert data.symbols == ("AAPL", "GOOG", "IBM", "MSFT")
    assert data.skipped == 0 and len(data.days) == 504 and data.bar_count == 4 * 504
    assert data.days[0][0].isoformat() == "2011-03-01" and data.days[-1][0].isoformat() == "2013-03-01"
    assert (default_data_file().parent / "LICENSE").exists()
    assert (default_data_file().parent / "README.md").exists()


def test_bundled_replay_first_day():
    feed = ReplayFeed(symbols=["MSFT"], ticks_per_bar=10, seed=1)
    day = feed.ticks(10)
    assert feed.current_date.isoformat() == "2011-03-01"
    # MSFT 2011-03-01: open 26.60 high 26.78 low 26.15 close 26.16 volume 60,055,000 (down day)
    lasts = [t.last for t in day]
    assert (lasts[0], max(lasts), min(lasts), lasts[-1], day[-1].volume) == (26.6, 26.78, 26.15, 26.16, 60_055_000)
    assert lasts.index(26.78) < lasts.index(26.15)


# ============================================================================ gateway helpers


def test_symbols_option_uses_the_one_symbol_rule():
    assert build_parser().parse_args(["--symbols", " aapl, MSFT,,aapl "]).symbols == " aapl, MSFT,,aapl "
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--symbols", "AA$PL"])


def test_speed_and_rate_convert_both_ways():
    assert speed_to_rate(86400, 20) == 20  # one bar per second = 20 ticks/s per symbol
    assert math.isclose(rate_to_speed(speed_to_rate(12345, 7), 7), 12345)


def test_rows_are_the_ticks_next_tick_would_make():
    """The gateway publishes SymbolSim.rows(k): the same ticks, in order, as next_tick, across
    block refills, with one ts per call (the frame's stamp)."""
    made, rowed = SimFeed(["AAPL"], seed=7, clock=lambda: 5), SimFeed(["AAPL"], seed=7, clock=lambda: 5)
    ticks = [made.sims["AAPL"].next_tick() for _ in range(3000)]
    rows = []
    for k in (1, 7, 1000, 1500, 492):  # 3000 in all, across the 1024-tick refill blocks
        rows += rowed.sims["AAPL"].rows(k)
    assert [tuple(r) for r in rows] == [t.row for t in ticks]
