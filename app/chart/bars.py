"""OHLCV bars built incrementally from ticks, stored in bounded numpy buffers.

Pure numpy, no Qt: the feed side calls :meth:`BarSeries.add_tick` for every tick (thousands per
second), the chart reads contiguous array views at ~30 Hz.

Indices. Every bar gets an *absolute index*: 0 for the first bar the series ever saw, +1 for each
new bar. Absolute indices never shift when old bars fall out of the buffer, so the chart can use
them directly as its x coordinate and a marker or a scrolled-back view stays put while the live
edge advances. ``first_index .. last_index`` is what is still held.

Storage. Each column lives in one numpy array of up to ``2 * capacity`` slots used as a
compacting ring: bars are appended at the end of a contiguous window; when the array is full the
newest ``capacity - 1`` bars are copied back to the front (amortised O(1), one memmove per
``capacity`` appends). Unlike a wrap-around ring, every range of bars is a contiguous slice, so
views are zero-copy. Arrays start at 16 slots and double up to that size: the window holds
bars for every symbol of its universe (three intervals each), and most of those series never
hold more than a few bars, so a large first allocation (1024 slots x 6 columns x 3 intervals was
~75 KB resident per symbol) is what made a large universe cost gigabytes.

Hot path. The still-forming bar is kept in Python floats (compares and stores on plain floats
cost a fraction of numpy scalar item assignment) and written into the arrays lazily, when a
reader asks for a view. ``version`` increments on every change, ``history_version`` only when a
bar that was already complete changes (a late tick, a bulk load), so a reader can cache the
drawing of completed bars and redraw just the newest one.

Gaps. A bar exists only for an interval that saw at least one tick; quiet intervals create no
flat bars (the chart's x axis is the bar index, so gaps simply do not take space).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Iterable

import numpy as np

__all__ = ["BarSeries", "MultiIntervalBars", "aggregate_bars", "DEFAULT_INTERVALS"]

DEFAULT_INTERVALS: tuple[float, ...] = (1, 5, 60)

_COLUMNS = ("t", "o", "h", "l", "c", "v")
#: slots of a new series' arrays (doubled as bars come): 6 columns x 16 x 8 bytes per interval
_INITIAL_SLOTS = 16


def aggregate_bars(
    keys: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    l: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge consecutive rows that share a key into one OHLCV row.

    ``keys`` must be non-decreasing. Returns ``(first_row, open, high, low, close, volume, key)``
    per group, where ``first_row`` is the position of the group's first input row. Used both to
    turn ticks into bars and to turn fine bars into coarser ones (downsampled drawing, derived
    intervals).
    """
    n = len(keys)
    if n == 0:
        empty = np.empty(0)
        return np.empty(0, dtype=np.intp), empty, empty, empty, empty, empty, keys[:0]
    starts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate(([0], starts))
    ends = np.concatenate((starts[1:], [n])) - 1
    return (
        starts,
        o[starts],
        np.maximum.reduceat(h, starts),
        np.minimum.reduceat(l, starts),
        c[ends],
        np.add.reduceat(v, starts),
        keys[starts],
    )


def _column(buffer: str) -> Callable[[BarSeries], np.ndarray]:
    """A method reading one column (named by its buffer, which a resize replaces) as ``_col`` does."""
    get = operator.attrgetter(buffer)

    def column(self: BarSeries) -> np.ndarray:
        return self._col(get(self))

    return column


class BarSeries:
    """Bars of one interval for one instrument.

    ``interval_s`` is the bar length in seconds (may be fractional); a bar's time is its start,
    aligned to a multiple of the interval since the epoch. ``capacity`` bounds how many bars are
    kept; the oldest are dropped first.
    """

    __slots__ = (
        "interval_s",
        "interval_ns",
        "capacity",
        "version",
        "history_version",
        "late_ticks",
        "dropped_ticks",
        "_t", "_o", "_h", "_l", "_c", "_v",
        "_start", "_end", "_count",
        "_cur_start", "_co", "_ch", "_cl", "_cc", "_cv", "_dirty",
    )

    def __init__(self, interval_s: float, capacity: int = 50_000) -> None:
        if not interval_s > 0 or not math.isfinite(interval_s):
            raise ValueError(f"interval_s must be a positive number, got {interval_s!r}")
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, got {capacity!r}")
        self.interval_s = float(interval_s)
        self.interval_ns = int(round(self.interval_s * 1e9))
        self.capacity = int(capacity)
        #: Increments on every change of any bar.
        self.version = 0
        #: Increments only when a bar that was already complete changes in place (late tick, clear).
        self.history_version = 0
        #: Ticks older than the forming bar that were merged into an earlier bar.
        self.late_ticks = 0
        #: Ticks ignored: non-finite price, or older than every bar still held.
        self.dropped_ticks = 0
        slots = min(2 * self.capacity, _INITIAL_SLOTS)
        self._t = np.empty(slots)
        self._o = np.empty(slots)
        self._h = np.empty(slots)
        self._l = np.empty(slots)
        self._c = np.empty(slots)
        self._v = np.empty(slots)
        self._start = 0  # slot of the oldest held bar
        self._end = 0  # one past the slot of the newest bar
        self._count = 0  # bars ever created (absolute index of the next bar)
        # The forming (newest) bar, mirrored in Python floats for the hot path.
        self._cur_start: int | None = None  # bar start in ns
        self._co = self._ch = self._cl = self._cc = self._cv = 0.0
        self._dirty = False  # forming bar has changes not yet written to the arrays

    # ------------------------------------------------------------------ feeding

    def add_tick(self, ts_ns: int, price: float, volume_delta: int = 0) -> bool:
        """Fold one trade into the bars. Returns True if it started a new bar.

        A tick older than the forming bar is merged into the bar it belongs to (high, low and
        volume only: its place in the close sequence is unknown) and counted in ``late_ticks``.
        A non-finite price is ignored and counted in ``dropped_ticks``.
        """
        if price - price != 0.0:  # NaN or +-inf, one float op
            self.dropped_ticks += 1
            return False
        start = ts_ns - ts_ns % self.interval_ns
        if start == self._cur_start:
            if price > self._ch:
                self._ch = price
            elif price < self._cl:
                self._cl = price
            self._cc = price
            self._cv += volume_delta
            self._dirty = True
            self.version += 1
            return False
        if self._cur_start is None or start > self._cur_start:
            self._open_bar(int(start), float(price), float(volume_delta))
            return True
        self._late_tick(int(start), float(price), float(volume_delta))
        return False

    def add_ticks(self, ts_ns: Iterable[int] | np.ndarray, prices: Iterable[float] | np.ndarray,
                  volumes: Iterable[float] | np.ndarray | None = None) -> int:
        """Vectorised :meth:`add_tick` for a batch of ticks. Returns the number of new bars.

        Fast when the batch is in time order (the normal case); out-of-order rows fall back to
        the per-tick path so the result is identical to calling ``add_tick`` row by row.
        """
        ts = np.asarray(ts_ns, dtype=np.int64)
        px = np.asarray(prices, dtype=np.float64)
        vol = np.zeros(len(ts)) if volumes is None else np.asarray(volumes, dtype=np.float64)
        if not (len(ts) == len(px) == len(vol)):
            raise ValueError("ts_ns, prices and volumes must have the same length")
        if len(ts) == 0:
            return 0
        good = np.isfinite(px)
        if not good.all():
            self.dropped_ticks += int(len(px) - good.sum())
            ts, px, vol = ts[good], px[good], vol[good]
            if len(ts) == 0:
                return 0
        starts = ts - ts % self.interval_ns
        if len(starts) > 1 and (starts[1:] < starts[:-1]).any():
            return sum(self.add_tick(int(a), float(b), float(c)) for a, b, c in zip(ts, px, vol))
        # Leading rows for the forming bar (or late ones) go through the scalar path.
        head = 0
        if self._cur_start is not None:
            head = int(np.searchsorted(starts, self._cur_start, side="right"))
            for a, b, c in zip(ts[:head].tolist(), px[:head].tolist(), vol[:head].tolist()):
                self.add_tick(a, b, c)
        if head == len(ts):
            return 0
        _, o, h, l, c, v, keys = aggregate_bars(starts[head:], px[head:], px[head:], px[head:],
                                                px[head:], vol[head:])
        self._append_bars(keys.astype(np.float64) / 1e9, o, h, l, c, v)
        self._cur_start = int(keys[-1])
        return len(keys)

    def add_bars(self, times: np.ndarray, opens: np.ndarray, highs: np.ndarray, lows: np.ndarray,
                 closes: np.ndarray, volumes: np.ndarray) -> int:
        """Bulk-load finished bars (history, or a finer series being coarsened).

        Rows are aggregated to this series' interval first, so bars of any finer interval that
        divides this one can be fed. Rows at or before the forming bar are merged into it or
        ignored if older (history must come before live ticks). Returns the number of new bars.
        """
        t = np.asarray(times, dtype=np.float64)
        if len(t) == 0:
            return 0
        t_ns = np.round(t * 1e9).astype(np.int64)
        keys = t_ns - t_ns % self.interval_ns
        if len(keys) > 1 and (keys[1:] < keys[:-1]).any():
            raise ValueError("add_bars needs rows in time order")
        o, h, l, c, v = (np.asarray(a, dtype=np.float64) for a in (opens, highs, lows, closes, volumes))
        _, o, h, l, c, v, keys = aggregate_bars(keys, o, h, l, c, v)
        if self._cur_start is not None:
            keep = keys > self._cur_start
            same = np.flatnonzero(keys == self._cur_start)
            for i in same.tolist():  # at most one group
                self._ch = max(self._ch, float(h[i]))
                self._cl = min(self._cl, float(l[i]))
                self._cc = float(c[i])
                self._cv += float(v[i])
                self._dirty = True
                self.version += 1
            o, h, l, c, v, keys = o[keep], h[keep], l[keep], c[keep], v[keep], keys[keep]
        if len(keys) == 0:
            return 0
        self._append_bars(keys.astype(np.float64) / 1e9, o, h, l, c, v)
        self._cur_start = int(keys[-1])
        return len(keys)

    def clear(self) -> None:
        """Drop every bar (absolute indices keep counting up, so old x positions stay unique)."""
        self._start = self._end = 0
        self._cur_start = None
        self._dirty = False
        self.version += 1
        self.history_version += 1

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def first_index(self) -> int:
        """Absolute index of the oldest bar held (== ``last_index + 1`` when empty)."""
        return self._count - (self._end - self._start)

    @property
    def last_index(self) -> int:
        """Absolute index of the newest (forming) bar, ``first_index - 1`` when empty."""
        return self._count - 1

    @property
    def last_time(self) -> float | None:
        return None if self._cur_start is None or self._end == self._start else self._cur_start / 1e9

    @property
    def last_close(self) -> float | None:
        return self._cc if self._end > self._start else None

    @property
    def last_open(self) -> float | None:
        return self._co if self._end > self._start else None

    times, opens, highs, lows, closes, volumes = (_column("_" + name) for name in _COLUMNS)

    def view(self, start_idx: int | None = None, end_idx: int | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(times, opens, highs, lows, closes, volumes)`` for absolute indices [start, end).

        Out-of-range bounds are clipped. The arrays are read-only views into the buffers: valid
        until the next change to the series; copy them to keep them.
        """
        self._flush()
        a, b = self._slots(start_idx, end_idx)
        out = tuple(col[a:b] for col in (self._t, self._o, self._h, self._l, self._c, self._v))
        for arr in out:
            arr.flags.writeable = False
        return out  # type: ignore[return-value]

    def clip_range(self, start_idx: int, end_idx: int) -> tuple[int, int]:
        """Clip absolute [start, end) to the bars held."""
        lo, hi = self.first_index, self._count
        start_idx = min(max(start_idx, lo), hi)
        end_idx = min(max(end_idx, start_idx), hi)
        return start_idx, end_idx

    def index_range_for_time(self, t0: float, t1: float) -> tuple[int, int]:
        """Absolute [start, end) of the bars that overlap the time span [t0, t1] (seconds)."""
        t = self.times()
        i0 = int(np.searchsorted(t, t0 - self.interval_s, side="right"))
        i1 = int(np.searchsorted(t, t1, side="right"))
        base = self.first_index
        return base + i0, base + max(i0, i1)

    def index_at_time(self, t: float | np.ndarray) -> int | np.ndarray:
        """Absolute index of the bar whose span contains ``t`` (or the last bar started before it).

        Times before the oldest bar held give ``first_index - 1``. Accepts an array.
        """
        pos = np.searchsorted(self.times(), t, side="right") - 1
        return pos + self.first_index if isinstance(pos, np.ndarray) else int(pos) + self.first_index

    def time_at_index(self, idx: float) -> float:
        """Bar start time for an absolute index, extrapolated by the interval outside the data."""
        n = self._end - self._start
        if n == 0:
            return math.nan
        self._flush()
        i = int(round(idx))
        first = self.first_index
        if i < first:
            return float(self._t[self._start]) - (first - i) * self.interval_s
        if i > self.last_index:
            return float(self._t[self._end - 1]) + (i - self.last_index) * self.interval_s
        return float(self._t[self._start + i - first])

    def bar(self, idx: int) -> tuple[float, float, float, float, float, float] | None:
        """``(time, open, high, low, close, volume)`` of one absolute index, or None."""
        if not self.first_index <= idx <= self.last_index:
            return None
        self._flush()
        s = self._start + idx - self.first_index
        return (float(self._t[s]), float(self._o[s]), float(self._h[s]), float(self._l[s]),
                float(self._c[s]), float(self._v[s]))

    def __repr__(self) -> str:
        return (f"BarSeries(interval_s={self.interval_s:g}, bars={len(self)}, "
                f"last_index={self.last_index}, version={self.version})")

    # ------------------------------------------------------------------ internals

    def _col(self, arr: np.ndarray) -> np.ndarray:
        self._flush()
        out = arr[self._start:self._end]
        out.flags.writeable = False
        return out

    def _slots(self, start_idx: int | None, end_idx: int | None) -> tuple[int, int]:
        first = self.first_index
        a = first if start_idx is None else start_idx
        b = self._count if end_idx is None else end_idx
        a, b = self.clip_range(a, b)
        return self._start + a - first, self._start + b - first

    def _flush(self) -> None:
        if self._dirty:
            s = self._end - 1
            self._h[s] = self._ch
            self._l[s] = self._cl
            self._c[s] = self._cc
            self._v[s] = self._cv
            self._dirty = False

    def _make_room(self, n: int) -> None:
        """Ensure ``n`` more slots after ``_end``, dropping the oldest bars past capacity."""
        held = self._end - self._start
        keep = min(held, self.capacity - n) if n < self.capacity else 0
        slots = len(self._t)
        if self._end + n <= slots:
            if held + n > self.capacity:
                self._start = self._end - keep
            return
        want = min(2 * self.capacity, max(2 * slots, keep + n))
        if want > slots:
            for name in _COLUMNS:
                old = getattr(self, "_" + name)
                new = np.empty(want)
                new[:keep] = old[self._end - keep:self._end]
                setattr(self, "_" + name, new)
        else:
            for name in _COLUMNS:
                arr = getattr(self, "_" + name)
                arr[:keep] = arr[self._end - keep:self._end]  # numpy handles the overlap
        self._start, self._end = 0, keep

    def _open_bar(self, start_ns: int, price: float, volume: float) -> None:
        self._flush()
        self._make_room(1)
        s = self._end
        self._t[s] = start_ns / 1e9
        self._o[s] = self._h[s] = self._l[s] = self._c[s] = price
        self._v[s] = volume
        self._end += 1
        self._count += 1
        self._cur_start = start_ns
        self._co = self._ch = self._cl = self._cc = price
        self._cv = volume
        self.version += 1

    def _late_tick(self, start_ns: int, price: float, volume: float) -> None:
        self._flush()
        t = self._t[self._start:self._end]
        pos = int(np.searchsorted(t, start_ns / 1e9, side="left"))
        if pos >= len(t) or t[pos] != start_ns / 1e9:
            # The bar that tick belongs to never existed (quiet interval) or fell out of the
            # buffer: inserting a bar mid-series would renumber every later index.
            self.dropped_ticks += 1
            return
        s = self._start + pos
        if price > self._h[s]:
            self._h[s] = price
        if price < self._l[s]:
            self._l[s] = price
        self._v[s] += volume
        self.late_ticks += 1
        self.version += 1
        self.history_version += 1

    def _append_bars(self, t: np.ndarray, o: np.ndarray, h: np.ndarray, l: np.ndarray,
                     c: np.ndarray, v: np.ndarray) -> None:
        self._flush()
        n = len(t)
        skip = max(0, n - self.capacity)  # more new bars than fit: only the newest survive
        self._count += skip
        t, o, h, l, c, v = t[skip:], o[skip:], h[skip:], l[skip:], c[skip:], v[skip:]
        n -= skip
        self._make_room(n)
        s, e = self._end, self._end + n
        self._t[s:e], self._o[s:e], self._h[s:e] = t, o, h
        self._l[s:e], self._c[s:e], self._v[s:e] = l, c, v
        self._end = e
        self._count += n
        self._co, self._ch, self._cl = float(o[-1]), float(h[-1]), float(l[-1])
        self._cc, self._cv = float(c[-1]), float(v[-1])
        self.version += 1


class MultiIntervalBars:
    """One :class:`BarSeries` per interval for one instrument; :meth:`add_tick` feeds them all.

    ``series(interval, create=True)`` adds an interval on demand, seeded from the finest held
    series whose interval divides it (so a 15 s or 5 min chart can be opened later).
    """

    def __init__(self, intervals: Iterable[float] = DEFAULT_INTERVALS, capacity: int = 50_000) -> None:
        self.capacity = int(capacity)
        self._series: dict[float, BarSeries] = {}
        for iv in intervals:
            self._series[float(iv)] = BarSeries(float(iv), capacity)
        if not self._series:
            raise ValueError("need at least one interval")
        self._list = list(self._series.values())

    @property
    def intervals(self) -> tuple[float, ...]:
        return tuple(sorted(self._series))

    @property
    def version(self) -> int:
        return sum(s.version for s in self._list)

    def add_tick(self, ts_ns: int, price: float, volume_delta: int = 0) -> bool:
        """Feed one tick to every interval; True if any of them started a new bar."""
        new = False
        for s in self._list:
            if s.add_tick(ts_ns, price, volume_delta):
                new = True
        return new

    def add_ticks(self, ts_ns: np.ndarray, prices: np.ndarray, volumes: np.ndarray | None = None) -> int:
        """Vectorised feed; returns the number of new bars of the finest interval."""
        counts = [s.add_ticks(ts_ns, prices, volumes) for s in self._list]
        return counts[self._list.index(self.finest())]

    def finest(self) -> BarSeries:
        return self._series[min(self._series)]

    def can_derive(self, interval: float) -> bool:
        """True if ``interval`` is held or can be built from a held finer interval."""
        return self._source_for(float(interval)) is not None

    def series(self, interval: float, create: bool = True) -> BarSeries:
        """The series for ``interval``; with ``create`` an unknown interval is derived.

        Raises KeyError if the interval is not held and cannot be derived.
        """
        key = float(interval)
        s = self._series.get(key)
        if s is not None:
            return s
        src = self._source_for(key) if create else None
        if src is None:
            raise KeyError(interval)
        s = BarSeries(key, self.capacity)
        s.add_bars(*src.view())
        self._series[key] = s
        self._list.append(s)
        return s

    __getitem__ = series

    def __contains__(self, interval: float) -> bool:
        return float(interval) in self._series

    def _source_for(self, interval: float) -> BarSeries | None:
        if interval in self._series:
            return self._series[interval]
        target_ns = int(round(interval * 1e9))
        if target_ns <= 0:
            return None
        # The coarsest divisor holds the longest history and is the cheapest to aggregate.
        best = None
        for s in self._series.values():
            if s.interval_ns < target_ns and target_ns % s.interval_ns == 0:
                if best is None or s.interval_ns > best.interval_ns:
                    best = s
        return best

    def __repr__(self) -> str:
        return f"MultiIntervalBars({', '.join(f'{iv:g}s:{len(s)}' for iv, s in sorted(self._series.items()))})"
