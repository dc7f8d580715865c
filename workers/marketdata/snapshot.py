"""The market-data gateway's last-value cache: the last tick of every symbol, its last depth
message and the session's bars, kept as the gateway publishes, and served as ``get_snapshot_reply`` (docs/marketdata.md,
"Snapshot").  Plain Python, no sockets: the gateway owns the ROUTER.

The cache is updated with each frame right after the frame was sent, in the gateway's one
thread, and a snapshot is built between two sends: so the tick of a symbol in a snapshot is
exactly the last one published, and a joiner that subscribed first and drops live ticks with
``seq`` <= the snapshot's (same epoch) misses none and sees none twice (the zguide's Clone
pattern).  A frame that could not be sent is not in the cache either: subscribers never got it.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from workers import protocol as P

#: the snapshot's bar series: (length in seconds, bars kept per symbol).  The window's chart
#: holds 1, 5 and 60 s bars (and derives coarser ones from 5 s): ten minutes of 1 s bars and an
#: hour of 5 s ones open every interval of it with history.  Older bars are forgotten (the
#: reply then says ``truncated``); the chart keeps what it received live beyond that
INTERVALS = ((1, 600), (5, 720))
#: the longest series (kept for readers of the single-series layout)
BAR_SECONDS, MAX_BARS = INTERVALS[-1]
#: a snapshot reply stays within this: a quarter of what a client accepts (P.MAX_REPLY_BYTES)
MAX_SNAPSHOT_BYTES = P.MAX_REPLY_BYTES // 4
#: upper bound of one packed bar row: array header, an int64 ts, four float64 prices, an int64 volume
BAR_ROW_BYTES = 1 + 9 + 4 * 9 + 9
#: upper bound of what a symbol costs besides its bar rows: its packed tick map and the fields
#: of its SymbolBars (field names, a 32-character symbol twice, the numbers)
SYMBOL_BYTES = 512
#: the reply's own fields
REPLY_OVERHEAD = 1024
#: upper bound of one packed depth message: 2 x 10 levels of [float64, int64] and its fields
DEPTH_BYTES = 2 * P.MAX_DEPTH_LEVELS * (1 + 9 + 9) + 256


class _Series:
    """The bars of one length, per symbol."""

    __slots__ = ("seconds", "bar_ns", "max_bars", "bars", "evicted")

    def __init__(self, seconds: int, max_bars: int):
        if seconds < 1 or max_bars < 1:
            raise ValueError("bars need a length of at least 1 s and room for at least one")
        self.seconds = seconds
        self.bar_ns = seconds * 1_000_000_000
        self.max_bars = max_bars
        self.bars: dict[str, collections.deque[list]] = {}
        self.evicted: set[str] = set()  # symbols whose oldest bars were forgotten

    def add(self, symbol: str, ts: int, first: float, hi: float, lo: float, last: float, traded: int) -> None:
        start = ts - ts % self.bar_ns
        bars = self.bars.get(symbol)
        if bars is None:
            bars = self.bars[symbol] = collections.deque(maxlen=self.max_bars)
        if bars and start <= bars[-1][0]:
            # this bar, or the wall clock stepped back: the bars stay in time order
            b = bars[-1]
            if hi > b[2]:
                b[2] = hi
            if lo < b[3]:
                b[3] = lo
            b[4] = last
            b[5] += traded
            return
        if len(bars) == self.max_bars:
            self.evicted.add(symbol)
        bars.append([start, first, hi, lo, last, traded])


class LastValueCache:
    """The last tick row and the bars of each symbol (see the module docstring)."""

    __slots__ = ("series", "version", "_last", "_cum", "_depth")

    def __init__(self, bar_seconds: int | None = None, max_bars: int | None = None,
                 intervals: tuple[tuple[int, int], ...] = INTERVALS):
        if bar_seconds is not None or max_bars is not None:  # one series (tests, a custom gateway)
            intervals = ((bar_seconds or BAR_SECONDS, max_bars or MAX_BARS),)
        self.series = [_Series(sec, n) for sec, n in intervals]
        #: +1 per update: a reply built at one version is still exact while it holds
        self.version = 0
        self._last: dict[str, list] = {}
        self._cum: dict[str, int] = {}  # the previous tick's cumulative volume
        self._depth: dict[str, P.Depth] = {}

    @property
    def bar_seconds(self) -> int:
        return self.series[-1].seconds

    def last(self, symbol: str) -> list | None:
        """The last published row of ``symbol`` (``[seq, ts, last, bid, ask, bid_size,
        ask_size, volume]``), None before its first."""
        return self._last.get(symbol)

    def last_depth(self, symbol: str) -> P.Depth | None:
        """The last published depth message of ``symbol``, None before its first."""
        return self._depth.get(symbol)

    def update_depth(self, depth: P.Depth) -> None:
        """A depth message was published (after the tick frame whose last tick is its top)."""
        self.version += 1
        self._depth[depth.symbol] = depth

    def update(self, symbol: str, rows: list) -> None:
        """The rows of one frame of ``symbol`` were published, oldest first.

        A frame spans at most a few milliseconds, so it goes into one bar of each series: the
        bar of its last tick's ``ts``.  ``volume`` on the wire is cumulative (since the start
        for the simulated feed, per day for the replay), so what a tick traded is its increase,
        or the whole value when it went down (a new replayed day starts counting again)."""
        self.version += 1
        last = rows[-1]
        self._last[symbol] = last
        prev = self._cum.get(symbol, 0)
        if len(rows) == 1:
            hi = lo = last[2]
            v = last[7]
            traded = v - prev if v >= prev else v
        else:
            hi = lo = rows[0][2]
            traded = 0
            for r in rows:
                p = r[2]
                if p > hi:
                    hi = p
                elif p < lo:
                    lo = p
                v = r[7]
                traded += v - prev if v >= prev else v
                prev = v
        self._cum[symbol] = last[7]
        for series in self.series:
            series.add(symbol, last[1], rows[0][2], hi, lo, last[2], traded)

    def snapshot(self, epoch: int, symbols: Iterable[str] | None = None, max_bytes: int = MAX_SNAPSHOT_BYTES) -> P.GetSnapshotReply:
        """The reply to ``get_snapshot``: every symbol (or those of ``symbols`` that have
        ticked), its last tick and its bars of each series, oldest first (the last one still
        in progress), and its last depth message if it has one.  When the bars do not all fit
        in ``max_bytes`` every series of every symbol keeps the same share of its newest ones,
        and ``truncated`` says some were left out (as it does once a symbol's oldest bars were
        forgotten).  The depth is never cut: its room (bounded, :data:`DEPTH_BYTES` a symbol)
        is taken before the bars share what is left, because a book is the present and bars
        are history."""
        if symbols is None:
            syms = list(self._last)
        else:
            syms = [s for s in dict.fromkeys(symbols) if s in self._last]
        ticks = [P.Tick(s, *self._last[s], epoch=epoch) for s in syms]
        depth = [d for d in map(self._depth.get, syms) if d is not None]
        n_series = len(self.series)
        room = max_bytes - REPLY_OVERHEAD - SYMBOL_BYTES * len(syms) * n_series - DEPTH_BYTES * len(depth)
        per_list = max(0, room // (max(1, len(syms) * n_series) * BAR_ROW_BYTES))
        truncated = False
        out = []
        for s in syms:
            for series in self.series:
                bars = series.bars[s]
                keep = min(len(bars), per_list)
                if keep < len(bars) or s in series.evicted:
                    truncated = True
                rows = [tuple(b) for b in list(bars)[len(bars) - keep:]] if keep else []
                out.append(P.SymbolBars(s, series.seconds, rows))
        return P.GetSnapshotReply(ok=True, epoch=epoch, ticks=ticks, bars=out, truncated=truncated, depth=depth)


__all__ = ["BAR_SECONDS", "DEPTH_BYTES", "INTERVALS", "MAX_BARS", "MAX_SNAPSHOT_BYTES", "LastValueCache"]
