"""Replay of a recording (workers/recording.py) in market time: what the gateway's ``recording``
feed publishes, and when.

:class:`RecordingFeed` walks the events of a :class:`~workers.recording.Recording` in their
recorded order and hands them out in slices (a slice is consecutive rows of one event, so of one
symbol: one ticks frame), up to a market time; it can be moved (:meth:`RecordingFeed.seek`) and
restarts at the end with ``loop``.  :class:`MarketClock` maps the wall clock to market time at a
speed factor (1 = as recorded, 10 = ten times faster, 0 = no clock: as fast as possible) and is
re-anchored on every pause, speed change and seek, so none of them makes a burst of the time
that passed meanwhile.

Ticks keep their RECORDED ``ts``: market time is what the strategies' cooldowns and windows are
measured on, so a replay gives the signals a backtest of the same data gives.  Only ``seq`` and
``epoch`` are the gateway's own (a seek or a loop is not a gap for a subscriber: it lost nothing
the gateway sent).  No Qt, no sockets here.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from workers.recording import TICK_COLUMNS

NS = 1_000_000_000

#: an event as :meth:`workers.recording.Recording.events` yields it: (kind, symbol, payload),
#: payload a list of tick rows (``ticks``) or a :class:`workers.protocol.Depth` (``depth``)
Event = tuple[str, str, Any]


def event_ts(kind: str, payload: Any, i: int = 0) -> int:
    """Market time of row ``i`` of a ``ticks`` event, or of a ``depth`` event."""
    return payload[i][1] if kind == "ticks" else payload.ts


class RecordingFeed:
    """The events of ``recording`` (a :class:`workers.recording.Recording`: its tick columns
    and its depth), taken in order up to a market time.

    The ticks of all symbols are merged once into one time order (numpy, stable: ties go in
    symbol order, a symbol's rows keep theirs); :meth:`take` then cuts the next window of that
    order and builds the rows of each symbol in it from its columns in one go, so the cost per
    tick is that of the rows themselves, not of a Python step per recorded event.

    Attributes:
        position_ts: market time of the last row taken (``first_ts`` before any, the target
            of the last seek right after it).
        loops: times ``loop`` started the recording over.
        finished: the end was reached (never with ``loop``).
    """

    def __init__(self, recording, symbols: Iterable[str] | None = None, loop: bool = False):
        if symbols:
            recording = recording.only(list(symbols))
        self.recording = recording
        self.symbols: tuple[str, ...] = tuple(recording.symbols)
        self.first_ts = int(recording.first_ts)
        self.last_ts = int(recording.last_ts)
        self.n_ticks = int(getattr(recording, "n_ticks", 0))
        self.loop = loop
        self.loops = 0
        self.finished = False
        self.position_ts = self.first_ts
        self.taken = 0  # tick rows handed out since the start (all loops, all seeks)
        self._cols = [recording.columns[s] for s in self.symbols]
        if self._cols:
            ts = np.concatenate([c["ts"] for c in self._cols])
            who = np.concatenate([np.full(len(c["ts"]), i, dtype=np.int32) for i, c in enumerate(self._cols)])
            order = np.argsort(ts, kind="stable")
            self._ts, self._who = ts[order], who[order]
        else:
            self._ts, self._who = np.zeros(0, np.int64), np.zeros(0, np.int32)
        # a depth goes after the ticks of its own ts (its top is the tick of that moment)
        depth = recording.depth_by_symbol() if hasattr(recording, "depth_by_symbol") else {}
        self._depth = sorted((d for s in self.symbols for d in depth.get(s, ())), key=lambda d: d.ts)
        self._depth_ts = np.array([d.ts for d in self._depth], dtype=np.int64)
        self._start(None)

    @classmethod
    def open(cls, path: str | Path, symbols: Iterable[str] | None = None, loop: bool = False,
             opener: Callable[..., Any] | None = None) -> RecordingFeed:
        """The recording at ``path`` (whatever :func:`workers.recording.open_recording` opens);
        RecordingError when it cannot be read or trusted."""
        if opener is None:
            from workers.recording import open_recording as opener
        return cls(opener(path), symbols, loop)

    def _start(self, start_ts: int | None) -> None:
        if start_ts is None:
            self._k, self._d = 0, 0
            self._next = [0] * len(self._cols)  # each symbol's next row
        else:
            self._k = int(np.searchsorted(self._ts, start_ts, "left"))
            self._d = int(np.searchsorted(self._depth_ts, start_ts, "left"))
            self._next = [int(np.searchsorted(c["ts"], start_ts, "left")) for c in self._cols]

    # ------------------------------------------------------------------ position
    @property
    def fraction(self) -> float:
        span = self.last_ts - self.first_ts
        if span <= 0:
            return 1.0 if self.finished else 0.0
        return min(1.0, max(0.0, (self.position_ts - self.first_ts) / span))

    def seek(self, ts: int) -> int:
        """Go to market time ``ts`` (clamped to the recording): the next row taken is the first
        at or after it.  Returns the time gone to."""
        ts = min(max(int(ts), self.first_ts), self.last_ts)
        self._start(ts)
        self.finished = False
        self.position_ts = ts
        return ts

    def seek_fraction(self, f: float) -> int:
        return self.seek(self.first_ts + round((self.last_ts - self.first_ts) * min(1.0, max(0.0, f))))

    def _at_end(self) -> bool:
        """Nothing left; with ``loop`` the start again instead (``loops`` moves)."""
        if self._k < len(self._ts) or self._d < len(self._depth):
            return False
        if self.finished:
            return True
        if not self.loop or self.taken == 0:  # an empty selection must not spin
            self.finished = True
            return True
        self.loops += 1
        self._start(None)
        return not (len(self._ts) or len(self._depth))

    def _next_is_tick(self) -> bool:
        return self._k < len(self._ts) and (self._d >= len(self._depth) or self._ts[self._k] <= self._depth_ts[self._d])

    def next_ts(self) -> int | None:
        """Market time of the next row (None: nothing left)."""
        if self._at_end():
            return None
        return int(self._ts[self._k]) if self._next_is_tick() else int(self._depth_ts[self._d])

    def _rows(self, i: int, a: int, b: int) -> list[list]:
        """Rows a..b of symbol ``i``, fresh lists the caller may change (the gateway writes its
        own seq into them)."""
        c = self._cols[i]
        return list(map(list, zip(*(c[f][a:b].tolist() for f in TICK_COLUMNS))))

    def take(self, until_ts: int | None, max_rows: int, max_slice: int) -> list[Event]:
        """Events due by market time ``until_ts`` (None: whatever comes), at most ``max_rows``
        tick rows in all and ``max_slice`` in one ``ticks`` event (one symbol's consecutive
        rows).  With ``max_slice`` 1 the events are in exactly the recorded order across
        symbols; otherwise the rows of a window of the recording come grouped by symbol (in
        the order of each symbol's first row in it), each symbol's in its recorded order, and a
        window never spans a depth, which comes after every tick before it.  A loop back to
        the start ends the call (the caller re-anchors its clock: :attr:`loops` moved)."""
        out: list[Event] = []
        rows_left = max_rows
        loops = self.loops
        ts_all, who = self._ts, self._who
        syms = self.symbols
        was = gc.isenabled()
        gc.disable()  # fresh tuples of scalars cannot form cycles; collecting them is a third of the cost
        try:
            while rows_left > 0 and not self._at_end() and self.loops == loops:
                if not self._next_is_tick():
                    d = self._depth[self._d]
                    if until_ts is not None and d.ts > until_ts:
                        break
                    out.append(("depth", d.symbol, d))
                    self._d += 1
                    self.position_ts = d.ts
                    continue
                k = self._k
                end = min(len(ts_all), k + rows_left)
                if self._d < len(self._depth):
                    end = k + int(np.searchsorted(ts_all[k:end], self._depth_ts[self._d], "right"))
                if until_ts is not None and ts_all[end - 1] > until_ts:
                    end = k + int(np.searchsorted(ts_all[k:end], until_ts, "right"))
                if end <= k:
                    break
                w = who[k:end]
                if max_slice == 1:
                    runs = np.flatnonzero(np.diff(w)) + 1
                    bounds = [0, *runs.tolist(), end - k]
                    groups = [(int(w[a]), b - a) for a, b in zip(bounds[:-1], bounds[1:])]
                else:
                    first, idx = np.unique(w, return_index=True)
                    counts = np.bincount(w, minlength=len(syms))
                    groups = [(int(first[j]), int(counts[first[j]])) for j in np.argsort(idx, kind="stable")]
                nxt = self._next
                for i, n in groups:
                    a = nxt[i]
                    rows = self._rows(i, a, a + n)
                    nxt[i] = a + n
                    if n <= max_slice:
                        out.append(("ticks", syms[i], rows))
                    else:
                        out.extend(("ticks", syms[i], rows[j:j + max_slice]) for j in range(0, n, max_slice))
                self._k = end
                self.taken += end - k
                rows_left -= end - k
                self.position_ts = int(ts_all[end - 1])
        finally:
            if was:
                gc.enable()
        return out


class MarketClock:
    """Market time from the wall clock at ``speed`` market seconds per wall second.

    Anchored at (wall ``t0``, market ``m0``): market time at ``now`` is
    ``m0 + (now - t0) * speed``.  ``speed`` 0 means no pacing (:meth:`due_by` is None).
    """

    __slots__ = ("speed", "t0", "m0")

    def __init__(self, speed: float, wall: float, market: int):
        self.speed = speed
        self.t0 = wall
        self.m0 = market

    def anchor(self, wall: float, market: int) -> None:
        self.t0, self.m0 = wall, int(market)

    def market_at(self, wall: float) -> int:
        if self.speed <= 0:
            return self.m0
        return self.m0 + int((wall - self.t0) * self.speed * NS)

    def due_by(self, wall: float) -> int | None:
        """Latest market time due at ``wall`` (None: everything is, speed 0)."""
        return None if self.speed <= 0 else self.market_at(wall)

    def wall_at(self, market: int) -> float:
        """When market time ``market`` comes (now for speed 0)."""
        if self.speed <= 0:
            return self.t0
        return self.t0 + (market - self.m0) / (self.speed * NS)


def iso_ns(ts: int) -> str:
    """``2026-12-03 14:32:05`` (UTC) for a market time in ns, for logs and gauges' readers."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts / NS))


__all__ = ["Event", "MarketClock", "NS", "RecordingFeed", "event_ts", "iso_ns"]
