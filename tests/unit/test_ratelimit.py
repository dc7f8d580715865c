"""The one rate limiter (workers/ratelimit.py), on a fake clock."""

from __future__ import annotations

import logging

import pytest

from workers.ratelimit import KeyedLimiter, RateLimitedLogger, TokenBucket


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_token_bucket_bursts_then_refills_at_the_rate():
    clk = FakeClock()
    b = TokenBucket(rate=10, burst=3, clock=clk)
    assert [b.take() for _ in range(4)] == [True, True, True, False]
    assert b.wait_time() == pytest.approx(0.1)
    clk.t += 0.1
    assert b.take() and not b.take()
    clk.t += 10  # never more than the burst saved up
    assert b.available() == 3
    clk.t -= 50  # a clock stepping back does not drain it
    assert b.available() == 3


def test_a_refused_take_spends_nothing():
    clk = FakeClock()
    b = TokenBucket(rate=1, burst=2, clock=clk)
    assert not b.take(3) and b.available() == 2 and b.take(2)
    with pytest.raises(ValueError):
        TokenBucket(rate=0)


@pytest.mark.parametrize("interval", [0.1, 0.3, 5.0, 7.0])
def test_keyed_limiter_once_per_interval_per_key(interval):
    clk = FakeClock()
    lim = KeyedLimiter(interval, clock=clk)
    assert lim.allow("a") and lim.allow("b")
    assert not lim.allow("a") and not lim.allow("a")
    assert lim.suppressed("a") == 2 and lim.suppressed("b") == 0
    clk.t += interval  # exactly one interval later it is allowed again (no float shortfall)
    assert lim.allow("a")
    assert lim.take_suppressed("a") == 2 and lim.suppressed("a") == 0


def test_keyed_limiter_is_bounded():
    lim = KeyedLimiter(1.0, clock=FakeClock(), max_keys=3)
    for k in range(10):
        assert lim.allow(k)
    assert len(lim._buckets) == 3


def test_rate_limited_logger_reports_what_it_suppressed(caplog):
    clk = FakeClock()
    rl = RateLimitedLogger(logging.getLogger("tickdesk.test.rl"), interval=5.0, clock=clk)
    with caplog.at_level(logging.INFO, "tickdesk.test.rl"):
        assert rl.warning("bad", "bad frame: %s", "x")
        for _ in range(4):
            assert not rl.warning("bad", "bad frame: %s", "y")
        assert rl.error("other", "other thing")
        clk.t += 5.0
        assert rl.warning("bad", "bad frame: %s", "z")
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["bad frame: x", "other thing", "bad frame: z (4 similar suppressed)"]
    assert caplog.records[1].levelno == logging.ERROR


def test_a_workers_clock_drives_every_limiter():
    from workers.clock import ManualClock

    clk = ManualClock()
    b = TokenBucket(rate=1, burst=1, clock=clk)
    lim = KeyedLimiter(2.0, clock=clk)
    assert b.take() and not b.take() and lim.allow("a") and not lim.allow("a")
    clk.advance(1.0)
    assert b.take() and not lim.allow("a")
    clk.advance(1.0)
    assert lim.allow("a") and lim.take_suppressed("a") == 2
    with pytest.raises(TypeError):
        TokenBucket(rate=1, clock=42)


def test_sliding_window_admits_at_most_limit_in_any_span():
    from workers.ratelimit import SlidingWindow

    w = SlidingWindow(1.0)
    for t in (0.0, 0.1, 0.2):
        assert w.admits(t, 3)
        w.record(t)
    assert not w.admits(0.9, 3) and w.count(0.9) == 3
    assert w.admits(1.0, 3) and w.count(1.0) == 2  # the event at 0.0 left the window
    assert not w.admits(1.0, 2)  # a lower limit applies at once
