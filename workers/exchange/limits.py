"""Hard risk limits enforced by the exchange gateway itself.

The executor and the window check their own (tighter) limits before an order leaves them, but
the orders endpoint also takes requests from anyone who can reach it: a script, a foreign
client, a buggy strategy.  These limits are the last line: no client can bypass them.  They
reuse the executor's :class:`RiskChecker`, with looser defaults and without a kill switch.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from workers.config import add_options, at_least, from_namespace, option, positive
from workers.exchange.client import Order
from workers.executor.risk import Decision, RiskChecker, RiskLimits
from workers.protocol import OrderType, Side

DEFAULTS = RiskLimits(max_order_qty=10_000, max_position=50_000, price_band_pct=20.0, max_orders_per_sec=50_000)


_GROUP = "hard limits (enforced for every client of the orders endpoint)"


@dataclass(frozen=True)
class HardLimitsConfig:
    """The gateway's hard-limit options; their defaults are :data:`DEFAULTS`."""

    hard_max_order_qty: int = option(DEFAULTS.max_order_qty, "largest order quantity", check=at_least(1), group=_GROUP)
    hard_max_position: int = option(DEFAULTS.max_position, "largest absolute position per symbol, working orders included", check=at_least(0), group=_GROUP)
    hard_price_band_pct: float = option(DEFAULTS.price_band_pct, "a limit price must be within this % of the last trade", check=positive, group=_GROUP)
    hard_max_orders_per_sec: int = option(
        DEFAULTS.max_orders_per_sec, "new orders accepted in any one-second window, all clients together", check=at_least(1), group=_GROUP
    )

    def __post_init__(self) -> None:
        self.limits()  # RiskLimits' own checks, at start-up

    def limits(self) -> RiskLimits:
        return RiskLimits(
            max_order_qty=self.hard_max_order_qty,
            max_position=self.hard_max_position,
            price_band_pct=self.hard_price_band_pct,
            max_orders_per_sec=self.hard_max_orders_per_sec,
        )


def add_hard_limit_args(p: argparse.ArgumentParser) -> None:
    add_options(p, HardLimitsConfig)


class HardLimits:
    def __init__(self, limits: RiskLimits):
        self.checker = RiskChecker(limits)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> HardLimits:
        """From the namespace's hard_* options (ConfigError naming a bad one)."""
        return cls(from_namespace(HardLimitsConfig, args).limits())

    def on_last(self, symbol: str, price: float) -> None:
        self.checker.set_last(symbol, price)

    def check(self, side: Side, symbol: str, qty: int, order_type: OrderType, limit_price: float | None, position: int, pending: int) -> Decision:
        """May an order of ``qty`` go out?  ``pending``: the signed remaining quantity of the
        symbol's other working orders.  The price band judges the price the order would trade
        at now: its limit (limit, stop_limit), else the last trade (market, and the stop kinds,
        which trade at the market once triggered)."""
        last = self.checker.last_prices.get(symbol)
        if last is None:
            # No market seen (yet, or a broker without a tick feed): the price band cannot be
            # judged; the exchange itself decides about market orders without a market.
            price = limit_price if limit_price is not None else 1.0
            last = price
        else:
            price = limit_price if order_type.has_limit and limit_price is not None else last
        return self.checker.check(side, symbol, qty, price, time.monotonic(), position, pending, last=last)

    def check_order(self, order: Order, position: int, pending: int) -> Decision:
        """:meth:`check` for an order as it would stand (a replace, a bracket child growing):
        its whole ``qty`` against the largest order, its remaining quantity (``qty`` minus
        what has filled) against the position, ``pending`` not including the order itself."""
        lim = self.checker.limits
        if order.qty > lim.max_order_qty:
            return Decision(False, f"qty {order.qty} exceeds max order qty {lim.max_order_qty}")
        return self.check(order.side, order.symbol, order.remaining, order.order_type, order.limit_price, position, pending)
