"""The chart's viewport arithmetic (app/chart/viewport.py), without Qt."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.chart import viewport as vp
from app.chart.bars import BarSeries
from tests.procs import REPO


def test_viewport_imports_no_qt():
    code = ("import sys, app.chart.viewport, app.chart.style; "
            "print(','.join(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------- follow, oldest, pan, zoom

def test_follow_keeps_the_width_and_a_pad_right_of_the_newest_bar():
    x0, x1 = vp.follow_range(last_index=1000, width=100)
    assert x1 - x0 == pytest.approx(100)
    assert x1 == pytest.approx(1000 + 0.5 + 5.0)  # 5 % of 100 bars
    x0, x1 = vp.follow_range(last_index=10, width=20)
    assert x1 == pytest.approx(10 + 0.5 + 2.0)  # never less than 2 bars


def test_oldest_range_starts_left_of_the_first_bar():
    x0, x1 = vp.oldest_range(first_index=500, width=200)
    assert x0 == pytest.approx(500 - 0.5 - 10.0) and x1 - x0 == pytest.approx(200)


def test_clamp_pan_keeps_bars_on_screen():
    # far past the newest bar: shifted back so the last 5 bars remain
    x0, x1 = vp.clamp_pan(2000.0, 2100.0, first_index=0, last_index=999, n_bars=1000)
    assert x1 - x0 == pytest.approx(100) and x0 == pytest.approx(999 + 0.5 - 5)
    # far before the oldest: shifted forward
    x0, x1 = vp.clamp_pan(-500.0, -400.0, first_index=0, last_index=999, n_bars=1000)
    assert x1 == pytest.approx(-0.5 + 5)
    # inside: unchanged
    assert vp.clamp_pan(100.0, 200.0, 0, 999, 1000) == (100.0, 200.0)
    # no bars: nothing to keep
    assert vp.clamp_pan(5.0, 6.0, 0, -1, 0) == (5.0, 6.0)
    # fewer bars than the keep count: keeps what there is
    x0, _ = vp.clamp_pan(50.0, 60.0, first_index=0, last_index=2, n_bars=3)
    assert x0 == pytest.approx(2 + 0.5 - 3)


def test_zoom_width_is_bounded():
    assert vp.zoom_width(100, 0.8, min_width=5) == pytest.approx(80)
    assert vp.zoom_width(6, 0.5, min_width=5) == 5
    assert vp.zoom_width(900_000, 10, min_width=5) == vp.MAX_WIDTH


def test_visible_range_counts_every_slot_the_view_touches():
    assert vp.visible_range(-0.5, 9.5) == (0, 10)
    assert vp.visible_range(-0.6, 9.4) == (-1, 10)
    assert vp.visible_range(10.2, 10.3) == (10, 11)


# ---------------------------------------------------------------- downsampling, drawn window

def test_group_size_is_the_smallest_power_of_two_under_the_cap():
    assert vp.group_size(1500, max_candles=1500, plot_px=0, min_candle_px=2) == 1
    assert vp.group_size(1501, max_candles=1500, plot_px=0, min_candle_px=2) == 2
    assert vp.group_size(36_000, max_candles=1500, plot_px=0, min_candle_px=2) == 32
    # a narrow plot caps at one candle per 2 px
    assert vp.group_size(1000, max_candles=1500, plot_px=1000, min_candle_px=2) == 2
    # ...but a tiny plot still shows 50 candles
    assert vp.group_size(50, max_candles=1500, plot_px=10, min_candle_px=2) == 1


@given(st.integers(1, 2_000_000), st.integers(0, 5000))
def test_group_size_bounds_the_candles(visible, px):
    k = vp.group_size(visible, 1500, px, 2.0)
    cap = 1500 if px <= 0 else max(50, min(1500, int(px / 2.0)))
    assert k & (k - 1) == 0  # a power of two
    assert visible <= cap * k
    assert k == 1 or visible > cap * (k // 2)


def test_drawn_window_has_margins_aligned_on_groups():
    d0, d1, k = vp.drawn_window(1000, 1100, 1, None, 0.15)
    assert (d0, d1, k) == (985, 1115, 1)
    d0, d1, k = vp.drawn_window(1001, 1101, 4, None, 0.15)
    assert d0 % 4 == 0 and d1 % 4 == 0 and d0 <= 1001 - 15 and d1 >= 1101 + 15


def test_drawn_window_is_reused_for_small_pans_and_replaced_when_needed():
    cur = vp.drawn_window(1000, 1100, 1, None, 0.15)
    assert vp.drawn_window(1005, 1105, 1, cur, 0.15) is cur  # still covered
    assert vp.drawn_window(1020, 1120, 1, cur, 0.15) != cur  # left the window
    assert vp.drawn_window(1000, 1100, 2, cur, 0.15)[2] == 2  # grouping changed
    assert vp.drawn_window(1040, 1060, 1, cur, 0.15) != cur  # zoomed in: too wide now


@given(st.integers(-10_000, 10_000), st.integers(1, 100_000), st.sampled_from([1, 2, 4, 64, 256]))
def test_drawn_window_covers_the_view_and_stays_bounded(v0, w, k):
    d0, d1, kk = vp.drawn_window(v0, v0 + w, k, None, 0.15)
    assert kk == k and d0 <= v0 and d1 >= v0 + w
    assert d0 % k == 0 and d1 % k == 0
    assert d1 - d0 <= (1 + 2 * 0.15) * w + 4 * k


def test_max_drawn_candles():
    assert vp.max_drawn_candles(1500, 0.15) == 2175 + 4


# ---------------------------------------------------------------- y fit

def test_fit_price_pads_and_holds_while_the_bars_fit():
    want = vp.fit_price(100.0, 110.0, None)
    assert want == pytest.approx((99.2, 110.8))
    assert vp.fit_price(101.0, 109.0, want) is None  # still fits, not squashed
    assert vp.fit_price(100.0, 111.0, want) is not None  # a new high
    assert vp.fit_price(104.0, 105.0, want) is not None  # would look squashed


def test_fit_price_of_a_flat_series_is_not_empty():
    lo, hi = vp.fit_price(100.0, 100.0, None)
    assert lo < 100.0 < hi
    lo, hi = vp.fit_price(0.0, 0.0, None)
    assert lo < 0.0 < hi


def test_fit_volume_has_headroom_and_hysteresis():
    top = vp.fit_volume(1000.0, None)
    assert top == pytest.approx(1150.0)
    assert vp.fit_volume(900.0, top) is None
    assert vp.fit_volume(1200.0, top) == pytest.approx(1380.0)
    assert vp.fit_volume(100.0, top) == pytest.approx(115.0)  # far too tall: shrink
    assert vp.fit_volume(0.0, None) > 0


# ---------------------------------------------------------------- decimals, marker placement

def test_infer_decimals():
    assert vp.infer_decimals(np.array([100.0, 100.5, 101.25])) == 2
    assert vp.infer_decimals(np.array([1.23456, 1.2])) == 5
    assert vp.infer_decimals(np.array([np.nan])) == 2
    assert vp.infer_decimals(np.array([12345.678])) == 2  # capped by magnitude
    assert vp.infer_decimals(np.array([0.1 + 0.2])) <= 8


def test_marker_positions_past_the_last_bar_are_pending():
    s = BarSeries(1.0)
    for i in range(10):
        s.add_tick((1_700_000_000 + i) * 1_000_000_000, 100.0 + i, 1)
    t = np.array([1_700_000_003.5, 1_700_000_012.0])
    x, pending = vp.marker_positions(s, t)
    assert pending
    assert x[0] == s.index_at_time(1_700_000_003.5) == s.first_index + 3
    assert x[1] == s.last_index + 3  # where its bar will be if no quiet interval comes
    x, pending = vp.marker_positions(s, t[:1])
    assert not pending
