"""Time as a dependency: a :class:`Clock` is passed in, never read from ``time`` directly.

Deadlines, backoffs and rate windows then run on a :class:`ManualClock` in tests (advanced by
hand, so a 30 s backoff takes no time and a deadline is hit exactly, not "about"), and on the
:class:`LiveClock` in production.  Two readings, because they answer different questions:

* ``monotonic()`` -- seconds on a clock that never steps back: every deadline, timeout,
  backoff and rate window.  Its origin means nothing; only differences do.
* ``time_ns()`` -- nanoseconds since the Unix epoch: what goes on the wire (``ts`` fields) and
  latency hops measured across processes.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds for deadlines and intervals (never steps back)."""
        ...

    def time_ns(self) -> int:
        """Wall-clock nanoseconds since the Unix epoch (wire timestamps)."""
        ...


class LiveClock:
    """The operating system's clocks."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return time.time_ns()

    def __repr__(self) -> str:
        return "LiveClock()"


#: one is enough: it has no state
LIVE_CLOCK = LiveClock()


class ManualClock:
    """A clock that moves only when told to.  Both readings move together, so a latency
    computed from ``time_ns`` agrees with a deadline computed from ``monotonic``.

    It starts at a non-zero time on purpose: code that treats 0 as "never" (a last-heartbeat
    field, say) must not be fooled by a test that happens to start at the epoch.
    """

    __slots__ = ("_mono", "_wall_ns")
    __test__ = False  # not a pytest test class, whatever module imports it

    def __init__(self, monotonic: float = 1_000.0, time_ns: int = 1_700_000_000_000_000_000):
        self._mono = float(monotonic)
        self._wall_ns = int(time_ns)

    def monotonic(self) -> float:
        return self._mono

    def time_ns(self) -> int:
        return self._wall_ns

    def advance(self, seconds: float) -> float:
        """Move both readings forward; returns the new ``monotonic()``."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds} s)")
        self._mono += seconds
        self._wall_ns += round(seconds * 1e9)
        return self._mono

    def advance_to(self, monotonic: float) -> float:
        """Move forward to ``monotonic`` (a deadline, say); never back."""
        return self.advance(max(0.0, monotonic - self._mono))

    def __repr__(self) -> str:
        return f"ManualClock(monotonic={self._mono!r})"


#: NautilusTrader's name for the same idea
TestClock = ManualClock

__all__ = ["LIVE_CLOCK", "Clock", "LiveClock", "ManualClock", "TestClock"]
