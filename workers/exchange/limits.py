"""Hard risk limits enforced by the exchange gateway itself.

The executor and the window check their own (tighter) limits before an order leaves them, but
the orders endpoint also takes requests from anyone who can reach it: a script, a foreign
client, a buggy strategy.  These limits are the last line: no client can bypass them.  They
reuse the executor's :class:`RiskChecker`, with looser defaults and without a kill switch.
"""

from __future__ import annotations

import argparse
import time

from workers.executor.risk import Decision, RiskChecker, RiskLimits
from workers.protocol import OrderType, Side

DEFAULTS = RiskLimits(max_order_qty=10_000, max_position=50_000, price_band_pct=20.0, max_orders_per_sec=50_000)


def add_hard_limit_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hard limits (enforced for every client of the orders endpoint)")
    g.add_argument("--hard-max-order-qty", type=int, default=DEFAULTS.max_order_qty, help=f"largest order quantity (default {DEFAULTS.max_order_qty})")
    g.add_argument("--hard-max-position", type=int, default=DEFAULTS.max_position, help=f"largest absolute position per symbol, working orders included (default {DEFAULTS.max_position})")
    g.add_argument("--hard-price-band-pct", type=float, default=DEFAULTS.price_band_pct, help=f"a limit price must be within this %% of the last trade (default {DEFAULTS.price_band_pct})")
    g.add_argument("--hard-max-orders-per-sec", type=int, default=DEFAULTS.max_orders_per_sec, help=f"new orders accepted in any one-second window, all clients together (default {DEFAULTS.max_orders_per_sec})")


class HardLimits:
    def __init__(self, limits: RiskLimits):
        self.checker = RiskChecker(limits)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> HardLimits:
        return cls(
            RiskLimits(
                max_order_qty=args.hard_max_order_qty,
                max_position=args.hard_max_position,
                price_band_pct=args.hard_price_band_pct,
                max_orders_per_sec=args.hard_max_orders_per_sec,
            )
        )

    def on_last(self, symbol: str, price: float) -> None:
        self.checker.set_last(symbol, price)

    def check(self, side: Side, symbol: str, qty: int, order_type: OrderType, limit_price: float | None, position: int, pending: int) -> Decision:
        last = self.checker.last_prices.get(symbol)
        if last is None:
            # No market seen (yet, or a broker without a tick feed): the price band cannot be
            # judged; the exchange itself decides about market orders without a market.
            price = limit_price if limit_price is not None else 1.0
            last = price
        else:
            price = limit_price if order_type is OrderType.LIMIT and limit_price is not None else last
        return self.checker.check(side, symbol, qty, price, time.monotonic(), position, pending, last=last)
