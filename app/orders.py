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
from workers.protocol import OrderStatus, OrderType, Side
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


@dataclass(frozen=True)
class Ticket:
    """What the order ticket asks for."""

    symbol: str
    side: Side
    qty: int
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None

    def describe(self) -> str:
        px = f" @ {self.limit_price:.2f} LMT" if self.order_type is OrderType.LIMIT and self.limit_price else " MKT"
        return f"{self.side.value.upper()} {self.qty} {self.symbol}{px}"


@dataclass(frozen=True)
class Outcome:
    """The result of one request, for the ticket's outcome line and the log.

    ``kind``: invalid | sent | ack | filled | rejected | unknown | cancel_sent | cancelled |
    cancel_rejected | cancel_unknown | reconciled.
    """

    kind: str
    text: str
    client_order_id: str = ""
    ok: bool = True


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
    if ticket.order_type is OrderType.LIMIT:
        px = ticket.limit_price
        if px is None or not math.isfinite(px) or px <= 0:
            return Decision(False, "A limit order needs a positive limit price.")
        price = px
    else:
        price = q.ask if ticket.side is Side.BUY else q.bid
        price = price or q.last
    pos = state.positions.qty(sym)
    pending = state.orders.pending_qty(sym)
    d = risk.check(ticket.side, sym, ticket.qty, price, time.monotonic() if now is None else now, pos, pending,
                   last=q.last, record=record)
    if not d:
        return Decision(False, f"Risk: {d.reason}.")
    return d


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
        level = logging.INFO if outcome.ok else (logging.WARNING if outcome.kind in ("unknown", "cancel_unknown") else logging.ERROR)
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
        ticket = Ticket(symbol, ticket.side, ticket.qty, ticket.order_type,
                        ticket.limit_price if ticket.order_type is OrderType.LIMIT else None)
        d = validate_ticket(ticket, self.state, self.risk, record=True)
        if not d:
            self._report(Outcome("invalid", f"{ticket.describe()} not sent: {d.reason}", ok=False))
            return d, None
        coid = new_client_order_id("manual")
        now = P.now_ns()
        row = OrderRow(client_order_id=coid, symbol=ticket.symbol, side=ticket.side, qty=ticket.qty,
                       order_type=ticket.order_type, limit_price=ticket.limit_price, source="manual",
                       status=OrderStatus.PENDING_NEW, created_ts=now, ts=now)
        self.state.orders.add(row)
        req = P.SendOrder(client_order_id=coid, symbol=ticket.symbol, side=ticket.side, qty=ticket.qty,
                          order_type=ticket.order_type, limit_price=ticket.limit_price, source="manual", ts=now)
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
