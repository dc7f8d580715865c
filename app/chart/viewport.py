"""The chart's viewport arithmetic: which bars are on screen, at what scale. No Qt.

Everything here is a pure function of numbers (and, for :func:`marker_positions`, a
:class:`~app.chart.bars.BarSeries`), so the rules the chart follows -- how far the live edge
sits from the newest bar, how candles group when zoomed out, how much is drawn around the
view, when the price axis rescales -- are unit-tested without a widget
(tests/unit/test_viewport.py).  ``ChartWidget`` reads the view box, calls these, and applies
the result.

Coordinates: x is the absolute bar index (bar *i* centred on x = *i*), y is price.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "MAX_WIDTH",
    "clamp_pan",
    "drawn_window",
    "edge_pad",
    "fit_price",
    "fit_volume",
    "follow_range",
    "group_size",
    "infer_decimals",
    "marker_positions",
    "max_drawn_candles",
    "oldest_range",
    "stack_labels",
    "visible_range",
    "zoom_width",
]

#: Widest view in bars; also the view box's maxXRange.
MAX_WIDTH = 1_000_000
#: Bars that stay on screen however far the view is panned.
KEEP_ON_SCREEN = 5
#: Price padding above and below the visible bars, as a fraction of their span.
PRICE_PAD = 0.08
#: A price range more than this many times the wanted one looks squashed: fit again.
PRICE_SLACK = 1.4
#: Headroom above the largest visible volume.
VOLUME_HEADROOM = 1.15
#: A volume range more than this many times the wanted top is fitted again.
VOLUME_SLACK = 1.6
#: Fewest candles the plot-width cap may ask for (a tiny plot still shows a chart).
MIN_CANDLE_CAP = 50


def edge_pad(width: float) -> float:
    """Space between the newest (or oldest) bar and the view's edge: 2 bars or 5 % of the width."""
    return max(2.0, 0.05 * width)


def follow_range(last_index: int, width: float) -> tuple[float, float]:
    """The x range of ``width`` bars whose right edge keeps the newest bar in view."""
    right = last_index + 0.5 + edge_pad(width)
    return right - width, right


def oldest_range(first_index: int, width: float) -> tuple[float, float]:
    """The x range of ``width`` bars that starts at the oldest bar held."""
    left = first_index - 0.5 - edge_pad(width)
    return left, left + width


def clamp_pan(x0: float, x1: float, first_index: int, last_index: int, n_bars: int) -> tuple[float, float]:
    """Shift [x0, x1] so that at least a few bars stay on screen (the width is kept)."""
    if n_bars == 0:
        return x0, x1
    keep = min(KEEP_ON_SCREEN, n_bars)
    hi = last_index + 0.5 - keep
    lo = first_index - 0.5 - (x1 - x0) + keep
    shift = min(0.0, hi - x0) if x0 > hi else max(0.0, lo - x0) if x0 < lo else 0.0
    return x0 + shift, x1 + shift


def zoom_width(width: float, factor: float, min_width: float) -> float:
    """``width`` scaled by ``factor`` (< 1 zooms in), kept between ``min_width`` and MAX_WIDTH."""
    return min(max(width * factor, min_width), MAX_WIDTH)


def visible_range(x0: float, x1: float) -> tuple[int, int]:
    """Absolute bar indices [first, end) whose slots (i - 0.5, i + 0.5) intersect [x0, x1]."""
    return math.floor(x0 + 0.5), math.ceil(x1 + 0.5)


def group_size(visible: int, max_candles: int, plot_px: float, min_candle_px: float) -> int:
    """Bars per drawn candle: the smallest power of two that brings ``visible`` under the cap.

    The cap is ``max_candles``, or one candle per ``min_candle_px`` of plot width when that is
    fewer (thinner candles are unreadable and only cost paint time).  A plot not laid out yet
    (``plot_px`` 0) uses ``max_candles``.
    """
    cap = max_candles
    if plot_px > 0:
        cap = max(MIN_CANDLE_CAP, min(cap, int(plot_px / min_candle_px)))
    k = 1
    while visible > cap * k:
        k *= 2
    return k


def drawn_window(v0: int, v1: int, k: int, current: tuple[int, int, int] | None,
                 margin: float) -> tuple[int, int, int]:
    """The bars to draw, ``(d0, d1, k)``: the visible [v0, v1) plus ``margin`` of its width on
    each side, aligned on groups of ``k`` so that groups do not shimmer while panning.

    ``current`` (the window drawn last) is returned unchanged while it still covers the view,
    has the same grouping and is not too wide for it (after zooming in), so small pans reuse
    the picture already recorded.
    """
    w = max(1, v1 - v0)
    if (current is not None and current[2] == k and current[0] <= v0 and v1 <= current[1]
            and current[1] - current[0] <= (1 + 3 * margin) * w + 2 * k):
        return current
    m = max(k, int(w * margin))
    d0 = ((v0 - m) // k) * k
    d1 = -((-(v1 + m)) // k) * k
    return d0, d1, k


def max_drawn_candles(max_visible_candles: int, margin: float) -> int:
    """Upper bound of the candles any drawn window holds (the cap plus its margins)."""
    return int(math.ceil(max_visible_candles * (1 + 3 * margin))) + 4


def stack_labels(wanted: list[float], heights: list[float], top: float, bottom: float,
                 gap: float = 1.0) -> list[float]:
    """Tops for labels of ``heights`` that want their tops at ``wanted`` (pixels, y down), kept
    inside [top, bottom] and not overlapping, in the order of ``wanted``.

    Two sweeps: downwards pushes each label below the one above it, upwards pulls back the ones
    the first sweep pushed past ``bottom``.  Only labels taller together than the space can
    overlap (then at the top, the edge the first sweep starts from).
    """
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    tops = [0.0] * len(wanted)
    floor = top - gap
    for i in order:
        t = min(max(wanted[i], top), bottom - heights[i])
        tops[i] = t = max(t, floor + gap)
        floor = t + heights[i]
    ceil = bottom + gap
    for i in reversed(order):
        tops[i] = t = max(top, min(tops[i], ceil - gap - heights[i]))
        ceil = t
    return tops


def fit_price(lo: float, hi: float, current: tuple[float, float] | None) -> tuple[float, float] | None:
    """The price range for visible bars spanning [lo, hi], or None to keep ``current``.

    Hysteresis: the range is kept while the bars still fit in it and fill at least
    1/PRICE_SLACK of it, so the axis does not twitch with every tick.
    """
    span = hi - lo
    if span <= 0:
        span = max(abs(hi) * 2e-3, 1e-6)
    pad = PRICE_PAD * span
    want = (lo - pad, hi + pad)
    if current is None or lo < current[0] or hi > current[1] or (current[1] - current[0]) > PRICE_SLACK * (want[1] - want[0]):
        return want
    return None


def fit_volume(vmax: float, current: float | None) -> float | None:
    """The top of the volume axis (it starts at 0) for a largest visible volume ``vmax``, or
    None to keep ``current``."""
    top = max(vmax, 1e-9) * VOLUME_HEADROOM
    if current is None or vmax > current or current > VOLUME_SLACK * top:
        return top
    return None


def infer_decimals(prices: np.ndarray) -> int:
    """Fewest decimals that print every price exactly, capped by magnitude (a random walk with
    arbitrary floats would otherwise ask for 15)."""
    p = prices[np.isfinite(prices)]
    if len(p) == 0:
        return 2
    mag = float(np.max(np.abs(p)))
    cap = 2 if mag >= 1000 else min(8, max(2, 6 - int(math.floor(math.log10(mag))) if mag > 0 else 2))
    for d in range(cap + 1):
        scaled = p * 10.0 ** d
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-6 * max(1.0, 10.0 ** d * 1e-9) + 1e-7):
            return d
    return cap


def marker_positions(series, t: np.ndarray) -> tuple[np.ndarray, bool]:
    """x of markers at times ``t`` (seconds) on ``series``, and whether any lies past its bars.

    A marker newer than the forming bar has no bar yet: it is placed where its bar will be if
    no quiet interval comes between, and the caller places it again when the next bar arrives.
    """
    x = np.asarray(series.index_at_time(t), dtype=np.float64)
    last_t = series.last_time
    beyond = t >= last_t + series.interval_s
    pending = bool(beyond.any())
    if pending:
        x[beyond] = series.last_index + np.floor((t[beyond] - last_t) / series.interval_s)
    return x, pending
