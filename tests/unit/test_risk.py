"""Pre-trade risk checks: each limit with its reason, the rate window, the kill switch."""

from __future__ import annotations

import pytest

from workers.executor.risk import KILL_SWITCH_REASON, Decision, RiskChecker, RiskLimits, reduces
from workers.protocol import Side
from workers.symbols import parse_symbols


@pytest.fixture
def checker() -> RiskChecker:
    c = RiskChecker(RiskLimits())
    c.set_last("AAPL", 100.0)
    return c


def test_defaults_suit_the_simulated_feed():
    lim = RiskLimits()
    assert (lim.max_order_qty, lim.max_position, lim.price_band_pct, lim.max_orders_per_sec) == (1000, 2000, 5.0, 20)
    assert lim.kill_switch is False and lim.allowed_symbols == frozenset()


def test_accepts_a_normal_order(checker):
    d = checker.check(Side.BUY, "AAPL", 100, 100.5, now=0.0)
    assert d == Decision(True, "") and d


def test_max_order_qty(checker):
    d = checker.check(Side.BUY, "AAPL", 5000, 100.0, now=0.0)
    assert not d.accepted
    assert d.reason == "qty 5000 exceeds max order qty 1000"
    assert checker.check("sell", "AAPL", 1000, 100.0, now=0.0).accepted  # the limit itself is allowed


def test_max_position_counts_position_and_pending(checker):
    d = checker.check(Side.BUY, "AAPL", 500, 100.0, now=0.0, position=1500, pending=500)
    assert d == Decision(False, "position would be 2500, beyond max 2000")
    # short side too
    d = checker.check(Side.SELL, "AAPL", 1000, 100.0, now=0.0, position=-1500)
    assert d == Decision(False, "position would be -2500, beyond max 2000")
    assert checker.check(Side.BUY, "AAPL", 500, 100.0, now=0.0, position=1500).accepted


def test_reducing_an_oversized_position_is_allowed(checker):
    # beyond the limit already (manual trades, a lowered limit): selling brings it back
    assert checker.check(Side.SELL, "AAPL", 200, 100.0, now=0.0, position=2500).accepted
    # pending sells count: 2500 - 2000 pending - 1000 = -500, inside the limit
    assert checker.check(Side.SELL, "AAPL", 1000, 100.0, now=0.0, position=2500, pending=-2000).accepted
    # ... but not flipping through to a bigger position on the other side
    checker.limits = RiskLimits(max_position=100, max_order_qty=1000)
    d = checker.check(Side.SELL, "AAPL", 1000, 100.0, now=0.0, position=150)
    assert d == Decision(False, "position would be -850, beyond max 100")


def test_price_band(checker):
    d = checker.check(Side.BUY, "AAPL", 10, 120.0, now=0.0)
    assert d == Decision(False, "price 120.00 outside 5.0% band around last 100.00")
    d = checker.check(Side.SELL, "AAPL", 10, 94.99, now=0.0)
    assert d == Decision(False, "price 94.99 outside 5.0% band around last 100.00")
    assert checker.check(Side.BUY, "AAPL", 10, 105.0, now=0.0).accepted
    assert checker.check(Side.BUY, "AAPL", 10, 95.0, now=0.0).accepted


def test_price_band_uses_explicit_last_over_remembered(checker):
    assert not checker.check(Side.BUY, "AAPL", 10, 100.0, now=0.0, last=200.0).accepted
    assert checker.check(Side.BUY, "AAPL", 10, 200.0, now=0.0, last=200.0).accepted


def test_no_last_price(checker):
    d = checker.check(Side.BUY, "XYZ", 10, 50.0, now=0.0)
    assert d == Decision(False, "no last price for XYZ")


def test_kill_switch_refuses_whatever_increases_a_position_first(checker):
    checker.limits = RiskLimits(kill_switch=True)
    # flat: anything opens a position; refused before any other check says something else
    for args in [(Side.BUY, "AAPL", 10, 100.0), (Side.SELL, "XYZ", 99999, 1.0)]:
        assert checker.check(*args, now=0.0) == Decision(False, KILL_SWITCH_REASON)
    assert KILL_SWITCH_REASON.startswith("kill switch")
    # long 100: adding, or selling through flat into a short, is refused
    assert checker.check(Side.BUY, "AAPL", 10, 100.0, now=0.0, position=100) == Decision(False, KILL_SWITCH_REASON)
    assert checker.check(Side.SELL, "AAPL", 150, 100.0, now=0.0, position=100) == Decision(False, KILL_SWITCH_REASON)
    # a working sell already closes it: one more sell would open a short
    assert checker.check(Side.SELL, "AAPL", 10, 100.0, now=0.0, position=100, pending=-100) == Decision(False, KILL_SWITCH_REASON)


def test_kill_switch_lets_an_order_that_reduces_a_position_through(checker):
    checker.limits = RiskLimits(kill_switch=True)
    assert checker.check(Side.SELL, "AAPL", 100, 100.0, now=0.0, position=100)  # closes
    assert checker.check(Side.SELL, "AAPL", 40, 100.0, now=1.0, position=100)  # cuts
    assert checker.check(Side.BUY, "AAPL", 30, 100.0, now=2.0, position=-30)  # covers a short
    # the other checks still apply to it
    assert checker.check(Side.SELL, "AAPL", 100, 200.0, now=3.0, position=100).reason.startswith("price 200.00 outside")


@pytest.mark.parametrize(("exposure", "signed", "expected"), [
    (0, 10, False), (0, -10, False), (100, -100, True), (100, -1, True), (100, -101, False), (100, 1, False),
    (-50, 50, True), (-50, 51, False), (-50, -1, False), (100, 0, False),
])
def test_reduces(exposure, signed, expected):
    assert reduces(exposure, signed) is expected


def test_allow_list(checker):
    checker.limits = RiskLimits(allowed_symbols=parse_symbols("MSFT, TSLA"))
    assert checker.check(Side.BUY, "AAPL", 10, 100.0, now=0.0) == Decision(False, "symbol AAPL is not in the allow-list")
    checker.set_last("MSFT", 300.0)
    assert checker.check(Side.BUY, "MSFT", 10, 300.0, now=0.0).accepted


def test_rate_limit_sliding_window(checker):
    checker.limits = RiskLimits(max_orders_per_sec=3)
    for t in (0.0, 0.1, 0.2):
        assert checker.check(Side.BUY, "AAPL", 1, 100.0, now=t).accepted
    d = checker.check(Side.BUY, "AAPL", 1, 100.0, now=0.5)
    assert d == Decision(False, "order rate limit 3/s reached")
    assert checker.orders_in_window(0.5) == 3
    # the window slides: at 1.05 the order of 0.0 has left it, the others have not
    assert checker.check(Side.BUY, "AAPL", 1, 100.0, now=1.05).accepted
    assert not checker.check(Side.BUY, "AAPL", 1, 100.0, now=1.09).accepted
    assert checker.check(Side.BUY, "AAPL", 1, 100.0, now=1.15).accepted


def test_rejected_orders_do_not_use_rate_budget(checker):
    checker.limits = RiskLimits(max_orders_per_sec=2)
    for _ in range(10):
        assert not checker.check(Side.BUY, "AAPL", 5000, 100.0, now=0.0).accepted
    assert checker.orders_in_window(0.0) == 0
    assert checker.check(Side.BUY, "AAPL", 1, 100.0, now=0.0, record=False).accepted
    assert checker.orders_in_window(0.0) == 0


def test_limits_update_coerces_and_validates():
    lim = RiskLimits()
    new = lim.updated({"max_order_qty": "50", "price_band_pct": 2, "kill_switch": "on", "allowed_symbols": ["AAPL"]})
    assert (new.max_order_qty, new.price_band_pct, new.kill_switch, new.allowed_symbols) == (50, 2.0, True, frozenset({"AAPL"}))
    assert lim.max_order_qty == 1000  # the original is untouched
    with pytest.raises(ValueError, match="unknown limit 'max_qty'"):
        lim.updated({"max_qty": 1})
    with pytest.raises(ValueError, match="max_order_qty must be an integer"):
        lim.updated({"max_order_qty": 1.5})
    with pytest.raises(ValueError, match="at least 1"):
        lim.updated({"max_orders_per_sec": 0})
    with pytest.raises(ValueError):
        lim.updated({"kill_switch": "maybe"})
    assert new.to_dict()["allowed_symbols"] == ["AAPL"]


def test_allow_list_follows_the_one_symbol_rule():
    # typed in lower case (a flag, TOML, set_limits), it still matches the feed's AAPL
    lim = RiskLimits(allowed_symbols=["aapl", " msft "])
    assert lim.allowed_symbols == frozenset({"AAPL", "MSFT"})
    assert RiskLimits().updated({"allowed_symbols": "tsla, aapl"}).allowed_symbols == frozenset({"TSLA", "AAPL"})
    with pytest.raises(ValueError, match="allowed_symbols: invalid symbol"):
        RiskLimits().updated({"allowed_symbols": ["AAPL", "BRK$B"]})
    with pytest.raises(ValueError):
        RiskLimits(allowed_symbols=["BAD!"])
