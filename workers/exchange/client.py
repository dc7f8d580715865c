"""The exchange seam: what the gateway needs from an exchange, and the records it passes.

:class:`ExchangeClient` is where a real broker plugs in (a vendor DLL via ctypes/cffi, a FIX
session, a REST/WebSocket API).  The gateway owns everything around it -- the ROUTER
endpoint, idempotency, the journal, the execution stream, positions -- and calls the client
only with validated, journaled orders.  A client answers each call with a list of
:data:`ExecEvent` (order state snapshots and fills); the gateway journals those events, then
replies and publishes them.  The embedded default is
:class:`workers.exchange.simulated.SimulatedExchange`; see docs/exchange.md.

Positions are not the client's business: the gateway derives them from fills with the one
:class:`workers.positions.PositionBook`, so every client (and the executor and the window)
gets the same P&L arithmetic.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec

from workers import protocol as P
from workers.protocol import OrderStatus, OrderType, Side


def clip_text(text: str) -> str:
    """``text`` cut to what a free-text field may carry (docs/protocol.md), saying so."""
    return text if len(text) <= P.MAX_TEXT else text[: P.MAX_TEXT - 1] + "…"


class _OrderMethods:
    """What the gateway does with its record of an order (mixed into :class:`Order`)."""

    __slots__ = ()

    @classmethod
    def from_request(cls, req: P.SendOrder, now: int) -> Order:
        cause = req.ts or now
        terms = {name: getattr(req, name) for name in _FROM_REQUEST}
        return cls(**terms, created_ts=now, ts=now, cause_ts=cause, origin_ts=req.origin_ts or req.cause_ts or cause)

    @property
    def remaining(self) -> int:
        return self.qty - self.filled_qty

    @property
    def is_working(self) -> bool:
        return self.status in P.WORKING_STATUSES

    @property
    def exec_type(self) -> OrderType:
        """How a venue works the order now: a stop kind is held until ``triggered``, then a
        market order (stop, trailing_stop) or a limit order (stop_limit); others as they are."""
        ot = self.order_type
        if ot is OrderType.MARKET or ot is OrderType.LIMIT:
            return ot
        return OrderType.LIMIT if ot is OrderType.STOP_LIMIT else OrderType.MARKET

    def same_terms(self, req: P.SendOrder) -> bool:
        """True if ``req`` asks for this very order (a resend), whatever its timestamps.  A
        trailing stop's ``stop_price`` is its level, set by the venue, not a term of the request."""
        mine, theirs = _terms(self), _terms(req)
        if mine == theirs:
            return True
        if self.order_type is not OrderType.TRAILING_STOP:
            return False
        return mine[:_STOP_AT] == theirs[:_STOP_AT] and mine[_STOP_AT + 1:] == theirs[_STOP_AT + 1:]

    def apply_fill(self, qty: int, price: float) -> None:
        total = self.filled_qty + qty
        self.avg_price = (self.avg_price * self.filled_qty + price * qty) / total
        self.filled_qty = total
        self.status = P.OrderStatus.FILLED if total >= self.qty else P.OrderStatus.PARTIALLY_FILLED

    def snapshot(self) -> Order:
        return self.__copy__()  # msgspec copies a struct in C

    def copy_state_from(self, other: Order) -> None:
        """Take ``other``'s state (everything but the terms and creation time)."""
        for name in _STATE:
            setattr(self, name, getattr(other, name))

    def to_update(self, seq: int = 0, epoch: int = 0) -> P.OrderUpdate:
        """The order as an ``order_update``: a report of the stream ``seq``/``epoch``, or (0, 0)
        a snapshot in a query reply."""
        up = P.OrderUpdate(*_update_values(self), **{n: getattr(self, n) for n in _update_kw}, seq=seq, epoch=epoch)
        if len(up.reason) > P.MAX_TEXT:  # a broker's essay must not make the report unreadable
            up = msgspec.structs.replace(up, reason=clip_text(up.reason))
        return up

    @property
    def updated_ts(self) -> int:
        """The time of the latest change: ``ts`` (the name before the records derived from
        ``order_update``; kept for exchange clients written against it)."""
        return self.ts

    @updated_ts.setter
    def updated_ts(self, value: int) -> None:
        self.ts = value


#: The gateway's record of one order: the fields of ``order_update`` (minus the stream's
#: ``seq``) plus when it was created.  Mutable on purpose: the client that works the order
#: updates it in place and hands out :meth:`snapshot` copies in its events, so a burst of
#: updates costs one journal write.  ``ts`` is the time of the latest change.
Order = P.derive_record(
    "Order", P.OrderUpdate, drop=P.STREAM_FIELDS, last=[("created_ts", int, 0)],
    namespace={k: v for k, v in vars(_OrderMethods).items() if not k.startswith("__")},
)
_names = [f.name for f in P.fields_of(P.OrderUpdate) if f.name not in P.STREAM_FIELDS]
# a message is built from a record: its positional fields in one C call, its keyword-only
# ones (the Traced group) by name
_update_values = operator.attrgetter(*P.positional_fields(P.OrderUpdate))
_update_kw = [n for n in _names if n not in P.positional_fields(P.OrderUpdate)]
_terms = operator.attrgetter(*P.ORDER_TERMS)
_STOP_AT = P.ORDER_TERMS.index("stop_price")
_FROM_REQUEST = tuple(n for n in _names if n in {f.name for f in P.fields_of(P.SendOrder)} and n not in ("ts", "cause_ts", "origin_ts"))
# the state plus the terms a client may change after submit (replace_order, a trigger, an OCO
# group), so a record adopted from a snapshot (a bracket child) follows every later change
_STATE = ("order_id", "status", "filled_qty", "avg_price", "reason", "ts", "cause_ts",
          "qty", "limit_price", "stop_price", "triggered", "emulated", "oco_group")


class _FillMethods:
    __slots__ = ()

    def to_message(self, seq: int = 0, epoch: int = 0) -> P.Fill:
        """The fill as a ``fill``: a report of the stream ``seq``/``epoch``, or (0, 0) in a
        query reply (get_fills)."""
        return P.Fill(*_fill_values(self), **{n: getattr(self, n) for n in _fill_kw}, seq=seq, epoch=epoch)


#: One execution: the fields of ``fill`` (minus ``seq``) after ``n``, the fill's number
#: (fill_id is ``F<n>``): strictly increasing.
FillRecord = P.derive_record(
    "FillRecord", P.Fill, drop=P.STREAM_FIELDS, first=[("n", int)], frozen=True,
    namespace={k: v for k, v in vars(_FillMethods).items() if not k.startswith("__")},
)
_fill_values = operator.attrgetter(*P.positional_fields(P.Fill))
_fill_kw = [f.name for f in P.fields_of(P.Fill) if f.name not in P.STREAM_FIELDS and f.name not in P.positional_fields(P.Fill)]


def reject_unacknowledged(order: Order, new_id: Callable[[], str], now: int) -> OrderEvent:
    """An in-process venue's answer, at ``recover``, to a journaled order still pending_new.

    The journal only ever holds such a venue's order together with its acknowledgement, so a
    bare pending_new one never reached it: say so instead of inventing an ack (``new_id``
    gives the order an id if it has none)."""
    if not order.order_id:
        order.order_id = new_id()
    order.status = OrderStatus.REJECTED
    order.reason = "not placed: the exchange restarted before acknowledging it"
    order.ts = now
    return OrderEvent(order.snapshot())


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """The order's state right after a change (a snapshot, never the live object)."""

    order: Order


@dataclass(frozen=True, slots=True)
class FillEvent:
    fill: FillRecord


ExecEvent = OrderEvent | FillEvent


@dataclass(frozen=True, slots=True)
class CancelResult:
    ok: bool
    reason: str = ""
    events: list[ExecEvent] = field(default_factory=list)


class ExchangeClient(ABC):
    """What the gateway needs from an exchange.  Every call runs on the gateway's loop.

    Contract:

    * No call blocks: the loop also answers queries and heartbeats, and a call that waits on
      a remote venue would get the gateway taken for silent and killed.  A venue's answers
      come back through ``poll`` (a FIX session or a broker API reads its socket on its own
      thread or through the loop, never inside ``submit``).

    * ``submit`` receives a journaled order in ``pending_new`` with empty ``order_id``.  It
      assigns ``order_id``, moves the order on (``new``, ``rejected`` with a ``reason``,
      fills), and returns the events in the order they happened.
    * ``cancel`` is only called for working orders the gateway knows.
    * ``on_tick`` sees every tick of a symbol the client has working orders in (see
      :meth:`working_symbols`) and at least the latest tick of every other symbol.
    * ``poll`` returns events that arrived on their own (a broker callback thread should put
      them on a queue that ``poll`` empties); the gateway calls it when
      ``capabilities["async_events"]`` is true.
    * ``state`` returns small integers the client needs back after a restart (id counters);
      the gateway journals them with each batch and hands them to ``recover``.
    * Orders are found by ``client_order_id``: a call may pass the gateway's record of an
      order that the client works as another object (a child it created); the client acts on
      its own and reports snapshots, which the gateway copies (:meth:`Order.copy_state_from`).
    * A client may create orders by itself (bracket children): they come back as
      ``OrderEvent`` snapshots of orders the gateway has never seen, ``parent_id`` set; the
      gateway adopts and journals them.
    * An inner client of :class:`workers.exchange.kinds.OrderKinds` also receives stop-kind
      orders once they trigger (``order.triggered``): it works them as :attr:`Order.exec_type`
      (market, or limit at ``limit_price``).  Such an order comes in ``new`` with the local
      ``order_id`` it was held under, which the client may keep or replace with its own.
    """

    #: a short name for logs and stats
    name: ClassVar[str] = "exchange"

    #: What this exchange can do.  The gateway reads this instead of branching on the type:
    #:   order_types    -- order types it accepts; others are rejected by the gateway
    #:   cancel         -- whether working orders can be cancelled
    #:   remote         -- orders leave this process, so the gateway commits the pending_new
    #:                     row BEFORE calling submit (a crash in between is reconciled by
    #:                     ``recover``); in-process exchanges rebuild from the journal and
    #:                     share the batch's single commit
    #:   async_events   -- events may arrive outside submit/cancel/on_tick: call ``poll``
    #:   needs_ticks    -- wants the market data stream (a simulator does; a broker does not)
    #:   tifs           -- times in force it works natively (P.TimeInForce)
    #:   replace        -- ``replace`` changes working orders in place
    #:   brackets       -- it creates bracket children itself (take_profit / stop_loss)
    #:   oco            -- ``set_oco`` is native
    #:   depth          -- wants the depth stream (``on_depth``)
    capabilities: ClassVar[Mapping[str, Any]] = {
        "order_types": frozenset(),
        "cancel": False,
        "remote": False,
        "async_events": False,
        "needs_ticks": False,
        "tifs": frozenset(),
        "replace": False,
        "brackets": False,
        "oco": False,
        "depth": False,
    }

    @abstractmethod
    def submit(self, order: Order, now: int) -> list[ExecEvent]:
        """Place ``order``; return what happened to it."""

    @abstractmethod
    def cancel(self, order: Order, now: int, cause_ts: int = 0) -> CancelResult:
        """Cancel a working order."""

    def on_tick(self, tick: P.Tick) -> list[ExecEvent]:
        """Market moved: return fills and updates it caused."""
        return []

    def on_depth(self, depth: P.Depth) -> list[ExecEvent]:
        """The symbol's order book moved (when ``capabilities["depth"]``): return what it caused."""
        return []

    def on_time(self, now: int) -> list[ExecEvent]:
        """Called by the gateway at least every 0.25 s: whatever time drives (DAY orders expiring
        at the session's end: status ``expired``, reason "day order expired at the session end")."""
        return []

    def replace(
        self, order: Order, qty: int | None, limit_price: float | None, stop_price: float | None, now: int, cause_ts: int = 0
    ) -> CancelResult:
        """Change a working order in place (when ``capabilities["replace"]``).  ``qty`` is the new
        total (more than ``filled_qty``); None leaves a term as it is.  The gateway has already
        checked the new terms (``P.check_order_terms``, hard limits).  The order keeps its
        ``client_order_id``; it may fill at once (a limit moved through the market).  Refused
        (``ok`` false, reason) when the order is done or the change cannot apply."""
        return CancelResult(False, f"the {self.name} exchange does not support replacing orders")

    def set_oco(self, orders: list[Order], group: str, now: int) -> CancelResult:
        """Make working ``orders`` one-cancels-other under ``group`` (their ``oco_group``): when
        one fills, even partly, the others are cancelled (reason "oco: <client_order_id>
        filled").  Events: the orders' snapshots (when ``capabilities["oco"]``)."""
        return CancelResult(False, f"the {self.name} exchange does not support oco groups")

    def working_symbols(self) -> Iterable[str]:
        """Symbols with working orders: the gateway feeds every one of their ticks in order."""
        return ()

    def poll(self, now: int) -> list[ExecEvent]:
        """Events that arrived by themselves since the last call."""
        return []

    def state(self) -> dict[str, int]:
        """Counters to journal (restored through :meth:`recover`)."""
        return {}

    def take_notices(self) -> list[str]:
        """What the trader should read about the venue since the last call (a remote venue's
        link: logged on, refused, silent...); the gateway logs each line."""
        return []

    def gauges(self) -> dict[str, Any]:
        """The venue's own figures for the gateway's heartbeat (a link's state, its counters)."""
        return {}

    @abstractmethod
    def recover(self, orders: Iterable[Order], state: Mapping[str, int], now: int) -> list[ExecEvent]:
        """After a restart: take back the journaled working orders and saved state, reconcile
        them with the exchange, and return the events that reconciliation produced."""

    def restore(self, orders: Iterable[Order], state: Mapping[str, int], now: int) -> list[ExecEvent]:
        """The gateway's memory went back to what the journal holds, because a batch could
        not be written (a full disk): forget what was done since the last stored batch.
        ``orders`` are the working orders as stored (new objects: work these from now on),
        ``state`` the stored counters.  Counters must not go back (an id handed out in the
        lost batch is simply skipped).  Return events for what the exchange did that the
        journal lacks, as :meth:`recover` does; the gateway journals them once it can.

        A broker keeps the orders it was sent whatever the gateway's disk does, so for a
        remote client this is :meth:`recover` (ask the broker, report the difference), which
        is the default."""
        return self.recover(orders, state, now)

    def close(self) -> None:
        """Release the connection / library."""
