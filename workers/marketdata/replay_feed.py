"""Replay of historical daily OHLCV bars as a stream of ticks.

A daily bar only says where the day opened, how far it went each way and where it closed, so
each bar is turned into ``ticks_per_bar`` ticks along a path through its four prices
(docs/marketdata.md, "Replay"):

* **Path.**  ``open -> low -> high -> close`` when the bar closed at or above its open, else
  ``open -> high -> low -> close`` (the common "OHLC path" convention: an up day is assumed
  to have made its low first).  The ``ticks_per_bar - 1`` steps are shared among the three
  legs in proportion to their length (at least one step each); inside a leg the price moves
  in equal steps rounded to the cent.  The open, the two extremes and the close are emitted
  exactly as in the file, so the ticks of a bar reproduce its high, low and close.
* **Volume.**  The bar's volume is split evenly over its ticks (the remainder goes to the
  first ticks); ``volume`` on the wire is the cumulative volume of that day, so the last tick
  of a bar carries exactly the bar's volume.
* **Quote.**  A synthetic spread of ``spread_bps`` basis points around ``last``, widened to the
  cent grid (``bid`` rounded down, ``ask`` rounded up, at least one cent each side), so
  ``bid < last < ask`` (only a last of 0.01 gets ``bid == last``: no price goes below a cent).  Quote sizes are random whole lots from a seeded generator.
* **Order.**  Dates ascend; for one date the ``k``-th ticks of every symbol are interleaved
  (AAPL k, GOOG k, ..., AAPL k+1, ...).  ``seq`` counts per symbol from 1 and keeps counting
  when ``loop`` restarts the file, so subscribers see no false gap.

The bar's date is never put on the wire: ``ts`` is the wall-clock time at which the tick is
created, like the simulated feed, because latency is measured from it.  Pacing (one bar per
``86400 / speed`` seconds) is the gateway's job.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.config import resources_dir
from workers.protocol import Tick
from workers.symbols import normalize_symbol, parse_symbols

#: columns a CSV must have (case-insensitive); ``symbol`` (or ``ticker``) is optional
REQUIRED_COLUMNS = ("date", "open", "high", "low", "close", "volume")
SYMBOL_COLUMNS = ("symbol", "ticker")
PRICE_STEP = 0.01
DEFAULT_TICKS_PER_BAR = 20
DEFAULT_SPREAD_BPS = 2.0
#: seconds of market time one daily bar stands for (``speed`` 86400 = one bar per second)
BAR_SECONDS = 86400.0


def default_data_file() -> Path:
    """The bundled data set (see resources/data/README.md)."""
    return resources_dir() / "data" / "daily_ohlcv.csv"


@dataclass(frozen=True, slots=True)
class Bar:
    symbol: str
    date: dt.date
    open: float
    high: float
    low: float
    close: float
    volume: int

    def check(self) -> None:
        if not all(math.isfinite(x) and x > 0 for x in (self.open, self.high, self.low, self.close)):
            raise ValueError("prices must be positive and finite")
        if not (self.low <= min(self.open, self.close) and self.high >= max(self.open, self.close)):
            raise ValueError("high/low do not enclose open and close")
        if self.volume < 0:
            raise ValueError("negative volume")


@dataclass
class LoadedBars:
    """Bars grouped by date (ascending), and what was skipped while reading."""

    days: list[tuple[dt.date, list[Bar]]]
    symbols: tuple[str, ...]
    skipped: int
    first_error: str = ""

    @property
    def bar_count(self) -> int:
        return sum(len(b) for _, b in self.days)


def load_bars(path: str | Path, symbols: Iterable[str] | None = None) -> LoadedBars:
    """Read a daily OHLCV CSV: columns ``date,open,high,low,close,volume`` and optionally
    ``symbol`` (or ``ticker``); without one, the symbol is the file name's stem in capitals.

    Rows that cannot be parsed or are inconsistent (high below low, ...) are skipped and
    counted; a file with no usable row, or without the required columns, raises ValueError.
    """
    path = Path(path)
    order = list(parse_symbols(symbols)) if symbols else []
    wanted = set(order) if order else None
    by_date: dict[dt.date, dict[str, Bar]] = {}
    skipped, first_error = 0, ""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file")
        cols = {name.strip().lower(): i for i, name in enumerate(header)}
        missing = [c for c in REQUIRED_COLUMNS if c not in cols]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; need {', '.join(REQUIRED_COLUMNS)}")
        sym_col = next((cols[c] for c in SYMBOL_COLUMNS if c in cols), None)
        file_symbol = path.stem  # normalised (and checked) per row, so a bad name counts as skipped rows
        idx = [cols[c] for c in REQUIRED_COLUMNS]
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            try:
                sym = normalize_symbol(row[sym_col] if sym_col is not None else file_symbol)
                if wanted is not None and sym not in wanted:
                    continue
                d, o, h, lo, c, v = (row[i].strip() for i in idx)
                bar = Bar(sym, dt.date.fromisoformat(d[:10]), float(o), float(h), float(lo), float(c), int(float(v)))
                bar.check()
            except (ValueError, IndexError) as e:
                skipped += 1
                first_error = first_error or f"line {lineno}: {e}"
                continue
            by_date.setdefault(bar.date, {})[sym] = bar  # a repeated (date, symbol): the later row wins
    days = [(d, [bars[s] for s in sorted(bars)]) for d, bars in sorted(by_date.items())]
    if not days:
        which = f" for {', '.join(sorted(wanted))}" if wanted else ""
        raise ValueError(f"{path}: no usable bars{which}" + (f" (first problem: {first_error})" if first_error else ""))
    found = sorted({b.symbol for _, bars in days for b in bars})
    if wanted is not None:
        # keep the caller's order so --symbols decides the interleaving
        found = [s for s in order if s in found]
    return LoadedBars(days, tuple(dict.fromkeys(found)), skipped, first_error)


def bar_path(bar: Bar, n: int) -> list[float]:
    """The ``n`` prices a bar is replayed as: open, the extremes in the documented order, close."""
    if n < 4:
        raise ValueError("a bar needs at least 4 ticks (open, high, low, close)")
    o, h, lo, c = bar.open, bar.high, bar.low, bar.close
    anchors = (o, lo, h, c) if c >= o else (o, h, lo, c)
    legs = [abs(anchors[i + 1] - anchors[i]) for i in range(3)]
    steps = _share(n - 1, legs)
    out = [o]
    for (a, b), k in zip(zip(anchors, anchors[1:]), steps):
        for j in range(1, k):
            p = round(a + (b - a) * j / k, 2)
            out.append(min(h, max(lo, p)))
        out.append(b)
    return out


def _share(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` steps over the legs in proportion to ``weights``, at least 1 each."""
    k = len(weights)
    rest = total - k
    wsum = sum(weights)
    if wsum <= 0:
        raw = [rest / k] * k
    else:
        raw = [rest * w / wsum for w in weights]
    base = [int(x) for x in raw]
    # largest remainders get the leftover steps (deterministic tie-break: earlier leg)
    order = sorted(range(k), key=lambda i: (-(raw[i] - base[i]), i))
    for i in order[: rest - sum(base)]:
        base[i] += 1
    return [b + 1 for b in base]


def split_volume(volume: int, n: int) -> list[int]:
    """``n`` non-negative integers summing to ``volume``, as even as possible (front-loaded)."""
    q, r = divmod(volume, n)
    return [q + 1 if i < r else q for i in range(n)]


def quote(last: float, spread_bps: float) -> tuple[float, float]:
    """Bid and ask around ``last``: ``spread_bps`` wide, on the cent grid, at least a cent each side."""
    half = last * spread_bps / 20000.0
    cents = last / PRICE_STEP
    bid_c = math.floor(cents - half / PRICE_STEP + 1e-9)
    ask_c = math.ceil(cents + half / PRICE_STEP - 1e-9)
    if bid_c >= cents - 1e-9:
        bid_c = math.ceil(cents - 1e-9) - 1
    if ask_c <= cents + 1e-9:
        ask_c = math.floor(cents + 1e-9) + 1
    return round(max(bid_c, 1) * PRICE_STEP, 2), round(ask_c * PRICE_STEP, 2)


@dataclass(frozen=True, slots=True)
class TickPoint:
    """One derived tick before it is stamped: what a bar contributes to the wire."""

    last: float
    bid: float
    ask: float
    bid_size: int
    ask_size: int
    volume: int  # cumulative volume of the day


def bar_ticks(bar: Bar, n: int, spread_bps: float = DEFAULT_SPREAD_BPS, rng: np.random.Generator | None = None, lot: int = 100) -> list[TickPoint]:
    """A bar as ``n`` tick points (see the module docstring for the rules)."""
    prices = bar_path(bar, n)
    cum = np.cumsum(split_volume(bar.volume, n)).tolist()
    rng = rng if rng is not None else np.random.default_rng(0)
    sizes = (rng.integers(1, 21, size=(n, 2)) * lot).tolist()
    out = []
    for p, v, (bs, az) in zip(prices, cum, sizes):
        bid, ask = quote(p, spread_bps)
        out.append(TickPoint(p, bid, ask, bs, az, v))
    return out


class ReplayFeed:
    """Historical bars as ticks; :meth:`next` returns the next tick or None at the end.

    ``loop`` restarts from the first date when the file is exhausted (``seq`` keeps counting).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        symbols: Iterable[str] | None = None,
        ticks_per_bar: int = DEFAULT_TICKS_PER_BAR,
        spread_bps: float = DEFAULT_SPREAD_BPS,
        loop: bool = False,
        seed: int | None = None,
        clock: Callable[[], int] = time.time_ns,
    ):
        if ticks_per_bar < 4:
            raise ValueError("ticks_per_bar must be at least 4")
        if not (0 <= spread_bps < 10000 and math.isfinite(spread_bps)):
            raise ValueError("spread_bps must be in [0, 10000)")
        self.path = Path(path) if path else default_data_file()
        self.data = load_bars(self.path, symbols)
        self.symbols: tuple[str, ...] = self.data.symbols
        self.ticks_per_bar = ticks_per_bar
        self.spread_bps = spread_bps
        self.loop = loop
        self.loops = 0
        self._rng = np.random.default_rng(seed)
        self._clock = clock
        self._seq: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self._day = -1
        self._pending: Iterator[tuple[str, TickPoint]] = iter(())
        self.finished = False

    @property
    def current_date(self) -> dt.date | None:
        """Date of the bar being replayed (reported as a gauge, never on the wire)."""
        return self.data.days[self._day][0] if 0 <= self._day < len(self.data.days) else None

    def _next_day(self) -> bool:
        self._day += 1
        if self._day >= len(self.data.days):
            if not self.loop:
                self.finished = True
                return False
            self._day = 0
            self.loops += 1
        _, bars = self.data.days[self._day]
        n = self.ticks_per_bar
        per_symbol = [(b.symbol, bar_ticks(b, n, self.spread_bps, self._rng)) for b in bars]
        self._pending = ((sym, pts[k]) for k in range(n) for sym, pts in per_symbol)
        return True

    def next(self) -> Tick | None:
        item = next(self._pending, None)
        while item is None:
            if self.finished or not self._next_day():
                return None
            item = next(self._pending, None)
        sym, pt = item
        seq = self._seq[sym] + 1
        self._seq[sym] = seq
        return Tick(sym, seq, self._clock(), pt.last, pt.bid, pt.ask, pt.bid_size, pt.ask_size, pt.volume)

    def ticks(self, n: int) -> list[Tick]:
        out = []
        for _ in range(n):
            t = self.next()
            if t is None:
                break
            out.append(t)
        return out

    def __iter__(self):
        return self

    def __next__(self) -> Tick:
        t = self.next()
        if t is None:
            raise StopIteration
        return t


__all__ = [
    "BAR_SECONDS",
    "Bar",
    "LoadedBars",
    "ReplayFeed",
    "TickPoint",
    "bar_path",
    "bar_ticks",
    "default_data_file",
    "load_bars",
    "quote",
    "split_volume",
]
