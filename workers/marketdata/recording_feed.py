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

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

NS = 1_000_000_000

#: an event as :meth:`workers.recording.Recording.events` yields it: (kind, symbol, payload),
#: payload a list of tick rows (``ticks``) or a :class:`workers.protocol.Depth` (``depth``)
Event = tuple[str, str, Any]


def event_ts(kind: str, payload: Any, i: int = 0) -> int:
    """Market time of row ``i`` of a ``ticks`` event, or of a ``depth`` event."""
    return payload[i][1] if kind == "ticks" else payload.ts


class RecordingFeed:
    """The events of ``recording`` (anything with ``symbols``, ``first_ts``, ``last_ts``,
    ``n_ticks`` and ``events(kinds, start_ts)``), taken in order up to a market time.

    Attributes:
        position_ts: market time of the last row taken (``first_ts`` before any, the target
            of the last seek right after it).
        loops: times ``loop`` started the recording over.
        finished: the end was reached (never with ``loop``).
    """

    KINDS = ("ticks", "depth")

    def __init__(self, recording, symbols: Iterable[str] | None = None, loop: bool = False):
        if symbols:
            recording = recording.only(list(symbols)) if hasattr(recording, "only") else recording
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
        self._events: Iterator[Event] = iter(self.recording.events(self.KINDS, start_ts=start_ts))
        self._cur: Event | None = None
        self._i = 0  # rows of the current ticks event already taken

    # ------------------------------------------------------------------ position
    @property
    def fraction(self) -> float:
        span = self.last_ts - self.first_ts
        if span <= 0:
            return 1.0 if self.finished else 0.0
        return min(1.0, max(0.0, (self.position_ts - self.first_ts) / span))

    def seek(self, ts: int) -> int:
        """Go to market time ``ts`` (clamped to the recording): the next row taken is the first
        at or after it.  Returns the time gone to.  Costs a new pass of the reader over the
        recording (its rows are built again), about a second per million ticks."""
        ts = min(max(int(ts), self.first_ts), self.last_ts)
        self._start(ts)
        self.finished = False
        self.position_ts = ts
        return ts

    def seek_fraction(self, f: float) -> int:
        return self.seek(self.first_ts + round((self.last_ts - self.first_ts) * min(1.0, max(0.0, f))))

    def _current(self) -> Event | None:
        """The event the next row comes from (None at the end; with ``loop`` the start again)."""
        cur = self._cur
        while cur is None:
            if self.finished:
                return None
            cur = next(self._events, None)
            if cur is None:
                if not self.loop or self.taken == 0:  # an empty selection must not spin
                    self.finished = True
                    return None
                self.loops += 1
                self._start(None)
                continue
            if cur[0] == "ticks" and not cur[2]:
                cur = None
                continue
            self._cur, self._i = cur, 0
        return cur

    def next_ts(self) -> int | None:
        """Market time of the next row (None: nothing left)."""
        cur = self._current()
        return None if cur is None else event_ts(cur[0], cur[2], self._i)

    def take(self, until_ts: int | None, max_rows: int, max_slice: int) -> list[Event]:
        """Events due by market time ``until_ts`` (None: whatever comes), in recorded order,
        with at most ``max_rows`` tick rows in all and ``max_slice`` in one slice.  A loop back
        to the start ends the call (the caller re-anchors its clock: :attr:`loops` moved)."""
        out: list[Event] = []
        rows_left = max_rows
        loops = self.loops
        while rows_left > 0:
            cur = self._current()
            if cur is None or self.loops != loops:
                break
            kind, sym, payload = cur
            if kind != "ticks":
                if until_ts is not None and payload.ts > until_ts:
                    break
                out.append(cur)
                self.position_ts = payload.ts
                self._cur = None
                continue
            i, n = self._i, len(payload)
            j = min(n, i + min(rows_left, max_slice))
            if until_ts is not None and payload[j - 1][1] > until_ts:
                # only part of the slice is due: the rows up to until_ts (ts ascend within an event)
                lo, hi = i, j - 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if payload[mid][1] > until_ts:
                        hi = mid
                    else:
                        lo = mid + 1
                j = lo
                if j == i:
                    break
            out.append(("ticks", sym, payload[i:j] if (i or j < n) else payload))
            rows_left -= j - i
            self.taken += j - i
            self.position_ts = payload[j - 1][1]
            if j >= n:
                self._cur = None
            else:
                self._i = j
                if until_ts is not None and payload[j][1] > until_ts:
                    break
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
