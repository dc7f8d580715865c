"""The embedded exchange: a matching simulator driven by the market-data stream.

Two layers (docs/exchange.md, "Order kinds in the simulated venue"):

* :class:`SimulatedCore` -- the matching core: market and limit orders, ioc / fok, replace in
  place, fills that walk the depth book.  No stops, brackets, OCO or DAY expiry: it is also
  the venue that lacks those kinds, for the gateway's emulation.
* :class:`SimulatedExchange` -- the core wrapped in :class:`workers.exchange.kinds.OrderKinds`
  with ``emulated=False``: every kind and time in force, held by the venue itself.

Matching rules of the core:

* Each tick sets the touch for its symbol: ``ask`` with ``ask_size`` shares for buyers,
  ``bid`` with ``bid_size`` for sellers.  That touch size is the liquidity available until
  the next tick of the symbol; every fill consumes it, oldest working order first.
* A depth message sets the levels behind the touch, each with its size as liquidity until the
  next depth message (and the touch too when it is newer than the last tick).  A fill that
  exhausts the touch walks on to the next level (one fill per level, at its price).  Levels at
  or better than a later tick's touch are stale and skipped.  Without depth the touch is the
  only level.
* Market orders fill at the touch (buy at ask, sell at bid), then deeper, up to the liquidity
  left; the remainder keeps working and fills on later ticks.  A market order for a symbol
  that has had no market data yet is rejected ("no market data for SYM").
* Limit orders rest until the market crosses them (buy: limit >= ask, fills at the ask,
  which is min(limit, ask); sell: limit <= bid, fills at the bid), walking levels up to the
  limit; a marketable limit fills on arrival the same way.
* ``ioc``: what does not fill on arrival is cancelled; ``fok``: cancelled with no fill unless
  the liquidity at arrival covers the whole quantity.
* Order ids are ``O<n>`` and fill ids ``F<n>``; both counters are part of :meth:`state`, so
  the gateway journals them and they keep increasing across restarts.

The simulator keeps no history of its own: working orders come back through ``recover``
from the gateway's journal, and quotes come back with the next tick.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from workers import protocol as P
from workers.exchange.client import CancelResult, ExchangeClient, ExecEvent, FillEvent, FillRecord, Order, OrderEvent, reject_unacknowledged
from workers.exchange.kinds import OrderKinds
from workers.protocol import OrderStatus, OrderType, Side, TimeInForce

_BUY = Side.BUY
_FILLED = OrderStatus.FILLED


class _Market:
    """One symbol's liquidity: the touch (from the latest tick, or a newer depth message) and
    the levels behind it (from the latest depth message), each ``[price, size left]``."""

    __slots__ = ("tick", "pending", "bid", "ask", "bid_left", "ask_left", "deep_bids", "deep_asks", "ts")

    def __init__(self) -> None:
        self.tick: P.Tick | None = None
        #: ``tick`` is newer than the touch below: :meth:`load` before matching (a tick of a
        #: symbol nobody trades then costs two stores)
        self.pending = False
        self.bid = self.ask = 0.0
        self.bid_left = self.ask_left = 0
        self.deep_bids: list[list] = []
        self.deep_asks: list[list] = []
        #: time of the latest touch (tick or depth)
        self.ts = 0

    def load(self) -> None:
        t = self.tick
        self.bid = t.bid
        self.ask = t.ask
        self.bid_left = t.bid_size
        self.ask_left = t.ask_size
        self.ts = t.ts
        self.pending = False


class SimulatedCore(ExchangeClient):
    """The matching core alone: market and limit orders (gtc, ioc, fok), replace, depth."""

    name = "simulated"
    capabilities = MappingProxyType(
        {
            "order_types": frozenset({OrderType.MARKET, OrderType.LIMIT}),
            "cancel": True,
            "remote": False,
            "async_events": False,
            "needs_ticks": True,
            "tifs": frozenset({TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK}),
            "replace": True,
            "brackets": False,
            "oco": False,
            "depth": True,
        }
    )

    def __init__(self) -> None:
        self._markets: dict[str, _Market] = {}
        #: working orders per symbol; dict order is time priority
        self._book: dict[str, dict[str, Order]] = {}
        self.next_order_n = 1
        self.next_fill_n = 1

    def reserve_order_id(self) -> str:
        """An order id for an order held outside the book (a stop before its trigger), kept
        when the order reaches the book."""
        n = self.next_order_n
        self.next_order_n = n + 1
        return f"O{n}"

    # ------------------------------------------------------------------ ExchangeClient
    def submit(self, order: Order, now: int) -> list[ExecEvent]:
        if not order.order_id:
            order.order_id = self.reserve_order_id()
        order.ts = now
        if order.order_type.is_stop and not order.triggered:
            order.status = OrderStatus.REJECTED
            order.reason = f"{order.order_type.value} orders are not supported by the simulated matching core"
            return [OrderEvent(order.snapshot())]
        m = self._markets.get(order.symbol)
        if m is not None and m.pending:
            m.load()
        if m is None and order.limit_price is None:
            order.status = OrderStatus.REJECTED
            order.reason = f"no market data for {order.symbol}"
            return [OrderEvent(order.snapshot())]
        order.status = OrderStatus.NEW
        events: list[ExecEvent] = [OrderEvent(order.snapshot())]
        tif = order.tif
        if tif is TimeInForce.FOK:
            avail = self._available(order, m) if m is not None else 0
            if avail < order.remaining:
                self._kill(order, now, f"fok: only {avail} of {order.remaining} could fill at once", events)
                return events
        # a triggered stop's chain starts at the tick that triggered it (its cause_ts)
        origin = order.cause_ts if order.triggered else order.origin_ts
        if m is not None:
            self._match(order, m, now, order.cause_ts, origin, events)
        if order.is_working:
            if tif is TimeInForce.IOC or tif is TimeInForce.FOK:
                self._kill(order, now, f"{tif.value}: {order.remaining} of {order.qty} not filled at once", events)
            else:
                self._book.setdefault(order.symbol, {})[order.client_order_id] = order
        return events

    def cancel(self, order: Order, now: int, cause_ts: int = 0) -> CancelResult:
        live = self._live(order)
        if live is None:
            return CancelResult(False, f"order {order.client_order_id} is not working (status {order.status.value})")
        self._remove(live)
        live.status = OrderStatus.CANCELLED
        live.ts = now
        live.cause_ts = cause_ts or now
        return CancelResult(True, "", [OrderEvent(live.snapshot())])

    def replace(
        self, order: Order, qty: int | None, limit_price: float | None, stop_price: float | None, now: int, cause_ts: int = 0
    ) -> CancelResult:
        live = self._live(order)
        cid = order.client_order_id
        if live is None:
            return CancelResult(False, f"order {cid} is not working (status {order.status.value})")
        if qty is not None and qty <= live.filled_qty:
            return CancelResult(False, f"qty {qty} must exceed the {live.filled_qty} already filled of order {cid}")
        if limit_price is not None and live.limit_price is None:
            return CancelResult(False, f"order {cid} ({live.order_type.value}) has no limit price")
        if stop_price is not None:
            why = "its stop has already triggered" if live.triggered else f"a {live.order_type.value} order has no stop price"
            return CancelResult(False, f"order {cid}: {why}")
        # a bigger order or a new price goes to the back of the queue, as on an exchange
        requeue = (qty is not None and qty > live.qty) or (limit_price is not None and limit_price != live.limit_price)
        if qty is not None:
            live.qty = qty
        if limit_price is not None:
            live.limit_price = limit_price
        cause = cause_ts or now
        live.ts = now
        live.cause_ts = cause
        events: list[ExecEvent] = [OrderEvent(live.snapshot())]
        book = self._book[live.symbol]
        if requeue:
            del book[cid]
            book[cid] = live
        m = self._markets.get(live.symbol)
        if m is not None:
            if m.pending:
                m.load()
            self._match(live, m, now, cause, cause, events)
            if not live.is_working:
                self._remove(live)
        return CancelResult(True, "", events)

    def on_tick(self, tick: P.Tick) -> list[ExecEvent]:
        sym = tick.symbol
        m = self._markets.get(sym)
        if m is None:
            m = self._markets[sym] = _Market()
        m.tick = tick
        m.pending = True
        book = self._book.get(sym)
        if not book:
            return []
        m.load()
        return self._sweep(sym, book, m, tick.ts)

    def on_depth(self, depth: P.Depth) -> list[ExecEvent]:
        sym = depth.symbol
        m = self._markets.get(sym)
        if m is None:
            m = self._markets[sym] = _Market()
        elif m.pending:
            m.load()
        # The best level is the tick of the same moment: a depth no newer than the last tick
        # leaves the touch (and what fills took of it) alone and only sets the levels behind.
        fresh = depth.ts > m.ts or m.tick is None
        for levels, is_bid in ((depth.bids, True), (depth.asks, False)):
            deep = [[p, s] for p, s in levels[1:]]
            if is_bid:
                m.deep_bids = deep
                if fresh:
                    m.bid, m.bid_left = (levels[0][0], levels[0][1]) if levels else (m.bid, 0)
            else:
                m.deep_asks = deep
                if fresh:
                    m.ask, m.ask_left = (levels[0][0], levels[0][1]) if levels else (m.ask, 0)
        if fresh:
            m.ts = depth.ts
        book = self._book.get(sym)
        if not book:
            return []
        return self._sweep(sym, book, m, depth.ts)

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
            if order.status is OrderStatus.PENDING_NEW:  # the book is rebuilt from the journal
                events.append(reject_unacknowledged(order, self.reserve_order_id, now))
            elif order.is_working:
                self._book.setdefault(order.symbol, {})[order.client_order_id] = order
        return events

    def restore(self, orders: Iterable[Order], state: Mapping[str, int], now: int) -> list[ExecEvent]:
        # The book is what the journal holds; the quotes stay (they are the market's, not
        # ours), and the liquidity a lost batch used stays used until the next tick.
        self._book.clear()
        return self.recover(orders, state, now)

    # ------------------------------------------------------------------ matching
    def _sweep(self, sym: str, book: dict[str, Order], m: _Market, ts: int) -> list[ExecEvent]:
        """Match the symbol's working orders, oldest first, against fresh liquidity."""
        events: list[ExecEvent] = []
        now = P.now_ns()
        bid, ask = m.bid, m.ask
        deep = bool(m.deep_bids or m.deep_asks)
        done = None
        fired = None  # oco groups a member of which filled in this sweep
        for order in book.values():
            # Not crossed: deeper levels are worse than the touch, so none can fill it either.
            # Checked here, inline, because most resting orders are not crossed on most ticks.
            lp = order.limit_price
            if lp is not None and (lp < ask if order.side is _BUY else lp > bid):
                continue
            if not deep and m.bid_left <= 0 and m.ask_left <= 0:
                break
            group = order.oco_group
            if group:
                # One-cancels-other: once a member has filled (even partly) on this tick, the
                # others must not; OrderKinds cancels them right after the sweep.
                if fired is not None and group in fired:
                    continue
                n = len(events)
                self._match(order, m, now, ts, ts, events)
                if len(events) > n:
                    (fired := fired or set()).add(group)
            else:
                self._match(order, m, now, ts, ts, events)
            if order.status is _FILLED:
                if done is None:
                    done = []
                done.append(order.client_order_id)
        if done is not None:
            for cid in done:
                del book[cid]
            if not book:
                del self._book[sym]
        return events

    def _match(self, order: Order, m: _Market, now: int, cause_ts: int, origin_ts: int, events: list[ExecEvent]) -> None:
        """Fill what the liquidity allows of ``order``: the touch, then the levels behind it."""
        lp = order.limit_price
        if order.side is _BUY:
            price, left = m.ask, m.ask_left
            if lp is not None and lp < price:
                return
            if left > 0:
                qty = min(order.remaining, left)
                m.ask_left = left - qty
                self._fill(order, qty, price, now, cause_ts, origin_ts, events)
            if m.deep_asks and order.filled_qty < order.qty:
                for level in m.deep_asks:
                    p = level[0]
                    if p <= price or level[1] <= 0:
                        continue  # stale (the touch moved past it) or used up
                    if lp is not None and p > lp:
                        break
                    qty = min(order.remaining, level[1])
                    level[1] -= qty
                    self._fill(order, qty, p, now, cause_ts, origin_ts, events)
                    if order.filled_qty >= order.qty:
                        break
        else:
            price, left = m.bid, m.bid_left
            if lp is not None and lp > price:
                return
            if left > 0:
                qty = min(order.remaining, left)
                m.bid_left = left - qty
                self._fill(order, qty, price, now, cause_ts, origin_ts, events)
            if m.deep_bids and order.filled_qty < order.qty:
                for level in m.deep_bids:
                    p = level[0]
                    if p >= price or level[1] <= 0:
                        continue
                    if lp is not None and p < lp:
                        break
                    qty = min(order.remaining, level[1])
                    level[1] -= qty
                    self._fill(order, qty, p, now, cause_ts, origin_ts, events)
                    if order.filled_qty >= order.qty:
                        break

    def _available(self, order: Order, m: _Market) -> int:
        """How much of ``order`` the liquidity would fill now (fok), at most its remainder."""
        lp, want = order.limit_price, order.remaining
        if order.side is _BUY:
            price, left, deep, ok = m.ask, m.ask_left, m.deep_asks, (lambda p: lp is None or p <= lp)
            worse = price.__lt__
        else:
            price, left, deep, ok = m.bid, m.bid_left, m.deep_bids, (lambda p: lp is None or p >= lp)
            worse = price.__gt__
        if not ok(price):
            return 0
        total = max(left, 0)
        for p, size in deep:
            if total >= want or not ok(p):
                break
            if worse(p):
                total += max(size, 0)
        return min(total, want)

    def _fill(self, order: Order, qty: int, price: float, now: int, cause_ts: int, origin_ts: int, events: list[ExecEvent]) -> None:
        n = self.next_fill_n
        self.next_fill_n = n + 1
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

    def _kill(self, order: Order, now: int, reason: str, events: list[ExecEvent]) -> None:
        order.status = OrderStatus.CANCELLED
        order.reason = reason
        order.ts = now
        events.append(OrderEvent(order.snapshot()))

    def _live(self, order: Order) -> Order | None:
        """This core's record of ``order`` (by client_order_id), if it is working here."""
        book = self._book.get(order.symbol)
        return book.get(order.client_order_id) if book is not None else None

    def _remove(self, order: Order) -> None:
        book = self._book.get(order.symbol)
        if book is not None:
            book.pop(order.client_order_id, None)
            if not book:
                del self._book[order.symbol]

    def last_trade(self, symbol: str) -> float | None:
        """The symbol's last trade (from its latest tick), for the stop triggers of OrderKinds."""
        m = self._markets.get(symbol)
        return m.tick.last if m is not None and m.tick is not None else None

    # ------------------------------------------------------------------ inspection (tests, UI)
    def quote(self, symbol: str) -> P.Tick | None:
        m = self._markets.get(symbol)
        return m.tick if m is not None else None

    def working(self, symbol: str | None = None) -> list[Order]:
        books = [self._book.get(symbol, {})] if symbol else list(self._book.values())
        return [o for b in books for o in b.values()]


class SimulatedExchange(OrderKinds):
    """The embedded venue: :class:`SimulatedCore` with every order kind held by the venue
    itself (stops, trailing stops, brackets, OCO, DAY expiry at ``session_end``, UTC unless
    the time has a tzinfo)."""

    name = "simulated"

    def __init__(
        self, *, session_end: datetime.time = datetime.time(0, 0), check_child: Callable[[Order], str] | None = None
    ) -> None:
        super().__init__(SimulatedCore(), emulated=False, session_end=session_end, check_child=check_child)

    @property
    def core(self) -> SimulatedCore:
        return self.inner  # type: ignore[return-value]

    def quote(self, symbol: str) -> P.Tick | None:
        return self.core.quote(symbol)

    @property
    def next_order_n(self) -> int:
        return self.core.next_order_n

    @property
    def next_fill_n(self) -> int:
        return self.core.next_fill_n


def _id_number(ident: str) -> int:
    """``O17`` -> 17; anything else -> 0."""
    try:
        return int(ident[1:]) if ident[:1].isalpha() else 0
    except ValueError:
        return 0
