"""BarSeries / MultiIntervalBars: pure numpy, no Qt."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from app.chart.bars import BarSeries, MultiIntervalBars, aggregate_bars

NS = 1_000_000_000
T0 = 1_700_000_040 * NS  # a multiple of 60 s (2023-11-14 22:14 UTC)


def ohlcv(s: BarSeries) -> list[tuple]:
    return [tuple(float(x) for x in row) for row in zip(*s.view())]


def test_bar_store_does_not_import_qt():
    code = ("import sys, app.chart, app.chart.bars; "
            "assert not [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph'))]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_one_second_bars_boundaries_and_ohlcv():
    s = BarSeries(1)
    assert s.add_tick(T0, 100.0, 1) is True
    assert s.add_tick(T0 + NS // 2, 101.5, 2) is False
    assert s.add_tick(T0 + NS - 1, 99.5, 3) is False  # last ns of the first second
    assert s.add_tick(T0 + NS, 100.25, 4) is True  # exactly on the boundary: new bar
    assert len(s) == 2
    assert s.first_index == 0 and s.last_index == 1
    assert ohlcv(s) == [
        (T0 / NS, 100.0, 101.5, 99.5, 99.5, 6.0),
        ((T0 + NS) / NS, 100.25, 100.25, 100.25, 100.25, 4.0),
    ]


def test_multi_interval_5s_and_60s_boundaries():
    m = MultiIntervalBars(intervals=(1, 5, 60))
    # one tick every 0.5 s for 130 s starting 2 s before a minute boundary
    start = T0 + 58 * NS
    ts = [start + i * NS // 2 for i in range(260)]
    px = [100 + (i % 7) * 0.1 for i in range(260)]
    new = [m.add_tick(t, p, 1) for t, p in zip(ts, px)]
    assert new[0] is True
    one, five, sixty = m.series(1), m.series(5), m.series(60)
    assert len(one) == 130
    # 58,59 | 60..64 | ... : the first 5 s bar is partial (55..60 holds 58,59)
    assert len(five) == 1 + 128 // 5 + (1 if 128 % 5 else 0)
    assert len(sixty) == 4  # 58-59 s | 60-119 | 120-179 | 180-187.5
    assert five.times()[0] == (T0 + 55 * NS) / NS
    assert sixty.times().tolist() == [T0 / NS + k * 60 for k in range(4)]
    # volumes add up in every interval
    for s in (one, five, sixty):
        assert s.volumes().sum() == 260
    # highs/lows agree across intervals
    assert sixty.highs().max() == one.highs().max() == max(px)
    assert sixty.lows().min() == one.lows().min() == min(px)
    # the 60 s bar of minute 1 aggregates exactly its 1 s bars
    i0, i1 = one.index_range_for_time(T0 / NS + 60, T0 / NS + 119.5)
    t, o, h, l, c, v = one.view(i0, i1)
    assert t[0] == T0 / NS + 60 and t[-1] == T0 / NS + 119
    bar = sixty.bar(1)
    assert bar == (T0 / NS + 60, o[0], h.max(), l.min(), c[-1], v.sum())


def test_version_increments_on_every_change():
    s = BarSeries(1)
    seen = [s.version]
    for i in range(10):
        s.add_tick(T0 + i * NS // 3, 100 + i, 1)
        seen.append(s.version)
    assert all(b > a for a, b in zip(seen, seen[1:]))
    hv = s.history_version
    s.add_tick(T0 + 10 * NS, 1.0)
    assert s.history_version == hv  # a new bar is not a history change


def test_late_tick_merges_into_its_bar_and_bumps_history():
    s = BarSeries(1)
    s.add_tick(T0, 100.0, 1)
    s.add_tick(T0 + 3 * NS, 101.0, 1)
    hv = s.history_version
    assert s.add_tick(T0 + NS // 2, 105.0, 5) is False
    assert s.late_ticks == 1 and s.history_version == hv + 1
    assert s.bar(0) == (T0 / NS, 100.0, 105.0, 100.0, 100.0, 6.0)
    # a late tick for a quiet second (no bar) is dropped: inserting would renumber bars
    s.add_tick(T0 + 2 * NS, 99.0, 1)
    assert s.dropped_ticks == 1 and len(s) == 2


def test_non_finite_prices_are_dropped():
    s = BarSeries(1)
    for bad in (math.nan, math.inf, -math.inf):
        assert s.add_tick(T0, bad, 1) is False
    assert len(s) == 0 and s.dropped_ticks == 3 and s.last_close is None
    assert s.add_ticks([T0, T0 + 1], [math.nan, 3.0], [1, 1]) == 1
    assert s.dropped_ticks == 4 and ohlcv(s) == [(T0 / NS, 3.0, 3.0, 3.0, 3.0, 1.0)]


def test_capacity_keeps_newest_with_absolute_indices():
    s = BarSeries(1, capacity=10)
    for i in range(1000):
        s.add_tick(T0 + i * NS, float(i), 1)
    assert len(s) == 10
    assert s.first_index == 990 and s.last_index == 999
    assert s.closes().tolist() == [float(i) for i in range(990, 1000)]
    assert s.bar(995)[4] == 995.0 and s.bar(989) is None
    t, o, *_ = s.view(985, 993)  # clipped to what is held
    assert o.tolist() == [990.0, 991.0, 992.0]
    assert len(s._t) <= 20  # buffers never exceed 2 * capacity


def test_views_are_read_only_and_reflect_forming_bar():
    s = BarSeries(1)
    s.add_tick(T0, 1.0)
    s.add_tick(T0 + 1, 3.0, 7)
    c = s.closes()
    with pytest.raises(ValueError):
        c[0] = 0
    assert s.highs()[-1] == 3.0 and s.volumes()[-1] == 7.0 and s.last_close == 3.0


def test_index_lookups():
    s = BarSeries(5)
    for k in (0, 1, 2, 5, 9):  # quiet 15..25 s: no bars there
        s.add_tick(T0 + k * 5 * NS, 100.0 + k)
    t0 = T0 / NS
    assert s.times().tolist() == [t0, t0 + 5, t0 + 10, t0 + 25, t0 + 45]
    assert s.index_range_for_time(t0 + 6, t0 + 26) == (1, 4)  # bars starting 5, 10, 25
    assert s.index_range_for_time(t0 - 100, t0 - 50) == (0, 0)
    assert s.index_range_for_time(t0, t0 + 1000) == (0, 5)
    assert s.index_at_time(t0 + 7.2) == 1
    assert s.index_at_time(t0 + 20) == 2  # inside the gap: the last bar started before it
    assert s.index_at_time(t0 - 1) == -1
    assert s.index_at_time(np.array([t0, t0 + 45.1])).tolist() == [0, 4]
    assert s.time_at_index(3) == t0 + 25
    assert s.time_at_index(6) == t0 + 55  # extrapolated by the interval
    assert s.time_at_index(-2) == t0 - 10


def test_add_ticks_equals_add_tick_in_order():
    rng = np.random.default_rng(7)
    ts = T0 + np.cumsum(rng.integers(0, NS // 3, 5000))
    px = 100 + np.cumsum(rng.normal(0, 0.01, 5000))
    vol = rng.integers(1, 10, 5000)
    a, b = BarSeries(1, capacity=300), BarSeries(1, capacity=300)
    for x, y, z in zip(ts.tolist(), px.tolist(), vol.tolist()):
        a.add_tick(x, y, z)
    # in uneven chunks so that chunk edges fall inside bars
    n_new = 0
    for lo, hi in ((0, 1), (1, 17), (17, 2000), (2000, 2001), (2001, 5000)):
        n_new += b.add_ticks(ts[lo:hi], px[lo:hi], vol[lo:hi])
    assert n_new == a.last_index + 1
    assert (a.first_index, a.last_index) == (b.first_index, b.last_index)
    for x, y in zip(a.view(), b.view()):
        np.testing.assert_array_equal(x, y)
    # the forming bar continues correctly after a batch
    a.add_tick(int(ts[-1]), 1.0, 1)
    b.add_tick(int(ts[-1]), 1.0, 1)
    assert a.bar(a.last_index) == b.bar(b.last_index)


def test_aggregate_bars_groups_consecutive_keys():
    keys = np.array([0, 0, 1, 1, 1, 3])
    o = np.array([1.0, 2, 3, 4, 5, 6])
    h = o + 10
    l = o - 10
    c = o + 0.5
    v = np.ones(6)
    first, go, gh, gl, gc, gv, gk = aggregate_bars(keys, o, h, l, c, v)
    assert first.tolist() == [0, 2, 5]
    assert go.tolist() == [1, 3, 6] and gc.tolist() == [2.5, 5.5, 6.5]
    assert gh.tolist() == [12, 15, 16] and gl.tolist() == [-9, -7, -4]
    assert gv.tolist() == [2, 3, 1] and gk.tolist() == [0, 1, 3]


def test_derived_interval_matches_direct_series():
    rng = np.random.default_rng(3)
    ts = T0 + np.cumsum(rng.integers(1, NS // 4, 4000))
    px = 50 + np.cumsum(rng.normal(0, 0.02, 4000))
    m = MultiIntervalBars(intervals=(1, 5))
    direct = BarSeries(15)
    for x, y in zip(ts[:2500].tolist(), px[:2500].tolist()):
        m.add_tick(x, y, 2)
        direct.add_tick(x, y, 2)
    assert m.can_derive(15) and not m.can_derive(7.5)
    derived = m.series(15)  # built from the 5 s bars mid-stream
    assert 15 in m.intervals
    for x, y in zip(ts[2500:].tolist(), px[2500:].tolist()):
        m.add_tick(x, y, 2)
        direct.add_tick(x, y, 2)
    for x, y in zip(direct.view(), derived.view()):
        np.testing.assert_allclose(x, y)
    with pytest.raises(KeyError):
        m.series(7.5)


# --------------------------------------------------------------------- property-based model


class ModelBars:
    """Obvious reference: a list of [start_ns, o, h, l, c, v] kept to capacity."""

    def __init__(self, interval_ns: int, capacity: int):
        self.iv, self.cap, self.bars, self.count = interval_ns, capacity, [], 0

    def add(self, ts: int, price: float, vol: int) -> bool:
        start = ts - ts % self.iv
        if self.bars and start == self.bars[-1][0]:
            b = self.bars[-1]
            b[2], b[3], b[4], b[5] = max(b[2], price), min(b[3], price), price, b[5] + vol
            return False
        if not self.bars or start > self.bars[-1][0]:
            self.bars.append([start, price, price, price, price, vol])
            self.count += 1
            del self.bars[:-self.cap]
            return True
        for b in self.bars:
            if b[0] == start:
                b[2], b[3], b[5] = max(b[2], price), min(b[3], price), b[5] + vol
        return False


tick_lists = st.lists(
    st.tuples(st.integers(-3 * NS, 40 * NS), st.floats(1, 1000, allow_nan=False), st.integers(0, 50)),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(ticks=tick_lists, capacity=st.integers(2, 12), interval=st.sampled_from([1, 2.5, 5]))
def test_matches_reference_model(ticks, capacity, interval):
    s = BarSeries(interval, capacity=capacity)
    ref = ModelBars(int(interval * NS), capacity)
    now = T0
    for dt, price, vol in ticks:
        now = max(now, T0 + dt) if dt >= 0 else now + dt  # mostly forward, sometimes late
        assert s.add_tick(now, price, vol) == ref.add(now, price, vol)
        if dt < 0:
            now -= dt
    assert len(s) == len(ref.bars)
    assert s.last_index == ref.count - 1
    assert ohlcv(s) == [(b[0] / NS, *map(float, b[1:])) for b in ref.bars]
