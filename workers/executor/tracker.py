"""The executor's order tracker: what became of every order it sent, without a socket.

It knows three sets, all keyed by ``client_order_id``:

* **working** -- sent, and its fills may still change the position (the risk check's
  ``pending``);
* **in flight** -- a ``send_order`` with no reply yet, with its deadline and attempt count;
* **unknown** -- no usable reply after every attempt: the gateway may or may not hold it.

It is driven by explicit calls -- :meth:`OrderTracker.submit`, :meth:`~OrderTracker.on_timeouts`,
:meth:`~OrderTracker.on_reply`, :meth:`~OrderTracker.on_fill`,
:meth:`~OrderTracker.on_order_update`, :meth:`~OrderTracker.on_get_order`,
:meth:`~OrderTracker.retire_expired` -- and reads time only from the injected clock, so every
Lazy Pirate decision is unit-tested on a :class:`~workers.clock.ManualClock`.  Each call
answers with a typed outcome (:class:`Resend`, :class:`Acked`, :class:`Settled`, ...); the
worker turns outcomes into I/O: transmits, decisions, counters, logs.

The rules it keeps (docs/executor.md):

* a resend is the *same* request (the same packed bytes, the same ``client_order_id``): the
  gateway is idempotent on it, so a resend can never become a second order;
* after the last attempt the order is unknown and is never sent again -- under any id;
  only evidence (a late reply, ``get_order``, the execution stream) settles it;
* fills count once per ``fill_id``; an order is retired when all its quantity has filled, or
  when it is final and the fills it reported have arrived (or ``terminal_grace`` after that).

Replies come typed, as the protocol declares them: a :class:`~workers.protocol.SendOrderReply`
or :class:`~workers.protocol.GetOrderReply` that answers the request, or an
:class:`~workers.protocol.ErrorReply` -- what the protocol makes of a reply that could not be
read as that answer (``decode_reply``/``reply_of``).  An ``ErrorReply`` never tells an order's
outcome: the gateway may or may not hold the order, so it stays (or becomes) unknown and is
reconciled.  That is the safe side even for the gateway's own ``error`` reply (it could not
read the request's type, which our packed requests always carry): reconciliation then finds
the order missing and says "not placed", a few rounds later than a rejection would have.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workers import protocol as P
from workers.clock import LIVE_CLOCK, Clock
from workers.order_client import LazyPirate, PirateStats, RetryPolicy
from workers.protocol import OrderStatus, Side

#: get_order must deny an unknown order this many times in a row before we call it "not placed":
#: a send the gateway has read but not yet journaled (its queue, a restart under way) is denied
#: by a get_order that a faster path (another connection, a reconnect) brought in first.
NOT_FOUND_CONFIRMATIONS = 3
#: a terminal order whose last fills never showed up on the stream is forgotten after this
TERMINAL_GRACE_S = 5.0


class InvalidTransition(ValueError):
    """A report that contradicts a final state (filled, then cancelled): the exchange and
    this executor disagree, which a person should hear about."""


#: how far along the life of an order a status is; reports never move an order back
_STAGE = {
    OrderStatus.PENDING_NEW: 0,
    OrderStatus.NEW: 1,
    OrderStatus.PARTIALLY_FILLED: 2,
    OrderStatus.FILLED: 3,
    OrderStatus.CANCELLED: 3,
    OrderStatus.REJECTED: 3,
    OrderStatus.EXPIRED: 3,
}


@dataclass(slots=True)
class WorkingOrder:
    """An order this executor sent and whose fills are not all in yet."""

    client_order_id: str
    symbol: str
    side: Side
    qty: int
    signal: P.Signal
    status: OrderStatus = OrderStatus.PENDING_NEW
    order_id: str = ""
    #: filled quantity as the exchange last reported it (reply or order update)
    exch_filled: int = 0
    #: quantity of fills for this order seen on the execution stream
    fills_seen: int = 0
    terminal_since: float = 0.0
    not_found: int = 0
    fill_ids: set[str] = field(default_factory=set)
    #: when the status last changed (monotonic): how long an order has been pending
    status_since: float = 0.0
    #: when get_order was last asked about it as a stuck order (0: never)
    queried_at: float = 0.0

    @property
    def terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def outstanding(self) -> int:
        """Quantity that may still change the position: unfilled if working, fills not yet
        seen if terminal."""
        target = self.exch_filled if self.terminal else self.qty
        return max(0, target - self.fills_seen)

    @property
    def signed_outstanding(self) -> int:
        return self.outstanding if self.side is Side.BUY else -self.outstanding

    def advance(self, status: OrderStatus, filled: int | None, now: float) -> bool:
        """Move to ``status`` if that is forward; True if the status changed.

        Reports race each other (the reply on the orders socket, updates on the execution
        stream), so one that would move the order back (``new`` after ``filled``) is stale and
        ignored -- the filled quantity still counts.  ``unknown`` is this client's own mark and
        may be entered or left from anywhere.  One final state followed by another is an
        :class:`InvalidTransition`.
        """
        if filled is not None:
            self.exch_filled = max(self.exch_filled, filled)
        cur = self.status
        if status is cur:
            return False
        if cur is not OrderStatus.UNKNOWN and status is not OrderStatus.UNKNOWN:
            if cur.is_terminal and status.is_terminal:
                raise InvalidTransition(f"order {self.client_order_id}: {cur.value} -> {status.value}")
            if _STAGE[status] < _STAGE[cur]:
                return False
        if status.is_terminal and not self.terminal:
            self.terminal_since = now
        self.status = status
        self.status_since = now
        return True


@dataclass(slots=True)
class InFlight:
    """A send_order whose reply has not come yet.  Its attempts, deadline and bytes are the
    one Lazy Pirate policy's (:class:`workers.order_client.LazyPirate`), driven over the
    executor's DEALER instead of a REQ socket."""

    order: WorkingOrder
    request: P.SendOrder
    call: LazyPirate
    sent_ns: int  # the first attempt (order_ack is measured from it)


# ----------------------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class Resend:
    """The deadline passed with attempts left: send ``flight.call.payload`` again."""

    flight: InFlight


@dataclass(frozen=True, slots=True)
class BecameUnknown:
    """No usable answer: the order is unknown now, and will be reconciled."""

    order: WorkingOrder
    why: str
    #: what the reply said, when there was one (the reason of an ErrorReply)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Acked:
    order: WorkingOrder
    sent_ns: int
    #: the reply's final state contradicted one the stream reported first (the first is kept)
    contradiction: str = ""


@dataclass(frozen=True, slots=True)
class Rejected:
    order: WorkingOrder
    reason: str
    sent_ns: int


@dataclass(frozen=True, slots=True)
class Settled:
    """An unknown order's outcome is known now (``order.status``), found out ``how``."""

    order: WorkingOrder
    how: str

    @property
    def accepted(self) -> bool:
        return self.order.status is not OrderStatus.REJECTED


@dataclass(frozen=True, slots=True)
class NotPlaced:
    """``get_order`` denied the order ``NOT_FOUND_CONFIRMATIONS`` times: the gateway never got it."""

    order: WorkingOrder
    reason: str


@dataclass(frozen=True, slots=True)
class StillUnknown:
    order: WorkingOrder
    #: the reply could not be read (nothing counted against the order)
    unreadable: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LateReply:
    """A reply for no order in flight: a resend's second answer, or one from before a restart."""

    client_order_id: str


@dataclass(frozen=True, slots=True)
class Contradiction:
    """A report the order's state machine refused (see :class:`InvalidTransition`)."""

    order: WorkingOrder
    error: str


@dataclass(frozen=True, slots=True)
class Resolved:
    """A working order the gateway was asked about (stuck pending, or missing from its working
    orders after a resync) has the state ``order.status`` now; it was ``was`` for ``age`` s."""

    order: WorkingOrder
    was: OrderStatus
    age: float


@dataclass(frozen=True, slots=True)
class StillPending:
    """Asked about, the order is still in ``order.status`` (asked again after another timeout)."""

    order: WorkingOrder


ReplyOutcome = Acked | Rejected | BecameUnknown | Settled | LateReply
TimeoutOutcome = Resend | BecameUnknown
GetOrderOutcome = Settled | NotPlaced | StillUnknown
StateOutcome = Resolved | StillPending | NotPlaced | StillUnknown | Settled | Contradiction


# ----------------------------------------------------------------------------- replies

SendReply = P.SendOrderReply | P.ErrorReply
QueryReply = P.GetOrderReply | P.ErrorReply


def reply_is_for(reply: SendReply, coid: str) -> bool:
    """Does ``reply`` tell the outcome of order ``coid``?  Not when it is an ErrorReply, when it
    names another order, or when its status is this client's own ``unknown``."""
    if reply.__class__ is not P.SendOrderReply:
        return False
    if reply.status is OrderStatus.UNKNOWN:
        return False
    return not reply.client_order_id or reply.client_order_id == coid


# ----------------------------------------------------------------------------- fills accounted


class FillWatermark:
    """The newest fill number ``n`` such that every fill numbered up to ``n`` is accounted for
    (in a positions snapshot or applied from the stream): what ``get_fills`` asks after on a
    resync.  Not simply the newest fill seen: with F10, F12 seen and F11 lost, asking after 12
    would never bring F11 back.  Numbers seen above the mark wait in a set until the hole below
    them fills; a gateway that skipped a number only costs a longer ``get_fills`` (its answers
    are applied once per fill id)."""

    __slots__ = ("base", "_above")

    #: numbers held above the mark; beyond this the mark jumps to the newest (a hole this old
    #: is left to the positions snapshot, which every resync ends with)
    MAX_ABOVE = 100_000

    def __init__(self, base: int = 0):
        self.base = base
        self._above: set[int] = set()

    def rebase(self, n: int) -> None:
        """A snapshot holds every fill up to ``n``."""
        if n > self.base:
            self.base = n
            self._above = {x for x in self._above if x > n}
            self._advance()

    def saw(self, n: int) -> None:
        if n <= self.base:
            return
        self._above.add(n)
        self._advance()
        if len(self._above) > self.MAX_ABOVE:
            self.rebase(max(self._above))

    def _advance(self) -> None:
        while self.base + 1 in self._above:
            self.base += 1
            self._above.discard(self.base)


# ----------------------------------------------------------------------------- the tracker


class OrderTracker:
    """Working, in-flight and unknown orders; see the module docstring."""

    def __init__(
        self,
        clock: Clock = LIVE_CLOCK,
        *,
        timeout: float = 1.0,
        attempts: int = 3,
        terminal_grace: float = TERMINAL_GRACE_S,
        not_found_confirmations: int = NOT_FOUND_CONFIRMATIONS,
    ):
        if not timeout > 0 or attempts < 1:
            raise ValueError(f"need timeout > 0 and attempts >= 1, got {timeout!r}, {attempts!r}")
        self.clock = clock
        self.timeout = timeout
        self.attempts = attempts
        self._policy = RetryPolicy(timeout, attempts)
        #: requests, resends, timeouts, given up: the same counters every Lazy Pirate client keeps
        self.pirate_stats = PirateStats()
        self.terminal_grace = terminal_grace
        self.not_found_confirmations = not_found_confirmations
        self.working: dict[str, WorkingOrder] = {}
        #: in the order they became unknown (reconciled oldest first)
        self.unknown: dict[str, WorkingOrder] = {}
        #: oldest deadline first: a resend moves its order to the back
        self.in_flight: dict[str, InFlight] = {}

    # ---- reading
    def pending(self, symbol: str) -> int:
        """Signed quantity of ``symbol`` that working orders may still add to the position."""
        return sum(o.signed_outstanding for o in self.working.values() if o.symbol == symbol)

    def next_deadline(self) -> float | None:
        oldest = next(iter(self.in_flight.values()), None)
        return oldest.call.deadline if oldest is not None else None

    def unknown_ids(self) -> list[str]:
        return list(self.unknown)

    # ---- sending
    def submit(self, request: P.SendOrder, signal: P.Signal) -> InFlight:
        """Book ``request`` as working and in flight; the caller transmits ``payload``.

        Booked before the send, so fills that race the reply find their order."""
        coid = request.client_order_id
        if coid in self.working or coid in self.in_flight or coid in self.unknown:
            raise ValueError(f"client_order_id {coid} is in use")
        now = self.clock.monotonic()
        wo = self.working[coid] = WorkingOrder(coid, request.symbol, request.side, request.qty, signal, status_since=now)
        call = LazyPirate(request.pack(), self._policy, self.pirate_stats)
        call.begin(now)
        inf = self.in_flight[coid] = InFlight(wo, request, call, self.clock.time_ns())
        return inf

    def on_timeouts(self) -> list[TimeoutOutcome]:
        """Lazy Pirate per order: past its deadline an order is sent again (the same request),
        and after the last attempt it is unknown.  The caller reads the replies already
        waiting first: an answered order must not be declared unknown."""
        now = self.clock.monotonic()
        out: list[TimeoutOutcome] = []
        for inf in [f for f in self.in_flight.values() if f.call.deadline <= now]:
            coid = inf.order.client_order_id
            if inf.call.on_timeout():
                inf.call.begin(now)
                del self.in_flight[coid]
                self.in_flight[coid] = inf  # to the back: deadlines stay in order
                out.append(Resend(inf))
            else:
                out.append(self._mark_unknown(inf.order, "no reply after every attempt"))
        return out

    # ---- evidence
    def on_reply(self, coid: str, reply: SendReply) -> ReplyOutcome:
        """The gateway's answer to a ``send_order`` for ``coid``, typed (an ErrorReply when it
        could not be read as one: :func:`workers.protocol.decode_reply`)."""
        inf = self.in_flight.pop(coid, None)
        tells = reply_is_for(reply, coid)
        if inf is None:
            wo = self.unknown.get(coid)
            if wo is not None and tells:
                return self._late_reply(wo, reply)  # the gateway had it after all
            return LateReply(coid)
        wo = inf.order
        if not tells:
            # an answer that does not tell: the gateway may or may not hold the order
            if reply.__class__ is P.SendOrderReply:
                return self._mark_unknown(wo, "reply does not tell this order's outcome",
                                          f"client_order_id {reply.client_order_id!r}, status {reply.status}")
            return self._mark_unknown(wo, "unreadable reply", reply.reason)
        status = reply.status
        if not reply.ok or status is OrderStatus.REJECTED:
            self.working.pop(coid, None)
            return Rejected(wo, reply.reason or "no reason given", inf.sent_ns)
        wo.order_id = reply.order_id
        contradiction = ""
        try:
            wo.advance(status or OrderStatus.NEW, reply.filled_qty, self.clock.monotonic())
        except InvalidTransition as e:
            contradiction = str(e)
        self._retire_if_done(wo)
        return Acked(wo, inf.sent_ns, contradiction)

    def on_fill(self, fill: P.Fill) -> Settled | None:
        """A fill on the execution stream (whether or not the position book counted it: one a
        snapshot already holds still completes its order)."""
        wo = self.working.get(fill.client_order_id)
        if wo is None or fill.fill_id in wo.fill_ids:
            return None
        wo.fill_ids.add(fill.fill_id)
        wo.fills_seen += fill.qty
        settled = None
        if fill.client_order_id in self.unknown:
            # a fill proves the gateway has the order
            status = OrderStatus.FILLED if wo.fills_seen >= wo.qty else OrderStatus.PARTIALLY_FILLED
            wo.advance(status, wo.fills_seen, self.clock.monotonic())  # from unknown: always allowed
            settled = self._settled(wo, "fill")
        self._retire_if_done(wo)
        return settled

    def on_order_update(self, up: P.OrderUpdate) -> Settled | Contradiction | None:
        wo = self.working.get(up.client_order_id)
        if wo is None:
            return None  # someone else's order (manual ticket) or one already done
        if up.order_id:
            wo.order_id = up.order_id
        try:
            wo.advance(up.status, up.filled_qty, self.clock.monotonic())
        except InvalidTransition as e:
            return Contradiction(wo, str(e))
        settled = self._settled(wo, "execution stream") if up.client_order_id in self.unknown else None
        self._retire_if_done(wo)
        return settled

    def on_get_order(self, coid: str, reply: QueryReply) -> GetOrderOutcome | None:
        """The gateway's ``get_order`` answer about an unknown order (None: not unknown now)."""
        wo = self.unknown.get(coid)
        if wo is None:
            return None
        if reply.__class__ is not P.GetOrderReply:
            # no answer to the question: it counts neither way
            return StillUnknown(wo, unreadable=True, reason=reply.reason)
        order = reply.order
        status = order.status if order is not None else reply.status
        if reply.ok and status is not None and status is not OrderStatus.UNKNOWN:
            if order is not None:
                return self._settle(wo, order.order_id, order.filled_qty, status, "get_order")
            return self._settle(wo, reply.order_id, None, status, "get_order")
        wo.not_found += 1
        if wo.not_found < self.not_found_confirmations:
            return StillUnknown(wo, reason=reply.reason)
        # the gateway never got it: nothing to fill, nothing to cancel
        del self.unknown[coid]
        self.working.pop(coid, None)
        return NotPlaced(wo, reply.reason)

    # ---- orders stuck, and the gateway's view after a resync
    def stuck(self, timeout: float) -> list[WorkingOrder]:
        """Working orders answered as ``pending_new`` more than ``timeout`` s ago and not asked
        about within the last ``timeout`` s (each is marked asked now).  The gateway holds such an
        order for its first market data; one that stays there is asked about, not trusted.
        (The executor sends no cancel of its own, so it has no ``pending_cancel`` to watch.)"""
        now = self.clock.monotonic()
        out = []
        for wo in self.working.values():
            if (wo.status is OrderStatus.PENDING_NEW and wo.client_order_id not in self.in_flight
                    and now - wo.status_since >= timeout and now - wo.queried_at >= timeout):
                wo.queried_at = now
                out.append(wo)
        return out

    def missing_from(self, listed: list[P.OrderUpdate]) -> tuple[list[Settled | Contradiction], list[str]]:
        """The gateway's working orders (``get_orders`` ``working_only``, after a reconnect): each
        of ours it lists moves to its state; ours it does not list (working, answered, not
        unknown) ended while we were not listening, and their ids are returned to be asked about
        with ``get_order``.  Unknown ones it lists are settled; unlisted unknown ones are left to
        the reconcile rounds."""
        outcomes: list[Settled | Contradiction] = []
        seen = set()
        for up in listed:
            seen.add(up.client_order_id)
            out = self.on_order_update(up)
            if out is not None:
                outcomes.append(out)
        missing = [c for c, wo in self.working.items()
                   if c not in seen and c not in self.in_flight and c not in self.unknown and not wo.terminal]
        return outcomes, missing

    def on_order_state(self, coid: str, reply: QueryReply) -> StateOutcome | None:
        """The gateway's ``get_order`` answer about a working order it was asked about (stuck
        pending, or missing from its working orders); None if the order is not working now."""
        if coid in self.unknown:
            return self.on_get_order(coid, reply)
        wo = self.working.get(coid)
        if wo is None:
            return None
        if reply.__class__ is not P.GetOrderReply:
            return StillUnknown(wo, unreadable=True, reason=reply.reason)
        order = reply.order
        status = order.status if order is not None else reply.status
        if not reply.ok or status is None or status is OrderStatus.UNKNOWN:
            wo.not_found += 1
            if wo.not_found < self.not_found_confirmations:
                return StillUnknown(wo, reason=reply.reason)
            self.working.pop(coid, None)
            return NotPlaced(wo, reply.reason)
        was, now = wo.status, self.clock.monotonic()
        age = now - wo.status_since
        if order is not None and order.order_id:
            wo.order_id = order.order_id
        try:
            changed = wo.advance(status, order.filled_qty if order is not None else None, now)
        except InvalidTransition as e:
            return Contradiction(wo, str(e))
        self._retire_if_done(wo)
        return Resolved(wo, was, age) if changed else StillPending(wo)

    def retire_expired(self) -> list[WorkingOrder]:
        """Forget final orders whose last fills never came within ``terminal_grace``."""
        now = self.clock.monotonic()
        gone = [wo for wo in self.working.values() if wo.terminal and now - wo.terminal_since > self.terminal_grace]
        for wo in gone:
            del self.working[wo.client_order_id]
        return gone

    # ---- inside
    def _mark_unknown(self, wo: WorkingOrder, why: str, detail: str = "") -> BecameUnknown:
        """The gateway may or may not hold this order: keep it working (its full quantity
        stays in ``pending``), reconcile it, never send it again."""
        coid = wo.client_order_id
        wo.advance(OrderStatus.UNKNOWN, None, self.clock.monotonic())
        self.unknown[coid] = wo
        self.in_flight.pop(coid, None)
        return BecameUnknown(wo, why, detail)

    def _late_reply(self, wo: WorkingOrder, reply: P.SendOrderReply) -> Settled:
        if not reply.ok:
            status = OrderStatus.REJECTED
        else:
            status = reply.status or OrderStatus.NEW  # as an ack without a status is read on the main path
        return self._settle(wo, reply.order_id, reply.filled_qty, status, "late reply")

    def _settle(self, wo: WorkingOrder, order_id: str, filled: int | None, status: OrderStatus, how: str) -> Settled:
        if order_id:
            wo.order_id = order_id
        wo.advance(status, filled, self.clock.monotonic())
        settled = self._settled(wo, how)
        self._retire_if_done(wo)
        return settled

    def _settled(self, wo: WorkingOrder, how: str) -> Settled:
        del self.unknown[wo.client_order_id]
        return Settled(wo, how)

    def _retire_if_done(self, wo: WorkingOrder) -> None:
        if wo.client_order_id in self.unknown:
            return
        # all fills in (even if the terminal update was lost), or terminal with nothing to come
        if wo.fills_seen >= wo.qty or (wo.terminal and wo.outstanding == 0):
            self.working.pop(wo.client_order_id, None)


__all__ = [
    "NOT_FOUND_CONFIRMATIONS",
    "TERMINAL_GRACE_S",
    "Acked",
    "BecameUnknown",
    "Contradiction",
    "FillWatermark",
    "InFlight",
    "InvalidTransition",
    "LateReply",
    "NotPlaced",
    "OrderTracker",
    "QueryReply",
    "Rejected",
    "Resend",
    "Resolved",
    "SendReply",
    "Settled",
    "StillPending",
    "StillUnknown",
    "WorkingOrder",
    "reply_is_for",
]
