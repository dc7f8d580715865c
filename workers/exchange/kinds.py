"""The order kinds, once: stops, trailing stops, brackets, OCO and DAY expiry over any venue.

:class:`OrderKinds` is an :class:`ExchangeClient` wrapping an inner client that natively works
market and limit orders (and ioc / fok, replace).  It does, for whatever the inner client's
``capabilities`` lack:

* **stop kinds** (stop, stop_limit, trailing_stop): held here until the last trade of a tick
  reaches the stop (a buy at or above, a sell at or below; a trailing stop's stop follows the
  best last trade since it was placed), then submitted to the inner client with
  ``order.triggered`` set, keeping their ``order_type`` (the inner client works them as
  :attr:`Order.exec_type`).  A stop whose trigger is already reached when it is placed (or
  replaced) triggers at once, on the last trade seen.
* **brackets**: when an order with ``take_profit_price`` / ``stop_loss_price`` fills, its
  children ``<id>.tp`` (a limit) and ``<id>.sl`` (a stop) are created on the other side, sized
  to what has filled; later fills of the parent grow the working children.
* **OCO**: when an order of an ``oco_group`` fills, even partly, the other working members
  are cancelled ("oco: <client_order_id> filled").  Children are one group (named after the
  parent).
* **DAY** orders expire at the session's end (``on_time``).

The same code serves the simulated venue (``emulated=False``: the venue holds the kinds
itself) and the gateway's emulation for a venue that lacks them (``emulated=True``: such
orders say ``emulated: true``).  See docs/exchange.md, "Order kinds in the simulated venue".
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from workers import protocol as P
from workers.exchange.client import CancelResult, ExchangeClient, ExecEvent, FillEvent, FillRecord, Order, OrderEvent, reject_unacknowledged
from workers.protocol import OrderStatus, OrderType, Side, TimeInForce

log = logging.getLogger(__name__)

_TERMINAL = frozenset(s for s in OrderStatus if s.is_terminal)
_STOP_KINDS = frozenset(t for t in OrderType if t.is_stop)
_DAY = TimeInForce.DAY
_TRAILING = OrderType.TRAILING_STOP
_BUY = Side.BUY
_NS = 1_000_000_000
EXPIRED_REASON = "day order expired at the session end"
_LOCAL_N = "kinds_next_local_n"
#: how soon a DAY order whose expiry the venue refused is tried again
_EXPIRY_RETRY_NS = _NS


def session_end_after(ts: int, end: datetime.time) -> int:
    """The first session end strictly after ``ts`` (ns): ``end`` in its tzinfo, UTC without one."""
    tz = end.tzinfo or datetime.timezone.utc
    at = datetime.datetime.fromtimestamp(ts / _NS, tz)
    day = at.date()
    while True:
        cand = datetime.datetime.combine(day, end.replace(tzinfo=None), tzinfo=tz)
        c = int(cand.timestamp()) * _NS + cand.microsecond * 1000
        if c > ts:
            return c
        day += datetime.timedelta(days=1)


class OrderKinds(ExchangeClient):
    """Every order kind over ``inner`` (see the module docstring).

    ``emulated``: mark orders whose kind, time in force, bracket or OCO group is worked here
    rather than by ``inner`` (``order.emulated``).  ``session_end``: when DAY orders expire.
    ``check_child``: the gateway's hard limits for orders created here (bracket children and
    their growth): returns a reason to refuse the candidate order, or "".
    """

    def __init__(
        self,
        inner: ExchangeClient,
        *,
        emulated: bool,
        session_end: datetime.time = datetime.time(0, 0),
        check_child: Callable[[Order], str] | None = None,
    ) -> None:
        self.inner = inner
        self.emulated = emulated
        self.session_end = session_end
        self.check_child = check_child
        if "name" not in type(self).__dict__:
            self.name = inner.name
        caps = inner.capabilities
        self._native_types = frozenset(caps.get("order_types", ()))
        self._native_tifs = frozenset(caps.get("tifs", ()))
        self._native_day = _DAY in self._native_tifs
        self._native_brackets = bool(caps.get("brackets"))
        self._native_oco = bool(caps.get("oco"))
        self.capabilities = MappingProxyType(
            {
                **caps,
                "order_types": frozenset(OrderType),
                "tifs": self._native_tifs | {TimeInForce.DAY, TimeInForce.GTC},
                "brackets": True,
                "oco": True,
                "needs_ticks": True,  # triggers follow the last trade
                "replace": bool(caps.get("replace")),
                "depth": bool(caps.get("depth")),
            }
        )
        self._reserve = getattr(inner, "reserve_order_id", None)
        #: the inner client's working orders, if it lists them: then DAY orders it works need
        #: no tracking here (they are looked up at the session end)
        self._inner_working: Callable[..., list[Order]] | None = getattr(inner, "working", None)
        #: the inner client's last trade of a symbol, if it keeps one (else kept here)
        self._last_of: Callable[[str], float | None] | None = getattr(inner, "last_trade", None)
        self._next_local_n = 1
        #: stop-kind orders held for their trigger, per symbol (dict order: time priority)
        self._held: dict[str, dict[str, Order]] = {}
        #: a trailing stop's best last trade since placed (sell: highest, buy: lowest) in this
        #: process; its level (``stop_price``) is the order's, journaled with it, and only ever
        #: tightens, so a restart that starts the best trade again never loosens the stop
        self._trail: dict[str, float] = {}
        #: working orders this layer has business with (held, DAY, brackets, OCO members)
        self._orders: dict[str, Order] = {}
        #: oco group -> client_order_ids of its working members
        self._groups: dict[str, set[str]] = {}
        #: bracket parents whose children exist
        self._bracketed: set[str] = set()
        self._last: dict[str, float] = {}
        #: when on_time next looks for DAY orders to expire (0: at the next call)
        self._next_end = 0
        self._inner_on_tick = inner.on_tick
        self._sync()

    # ------------------------------------------------------------------ ExchangeClient
    def submit(self, order: Order, now: int) -> list[ExecEvent]:
        ot = order.order_type
        hold = ot in _STOP_KINDS and ot not in self._native_types and not order.triggered
        bracket = not self._native_brackets and (order.take_profit_price is not None or order.stop_loss_price is not None)
        day = order.tif is _DAY and not self._native_day
        if self.emulated and (hold or bracket or day):
            order.emulated = True
        if hold or bracket or order.oco_group or (day and self._inner_working is None):
            self._track(order)
        if hold:
            return self._hold(order, now)
        return self._after(self.inner.submit(order, now), now)

    def cancel(self, order: Order, now: int, cause_ts: int = 0) -> CancelResult:
        return self._cancel(self._orders.get(order.client_order_id, order), now, cause_ts, "")

    def replace(
        self, order: Order, qty: int | None, limit_price: float | None, stop_price: float | None, now: int, cause_ts: int = 0
    ) -> CancelResult:
        cid = order.client_order_id
        o = self._orders.get(cid, order)
        if self._held_of(o) is None:
            res = self.inner.replace(o, qty, limit_price, stop_price, now, cause_ts)
            return CancelResult(True, "", self._after(res.events, now)) if res.ok else res
        ot = o.order_type
        if qty is not None and qty <= o.filled_qty:
            return CancelResult(False, f"qty {qty} must exceed the {o.filled_qty} already filled of order {cid}")
        if limit_price is not None and not ot.has_limit:
            return CancelResult(False, f"order {cid} ({ot.value}) has no limit price")
        if stop_price is not None and ot is OrderType.TRAILING_STOP:
            return CancelResult(False, f"order {cid}: a trailing_stop's stop follows the market (change its qty only)")
        requeue = (qty is not None and qty > o.qty) or (stop_price is not None and stop_price != o.stop_price) or (
            limit_price is not None and limit_price != o.limit_price)
        if qty is not None:
            o.qty = qty
        if limit_price is not None:
            o.limit_price = limit_price
        if stop_price is not None:
            o.stop_price = stop_price
        o.ts = now
        o.cause_ts = cause_ts or now
        if requeue:
            held = self._held[o.symbol]
            del held[cid]
            held[cid] = o
        events: list[ExecEvent] = [OrderEvent(o.snapshot())]
        last = self._last_trade(o.symbol)
        if last is not None and self._reached(o, last):
            events += self._release(o, now, o.cause_ts)
        return CancelResult(True, "", events)

    def set_oco(self, orders: list[Order], group: str, now: int) -> CancelResult:
        if self._native_oco:
            return self.inner.set_oco(orders, group, now)
        mine = [self._orders.get(o.client_order_id, o) for o in orders]
        for o in mine:
            if not o.is_working:
                return CancelResult(False, f"order {o.client_order_id} is not working (status {o.status.value})")
            if o.oco_group and o.oco_group != group:
                return CancelResult(False, f"order {o.client_order_id} is already in oco group {o.oco_group}")
        events: list[ExecEvent] = []
        for o in mine:
            o.oco_group = group
            if self.emulated:
                o.emulated = True
            o.ts = now
            self._track(o)
            events.append(OrderEvent(o.snapshot()))
        return CancelResult(True, "", events)

    def on_tick(self, tick: P.Tick) -> list[ExecEvent]:
        sym = tick.symbol
        if self._last_of is None:
            self._last[sym] = tick.last
        events = self._inner_on_tick(tick)
        if events and self._orders:
            events = self._after(events, 0)
        if self._held:
            held = self._held.get(sym)
            if held:
                last = tick.last
                fire = moved = None
                for o in held.values():
                    # inline for plain stops: this runs for every held order on every tick
                    ot = o.order_type
                    if ot is _TRAILING:
                        level = o.stop_price
                        hit = self._reached(o, last)
                        if not hit and o.stop_price != level:
                            (moved := moved or []).append(o)
                    elif o.side is _BUY:
                        hit = last >= o.stop_price
                    else:
                        hit = last <= o.stop_price
                    if hit:
                        (fire := fire or []).append(o)
                if moved is not None:
                    # the level is state a restart must find (journaled with the order) and
                    # what the trader sees: a report per move
                    now = P.now_ns()
                    for o in moved:
                        o.ts = now
                        o.cause_ts = tick.ts
                        events.append(OrderEvent(o.snapshot()))
                if fire is not None:
                    now = P.now_ns()
                    for o in fire:
                        if o.is_working:  # an OCO peer fired earlier in this loop may have cancelled it
                            events += self._release(o, now, tick.ts)
        return events

    def on_depth(self, depth: P.Depth) -> list[ExecEvent]:
        events = self.inner.on_depth(depth)
        return self._after(events, 0) if events and self._orders else events

    def on_time(self, now: int) -> list[ExecEvent]:
        events = self.inner.on_time(now)
        if events and self._orders:
            events = self._after(events, now)
        if now >= self._next_end:
            self._next_end = session_end_after(now, self.session_end)
            end = self.session_end
            known = self._orders
            cands = list(known.values())
            if self._inner_working is not None and not self._native_day:
                cands += [o for o in self._inner_working() if o.client_order_id not in known]
            due = [o for o in cands
                   if o.tif is _DAY and o.is_working and session_end_after(o.created_ts, end) <= now
                   and (not self._native_day or self._held_of(o) is not None)]
            for o in due:
                if o.is_working:  # an earlier expiry's OCO or bracket work may have ended it
                    events = events + self._expire(o, now)
                    if o.is_working:  # the venue refused the cancel: try again shortly, not next session
                        self._next_end = min(self._next_end, now + _EXPIRY_RETRY_NS)
        return events

    def working_symbols(self) -> Iterable[str]:
        if not self._held:
            return self.inner.working_symbols()
        return set(self.inner.working_symbols()) | self._held.keys()

    def poll(self, now: int) -> list[ExecEvent]:
        events = self.inner.poll(now)
        return self._after(events, now) if events and self._orders else events

    def state(self) -> dict[str, int]:
        state = self.inner.state()
        if self._reserve is None:
            state[_LOCAL_N] = self._next_local_n
        return state

    def recover(self, orders: Iterable[Order], state: Mapping[str, int], now: int) -> list[ExecEvent]:
        return self._rebuild(orders, state, now, self.inner.recover)

    def restore(self, orders: Iterable[Order], state: Mapping[str, int], now: int) -> list[ExecEvent]:
        # what the last trades were stays true (they are the market's)
        self._held.clear()
        self._trail.clear()
        self._orders.clear()
        self._groups.clear()
        self._bracketed.clear()
        self._sync()
        return self._rebuild(orders, state, now, self.inner.restore)

    def take_notices(self) -> list[str]:
        return self.inner.take_notices()

    def gauges(self) -> dict:
        return self.inner.gauges()

    def close(self) -> None:
        self.inner.close()

    # ------------------------------------------------------------------ inspection (tests, UI)
    def working(self, symbol: str | None = None) -> list[Order]:
        """Working orders: the inner client's (if it lists them), then the stops held here."""
        inner = self._inner_working(symbol) if self._inner_working is not None else []
        return inner + self.held(symbol)

    def held(self, symbol: str | None = None) -> list[Order]:
        """Stop-kind orders waiting for their trigger."""
        books = [self._held.get(symbol, {})] if symbol else list(self._held.values())
        return [o for b in books for o in b.values()]

    def trailing_stop_price(self, order: Order) -> float | None:
        """A trailing stop's current stop (its ``stop_price``), None before its first last trade."""
        return self._orders.get(order.client_order_id, order).stop_price

    # ------------------------------------------------------------------ held stops
    def _hold(self, order: Order, now: int) -> list[ExecEvent]:
        order.order_id = self._local_id()
        order.status = OrderStatus.NEW
        order.ts = now
        self._held.setdefault(order.symbol, {})[order.client_order_id] = order
        last = self._last_trade(order.symbol)
        hit = last is not None and self._reached(order, last)  # before the ack: it reports a trailing stop's level
        events: list[ExecEvent] = [OrderEvent(order.snapshot())]
        if hit:
            events += self._release(order, now, order.cause_ts)
        return events

    def _reached(self, o: Order, last: float) -> bool:
        """Whether ``last`` triggers the held stop ``o`` (a trailing stop's best and level are
        updated: the level, ``o.stop_price``, only ever tightens -- a sell's up, a buy's down)."""
        if o.order_type is _TRAILING:
            cid = o.client_order_id
            ext = self._trail.get(cid)
            stop = o.stop_price
            if o.side is _BUY:
                if ext is None or last < ext:
                    self._trail[cid] = last
                    level = _trail_stop(o, last)
                    if stop is None or level < stop:
                        o.stop_price = stop = level
                return last >= stop
            if ext is None or last > ext:
                self._trail[cid] = last
                level = _trail_stop(o, last)
                if stop is None or level > stop:
                    o.stop_price = stop = level
            return last <= stop
        return last >= o.stop_price if o.side is _BUY else last <= o.stop_price

    def _release(self, o: Order, now: int, cause_ts: int) -> list[ExecEvent]:
        """The stop triggered: the inner client works it from now on."""
        self._unhold(o)
        o.triggered = True
        o.cause_ts = cause_ts or now
        o.ts = now
        return self._after(self.inner.submit(o, now), now)

    def _last_trade(self, symbol: str) -> float | None:
        return self._last_of(symbol) if self._last_of is not None else self._last.get(symbol)

    def _held_of(self, o: Order) -> Order | None:
        held = self._held.get(o.symbol)
        return held.get(o.client_order_id) if held is not None else None

    def _unhold(self, o: Order) -> None:
        held = self._held.get(o.symbol)
        if held is not None and held.pop(o.client_order_id, None) is not None:
            if not held:
                del self._held[o.symbol]
        self._trail.pop(o.client_order_id, None)

    def _local_id(self) -> str:
        if self._reserve is not None:
            return self._reserve()
        n = self._next_local_n
        self._next_local_n = n + 1
        return f"E{n}"

    # ------------------------------------------------------------------ cancels, expiry
    def _cancel(self, o: Order, now: int, cause_ts: int, reason: str) -> CancelResult:
        if self._held_of(o) is not None:
            self._unhold(o)
            o.status = OrderStatus.CANCELLED
            o.ts = now
            o.cause_ts = cause_ts or now
            if reason:
                o.reason = reason
            self._forget(o.client_order_id)
            return CancelResult(True, "", [OrderEvent(o.snapshot())])
        before = o.reason
        if reason:
            o.reason = reason
        res = self.inner.cancel(o, now, cause_ts)
        if not res.ok:
            o.reason = before
            return res
        return CancelResult(True, "", self._after(res.events, now))

    def _expire(self, o: Order, now: int) -> list[ExecEvent]:
        res = self._cancel(o, now, now, EXPIRED_REASON)
        if not res.ok:
            log.warning("DAY order %s could not expire: %s", o.client_order_id, res.reason)
            return res.events
        # the venue can only cancel: the last snapshot says what really happened
        o.status = OrderStatus.EXPIRED
        o.reason = EXPIRED_REASON
        out = [e for e in res.events if not (e.__class__ is OrderEvent and e.order.client_order_id == o.client_order_id
                                             and e.order.status is OrderStatus.CANCELLED)]
        out.append(OrderEvent(o.snapshot()))
        return out

    # ------------------------------------------------------------------ after the inner client acted
    def _track(self, o: Order) -> None:
        cid = o.client_order_id
        if not self._orders:
            self._orders[cid] = o
            self._sync()
        else:
            self._orders[cid] = o
        if o.oco_group:
            self._groups.setdefault(o.oco_group, set()).add(cid)

    def _sync(self) -> None:
        """With nothing to watch, ticks go straight to the inner client: the tick -> fill path
        of plain orders costs what the matching core costs.  Held stops are always among
        ``_orders``, so an empty ``_orders`` means no trigger to look for either."""
        if not self._orders and self._last_of is not None:
            self.__dict__["on_tick"] = self._inner_on_tick
        else:
            self.__dict__.pop("on_tick", None)

    def _forget(self, cid: str) -> None:
        o = self._orders.pop(cid, None)
        if o is not None and o.oco_group:
            members = self._groups.get(o.oco_group)
            if members is not None:
                members.discard(cid)
                if not members:
                    del self._groups[o.oco_group]
        self._bracketed.discard(cid)
        if not self._orders:
            self._sync()

    def _after(self, events: list[ExecEvent], now: int) -> list[ExecEvent]:
        """OCO cancels and bracket children for the fills in ``events``; forget orders done."""
        orders = self._orders
        oco: list[tuple[Order, FillRecord]] | None = None
        parents: dict[str, list] | None = None  # parent cid -> [parent, qty filled here, first fill]
        done: list[str] | None = None
        for ev in events:
            if ev.__class__ is FillEvent:
                f = ev.fill
                o = orders.get(f.client_order_id)
                if o is None:
                    continue
                if o.oco_group and not self._native_oco and (oco is None or all(x is not o for x, _ in oco)):
                    (oco := oco or []).append((o, f))
                if not self._native_brackets and (o.take_profit_price is not None or o.stop_loss_price is not None):
                    acc = (parents := parents or {}).get(o.client_order_id)
                    if acc is None:
                        parents[o.client_order_id] = [o, f.qty, f]
                    else:
                        acc[1] += f.qty
            elif ev.order.status in _TERMINAL:
                (done := done or []).append(ev.order.client_order_id)
        if oco is None and parents is None:
            if done is not None:
                self._forget_done(done)
            return events
        more: list[ExecEvent] = []
        now = now or P.now_ns()
        for o, f in oco or ():
            more += self._fire_oco(o, f, now)
        for o, qty, f in (parents or {}).values():
            more += self._bracket(o, qty, f, now)
        if done is not None:  # after the children: a parent done is still known as bracketed above
            self._forget_done(done)
        return events + more

    def _forget_done(self, cids: list[str]) -> None:
        orders = self._orders
        for cid in cids:
            o = orders.get(cid)
            if o is not None and not o.is_working:
                self._forget(cid)

    def _fire_oco(self, o: Order, f: FillRecord, now: int) -> list[ExecEvent]:
        events: list[ExecEvent] = []
        reason = f"oco: {o.client_order_id} filled"
        for cid in list(self._groups.get(o.oco_group, ())):
            peer = self._orders.get(cid)
            if cid == o.client_order_id or peer is None or not peer.is_working:
                continue
            res = self._cancel(peer, now, f.cause_ts, reason)
            events += res.events
        return events

    def _bracket(self, parent: Order, qty: int, f: FillRecord, now: int) -> list[ExecEvent]:
        """Children for ``qty`` more of the parent filled (``f`` the first of those fills):
        created on the parent's first fill, grown on the later ones."""
        pid = parent.client_order_id
        tp_id, sl_id = (pid + s for s in P.BRACKET_SUFFIXES)
        if pid not in self._bracketed:
            self._bracketed.add(pid)
            events: list[ExecEvent] = []
            tp = None
            if parent.take_profit_price is not None:
                tp = self._child(parent, tp_id, qty, f, now)
                events += self._place_child(tp, now)
            # a take-profit that filled at once has fired the group: no stop-loss to cancel
            if parent.stop_loss_price is not None and (tp is None or tp.filled_qty == 0):
                events += self._place_child(self._child(parent, sl_id, qty, f, now), now)
            return events
        events = []
        for cid in (tp_id, sl_id):
            child = self._orders.get(cid)
            if child is None or not child.is_working:
                continue  # done, or the OCO fired: the bracket is over for that leg
            total = child.qty + qty
            why = self._veto(child, total)
            if why:
                log.warning("bracket child %s not grown to %d: %s", cid, total, why)
                continue
            res = self.replace(child, total, None, None, now, f.cause_ts)
            if res.ok:
                events += res.events
            else:
                log.warning("bracket child %s not grown to %d: %s", cid, total, res.reason)
        return events

    def _child(self, parent: Order, cid: str, qty: int, f: FillRecord, now: int) -> Order:
        tp = cid.endswith(P.BRACKET_SUFFIXES[0])
        return Order(
            client_order_id=cid,
            order_id="",
            symbol=parent.symbol,
            side=Side.SELL if parent.side is Side.BUY else Side.BUY,
            qty=qty,
            filled_qty=0,
            avg_price=0.0,
            status=OrderStatus.PENDING_NEW,
            ts=now,
            order_type=OrderType.LIMIT if tp else OrderType.STOP,
            limit_price=parent.take_profit_price if tp else None,
            stop_price=None if tp else parent.stop_loss_price,
            tif=parent.take_profit_tif if tp else parent.stop_loss_tif,
            source=parent.source,
            cause_ts=f.cause_ts,
            origin_ts=f.origin_ts,
            created_ts=now,
            parent_id=parent.client_order_id,
            oco_group=parent.client_order_id,
            emulated=self.emulated,
        )

    def _place_child(self, child: Order, now: int) -> list[ExecEvent]:
        why = self._veto(child, child.qty)
        if why:
            child.order_id = "-"
            child.status = OrderStatus.REJECTED
            child.reason = why
            return [OrderEvent(child.snapshot())]
        self._track(child)
        return self.submit(child, now)

    def _veto(self, order: Order, qty: int) -> str:
        if self.check_child is None:
            return ""
        cand = order.snapshot()
        cand.qty = qty
        return self.check_child(cand) or ""

    # ------------------------------------------------------------------ restart
    def _rebuild(self, orders: Iterable[Order], state: Mapping[str, int], now: int, inner_call) -> list[ExecEvent]:
        self._next_local_n = max(self._next_local_n, int(state.get(_LOCAL_N, 1)))
        self._next_end = 0  # DAY orders from before a session end expire at the next on_time
        orders = list(orders)
        inner_orders: list[Order] = []
        held: list[Order] = []
        for o in orders:
            ot = o.order_type
            if ot in _STOP_KINDS and ot not in self._native_types and not o.triggered:
                held.append(o)
            else:
                inner_orders.append(o)
        # as journaled (the venue's report below may fill or end some): what to track, and the
        # bracket parents whose children exist
        working = [o for o in orders if o.is_working]
        brackets = not self._native_brackets
        self._bracketed.update(o.client_order_id for o in working if brackets and o.filled_qty > 0 and (
            o.take_profit_price is not None or o.stop_loss_price is not None))
        events = list(inner_call(inner_orders, state, now))
        for o in held:
            if o.status is OrderStatus.PENDING_NEW:  # held orders are journaled with their ack
                events.append(reject_unacknowledged(o, self._local_id, now))
            elif o.is_working:
                self._held.setdefault(o.symbol, {})[o.client_order_id] = o
        for o in working:
            if o.status is OrderStatus.REJECTED:
                continue  # never placed (above, or by the inner venue)
            bracket = brackets and (o.take_profit_price is not None or o.stop_loss_price is not None)
            day = o.tif is _DAY and not self._native_day and self._inner_working is None
            if self._held_of(o) is not None or bracket or o.oco_group or day:
                self._track(o)
        # What the venue reports of the time the gateway was down (a broker's fills) is worked
        # like the same report while up: OCO peers cancelled, bracket children made (a parent
        # with journaled fills has them) or grown.  The simulated venues report no fills here:
        # their book is the journal's.
        if events and self._orders:
            return self._after(events, now)
        return events


def _trail_stop(o: Order, ext: float) -> float:
    trail = o.trail_amount if o.trail_amount is not None else ext * (o.trail_pct or 0.0) / 100.0
    return ext - trail if o.side is Side.SELL else ext + trail
