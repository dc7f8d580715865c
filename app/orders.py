"""Manual orders from the window: validation, pre-trade risk, sending, cancelling, reconciling.

Everything goes through the same orders endpoint, protocol and idempotency as the
executor: one ``client_order_id`` per order (``new_client_order_id("manual")``), Lazy
Pirate resends of the *same* request, and an order that got no reply after every retry
shown as UNKNOWN and asked about with ``get_order`` until the exchange says what became
of it -- never sent again as a new order.

Requests are asyncio tasks, so the window never waits on the network.  Results reach the
trader twice: at once through :attr:`OrderService.listeners` (the ticket's outcome line),
and as lines in the state's event log.  No Qt here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from workers import protocol as P
from workers.executor.risk import Decision, RiskChecker, RiskLimits
from workers.order_client import AsyncOrderClient, RetryPolicy, new_client_order_id
from workers.positions import fill_number
from workers.protocol import OrderStatus, OrderType, Side, TimeInForce
from workers.symbols import normalize_symbol
from app.state import QUERYING_REASON, AppState, OrderRow
from app.tasks import Tasks

log = logging.getLogger("tickdesk.app.orders")

#: get_order must deny an UNKNOWN order this many times before the window calls it "never placed"
NOT_FOUND_CONFIRMATIONS = 3
RECONCILE_EVERY = 1.0
SYNC_RETRY_EVERY = 2.0
#: seconds at least between two successful syncs (a storm of gaps costs one sync a second)
RESYNC_MIN_GAP_S = 1.0
#: seconds an order may stay pending (new, or a cancel sent without an answer) before the window
#: asks the exchange about it with get_order
PENDING_QUERY_S = 3.0
#: fills asked for per get_fills request while paging through the history
FILLS_PAGE = 5_000


#: the window's price increment: the wire carries no tick size and the simulated feed's is 0.01
#: (workers/marketdata/sim_feed.py); the ticket's up/down, bracket offsets in ticks and the
#: chart's dragged lines snap to it
TICK_SIZE = 0.01

#: the time-in-force values each order type may carry (P.check_order_terms: IOC and FOK are
#: for market and limit orders; a stop rests until triggered)
VALID_TIFS: dict[OrderType, tuple[TimeInForce, ...]] = {
    OrderType.MARKET: (TimeInForce.DAY, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK),
    OrderType.LIMIT: (TimeInForce.DAY, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK),
    OrderType.STOP: (TimeInForce.DAY, TimeInForce.GTC),
    OrderType.STOP_LIMIT: (TimeInForce.DAY, TimeInForce.GTC),
    OrderType.TRAILING_STOP: (TimeInForce.DAY, TimeInForce.GTC),
}

#: how the ticket, the blotters and the chart's labels name a type
TYPE_LABELS = {OrderType.MARKET: "MKT", OrderType.LIMIT: "LMT", OrderType.STOP: "STP",
               OrderType.STOP_LIMIT: "STP LMT", OrderType.TRAILING_STOP: "TRAIL"}


def snap(price: float, tick: float = TICK_SIZE) -> float:
    """``price`` on the tick grid (rounded to the nearest tick, printed without float noise)."""
    return round(round(price / tick) * tick, 8)


def _price_ok(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 < v < P.MAX_PRICE


#: statuses a replace_order can change (an order not acknowledged yet, or UNKNOWN, cannot)
MODIFIABLE = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


def can_modify(o, key: str) -> bool:
    """May the trader change ``key`` (qty, limit_price, stop_price) of order row ``o`` in place
    (the blotter's cells, the chart's lines)?"""
    if o is None or o.status not in MODIFIABLE:
        return False
    if key == "qty":
        return True
    if key == "limit_price":
        return o.order_type.has_limit
    if key == "stop_price":
        # a trailing stop's stop is the venue's to move; a triggered stop has none left to move
        return o.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and not o.triggered
    return False


@dataclass(frozen=True)
class Ticket:
    """What the order ticket asks for (the terms of ``send_order``)."""

    symbol: str
    side: Side
    qty: int
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    tif: TimeInForce = TimeInForce.DAY
    stop_price: float | None = None
    trail_amount: float | None = None
    trail_pct: float | None = None
    take_profit_price: float | None = None
    stop_loss_price: float | None = None
    take_profit_tif: TimeInForce = TimeInForce.GTC
    stop_loss_tif: TimeInForce = TimeInForce.GTC

    def normalized(self, symbol: str) -> Ticket:
        """The ticket with ``symbol`` and without the fields its type does not use (a limit
        price typed while the ticket said limit, then switched to market, is not sent)."""
        ot = self.order_type
        trailing = ot is OrderType.TRAILING_STOP
        return dataclasses.replace(
            self, symbol=symbol,
            limit_price=self.limit_price if ot.has_limit else None,
            stop_price=self.stop_price if ot in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
            trail_amount=self.trail_amount if trailing else None,
            trail_pct=self.trail_pct if trailing else None)

    @property
    def is_bracket(self) -> bool:
        return self.take_profit_price is not None or self.stop_loss_price is not None

    def describe(self) -> str:
        """``BUY 100 MSFT @ 99.50 LMT GTC TP 101.00 SL 98.00``: what the outcome line, the log and
        the confirmation say."""
        ot = self.order_type
        if ot is OrderType.LIMIT and self.limit_price:
            px = f" @ {self.limit_price:.2f} LMT"
        elif ot is OrderType.STOP and self.stop_price:
            px = f" STP {self.stop_price:.2f}"
        elif ot is OrderType.STOP_LIMIT and self.stop_price and self.limit_price:
            px = f" STP {self.stop_price:.2f} LMT {self.limit_price:.2f}"
        elif ot is OrderType.TRAILING_STOP:
            px = (f" TRAIL {self.trail_amount:.2f}" if self.trail_amount else
                  f" TRAIL {self.trail_pct:g}%" if self.trail_pct else " TRAIL")
        else:
            px = f" {TYPE_LABELS.get(ot, ot.value)}"
        tif = f" {self.tif.value.upper()}" if self.tif is not TimeInForce.DAY else ""
        # a leg's TIF only when it is not the children's default (GTC)
        tp = (f" TP {self.take_profit_price:.2f}" + _leg_tif(self.take_profit_tif)) if self.take_profit_price is not None else ""
        sl = (f" SL {self.stop_loss_price:.2f}" + _leg_tif(self.stop_loss_tif)) if self.stop_loss_price is not None else ""
        return f"{self.side.value.upper()} {self.qty} {self.symbol}{px}{tif}{tp}{sl}"


def _leg_tif(tif: TimeInForce) -> str:
    return "" if tif is TimeInForce.GTC else f" {tif.value.upper()}"


@dataclass(frozen=True)
class Outcome:
    """The result of one request, for the ticket's outcome line and the log.

    ``kind``: invalid | sent | ack | filled | rejected | unknown | cancel_sent | cancelled |
    cancel_rejected | cancel_unknown | reconciled | replace_sent | replaced | replace_rejected |
    replace_unknown | oco_sent | oco_set | oco_rejected | oco_unknown.
    """

    kind: str
    text: str
    client_order_id: str = ""
    ok: bool = True


def market_price(side: Side, q) -> float:
    """What a market order of ``side`` would pay: the ask for a buy, the bid for a sell (the
    last price when that side is empty)."""
    px = q.ask if side is Side.BUY else q.bid
    return px or q.last


def entry_price(ticket: Ticket, q) -> float | None:
    """The price the ticket's order is expected to trade at: its limit, its stop, a trailing
    stop's first stop, else the market.  The risk check prices the order at it, the
    confirmation shows its notional, a bracket's legs are placed around it."""
    ot = ticket.order_type
    if ot.has_limit:
        return ticket.limit_price
    if ot is OrderType.STOP:
        return ticket.stop_price
    if ot is OrderType.TRAILING_STOP:
        trail = ticket.trail_amount if ticket.trail_amount is not None else (
            q.last * ticket.trail_pct / 100.0 if ticket.trail_pct is not None else None)
        if trail is None:
            return None
        return q.last + trail if ticket.side is Side.BUY else q.last - trail
    return market_price(ticket.side, q)


def _type_name(ot: OrderType) -> str:
    return {OrderType.STOP_LIMIT: "stop limit", OrderType.TRAILING_STOP: "trailing stop"}.get(ot, ot.value)


def terms_problem(ticket: Ticket, q) -> str | None:
    """What is wrong with the ticket's terms, as a sentence for the trader (the rules of
    ``P.check_order_terms``, said in the ticket's words, plus where a stop or a bracket's leg
    stands against the market); None when they are fine."""
    ot = ticket.order_type
    name = _type_name(ot)
    buy = ticket.side is Side.BUY
    if ot.has_limit and not _price_ok(ticket.limit_price):
        return f"A {name} order needs a positive limit price."
    if ot in (OrderType.STOP, OrderType.STOP_LIMIT):
        stop = ticket.stop_price
        if not _price_ok(stop):
            return f"A {name} order needs a positive stop price."
        # a buy stop triggers at or above its price, a sell stop at or below: on the wrong
        # side of the last trade it would trigger at once (NinjaTrader and TWS refuse it too)
        if buy and stop <= q.last:
            return f"A buy stop's price must be above the last price {q.last:.2f} (at or below it, it triggers at once)."
        if not buy and stop >= q.last:
            return f"A sell stop's price must be below the last price {q.last:.2f} (at or above it, it triggers at once)."
    if ot is OrderType.TRAILING_STOP:
        amt, pct = ticket.trail_amount, ticket.trail_pct
        if amt is None and pct is None:
            return "A trailing stop needs a trail amount or a trail percentage."
        if amt is not None and pct is not None:
            return "A trailing stop takes a trail amount or a trail percentage, not both."
        if amt is not None and not _price_ok(amt):
            return "The trail amount must be a positive price distance."
        if pct is not None and not (isinstance(pct, (int, float)) and 0 < pct < 100):
            return "The trail percentage must be between 0 and 100 (both excluded)."
    if ticket.tif not in VALID_TIFS.get(ot, ()):
        return f"{ticket.tif.value.upper()} applies to market and limit orders, not to a {name} order (it rests until triggered)."
    if ticket.is_bracket:
        tp, sl = ticket.take_profit_price, ticket.stop_loss_price
        if tp is not None and not _price_ok(tp):
            return "The take-profit price must be positive."
        if sl is not None and not _price_ok(sl):
            return "The stop-loss price must be positive."
        rest = (TimeInForce.DAY, TimeInForce.GTC)
        if ticket.take_profit_tif not in rest or ticket.stop_loss_tif not in rest:
            return "A bracket's take-profit and stop-loss rest: their time in force is DAY or GTC."
        ref = entry_price(ticket, q)
        where = "the limit price" if ot.has_limit else "the stop price" if ot is OrderType.STOP else "the entry"
        if ref:
            if tp is not None and (tp <= ref if buy else tp >= ref):
                return (f"The take-profit price must be {'above' if buy else 'below'} {where} "
                        f"{ref:.2f} for a {ticket.side.value}.")
            if sl is not None and (sl >= ref if buy else sl <= ref):
                return (f"The stop-loss price must be {'below' if buy else 'above'} {where} "
                        f"{ref:.2f} for a {ticket.side.value}.")
    return None


def validate_ticket(ticket: Ticket, state: AppState, risk: RiskChecker, now: float | None = None,
                    record: bool = False) -> Decision:
    """May this ticket go out?  The reason is a sentence for the trader."""
    if not (ticket.symbol or "").strip():
        return Decision(False, "Enter a symbol.")
    try:
        sym = normalize_symbol(ticket.symbol)  # the rule every worker uses: "msft" is MSFT
    except ValueError as e:
        text = str(e)
        return Decision(False, f"{text[:1].upper()}{text[1:]}.")
    q = state.market.quotes.get(sym)
    if q is None or not q.last:
        return Decision(False, f"No prices for {sym}: not a symbol on the feed.")
    if isinstance(ticket.qty, bool) or not isinstance(ticket.qty, int) or ticket.qty < 1:
        return Decision(False, "Quantity must be a whole number of at least 1.")
    if ticket.qty > P.MAX_QTY:
        return Decision(False, f"Quantity must be at most {P.MAX_QTY}.")
    problem = terms_problem(ticket, q)
    if problem:
        return Decision(False, problem)
    try:  # the protocol's own rule, so nothing the gateway refuses for its terms goes out
        P.check_order_terms(_TermsView(ticket))
    except ValueError as e:
        return Decision(False, f"Order terms: {e}.")
    price = entry_price(ticket, q) or q.last
    pos = state.positions.qty(sym)
    pending = state.orders.pending_qty(sym)
    d = risk.check(ticket.side, sym, ticket.qty, price, time.monotonic() if now is None else now, pos, pending,
                   last=q.last, record=record)
    if not d:
        return Decision(False, f"Risk: {d.reason}.")
    return d


class _TermsView:
    """A ticket as ``P.check_order_terms`` reads an order (it also wants the id's length)."""

    def __init__(self, ticket: Ticket):
        self.__dict__.update(dataclasses.asdict(ticket))
        self.client_order_id = "manual-xxxxxxxx-000000"


def _signed_pct(d: float, ref: float) -> str:
    return f"{d:+.2f} ({d / ref * 100:+.2f}%)" if ref else f"{d:+.2f}"


def confirmation_text(ticket: Ticket, q) -> str:
    """The confirmation dialog's text: the order, its notional, and how far its prices are
    from the market (in price and %): a buy's from the ask, a sell's from the bid."""
    mkt = market_price(ticket.side, q)
    side_name = "ask" if ticket.side is Side.BUY else "bid"
    lines = [ticket.describe()]
    entry = entry_price(ticket, q) or mkt
    lines.append(f"Notional: {ticket.qty * entry:,.2f} ({ticket.qty:,} x {entry:.2f})")
    lines.append(f"Market: bid {q.bid:.2f} / ask {q.ask:.2f} / last {q.last:.2f}")
    ot = ticket.order_type
    if ot is OrderType.MARKET:
        lines.append(f"Distance: at market (the {side_name} {mkt:.2f})")
    else:
        if ot.has_limit:
            lines.append(f"Limit {ticket.limit_price:.2f}: {_signed_pct(ticket.limit_price - mkt, mkt)} from the {side_name}")
        if ticket.stop_price is not None:
            lines.append(f"Stop {ticket.stop_price:.2f}: {_signed_pct(ticket.stop_price - q.last, q.last)} from the last")
        if ot is OrderType.TRAILING_STOP and entry:
            lines.append(f"First stop {entry:.2f}: {_signed_pct(entry - q.last, q.last)} from the last")
    for name, px, tif in (("Take profit", ticket.take_profit_price, ticket.take_profit_tif),
                          ("Stop loss", ticket.stop_loss_price, ticket.stop_loss_tif)):
        if px is not None and entry:
            lines.append(f"{name} {px:.2f} ({tif.value.upper()}): {_signed_pct(px - entry, entry)} from the entry")
    if ticket.tif is not TimeInForce.DAY:
        lines.append(f"Time in force: {ticket.tif.value.upper()}")
    return "\n".join(lines)


class OrderService:
    """Sends the ticket's orders and cancels; keeps UNKNOWN orders reconciled."""

    def __init__(self, state: AppState, endpoint: str, limits: RiskLimits | None = None,
                 policy: RetryPolicy = RetryPolicy(), client: AsyncOrderClient | None = None, curve=None,
                 tasks: Tasks | None = None):
        self.state = state
        self.client = client or AsyncOrderClient(endpoint, policy, curve=curve)
        self.risk = RiskChecker(limits or RiskLimits())
        self.listeners: list[Callable[[Outcome], None]] = []
        #: client_order_id -> times get_order said it does not know the order
        self.unknown: dict[str, int] = {}
        self.synced = False
        self.pending_query_s = PENDING_QUERY_S
        #: fills loaded with get_fills, in all; False once the exchange refused get_fills
        self.history_fills = 0
        self.fills_supported = True
        #: every fill up to this number was loaded with get_fills (the stream's fills may be
        #: newer: a fill that came live is no proof that the ones before it are held)
        self.fills_through = 0
        #: client_order_id -> the replace_order request out for it (the chart holds a dragged
        #: line at its new price while one is out)
        self.replacing: dict[str, str] = {}
        # a task that fails shows on the ticket's outcome line, once (app/tasks.py logs it)
        self.tasks = tasks.child("orders", self._task_failed) if tasks is not None else Tasks("orders", self._task_failed)

    # ------------------------------------------------------------------ plumbing
    def start(self) -> None:
        self.tasks.spawn(self._background(), "reconcile")

    def close(self) -> None:
        self.tasks.cancel_all()

    async def aclose(self) -> None:
        await self.tasks.aclose()

    def _spawn(self, coro, name: str) -> asyncio.Task:
        return self.tasks.spawn(coro, name)

    def _task_failed(self, name: str, e: BaseException) -> None:
        self._report(Outcome("error", f"internal error: {type(e).__name__}: {e}", ok=False))

    def _report(self, outcome: Outcome) -> None:
        level = logging.INFO if outcome.ok else (
            logging.WARNING if outcome.kind in ("unknown", "cancel_unknown", "replace_unknown", "oco_unknown") else logging.ERROR)
        self.state.log.add(level, "orders", outcome.text)
        for fn in list(self.listeners):
            try:
                fn(outcome)
            except Exception:
                log.exception("order outcome listener failed")

    @property
    def kill_switch(self) -> bool:
        return self.risk.limits.kill_switch

    def set_kill_switch(self, on: bool) -> None:
        self.risk.limits = self.risk.limits.updated({"kill_switch": on})

    def set_limits(self, changes: dict) -> RiskLimits:
        """Raises ValueError naming the bad field; the current limits stay."""
        self.risk.limits = self.risk.limits.updated(changes)
        return self.risk.limits

    # ------------------------------------------------------------------ orders
    def check(self, ticket: Ticket) -> Decision:
        """What-if validation (nothing recorded): the ticket shows it while the trader types."""
        return validate_ticket(ticket, self.state, self.risk)

    def submit(self, ticket: Ticket) -> tuple[Decision, str | None]:
        """Validate and send; returns at once.  The result arrives via listeners."""
        try:
            symbol = normalize_symbol(ticket.symbol)
        except ValueError:  # validate_ticket says what is wrong with it
            symbol = (ticket.symbol or "").strip()
        ticket = ticket.normalized(symbol)
        d = validate_ticket(ticket, self.state, self.risk, record=True)
        if not d:
            self._report(Outcome("invalid", f"{ticket.describe()} not sent: {d.reason}", ok=False))
            return d, None
        coid = new_client_order_id("manual")
        now = P.now_ns()
        terms = dataclasses.asdict(ticket)
        row = OrderRow(client_order_id=coid, **terms, source="manual", status=OrderStatus.PENDING_NEW,
                       created_ts=now, ts=now)
        self.state.orders.add(row)
        req = P.SendOrder(client_order_id=coid, **terms, source="manual", ts=now)
        self._report(Outcome("sent", f"{ticket.describe()} sent ({coid})", coid))
        self._spawn(self._send(req, ticket), f"send {coid}")
        return d, coid

    async def _send(self, req: P.SendOrder, ticket: Ticket) -> None:
        coid = req.client_order_id
        reply = await self.client.ask(req)
        orders = self.state.orders
        if reply is None:
            orders.set_status(coid, OrderStatus.UNKNOWN, "no reply after every retry; reconciling with get_order")
            self.unknown[coid] = 0
            self._report(Outcome("unknown", f"{ticket.describe()}: NO REPLY from the exchange after "
                                 f"{self.client.policy.retries} tries -- order UNKNOWN, reconciling ({coid})", coid, ok=False))
            return
        if reply.__class__ is P.ErrorReply:
            # unreadable, or the gateway failed on it: it may hold the order -- never call it
            # rejected (a trader would send it again), ask get_order until it says
            orders.set_status(coid, OrderStatus.UNKNOWN, f"{reply.reason}; reconciling with get_order")
            self.unknown[coid] = 0
            self._report(Outcome("unknown", f"{ticket.describe()}: no readable answer ({reply.reason}) -- "
                                 f"order UNKNOWN, reconciling ({coid})", coid, ok=False))
            return
        # a SendOrderReply: status set when it is an order (accepted or refused), none when the
        # request was not one (refused before anything was journaled)
        is_order = reply.status is not None
        if reply.ok:
            if is_order:
                row = orders.apply_map({**msgspec.structs.asdict(reply), "client_order_id": coid})
            else:  # a bare ok: the exchange has it; the stream brings the details
                row = orders.set_status(coid, OrderStatus.NEW)
            status = row.status if row is not None else OrderStatus.NEW
            kind = "filled" if status is OrderStatus.FILLED else "ack"
            # "filled 100 @ 189.45", "partially_filled 40 @ 189.45" (the status already says filled)
            extra = f" {row.filled_qty} @ {row.avg_price:.2f}" if row is not None and row.filled_qty else ""
            self._report(Outcome(kind, f"{ticket.describe()} accepted: {status.value}{extra} ({coid})", coid))
        else:
            reason = reply.reason or "no reason given"
            if is_order:
                orders.apply_map({**msgspec.structs.asdict(reply), "client_order_id": coid})
            orders.set_status(coid, OrderStatus.REJECTED, reason)
            self._report(Outcome("rejected", f"{ticket.describe()} REJECTED: {reason} ({coid})", coid, ok=False))

    def cancel(self, coid: str) -> asyncio.Task:
        return self._spawn(self._cancel(coid), f"cancel {coid}")

    async def _cancel(self, coid: str) -> None:
        row = self.state.orders.get(coid)
        what = f"cancel {row.side.value} {row.qty} {row.symbol}" if row else f"cancel {coid}"
        self.state.orders.cancel_sent[coid] = P.now_ns()
        reply = await self.client.ask(P.CancelOrder(client_order_id=coid, ts=P.now_ns()))
        if reply is not None:
            self.state.orders.cancel_sent.pop(coid, None)
        if reply is None:
            self._report(Outcome("cancel_unknown", f"{what}: no reply from the exchange; the blotter shows "
                                 f"the order's state when the exchange reports it ({coid})", coid, ok=False))
            if row is not None and row.status is OrderStatus.UNKNOWN:
                self.unknown.setdefault(coid, 0)
            return
        if getattr(reply, "status", None) is not None:
            self.state.orders.apply_map({"client_order_id": coid, "order_id": reply.order_id, "status": reply.status})
        if reply.ok:
            self._report(Outcome("cancelled", f"{what}: done ({coid})", coid))
        else:
            self._report(Outcome("cancel_rejected", f"{what} refused: {reply.reason or 'no reason given'} ({coid})",
                                 coid, ok=False))

    # ------------------------------------------------------------------ replace, OCO
    def check_replace(self, coid: str, qty: int | None = None, limit_price: float | None = None,
                      stop_price: float | None = None) -> Decision:
        """May this change go out?  The order's own rules (a quantity above what is filled, a
        price only where the kind has one, a stop on the right side of the market) and the
        ticket's risk check of the order as it would stand."""
        row = self.state.orders.get(coid)
        if row is None:
            return Decision(False, f"no order {coid} in this window")
        if not row.is_live or row.status is OrderStatus.UNKNOWN:
            return Decision(False, f"the order is {row.status.value}: only a working order can be modified")
        if qty is None and limit_price is None and stop_price is None:
            return Decision(False, "nothing to change")
        ot = row.order_type
        if qty is not None:
            if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= P.MAX_QTY:
                return Decision(False, "the quantity must be a whole number of at least 1")
            if qty <= row.filled_qty:
                return Decision(False, f"the quantity must be more than the {row.filled_qty} already filled")
        if limit_price is not None:
            if not ot.has_limit:
                return Decision(False, f"a {_type_name(ot)} order has no limit price")
            if not _price_ok(limit_price):
                return Decision(False, "the limit price must be positive")
        if stop_price is not None:
            if ot not in (OrderType.STOP, OrderType.STOP_LIMIT):
                return Decision(False, f"a {_type_name(ot)} order has no stop price to move")
            if not _price_ok(stop_price):
                return Decision(False, "the stop price must be positive")
            q = self.state.market.quotes.get(row.symbol)
            if q is not None and q.last and not row.triggered:
                if row.side is Side.BUY and stop_price <= q.last:
                    return Decision(False, f"a buy stop must stay above the last price {q.last:.2f}")
                if row.side is Side.SELL and stop_price >= q.last:
                    return Decision(False, f"a sell stop must stay below the last price {q.last:.2f}")
        q = self.state.market.quotes.get(row.symbol)
        if q is None or not q.last:
            return Decision(True)  # no price to check against: the exchange's limits decide
        new_qty = qty if qty is not None else row.qty
        price = limit_price or stop_price or row.limit_price or row.stop_price or market_price(row.side, q)
        # the order's own remaining quantity is replaced, not added to
        pending = self.state.orders.pending_qty(row.symbol) - row.signed_remaining
        d = self.risk.check(row.side, row.symbol, new_qty - row.filled_qty, price, time.monotonic(),
                            self.state.positions.qty(row.symbol), pending, last=q.last, record=False)
        return d if d else Decision(False, f"risk: {d.reason}")

    def replace(self, coid: str, qty: int | None = None, limit_price: float | None = None,
                stop_price: float | None = None) -> asyncio.Task:
        """Modify a working order in place (``replace_order``); returns the request's task at
        once.  Outcomes: replace_sent, then replaced / replace_rejected / replace_unknown (no
        readable reply: the blotter shows what the stream says)."""
        return self._spawn(self._replace(coid, qty, limit_price, stop_price), f"replace {coid}")

    async def _replace(self, coid: str, qty: int | None, limit_price: float | None, stop_price: float | None) -> None:
        row = self.state.orders.get(coid)
        changes = [f"qty {qty}" if qty is not None else "", f"limit {limit_price:.2f}" if limit_price is not None else "",
                   f"stop {stop_price:.2f}" if stop_price is not None else ""]
        what = (f"modify {row.side.value} {row.qty} {row.symbol}" if row else f"modify {coid}") + \
            f" to {', '.join(c for c in changes if c) or 'nothing'}"
        d = self.check_replace(coid, qty, limit_price, stop_price)
        if not d:
            self._report(Outcome("replace_rejected", f"{what} not sent: {d.reason} ({coid})", coid, ok=False))
            return
        rid = new_client_order_id("replace")
        req = P.ReplaceOrder(orig_client_order_id=coid, client_order_id=rid, qty=qty, limit_price=limit_price,
                             stop_price=stop_price, ts=P.now_ns())
        self.replacing[coid] = rid
        self._report(Outcome("replace_sent", f"{what} sent ({rid})", coid))
        try:
            reply = await self.client.ask(req)
        finally:
            if self.replacing.get(coid) == rid:
                del self.replacing[coid]
        orders = self.state.orders
        if reply is None or reply.__class__ is P.ErrorReply:
            why = "no reply after every retry" if reply is None else f"no readable answer ({reply.reason})"
            self._report(Outcome("replace_unknown", f"{what}: {why}; the blotter shows the order as the "
                                 f"exchange reports it ({coid})", coid, ok=False))
            return
        if reply.ok:
            if reply.order is not None:
                orders.apply_update(reply.order)
            else:  # an ok without the order: the change as asked, until the stream says more
                asked = {"qty": qty, "limit_price": limit_price, "stop_price": stop_price}
                orders.apply_map({"client_order_id": coid, "ts": P.now_ns(),
                                  **{k: v for k, v in asked.items() if v is not None}})
            self._report(Outcome("replaced", f"{what}: done ({coid})", coid))
        else:
            if reply.order is not None:
                orders.apply_update(reply.order)
            elif reply.status is not None:
                orders.apply_map({"client_order_id": coid, "status": reply.status})
            self._report(Outcome("replace_rejected", f"{what} refused: {reply.reason or 'no reason given'} ({coid})",
                                 coid, ok=False))

    def set_oco(self, coids: list[str]) -> asyncio.Task:
        """Make working orders one-cancels-other (``set_oco``); outcomes oco_sent, then oco_set /
        oco_rejected / oco_unknown."""
        return self._spawn(self._set_oco(list(coids)), "set_oco")

    async def _set_oco(self, coids: list[str]) -> None:
        what = f"OCO {' + '.join(coids)}"
        if not 2 <= len(coids) <= 10 or len(set(coids)) != len(coids):
            self._report(Outcome("oco_rejected", f"{what} not sent: choose 2 to 10 different working orders", ok=False))
            return
        dead = [c for c in coids if (o := self.state.orders.get(c)) is None or not o.is_live]
        if dead:
            self._report(Outcome("oco_rejected", f"{what} not sent: not working: {', '.join(dead)}", ok=False))
            return
        self._report(Outcome("oco_sent", f"{what} sent"))
        reply = await self.client.ask(P.SetOco(client_order_ids=coids, ts=P.now_ns()))
        if reply is None or reply.__class__ is P.ErrorReply:
            self._report(Outcome("oco_unknown", f"{what}: no answer from the exchange; the blotter shows the group "
                                 "when the stream reports it", ok=False))
        elif reply.ok:
            now = P.now_ns()
            for c in coids:
                self.state.orders.apply_map({"client_order_id": c, "oco_group": reply.oco_group, "ts": now})
            self._report(Outcome("oco_set", f"{what}: one cancels the other (group {reply.oco_group})"))
        else:
            self._report(Outcome("oco_rejected", f"{what} refused: {reply.reason or 'no reason given'}", ok=False))

    async def cancel_all(self, symbol: str | None = None) -> P.CancelAllReply | P.ErrorReply | None:
        """Cancel every working order at the exchange (all sources).  Returns the typed reply or None."""
        reply = await self.client.ask(P.CancelAll(symbol=symbol, ts=P.now_ns()))
        if reply is None:
            self._report(Outcome("cancel_unknown", "cancel all: NO REPLY from the exchange after every retry", ok=False))
        elif reply.ok:
            n = len(getattr(reply, "cancelled", ()))
            self._report(Outcome("cancelled", f"cancel all{' ' + symbol if symbol else ''}: {n} orders"))
        else:
            self._report(Outcome("cancel_rejected", f"cancel all refused: {reply.reason or 'no reason given'}", ok=False))
        return reply

    # ------------------------------------------------------------------ reconciliation
    async def sync(self) -> bool:
        """Load working/recent orders and positions from the exchange (start, stream gaps)."""
        # cleared before, not after: a resync asked for while this one runs (the execution
        # stream's first report arriving, a gap) must run again, not be swallowed by it
        self.state.resync_wanted = False
        ok = await self._sync()
        if not ok:
            self.state.resync_wanted = True
        return ok

    async def _sync(self) -> bool:
        reply = await self.client.ask(P.GetPositions())
        if reply is None or not reply.ok:
            return False
        try:
            self.state.load_positions([msgspec.structs.asdict(p) for p in reply.positions], reply.last_fill_seq)
        except ValueError as e:
            self.state.log.warning("orders", f"unreadable get_positions reply: {e}")
            return False
        replay = [f for f in self.state.fills.items if (fill_number(f.fill_id) or 0) > self.state.positions.last_fill_seq]
        for f in replay:  # fills that reached us before the snapshot was taken's reply
            self.state.positions.get(f.symbol).apply(f.side, f.qty, f.price)
        reply = await self.client.ask(P.GetOrders(working_only=False))
        if reply is None or not reply.ok:
            # the blotter must not be taken for synced while its orders are not loaded
            if reply is not None:
                self.state.log.warning("orders", f"get_orders not loaded: {reply.reason}")
            return False
        for up in reply.orders:
            row = self.state.orders.apply_update(up)
            if row is not None and row.status is OrderStatus.UNKNOWN:
                self.unknown.setdefault(row.client_order_id, 0)
        fills = await self.load_fills()
        if not self.synced:
            self.state.log.info("orders", f"loaded {len(self.state.orders)} orders, "
                                f"{len(self.state.positions)} positions and {fills} fills from the exchange")
        self.synced = True
        return True

    async def load_fills(self) -> int:
        """Page through ``get_fills`` from the newest fill this window holds until the exchange's
        ``last_fill``; returns the fills new to this window.  Fills seen before (the stream, an
        earlier page) are dropped by fill_id in the state, so nothing shows twice.  A gateway
        without get_fills is told once in the log; the live stream still fills the blotter."""
        if not self.fills_supported:
            return 0
        st = self.state
        since = self.fills_through
        new = 0
        while True:
            reply = await self.client.ask(P.GetFills(since_fill=since, limit=FILLS_PAGE))
            if reply is None:
                return new  # asked again at the next resync
            if not reply.ok or reply.__class__ is not P.GetFillsReply:
                self.fills_supported = False
                st.log.warning("orders", f"fills history not loaded: {getattr(reply, 'reason', '') or 'refused'}")
                return new
            prev = top = since
            for f in reply.fills:
                if st.on_fill(f, history=True):
                    new += 1
                top = max(top, fill_number(f.fill_id) or 0)
            self.fills_through = since = top
            if not reply.fills or top >= reply.last_fill or top <= prev:
                break  # all of it, or a page that does not move on (never loop on it)
        self.history_fills += new
        return new

    def stuck(self, now_ns: int | None = None) -> list[OrderRow]:
        """Live orders pending for longer than ``pending_query_s``: new ones the exchange has
        not acknowledged, and cancels that got no answer."""
        now_ns = now_ns or P.now_ns()
        limit = now_ns - int(self.pending_query_s * 1e9)
        book = self.state.orders
        for coid in [c for c in book.cancel_sent if (o := book.get(c)) is None or not o.is_live]:
            del book.cancel_sent[coid]  # answered by the stream meanwhile
        out = []
        for o in book.live():
            if o.client_order_id in self.unknown:
                continue
            cancel_ts = book.cancel_sent.get(o.client_order_id, 0)
            if (o.status is OrderStatus.PENDING_NEW and o.ts <= limit) or (cancel_ts and cancel_ts <= limit):
                out.append(o)
        return out

    async def _query_stuck(self, row: OrderRow) -> None:
        """Ask the exchange what became of an order stuck pending, and show the answer."""
        coid = row.client_order_id
        if not row.querying:
            what = "cancel" if coid in self.state.orders.cancel_sent else "order"
            row.reason = f"{QUERYING_REASON}: {what} pending past {self.pending_query_s:g} s (get_order)"
            self.state.orders.mark_changed(coid)
        reply = await self.client.ask(P.GetOrder(client_order_id=coid))
        if reply is None or reply.__class__ is P.ErrorReply:
            return  # still querying; asked again at the next pass
        if reply.ok and reply.order is not None and reply.order.status is not OrderStatus.UNKNOWN:
            before = row.status
            self.state.orders.apply_update(reply.order)
            if row.querying:
                row.reason = reply.order.reason or ""
            self.state.orders.cancel_sent.pop(coid, None)
            self.state.orders.mark_changed(coid)
            if row.status is not before:
                self._report(Outcome("reconciled", f"order {coid} was pending: the exchange says {row.status.value}", coid))
        elif not reply.ok:
            # the exchange does not know it: it never arrived, the usual UNKNOWN path decides
            self.state.orders.set_status(coid, OrderStatus.UNKNOWN, "pending past its timeout and not known to the exchange")
            self.unknown.setdefault(coid, 0)

    async def _reconcile_one(self, coid: str) -> None:
        reply = await self.client.ask(P.GetOrder(client_order_id=coid))
        if reply is None or reply.__class__ is P.ErrorReply:
            return  # no answer, or none that can be read: it counts neither way
        if reply.ok and reply.order is not None and reply.order.status is not OrderStatus.UNKNOWN:
            row = self.state.orders.apply_update(reply.order)
            self.unknown.pop(coid, None)
            if row is not None:
                self._report(Outcome("reconciled", f"order {coid} reconciled: {row.status.value}", coid))
            return
        if reply.ok:
            return  # the gateway has it but said nothing usable: ask again
        # a real "unknown client_order_id": only repeated ones mean it was never placed
        self.unknown[coid] = self.unknown.get(coid, 0) + 1
        if self.unknown[coid] >= NOT_FOUND_CONFIRMATIONS:
            del self.unknown[coid]
            self.state.orders.set_status(coid, OrderStatus.REJECTED, "never reached the exchange (reconciled with get_order)")
            self._report(Outcome("reconciled", f"order {coid} never reached the exchange: not placed", coid, ok=False))

    async def _background(self) -> None:
        next_sync = 0.0
        while True:
            now = time.monotonic()
            if (not self.synced or self.state.resync_wanted) and now >= next_sync:
                ok = await self.sync()
                next_sync = time.monotonic() + (SYNC_RETRY_EVERY if not ok else RESYNC_MIN_GAP_S)
            for coid in list(self.unknown):
                await self._reconcile_one(coid)
            for row in self.stuck():
                await self._query_stuck(row)
            await asyncio.sleep(RECONCILE_EVERY)
