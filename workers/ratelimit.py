"""One rate limiter for TickDesk, and a rate-limited logger built on it.

* :class:`TokenBucket` -- ``rate`` per second on average, bursts of up to ``burst``.  Used
  where a rate is the point (orders per second).  A refused :meth:`~TokenBucket.take`
  costs nothing, so what is refused never uses up budget.
* :class:`KeyedLimiter` -- one bucket per key (a kind of log line, a symbol, a client), each
  remembering how many calls it refused since it last allowed one.
* :class:`RateLimitedLogger` -- at most one line per key per ``interval``, and the next line
  that gets through says how many similar ones were suppressed meanwhile.  Floods of bad
  frames or handler errors then cost one line every few seconds, not a disk.

Time is injected (``clock``): a :class:`workers.clock.Clock` (its ``monotonic()`` is read, so a
worker's limiter runs on the worker's clock) or a plain function returning monotonic seconds.
Tests pass a :class:`~workers.clock.ManualClock` or a fake function.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

from workers.clock import Clock

#: a function returning monotonic seconds (``time.monotonic``)
MonotonicFn = Callable[[], float]
#: what ``clock=`` accepts
ClockLike = Clock | MonotonicFn


def monotonic_of(clock: ClockLike) -> MonotonicFn:
    """The monotonic reading of ``clock``: its ``monotonic`` method, or ``clock`` itself."""
    reading = getattr(clock, "monotonic", None)
    if callable(reading):
        return reading
    if callable(clock):
        return clock
    raise TypeError(f"clock must be a workers.clock.Clock or a function returning seconds, got {clock!r}")


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    __slots__ = ("rate", "burst", "tokens", "_stamp", "_clock")

    def __init__(self, rate: float, burst: float = 1.0, clock: ClockLike = time.monotonic):
        if not rate > 0 or not burst >= 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got rate={rate!r} burst={burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self._clock = monotonic_of(clock)
        self._stamp = self._clock()

    def _refill(self, now: float) -> None:
        # a clock that steps back (a test, a suspended VM) must not drain the bucket
        if now > self._stamp:
            self.tokens = min(self.burst, self.tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def available(self, now: float | None = None) -> float:
        self._refill(self._clock() if now is None else now)
        return self.tokens

    def take(self, n: float = 1.0, now: float | None = None) -> bool:
        """Spend ``n`` tokens if there are that many; False (nothing spent) otherwise."""
        self._refill(self._clock() if now is None else now)
        # the epsilon: one interval later, interval * (1 / interval) may come out a hair under 1
        if self.tokens >= n - 1e-9:
            self.tokens = max(0.0, self.tokens - n)
            return True
        return False

    def wait_time(self, n: float = 1.0, now: float | None = None) -> float:
        """Seconds until ``n`` tokens are there (0: now)."""
        self._refill(self._clock() if now is None else now)
        return max(0.0, (n - self.tokens) / self.rate)

    def reset(self) -> None:
        """Full again (e.g. after the limit changed)."""
        self.tokens = self.burst
        self._stamp = self._clock()


class SlidingWindow:
    """At most ``limit`` events in any ``span`` seconds: the exact rule an order-rate limit
    needs (a token bucket admits up to twice its rate across the boundary of one second).

    The limit is given per call, so a limit changed at run time applies at once."""

    __slots__ = ("span", "_times")

    def __init__(self, span: float = 1.0):
        self.span = span
        self._times: collections.deque[float] = collections.deque()  # oldest first

    def count(self, now: float) -> int:
        """Events in the ``span`` seconds before ``now``."""
        times = self._times
        while times and now - times[0] >= self.span:
            times.popleft()
        return len(times)

    def admits(self, now: float, limit: int) -> bool:
        """Whether one more event at ``now`` stays within ``limit`` (records nothing)."""
        return self.count(now) < limit

    def record(self, now: float) -> None:
        self._times.append(now)


class KeyedLimiter:
    """One :class:`TokenBucket` per key: ``burst`` events at once, then one per ``interval``.

    The default (burst 1) is "at most one per interval per key", what log lines want.
    At most ``max_keys`` keys are kept so a stream of made-up keys cannot grow it: when full,
    the oldest key is forgotten.
    """

    __slots__ = ("interval", "burst", "max_keys", "_clock", "_buckets", "_suppressed")

    def __init__(self, interval: float = 5.0, burst: float = 1.0, clock: ClockLike = time.monotonic, max_keys: int = 1024):
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        self.interval = float(interval)
        self.burst = burst
        self.max_keys = max_keys
        self._clock = monotonic_of(clock)
        self._buckets: dict[Hashable, TokenBucket] = {}
        self._suppressed: dict[Hashable, int] = {}

    def allow(self, key: Hashable, now: float | None = None) -> bool:
        """May one more event of ``key`` happen now?  A refusal is counted (:meth:`suppressed`)."""
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                oldest = next(iter(self._buckets))
                del self._buckets[oldest]
                self._suppressed.pop(oldest, None)
            b = self._buckets[key] = TokenBucket(1.0 / self.interval, self.burst, self._clock)
        if b.take(1.0, now):
            return True
        self._suppressed[key] = self._suppressed.get(key, 0) + 1
        return False

    def suppressed(self, key: Hashable) -> int:
        """Events of ``key`` refused since it was last allowed and its count taken."""
        return self._suppressed.get(key, 0)

    def take_suppressed(self, key: Hashable) -> int:
        """The refused count of ``key``, reset to 0 (to report it with the next allowed event)."""
        return self._suppressed.pop(key, 0)

    def total_suppressed(self) -> int:
        return sum(self._suppressed.values())


class RateLimitedLogger:
    """At most one line per key per ``interval``, with a count of what was suppressed.

    ``logger`` is a :class:`logging.Logger`, or anything with ``log(level, msg, *args)``.
    """

    def __init__(self, logger: logging.Logger, interval: float = 5.0, clock: ClockLike = time.monotonic):
        self._log = logger
        self.limiter = KeyedLimiter(interval, 1.0, clock)

    def log(self, level: int, key: Hashable, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` at ``level`` unless ``key`` logged within the interval; True if logged."""
        if not self.limiter.allow(key):
            return False
        skipped = self.limiter.take_suppressed(key)
        if skipped:
            msg = f"{msg} ({skipped} similar suppressed)"
        self._log.log(level, msg, *args)
        return True

    def debug(self, key: Hashable, msg: str, *args: Any) -> bool:
        return self.log(logging.DEBUG, key, msg, *args)

    def info(self, key: Hashable, msg: str, *args: Any) -> bool:
        return self.log(logging.INFO, key, msg, *args)

    def warning(self, key: Hashable, msg: str, *args: Any) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def error(self, key: Hashable, msg: str, *args: Any) -> bool:
        return self.log(logging.ERROR, key, msg, *args)


__all__ = ["ClockLike", "KeyedLimiter", "MonotonicFn", "RateLimitedLogger", "SlidingWindow", "TokenBucket", "monotonic_of"]
