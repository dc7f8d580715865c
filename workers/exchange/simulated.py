"""The embedded exchange: a matching simulator driven by the market-data stream.

Rules (docs/exchange.md has the full story):

* Each tick sets the touch for its symbol: ``ask`` with ``ask_size`` shares for buyers,
  ``bid`` with ``bid_size`` for sellers.  That touch size is the liquidity available until
  the next tick of the symbol; every fill consumes it, oldest working order first.
* Market orders fill at the touch (buy at ask, sell at bid) up to the liquidity left; the
  remainder keeps working and fills on later ticks at their touch.  A market order for a
  symbol that has had no tick yet is rejected ("no market data for SYM").
* Limit orders rest until the market crosses them (buy: limit >= ask, fills at the ask,
  which is min(limit, ask); sell: limit <= bid, fills at the bid), up to the liquidity left;
  a marketable limit fills on arrival the same way.
* Order ids are ``O<n>`` and fill ids ``F<n>``; both counters are part of :meth:`state`, so
  the gateway journals them and they keep increasing across restarts.

The simulator keeps no history of its own: working orders come back through ``recover``
from the gateway's journal, and quotes come back with the next tick.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from workers import protocol as P
from workers.exchange.client import CancelResult, ExchangeClient, ExecEvent, FillEvent, FillRecord, Order, OrderEvent
from workers.protocol import OrderStatus, OrderType, Side

_BID, _ASK = 0, 1


class SimulatedExchange(ExchangeClient):
    name = "simulated"
    capabilities = MappingProxyType(
        {
            "order_types": frozenset({OrderType.MARKET, OrderType.LIMIT}),
            "cancel": True,
            "remote": False,
            "async_events": False,
            "needs_ticks": True,
        }
    )

    def __init__(self) -> None:
        self._quotes: dict[str, P.Tick] = {}
        #: liquidity left at the latest touch of each symbol: [bid side, ask side]
        self._liquidity: dict[str, list[int]] = {}
        #: working orders per symbol; dict order is time priority
        self._book: dict[str, dict[str, Order]] = {}
        self.next_order_n = 1
        self.next_fill_n = 1

    # ------------------------------------------------------------------ ExchangeClient
    def submit(self, order: Order, now: int) -> list[ExecEvent]:
        order.order_id = f"O{self.next_order_n}"
        self.next_order_n += 1
        order.ts = now
        quote = self._quotes.get(order.symbol)
        if quote is None and order.order_type is OrderType.MARKET:
            order.status = OrderStatus.REJECTED
            order.reason = f"no market data for {order.symbol}"
            return [OrderEvent(order.snapshot())]
        order.status = OrderStatus.NEW
        events: list[ExecEvent] = [OrderEvent(order.snapshot())]
        if quote is not None:
            self._match(order, quote, self._liquidity[order.symbol], now, order.cause_ts, order.origin_ts, events)
        if order.is_working:
            self._book.setdefault(order.symbol, {})[order.client_order_id] = order
        return events

    def cancel(self, order: Order, now: int, cause_ts: int = 0) -> CancelResult:
        book = self._book.get(order.symbol)
        if book is None or book.get(order.client_order_id) is not order:
            return CancelResult(False, f"order {order.client_order_id} is not working (status {order.status.value})")
        self._remove(order)
        order.status = OrderStatus.CANCELLED
        order.ts = now
        order.cause_ts = cause_ts or now
        return CancelResult(True, "", [OrderEvent(order.snapshot())])

    def on_tick(self, tick: P.Tick) -> list[ExecEvent]:
        self._quotes[tick.symbol] = tick
        liquidity = self._liquidity[tick.symbol] = [tick.bid_size, tick.ask_size]
        book = self._book.get(tick.symbol)
        if not book:
            return []
        events: list[ExecEvent] = []
        now = P.now_ns()
        for order in list(book.values()):
            if liquidity[_BID] <= 0 and liquidity[_ASK] <= 0:
                break
            self._match(order, tick, liquidity, now, tick.ts, tick.ts, events)
            if not order.is_working:
                del book[order.client_order_id]
        if not book:
            del self._book[tick.symbol]
        return events

    def working_symbols(self) -> Iterable[str]:
        return self._book.keys()

    def state(self) -> dict[str, int]:
        return {"next_order_n": self.next_order_n, "next_fill_n": self.next_fill_n}

    def recover(self, orders: Iterable[Order], state: Mapping[str, int], now: int) -> list[ExecEvent]:
        self.next_order_n = max(self.next_order_n, int(state.get("next_order_n", 1)))
        self.next_fill_n = max(self.next_fill_n, int(state.get("next_fill_n", 1)))
        events: list[ExecEvent] = []
        for order in orders:
            self.next_order_n = max(self.next_order_n, _id_number(order.order_id) + 1)
            if order.status is OrderStatus.PENDING_NEW:
                # The simulator's book is rebuilt from the journal, and the journal only ever
                # holds an order together with its acknowledgement, so a bare pending_new
                # order never reached this exchange: say so instead of inventing an ack.
                if not order.order_id:
                    order.order_id = f"O{self.next_order_n}"
                    self.next_order_n += 1
                order.status = OrderStatus.REJECTED
                order.reason = "not placed: the exchange restarted before acknowledging it"
                order.ts = now
                events.append(OrderEvent(order.snapshot()))
            elif order.is_working:
                self._book.setdefault(order.symbol, {})[order.client_order_id] = order
        return events

    def restore(self, orders: Iterable[Order], state: Mapping[str, int], now: int) -> list[ExecEvent]:
        # The book is what the journal holds; the quotes stay (they are the market's, not
        # ours), and the liquidity a lost batch used stays used until the next tick.
        self._book.clear()
        return self.recover(orders, state, now)

    # ------------------------------------------------------------------ matching
    def _match(
        self, order: Order, quote: P.Tick, liquidity: list[int], now: int, cause_ts: int, origin_ts: int, events: list[ExecEvent]
    ) -> None:
        """Fill what ``quote`` allows of ``order``, consuming touch liquidity."""
        if order.side is Side.BUY:
            side, price = _ASK, quote.ask
            if order.order_type is OrderType.LIMIT and order.limit_price < price:
                return
        else:
            side, price = _BID, quote.bid
            if order.order_type is OrderType.LIMIT and order.limit_price > price:
                return
        qty = min(order.remaining, liquidity[side])
        if qty <= 0:
            return
        liquidity[side] -= qty
        n = self.next_fill_n
        self.next_fill_n += 1
        fill = FillRecord(
            n=n,
            fill_id=f"F{n}",
            client_order_id=order.client_order_id,
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            qty=qty,
            price=price,
            ts=now,
            source=order.source,
            cause_ts=cause_ts,
            origin_ts=origin_ts,
        )
        order.apply_fill(qty, price)
        order.ts = now
        order.cause_ts = cause_ts
        events.append(FillEvent(fill))
        events.append(OrderEvent(order.snapshot()))

    def _remove(self, order: Order) -> None:
        book = self._book.get(order.symbol)
        if book is not None:
            book.pop(order.client_order_id, None)
            if not book:
                del self._book[order.symbol]

    # ------------------------------------------------------------------ inspection (tests, UI)
    def quote(self, symbol: str) -> P.Tick | None:
        return self._quotes.get(symbol)

    def working(self, symbol: str | None = None) -> list[Order]:
        books = [self._book.get(symbol, {})] if symbol else list(self._book.values())
        return [o for b in books for o in b.values()]


def _id_number(ident: str) -> int:
    """``O17`` -> 17; anything else -> 0."""
    try:
        return int(ident[1:]) if ident[:1].isalpha() else 0
    except ValueError:
        return 0
