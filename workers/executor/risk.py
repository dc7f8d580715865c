"""Pre-trade risk checks: pure logic, no zmq, shared by the executor and the manual ticket.

A :class:`RiskChecker` holds the :class:`RiskLimits`, the last traded price per symbol and
the sliding one-second window of recently accepted orders.  While the kill switch is on, only
an order that reduces a position passes (:func:`reduces`): a trader must always be able to
close what is open, which a switch refusing everything prevented.  :meth:`RiskChecker.check`
answers one question -- may this order go out now? -- with a :class:`Decision` whose reason
is a sentence a trader can read in a blotter.  Checks run cheapest and most absolute first
(kill switch, allow-list, size) and the order-rate limit last, so a rejected order never
uses up rate budget.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from workers.protocol import Side
from workers.ratelimit import SlidingWindow
from workers.symbols import parse_symbols


@dataclass
class RiskLimits:
    """Limits for one executor (or one manual ticket).  Defaults suit the simulated feed."""

    #: largest quantity of a single order
    max_order_qty: int = 1000
    #: largest absolute position per symbol, counting working orders (see check)
    max_position: int = 2000
    #: an order's price must lie within this percentage of the symbol's last trade
    price_band_pct: float = 5.0
    #: orders accepted in any sliding one-second window
    max_orders_per_sec: int = 20
    #: while on, reject every order that would increase a position (one that reduces it passes)
    kill_switch: bool = False
    #: symbols that may be traded; empty means all
    allowed_symbols: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.max_order_qty < 1:
            raise ValueError("max_order_qty must be at least 1")
        if self.max_position < 0:
            raise ValueError("max_position must be >= 0")
        if not (math.isfinite(self.price_band_pct) and self.price_band_pct > 0):
            raise ValueError("price_band_pct must be a positive number")
        if self.max_orders_per_sec < 1:
            raise ValueError("max_orders_per_sec must be at least 1")
        # the one symbol rule: an allow-list of "aapl" must match the feed's AAPL
        self.allowed_symbols = frozenset(parse_symbols(self.allowed_symbols))

    def to_dict(self) -> dict[str, Any]:
        """Plain map for stats, commands and msgpack (the allow-list as a sorted list)."""
        d = dataclasses.asdict(self)
        d["allowed_symbols"] = sorted(self.allowed_symbols)
        return d

    def updated(self, changes: dict[str, Any]) -> RiskLimits:
        """A copy with ``changes`` applied, each value coerced to the field's type.

        Raises ValueError naming the field for an unknown field or a value of the wrong type,
        so a bad ``set_limits`` command leaves the current limits untouched.
        """
        kw = dataclasses.asdict(self)
        for name, value in changes.items():
            if name not in kw:
                raise ValueError(f"unknown limit {name!r}; known: {', '.join(kw)}")
            kw[name] = _coerce(name, value)
        return RiskLimits(**kw)


def _coerce(name: str, value: Any) -> Any:
    if name == "allowed_symbols":
        if value is None:
            return frozenset()
        if isinstance(value, (str, list, tuple, set, frozenset)):
            try:
                return frozenset(parse_symbols(value))
            except ValueError as e:
                raise ValueError(f"allowed_symbols: {e}") from None
        raise ValueError("allowed_symbols must be a list of symbols or a comma-separated string")
    if name == "kill_switch":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "on", "yes", "0", "false", "off", "no"):
            return value.lower() in ("1", "true", "on", "yes")
        raise ValueError("kill_switch must be true or false")
    if name == "price_band_pct":
        if isinstance(value, bool):
            raise ValueError("price_band_pct must be a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"price_band_pct must be a number, got {value!r}") from None
    # the integer limits
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


@dataclass(frozen=True, slots=True)
class Decision:
    accepted: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.accepted


ACCEPT = Decision(True, "")

KILL_SWITCH_REASON = "kill switch is on: only orders that reduce a position are accepted"


def reduces(exposure: int, signed: int) -> bool:
    """Does an order of ``signed`` quantity bring ``exposure`` closer to flat without crossing
    it?  What the kill switch lets through: closing or cutting a position, never opening one
    on the other side."""
    return exposure != 0 and signed != 0 and (exposure > 0) != (signed > 0) and abs(signed) <= abs(exposure)


class RiskChecker:
    """Stateful only in what risk needs to remember: last prices and the order-rate window."""

    def __init__(self, limits: RiskLimits | None = None):
        self.limits = limits or RiskLimits()
        self.last_prices: dict[str, float] = {}
        # accepted orders in the last second (the one rate-limit module's sliding window)
        self._rate = SlidingWindow(1.0)

    def set_last(self, symbol: str, price: float) -> None:
        self.last_prices[symbol] = price

    def orders_in_window(self, now: float) -> int:
        return self._rate.count(now)

    def check(
        self,
        side: Side | str,
        symbol: str,
        qty: int,
        price: float,
        now: float,
        position: int = 0,
        pending: int = 0,
        *,
        last: float | None = None,
        record: bool = True,
    ) -> Decision:
        """May an order of ``qty`` ``symbol`` on ``side`` at about ``price`` go out at ``now``?

        ``now`` is monotonic seconds (the rate window's clock).  ``position`` is the current
        signed position and ``pending`` the signed remaining quantity of working orders in the
        symbol.  ``last`` overrides the remembered last price.  An accepted order is counted in
        the rate window unless ``record`` is false (a "what if" check).
        """
        lim = self.limits
        signed = qty if (side if side.__class__ is Side else Side(side)) is Side.BUY else -qty
        exposure = position + pending
        # First, whatever else is wrong with the order: the trader must read that the switch is
        # why.  Working orders count in the exposure, so a sell against a long that a working
        # sell already closes would open a short and is refused.
        if lim.kill_switch and not reduces(exposure, signed):
            return Decision(False, KILL_SWITCH_REASON)
        if lim.allowed_symbols and symbol not in lim.allowed_symbols:
            return Decision(False, f"symbol {symbol} is not in the allow-list")
        if qty <= 0:
            return Decision(False, f"qty {qty} must be positive")
        if qty > lim.max_order_qty:
            return Decision(False, f"qty {qty} exceeds max order qty {lim.max_order_qty}")

        ref = self.last_prices.get(symbol) if last is None else last
        if ref is None or not ref > 0:
            return Decision(False, f"no last price for {symbol}")
        if not math.isfinite(price) or abs(price - ref) > ref * lim.price_band_pct / 100.0:
            return Decision(False, f"price {price:.2f} outside {lim.price_band_pct:.1f}% band around last {ref:.2f}")

        projected = exposure + signed
        # An order that brings the exposure closer to flat is always allowed: refusing it
        # would keep a book that is already beyond its limit (manual trades, a limit lowered
        # at run time) stuck there.
        if abs(projected) > lim.max_position and abs(projected) >= abs(exposure):
            return Decision(False, f"position would be {projected}, beyond max {lim.max_position}")

        if not self._rate.admits(now, lim.max_orders_per_sec):
            return Decision(False, f"order rate limit {lim.max_orders_per_sec}/s reached")
        if record:
            self._rate.record(now)
        return ACCEPT
