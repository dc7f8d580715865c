"""TickDesk wire protocol: every message declared once, validated while it is decoded.

Each message (and each reply on the orders endpoint) is ONE ``msgspec.Struct`` below: its
fields, their types and their constraints (ranges, finite floats, the symbol rule) stand side
by side, and everything else derives from that declaration -- decoding with validation (in C,
by msgspec), encoding, the gateway's order record and journal columns
(:mod:`workers.exchange.records`), the window's rows and the field tables of docs/protocol.md
(``python -m workers.protocol_doc``; a test holds the doc equal to the declarations).

Why msgspec: it decodes MessagePack straight into typed structs and checks every constraint
while it does, in C, so one declaration gives both the validator and the packer, and the hot
path (a 256-row ``ticks`` frame) costs about a third of msgpack + hand-written checks.

Every payload is a msgpack map with ``v`` (schema version) and ``type`` (the struct's tag).
Published messages are ONE zmq frame: ``topic + b"\\x00" + payload`` so that SUB prefix
filtering works without the ~2.6x cost of a multipart send (docs/protocol.md).

Decoding is strict: anything malformed raises :class:`ProtocolError` with a reason that names
the problem and the field.  Callers on streams count and drop; callers on request/reply answer
``ok: false`` with that reason.  Nothing here lets bad input escape as another exception type.
"""

from __future__ import annotations

import inspect
import re
import sys
import time
import types
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

import msgspec
from msgspec import Meta

from workers.errors import ProtocolError
from workers.symbols import MAX_SYMBOL_LEN, SYMBOL_PATTERN

__all__ = ["ProtocolError"]  # and every public name below; the list only re-exports the error

PROTOCOL_VERSION = 1
#: Largest frame any TickDesk socket accepts (also set as ZMQ MAXMSGSIZE on receivers).
MAX_MESSAGE_BYTES = 256 * 1024
TOPIC_SEP = b"\x00"
MAX_STR = 128
MAX_TEXT = 1024
MAX_QTY = 10_000_000
MAX_PRICE = 1e9
#: most ticks in one ``ticks`` frame (a row is ~55 bytes: 1024 rows stay far below the frame limit)
MAX_TICKS_PER_FRAME = 1024
#: the journal (SQLite) stores signed 64-bit integers: a timestamp beyond would fail its fold
INT64_MAX = 2**63 - 1


class MsgType(StrEnum):
    TICK = "tick"
    TICKS = "ticks"
    SIGNAL = "signal"
    LEVELS = "levels"
    SIGNAL_DECISION = "signal_decision"
    POSITION = "position"
    ORDER_UPDATE = "order_update"
    FILL = "fill"
    SEND_ORDER = "send_order"
    CANCEL_ORDER = "cancel_order"
    CANCEL_ALL = "cancel_all"
    GET_ORDER = "get_order"
    GET_ORDERS = "get_orders"
    GET_POSITIONS = "get_positions"
    PING = "ping"
    GET_FILLS = "get_fills"
    SET_KILL_SWITCH = "set_kill_switch"
    REPLACE_ORDER = "replace_order"
    SET_OCO = "set_oco"
    DEPTH = "depth"
    # snapshot endpoint (market-data gateway)
    GET_SNAPSHOT = "get_snapshot"
    # control channel
    HELLO = "hello"
    HEARTBEAT = "heartbeat"
    COMMAND = "command"
    COMMAND_REPLY = "command_reply"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    #: a market order once the last trade reaches ``stop_price`` (buy: at or above, sell: at or below)
    STOP = "stop"
    #: a limit order at ``limit_price`` once triggered as a stop
    STOP_LIMIT = "stop_limit"
    #: a stop that follows the market by ``trail_amount`` or ``trail_pct`` (a sell stop rises
    #: with the highest last trade since it was placed, a buy stop falls with the lowest)
    TRAILING_STOP = "trailing_stop"

    @property
    def is_stop(self) -> bool:
        return self in _STOP_TYPES

    @property
    def has_limit(self) -> bool:
        return self is OrderType.LIMIT or self is OrderType.STOP_LIMIT


_STOP_TYPES = frozenset({OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})


class TimeInForce(StrEnum):
    #: until the session's end, then ``expired``
    DAY = "day"
    #: good till cancelled
    GTC = "gtc"
    #: immediate or cancel: fill what can be filled at once, cancel the rest
    IOC = "ioc"
    #: fill or kill: all at once or nothing
    FOK = "fok"


class OrderStatus(StrEnum):
    PENDING_NEW = "pending_new"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    #: Client-side only: no reply after every retry; reconcile with get_order.
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED})
WORKING_STATUSES = frozenset({OrderStatus.PENDING_NEW, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


def now_ns() -> int:
    return time.time_ns()


# ----------------------------------------------------------------------------- field types
# The constraints every message shares; msgspec checks them while it decodes.

#: an identifier or name: 1..128 characters
Id = Annotated[str, Meta(min_length=1, max_length=MAX_STR)]
#: free text (reasons, sources): at most 1024 characters
Text = Annotated[str, Meta(max_length=MAX_TEXT)]
#: the one symbol rule (workers/symbols.py): 1..32 of A-Z a-z 0-9 . _ - /
Symbol = Annotated[str, Meta(pattern=SYMBOL_PATTERN)]
#: nanoseconds since the Unix epoch (int64, so the journal can hold it)
Ts = Annotated[int, Meta(ge=0, le=INT64_MAX)]
#: a count, a size or a sequence number: 0..2**63-1 (int64, like every integer TickDesk stores;
#: a peer's 2**64-1 must not become a counter that overflows the next heartbeat)
Count = Annotated[int, Meta(ge=0, le=INT64_MAX)]
#: an order quantity: 1..MAX_QTY
Qty = Annotated[int, Meta(ge=1, le=MAX_QTY)]
#: a signed position or offset
SignedQty = Annotated[int, Meta(ge=-(2**63), le=INT64_MAX)]
#: a price: finite, 0 < price < MAX_PRICE
Price = Annotated[float, Meta(gt=0.0, lt=MAX_PRICE)]
#: a trailing stop's distance in percent of the price: 0 < pct < 100
Percent = Annotated[float, Meta(gt=0.0, lt=100.0)]
#: any finite number (P&L, averages): the bounds exclude NaN and +-infinity
Finite = Annotated[float, Meta(ge=-sys.float_info.max, le=sys.float_info.max)]

#: a publisher's incarnation: its start time in ns, a new value after every restart; 0 from a
#: publisher that does not say (a consumer then falls back on ``seq`` going back)
Epoch = Annotated[int, Meta(ge=0, le=INT64_MAX)]

_REGISTRY: dict[str, type[Message]] = {}


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every wire message: a frozen struct whose tag is its ``type``.

    Extra keys are ignored so that newer peers may add fields without breaking older ones
    (the version ``v`` guards incompatible changes).
    """

    v: int = PROTOCOL_VERSION

    TYPE: ClassVar[str]

    @classmethod
    def from_dict(cls, d: dict) -> Message:
        """Validate a map that was already unpacked (the same checks as :func:`decode`)."""
        return _convert(d, cls)

    def to_dict(self) -> dict:
        return msgspec.to_builtins(self)

    def pack(self) -> bytes:
        return _encode(self)


def wire(cls):
    """Register a message class under its tag (``type``)."""
    tag = cls.__struct_config__.tag
    cls.TYPE = MsgType(tag) if tag in MsgType._value2member_map_ else tag
    _REGISTRY[tag] = cls
    return cls


# ---- market data

#: a row of a ``ticks`` message: seq, ts, last, bid, ask, bid_size, ask_size, volume
TickRow = tuple[Count, Ts, Price, Price, Price, Count, Count, Count]
TICK_ROW_FIELDS = ("seq", "ts", "last", "bid", "ask", "bid_size", "ask_size", "volume")


@wire
class Tick(Message, tag="tick"):
    symbol: Symbol
    seq: Count
    ts: Ts
    last: Price
    bid: Price
    ask: Price
    bid_size: Count
    ask_size: Count
    volume: Count
    #: the market-data gateway's incarnation (see :data:`Epoch`): a new epoch is a restart of
    #: the stream, whatever ``seq`` says
    epoch: Epoch = 0

    def __post_init__(self) -> None:
        if self.bid > self.ask:
            raise ValueError(f"tick {self.symbol}: bid {self.bid} above ask {self.ask}")

    @property
    def topic(self) -> bytes:
        return tick_topic(self.symbol)

    @property
    def row(self) -> tuple:
        """This tick as a row of a ``ticks`` message (see :data:`TICK_ROW_FIELDS`)."""
        return (self.seq, self.ts, self.last, self.bid, self.ask, self.bid_size, self.ask_size, self.volume)


@wire
class Ticks(Message, tag="ticks"):
    """Consecutive ticks of ONE symbol in one published frame (topic ``tick.<SYMBOL>``).

    The gateway sends this instead of several ``tick`` frames when more than one tick of a
    symbol is due in the same wake-up (it never waits to fill a batch).  Rows are
    :data:`TickRow` arrays; :func:`tick_rows` / :func:`iter_ticks` read a frame of either form.
    Rows are arrays rather than maps because a map per tick would triple the frame and its
    decoding cost.
    """

    symbol: Symbol
    ticks: Annotated[list[TickRow], Meta(min_length=1, max_length=MAX_TICKS_PER_FRAME)]
    #: as ``tick.epoch``, for every row of the frame
    epoch: Epoch = 0

    def __post_init__(self) -> None:
        for r in self.ticks:
            if r[3] > r[4]:
                raise ValueError(f"ticks[{self.ticks.index(r)}]: bid {r[3]} above ask {r[4]}")

    @property
    def topic(self) -> bytes:
        return tick_topic(self.symbol)


#: a level of a ``depth`` message: price, size
DepthLevel = tuple[Price, Count]
#: most levels per side of a ``depth`` message
MAX_DEPTH_LEVELS = 10


@wire
class Depth(Message, tag="depth"):
    """The order book of ONE symbol (ticks endpoint, topic ``depth.<SYMBOL>``): ``bids`` best
    (highest) first, ``asks`` best (lowest) first, at most 10 levels each.  The best levels
    equal the bid/ask and sizes of the symbol's tick of the same moment.  ``seq`` counts the
    symbol's depth messages (its own counter, not the ticks'), ``epoch`` as ticks."""

    symbol: Symbol
    seq: Count
    ts: Ts
    bids: Annotated[list[DepthLevel], Meta(max_length=MAX_DEPTH_LEVELS)]
    asks: Annotated[list[DepthLevel], Meta(max_length=MAX_DEPTH_LEVELS)]
    epoch: Epoch = 0

    def __post_init__(self) -> None:
        for name, levels, sign in (("bids", self.bids, -1), ("asks", self.asks, 1)):
            for i in range(1, len(levels)):
                if (levels[i][0] - levels[i - 1][0]) * sign <= 0:
                    raise ValueError(f"depth {self.symbol}: {name} not best first at level {i}")
        if self.bids and self.asks and self.bids[0][0] > self.asks[0][0]:
            raise ValueError(f"depth {self.symbol}: best bid {self.bids[0][0]} above best ask {self.asks[0][0]}")

    @property
    def topic(self) -> bytes:
        return depth_topic(self.symbol)


# ---- strategy and executor


@wire
class Signal(Message, tag="signal"):
    id: Id
    strategy: Id
    symbol: Symbol
    side: Side
    qty: Qty
    price: Price
    ts: Ts
    cause_ts: Ts
    reason: Text = ""


@wire
class Levels(Message, tag="levels"):
    """A strategy's current support/resistance levels (strategy -> executor -> events)."""

    strategy: Id
    symbol: Symbol
    ts: Ts
    support: Price | None = None
    resistance: Price | None = None
    position: SignedQty = 0
    active: bool = True


@wire
class SignalDecision(Message, tag="signal_decision"):
    """Every signal the executor pulled, with its risk decision (events endpoint)."""

    signal: Signal
    accepted: bool
    ts: Ts
    reason: Text = ""
    client_order_id: Text | None = None

    @property
    def parsed_signal(self) -> Signal:
        return self.signal


@wire
class Position(Message, tag="position"):
    symbol: Symbol
    #: net position: > 0 long, < 0 short (fills only)
    qty: SignedQty
    #: average cost of the open position (0 when flat)
    avg_price: Finite
    realized_pnl: Finite
    #: marked to ``last``
    unrealized_pnl: Finite
    ts: Ts
    last: Finite = 0.0


# ---- orders: the order's terms (send_order) and its state (order_update) are declared
# once each; the gateway's record, the journal and the window's rows derive from them.


class Traced(Message, frozen=True, kw_only=True):
    """Who sent an order and what caused it, carried from the order to every report of it:
    ``cause_ts`` is the signal's ``ts``, ``origin_ts`` the tick's at the start of the chain
    (latency per hop and end to end, docs/protocol.md)."""

    #: who sent it: "manual", "strategy.<name>", ...
    source: Text = ""
    cause_ts: Ts = 0
    origin_ts: Ts = 0


class ExecReport(Traced, frozen=True, kw_only=True):
    """A report on the execution stream (order updates and fills share the counter)."""

    #: execution-stream sequence number (0 in query replies: a snapshot, not a report)
    seq: Count = 0
    #: the exchange gateway's incarnation (see :data:`Epoch`; 0 in query replies)
    epoch: Epoch = 0


@wire
class SendOrder(Traced, tag="send_order"):
    """A new order (orders endpoint).  The gateway journals it before it answers, and answers
    a repeat of the same ``client_order_id`` with the stored reply (docs/protocol.md)."""

    #: chosen by the sender, unique forever: the idempotency key
    client_order_id: Id
    symbol: Symbol
    side: Side
    qty: Qty
    order_type: OrderType = OrderType.MARKET
    #: required for limit and stop_limit orders, absent otherwise
    limit_price: Price | None = None
    ts: Ts = 0
    #: time in force (docs/protocol.md "Order types and time in force")
    tif: TimeInForce = TimeInForce.DAY
    #: required for stop and stop_limit orders, absent otherwise
    stop_price: Price | None = None
    #: trailing_stop: exactly one of the two, absent otherwise
    trail_amount: Price | None = None
    trail_pct: Percent | None = None
    #: a bracket: when this order fills, child orders ``<client_order_id>.tp`` (a limit at
    #: ``take_profit_price``) and ``<client_order_id>.sl`` (a stop at ``stop_loss_price``) on
    #: the other side, sized to the filled quantity, one-cancels-other
    take_profit_price: Price | None = None
    stop_loss_price: Price | None = None
    #: the children's time in force
    take_profit_tif: TimeInForce = TimeInForce.GTC
    stop_loss_tif: TimeInForce = TimeInForce.GTC

    def __post_init__(self) -> None:
        check_order_terms(self)


def check_order_terms(o) -> None:
    """The rules every order's terms follow (send_order, and an order after replace_order);
    raises ValueError with the reason a client is told."""
    ot = o.order_type
    if ot.has_limit and o.limit_price is None:
        raise ValueError(f"a {ot.value} order needs 'limit_price'")
    if not ot.has_limit and o.limit_price is not None:
        raise ValueError(f"a {ot.value} order must not carry 'limit_price'")
    if ot is OrderType.STOP or ot is OrderType.STOP_LIMIT:
        if o.stop_price is None:
            raise ValueError(f"a {ot.value} order needs 'stop_price'")
    elif o.stop_price is not None:
        raise ValueError(f"a {ot.value} order must not carry 'stop_price'")
    if ot is OrderType.TRAILING_STOP:
        if (o.trail_amount is None) == (o.trail_pct is None):
            raise ValueError("a trailing_stop order needs exactly one of 'trail_amount' and 'trail_pct'")
    elif o.trail_amount is not None or o.trail_pct is not None:
        raise ValueError(f"a {ot.value} order must not carry 'trail_amount' or 'trail_pct'")
    if o.tif in (TimeInForce.IOC, TimeInForce.FOK) and ot.is_stop:
        raise ValueError(f"tif {o.tif.value} applies to market and limit orders, not {ot.value}")
    tp, sl = o.take_profit_price, o.stop_loss_price
    if tp is not None or sl is not None:
        if len(o.client_order_id) > MAX_STR - len(BRACKET_SUFFIXES[0]):
            raise ValueError(f"a bracket's client_order_id is at most {MAX_STR - 3} characters (its children add .tp/.sl)")
        if o.take_profit_tif in (TimeInForce.IOC, TimeInForce.FOK) or o.stop_loss_tif in (TimeInForce.IOC, TimeInForce.FOK):
            raise ValueError("a bracket's children rest: their tif is day or gtc")
        buy = o.side is Side.BUY
        if tp is not None and sl is not None and (tp <= sl if buy else tp >= sl):
            raise ValueError(f"take_profit_price must be {'above' if buy else 'below'} stop_loss_price for a {o.side.value}")
        ref = o.limit_price if ot.has_limit else None
        if ref is not None and tp is not None and (tp <= ref if buy else tp >= ref):
            raise ValueError(f"take_profit_price must be {'above' if buy else 'below'} the limit price for a {o.side.value}")
        if ref is not None and sl is not None and (sl >= ref if buy else sl <= ref):
            raise ValueError(f"stop_loss_price must be {'below' if buy else 'above'} the limit price for a {o.side.value}")


#: a bracket child's client_order_id is its parent's followed by one of these
BRACKET_SUFFIXES = (".tp", ".sl")

#: the fields of send_order that define the order (a resend must repeat them exactly)
ORDER_TERMS = ("symbol", "side", "qty", "order_type", "limit_price", "tif", "stop_price", "trail_amount", "trail_pct",
               "take_profit_price", "stop_loss_price", "take_profit_tif", "stop_loss_tif")


@wire
class OrderUpdate(ExecReport, tag="order_update"):
    client_order_id: Id
    #: the gateway's id, O<n>; "-" for an order refused before it reached the exchange; empty
    #: while the gateway holds the order for its first market data
    order_id: Text
    symbol: Symbol
    side: Side
    qty: Qty
    #: cumulative
    filled_qty: Count
    #: average fill price (0 if none)
    avg_price: Finite
    status: OrderStatus
    #: time of this change
    ts: Ts
    #: why it was rejected or cancelled
    reason: Text = ""
    order_type: OrderType = OrderType.MARKET
    limit_price: Price | None = None
    # the terms of issue 13's order kinds, as sent (or as a replace_order left them)
    tif: TimeInForce = TimeInForce.DAY
    #: the trigger; for a trailing_stop the venue's current level (it only ever tightens)
    stop_price: Price | None = None
    trail_amount: Price | None = None
    trail_pct: Percent | None = None
    take_profit_price: Price | None = None
    stop_loss_price: Price | None = None
    take_profit_tif: TimeInForce = TimeInForce.GTC
    stop_loss_tif: TimeInForce = TimeInForce.GTC
    #: a stop kind whose trigger was reached (it now works as a market or limit order)
    triggered: bool = False
    #: held and worked by the exchange gateway because the venue lacks this kind natively
    emulated: bool = False
    #: a bracket child: its parent's client_order_id
    parent_id: Text = ""
    #: one-cancels-other group ("" for none): when one order of the group fills (even
    #: partly), the others are cancelled
    oco_group: Text = ""


@wire
class Fill(ExecReport, tag="fill"):
    """One execution (execution endpoint, topic ``exec.fill.<SYMBOL>``)."""

    #: F<n>, increasing, unique across restarts
    fill_id: Id
    client_order_id: Id
    order_id: Id
    symbol: Symbol
    side: Side
    #: quantity of this fill
    qty: Qty
    price: Price
    ts: Ts


# ---- requests on the orders endpoint


@wire
class CancelOrder(Message, tag="cancel_order"):
    client_order_id: Id
    ts: Ts = 0


@wire
class CancelAll(Message, tag="cancel_all"):
    symbol: Text | None = None
    ts: Ts = 0


@wire
class GetOrder(Message, tag="get_order"):
    client_order_id: Id


@wire
class GetOrders(Message, tag="get_orders"):
    working_only: bool = False


@wire
class GetPositions(Message, tag="get_positions"):
    pass


@wire
class Ping(Message, tag="ping"):
    ts: Ts = 0


@wire
class GetFills(Message, tag="get_fills"):
    """The fills the gateway journaled, oldest first: those numbered after ``since_fill``
    (fill ids are ``F<n>``), at most ``limit`` of them (the gateway's cap when absent)."""

    since_fill: Count = 0
    limit: Annotated[int, Meta(ge=1, le=100_000)] | None = None


@wire
class ReplaceOrder(Message, tag="replace_order"):
    """Change a working order's quantity and/or prices (FIX's cancel/replace).  The order keeps
    its ``client_order_id``; this request's own ``client_order_id`` is its idempotency key (a
    repeat is answered with the stored reply).  At least one change; refused with a reason
    when the order is done or the change is invalid (docs/protocol.md)."""

    orig_client_order_id: Id
    client_order_id: Id
    #: the new total quantity (more than what is already filled)
    qty: Qty | None = None
    limit_price: Price | None = None
    stop_price: Price | None = None
    ts: Ts = 0

    def __post_init__(self) -> None:
        if self.qty is None and self.limit_price is None and self.stop_price is None:
            raise ValueError("a replace_order needs at least one of 'qty', 'limit_price', 'stop_price'")
        if self.client_order_id == self.orig_client_order_id:
            raise ValueError("a replace_order's client_order_id is its own (not the order's)")


@wire
class SetOco(Message, tag="set_oco"):
    """Make working orders one-cancels-other: when one fills (even partly), the gateway
    cancels the others.  Idempotent (the group's name is derived from its members)."""

    client_order_ids: Annotated[list[Id], Meta(min_length=2, max_length=10)]
    ts: Ts = 0


@wire
class SetKillSwitch(Message, tag="set_kill_switch"):
    """Turn the account's kill switch on or off.  While on, the gateway refuses every order
    that would increase a position, from any client (reason starting ``kill switch``), and
    accepts orders that reduce one; the state is journaled and survives every restart."""

    on: bool
    reason: Text = ""
    ts: Ts = 0


REQUEST_CLASSES: tuple[type[Message], ...] = (SendOrder, CancelOrder, CancelAll, GetOrder, GetOrders, GetPositions,
                                              GetFills, SetKillSwitch, ReplaceOrder, SetOco, Ping)
REQUEST_TYPES = frozenset(c.TYPE for c in REQUEST_CLASSES)


# ---- replies on the orders endpoint: ``<request>_reply``, or ``error`` for an unreadable
# request.  Every reply has ``ok`` and ``reason``; a refusal (ok false) keeps its other
# fields at their defaults where the gateway has nothing to say.


class Reply(Message, frozen=True, kw_only=True):
    ok: bool
    reason: Text = ""


@wire
class ErrorReply(Reply, tag="error"):
    """The answer to a request that could not be read at all."""


class OrderReply(Reply, frozen=True, kw_only=True):
    """What every reply about one order says of it (status nil: no order was found or made)."""

    client_order_id: Text = ""
    order_id: Text = ""
    status: OrderStatus | None = None


@wire
class SendOrderReply(OrderReply, tag="send_order_reply"):
    filled_qty: Count = 0
    avg_price: Finite = 0.0
    ts: Ts = 0


@wire
class CancelOrderReply(OrderReply, tag="cancel_order_reply"):
    """The order's state after the cancel (``ok`` false: why it could not be cancelled)."""


@wire
class CancelAllReply(Reply, tag="cancel_all_reply"):
    #: client_order_ids of the orders cancelled
    cancelled: list[str] = []
    #: len(cancelled), kept for clients written before ``cancelled``
    count: Count = 0


@wire
class PingReply(Reply, tag="ping_reply"):
    ts: Ts = 0


@wire
class GetOrderReply(OrderReply, tag="get_order_reply"):
    #: the order as it stands, with every field of order_update (``seq`` 0: a snapshot)
    order: OrderUpdate | None = None


@wire
class GetOrdersReply(Reply, tag="get_orders_reply"):
    orders: list[OrderUpdate] = []
    #: true when only the newest orders fit in the reply
    truncated: bool = False


class NetPosition(msgspec.Struct, frozen=True):
    """One symbol's net position in a ``get_positions`` reply (fills only, average cost)."""

    symbol: Symbol
    qty: SignedQty
    avg_price: Finite
    realized_pnl: Finite


@wire
class GetPositionsReply(Reply, tag="get_positions_reply"):
    """Net positions from the gateway's fills, by symbol."""

    positions: list[NetPosition] = []
    #: the number of the newest fill these positions include (compare with fill ids)
    last_fill_seq: Count = 0
    #: the account's kill switch (set_kill_switch), and why it was turned on
    kill_switch: bool = False
    kill_reason: Text = ""


@wire
class GetFillsReply(Reply, tag="get_fills_reply"):
    #: fill-shaped maps (``seq`` 0: a snapshot, not a report), oldest first
    fills: list[Fill] = []
    #: the number of the newest fill the gateway holds (more may follow ``fills`` if it is larger
    #: than the last one returned: ask again with ``since_fill``)
    last_fill: Count = 0


@wire
class ReplaceOrderReply(OrderReply, tag="replace_order_reply"):
    """The order after the replace (``client_order_id`` is the order's, not the request's)."""

    #: the replace request's own client_order_id
    replace_id: Text = ""
    order: OrderUpdate | None = None


@wire
class SetOcoReply(Reply, tag="set_oco_reply"):
    #: the group's name, as order updates carry it in ``oco_group``
    oco_group: Text = ""


@wire
class SetKillSwitchReply(Reply, tag="set_kill_switch_reply"):
    #: the kill switch as it now stands, and why it was turned on
    on: bool = False
    kill_reason: Text = ""


# ---- the snapshot endpoint of the market-data gateway (the zguide's Clone pattern: a late
# joiner subscribes first, asks for the snapshot, then applies live ticks with a larger seq
# of the same epoch; docs/protocol.md)

#: a bar of a snapshot: start ts (ns), open, high, low, close, volume traded in the bar
BarRow = tuple[Ts, Price, Price, Price, Price, Count]
BAR_ROW_FIELDS = ("ts", "open", "high", "low", "close", "volume")


@wire
class GetSnapshot(Message, tag="get_snapshot"):
    """The last tick of each symbol (all, or ``symbols``) and the session's bars."""

    symbols: list[Symbol] | None = None


class SymbolBars(msgspec.Struct, frozen=True):
    """The session's bars of one symbol in a snapshot, oldest first."""

    symbol: Symbol
    #: bar length in seconds
    interval: Annotated[int, Meta(ge=1, le=86_400)]
    bars: list[BarRow] = []


@wire
class GetSnapshotReply(Reply, tag="get_snapshot_reply"):
    #: the gateway's epoch: live ticks of another epoch are of another incarnation
    epoch: Epoch = 0
    #: the last tick of each symbol, tick-shaped, with its ``seq`` (and ``epoch``)
    ticks: list[Tick] = []
    bars: list[SymbolBars] = []
    #: true when bars were left out (oldest first) to keep the reply within its size
    truncated: bool = False
    #: the last depth message of each symbol that has one (with its ``seq``)
    depth: list[Depth] = []


#: request class -> the class of its reply
REPLY_FOR: dict[type[Message], type[Reply]] = {
    SendOrder: SendOrderReply,
    CancelOrder: CancelOrderReply,
    CancelAll: CancelAllReply,
    GetOrder: GetOrderReply,
    GetOrders: GetOrdersReply,
    GetPositions: GetPositionsReply,
    GetFills: GetFillsReply,
    SetKillSwitch: SetKillSwitchReply,
    ReplaceOrder: ReplaceOrderReply,
    SetOco: SetOcoReply,
    Ping: PingReply,
    GetSnapshot: GetSnapshotReply,
}
#: what the market-data gateway's snapshot endpoint takes
SNAPSHOT_REQUESTS: tuple[type[Message], ...] = (GetSnapshot,)
_REPLY_BY_REQUEST_TYPE = {req.TYPE: rep for req, rep in REPLY_FOR.items()}
REPLY_CLASSES: tuple[type[Reply], ...] = (ErrorReply, *REPLY_FOR.values())

# ---- control channel (supervisor ROUTER <-> worker DEALER)


@wire
class Hello(Message, tag="hello"):
    name: Id
    role: Id
    pid: Count
    ts: Ts


@wire
class Heartbeat(Message, tag="heartbeat"):
    ts: Ts
    name: Text = ""
    role: Text = ""
    pid: Count = 0
    stats: dict[str, Any] = {}
    state: Text = ""


@wire
class Command(Message, tag="command"):
    id: Id
    cmd: Id
    args: dict[str, Any] = {}


@wire
class CommandReply(Reply, tag="command_reply"):
    """A worker's answer to a ``command`` of the same ``id`` (``ok``, ``reason`` as every reply)."""

    id: Id
    cmd: Id
    result: dict[str, Any] = {}


# ----------------------------------------------------------------------------- encode/decode

_encoder = msgspec.msgpack.Encoder()
_encode = _encoder.encode


def packb(obj: Any) -> bytes:
    """Pack a message or a plain map (ad-hoc maps, tests) the way messages are packed."""
    return _encode(obj)


class _Envelope(msgspec.Struct):
    """Only ``v`` and ``type``: read when a payload failed to decode, so that a wrong version or
    an unknown type gets its own reason before the field msgspec named (it skips the rest
    without building it)."""

    v: Any = None
    type: Any = None


_envelope = msgspec.msgpack.Decoder(_Envelope).decode
_any = msgspec.msgpack.Decoder().decode
_decoders: dict[Any, Any] = {}


def _decoder(expect: Any) -> Any:
    """A decoder for one message class, a tuple of them, or (None) every registered one."""
    d = _decoders.get(expect)
    if d is None:
        classes = tuple(c for c in _REGISTRY.values() if expect is None or issubclass(c, expect))
        target = classes[0] if len(classes) == 1 else Union[classes]  # noqa: UP007 (a runtime union)
        d = _decoders[expect] = msgspec.msgpack.Decoder(target).decode
    return d


_AT = re.compile(r"^(?P<text>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_ROW_CELL = re.compile(r"^\.ticks\[(\d+)\]\[(\d)\]")
_MISSING = re.compile(r"^Object missing required field `(\w+)`$")


def _reason(exc: Exception, what: str) -> ProtocolError:
    """msgspec's reason, with the field spelled the way docs/protocol.md names it."""
    if not isinstance(exc, msgspec.ValidationError):
        return ProtocolError(f"not a msgpack message: {exc or type(exc).__name__}")
    m = _AT.match(str(exc))
    text, path = m["text"], m["path"] or ""
    missing = _MISSING.match(text)
    if missing:
        where = f"{path[1:]}." if path else ""
        return ProtocolError(f"'{what}' is missing field '{where}{missing[1]}'")
    if repr(SYMBOL_PATTERN) in text:  # the regex means little to a person: say the rule
        text = f"a symbol is 1..{MAX_SYMBOL_LEN} ASCII letters, digits or . _ - /"
    cell = _ROW_CELL.match(path)
    if cell:  # ticks[3][2] -> ticks[3].last
        path = f"ticks[{cell[1]}].{TICK_ROW_FIELDS[int(cell[2])]}{path[cell.end():]}"
    else:
        path = path[1:]
    return ProtocolError(f"'{what}' field '{path}': {text}" if path else f"'{what}': {text}")


#: largest reply a client accepts on the orders endpoint (a get_orders reply of 20,000 orders
#: is ~5.5 MB); requests and published frames keep MAX_MESSAGE_BYTES
MAX_REPLY_BYTES = MAX_MESSAGE_BYTES * 64


def _check_size(data: Any, limit: int = MAX_MESSAGE_BYTES) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("payload must be bytes")
    if len(data) > limit:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the {limit} byte limit")
    if not data:
        raise ProtocolError("empty message")


def _check_envelope(v: Any, t: Any) -> str:
    if v != PROTOCOL_VERSION or v.__class__ is bool:
        raise ProtocolError(f"unsupported protocol version {v!r}; this peer speaks v{PROTOCOL_VERSION}")
    if t is None:
        raise ProtocolError("message has no 'type'")
    if not isinstance(t, str):
        raise ProtocolError(f"'type' must be a string, got {type(t).__name__}")
    return t


def peek_type(data: bytes) -> str:
    """The ``type`` of a payload if it can be read at all ('' otherwise): what a refusal of an
    unreadable request is named after."""
    try:
        t = _envelope(data).type
    except Exception:
        return ""
    return t if isinstance(t, str) and 0 < len(t) <= MAX_STR else ""


def _refuse(data: bytes, expect: Any, exc: Exception) -> ProtocolError:
    """Why ``data`` failed to decode: its envelope first (not msgpack, version, unknown or
    unexpected type), then the field msgspec named.  Only the error path reads the envelope
    on its own: on the ticks path it would cost a sixth of the decode."""
    try:
        env = _envelope(data)
    except msgspec.ValidationError:
        return ProtocolError("message must be a msgpack map")
    except Exception as e:  # msgspec.DecodeError and friends: not msgpack at all
        return ProtocolError(f"not a msgpack message: {type(e).__name__}")
    try:
        cls = _class_for(PROTOCOL_VERSION if env.v is None else env.v, env.type, expect)
    except ProtocolError as e:
        return e
    return _reason(exc, cls.TYPE)


def _class_for(v: Any, t: Any, expect: Any) -> type[Message]:
    """The declared class of a message with envelope ``v``/``t``, if this endpoint takes it."""
    t = _check_envelope(v, t)
    cls = _REGISTRY.get(t)
    if cls is None:
        raise ProtocolError(f"unknown message type {t!r}")
    if expect is not None and not issubclass(cls, expect):
        raise ProtocolError(f"unexpected message type {t!r} on this endpoint")
    return cls


def decode(data: bytes, expect: type[Message] | tuple[type[Message], ...] | None = None,
           limit: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode one payload (no topic) into its typed message, or raise ProtocolError.

    A payload without ``v`` is read as the current version (docs/protocol.md)."""
    _check_size(data, limit)
    try:
        msg = _decoder(expect)(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _refuse(data, expect, exc) from None
    if msg.v != PROTOCOL_VERSION:
        _check_envelope(msg.v, msg.TYPE)
    return msg


def _convert(d: Any, cls: type[Message]) -> Message:
    try:
        return msgspec.convert(d, cls)
    except msgspec.ValidationError as exc:
        raise _reason(exc, cls.TYPE) from None


def from_map(d: dict, expect: type[Message] | tuple[type[Message], ...] | None = None) -> Message:
    """Validate an already unpacked map (same verdicts as :func:`decode`)."""
    if not isinstance(d, dict):
        raise ProtocolError(f"message must be a msgpack map, got {type(d).__name__}")
    return _convert(d, _class_for(d.get("v", PROTOCOL_VERSION), d.get("type"), expect))


def unpack_map(data: bytes, limit: int = MAX_MESSAGE_BYTES) -> dict:
    """Unpack one msgpack map without a schema (ad-hoc maps, replies: ``limit``
    :data:`MAX_REPLY_BYTES`); raise ProtocolError otherwise."""
    _check_size(data, limit)
    try:
        obj = _any(data)
    except Exception as exc:  # DecodeError, or an unhashable key
        raise ProtocolError(f"not a msgpack message: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"message must be a msgpack map, got {type(obj).__name__}")
    return obj


def check_envelope(d: dict) -> str:
    """Check ``v`` and ``type`` of an unpacked map; return the type name."""
    return _check_envelope(d.get("v", PROTOCOL_VERSION), d.get("type"))


# ---- replies


def decode_reply(data: bytes, request: type[Message] | None = None) -> Reply:
    """Decode a reply from the orders endpoint into its typed declaration.

    ``request`` names what was asked; its reply class or an ``error`` reply is accepted.  An
    unreadable reply raises ProtocolError (a Lazy Pirate client reports it as such)."""
    expect: Any = REPLY_CLASSES if request is None else (REPLY_FOR[request], ErrorReply)
    msg = decode(data, expect, MAX_REPLY_BYTES)
    return msg  # type: ignore[return-value]


def reply_of(d: Any, request: type[Message]) -> Reply:
    """A reply map (what a Lazy Pirate client returns) read as the typed reply to ``request``;
    a map that is not one becomes an ``ErrorReply`` that says why, never a hedge."""
    try:
        return from_map(d, (REPLY_FOR[request], ErrorReply))  # type: ignore[return-value]
    except ProtocolError as e:
        return ErrorReply(ok=False, reason=f"unreadable reply: {e}")


def refusal(request_type: str, reason: str, **fields: Any) -> Reply:
    """A typed ``ok: false`` reply to a request of ``request_type`` about a request that was
    understood (an unknown ``client_order_id``, a reused one)."""
    return _REPLY_BY_REQUEST_TYPE[request_type](ok=False, reason=reason, **fields)


def error_reply(reason: str, request_type: str = "") -> bytes:
    """The packed refusal of a request that could not be read or validated.

    It has exactly the fields of :class:`ErrorReply` -- "the request was not an order" carries
    no order fields (docs/protocol.md) -- under ``<request type>_reply`` when the type could be
    read (a known reply class then decodes it with its defaults), else ``error`` (also what the
    gateway answers when it failed on a request: the outcome is then unknown)."""
    tag = f"{request_type}_reply" if request_type else ErrorReply.TYPE
    if len(reason) > MAX_TEXT:  # the reply must stay readable by its own declaration
        reason = reason[: MAX_TEXT - 1] + "…"
    return _encode({"type": tag, **msgspec.structs.asdict(ErrorReply(ok=False, reason=reason))})


# ---- topics (published messages are one frame: topic NUL payload)


def tick_topic(symbol: str) -> bytes:
    return b"tick." + symbol.encode()


def depth_topic(symbol: str) -> bytes:
    return b"depth." + symbol.encode()


_TICK_PREFIX: dict[str, bytes] = {}  # symbol -> b"tick.<SYMBOL>\0"
_TICK_PREFIX_MAX = 10_000  # bounded: a flood of made-up symbols cannot grow it


def tick_prefix(symbol: str) -> bytes:
    """``tick.<SYMBOL>`` NUL: what comes before the payload in a published tick frame."""
    p = _TICK_PREFIX.get(symbol)
    if p is None:
        p = b"tick." + symbol.encode() + TOPIC_SEP
        if len(_TICK_PREFIX) < _TICK_PREFIX_MAX:
            _TICK_PREFIX[symbol] = p
    return p


_TOPIC_PREFIX: dict[type, bytes] = {
    OrderUpdate: b"exec.order.",
    Fill: b"exec.fill.",
    Position: b"position.",
    Levels: b"levels.",
}


def topic_for(msg: Message) -> bytes:
    """The canonical topic of a published message (see docs/protocol.md)."""
    cls = msg.__class__
    if cls is Tick or cls is Ticks:
        return tick_topic(msg.symbol)
    if cls is Depth:
        return depth_topic(msg.symbol)
    prefix = _TOPIC_PREFIX.get(cls)
    if prefix is not None:
        return prefix + msg.symbol.encode()
    if cls is SignalDecision:
        sig = msg.signal
        sym = sig.get("symbol", "") if isinstance(sig, dict) else sig.symbol
        return b"signal." + str(sym).encode()
    return str(msg.TYPE).encode()


def pub(msg: Message) -> bytes:
    """Encode a message as one published frame with its canonical topic."""
    return topic_for(msg) + TOPIC_SEP + _encode(msg)


def encode_pub(topic: bytes, msg: Message | dict) -> bytes:
    return topic + TOPIC_SEP + _encode(msg)


def split_pub(frame: bytes) -> tuple[bytes, bytes]:
    """Split a published frame into (topic, payload)."""
    i = frame.find(TOPIC_SEP)
    if i <= 0:
        raise ProtocolError("published frame has no topic separator")
    return frame[:i], frame[i + 1:]


def decode_pub(frame: bytes, expect=None) -> tuple[bytes, Message]:
    topic, payload = split_pub(frame)
    return topic, decode(payload, expect)


# ---- ticks: the hot path


def encode_ticks(symbol: str, rows: list, epoch: int = 0) -> bytes:
    """One published frame with the ticks ``rows`` of ``symbol`` (see :data:`TICK_ROW_FIELDS`)
    from the publisher of ``epoch``: the classic ``tick`` form for a single row, a ``ticks``
    message for 2..1024 rows.  The rows are trusted (the caller made them from valid ticks)."""
    if len(rows) == 1:
        msg: Message = Tick(symbol, *rows[0], epoch=epoch)
    else:
        msg = Ticks(symbol, rows, epoch=epoch)
    return tick_prefix(symbol) + _encode(msg)


_TICK_FRAME = (Tick, Ticks)


def tick_rows(frame: bytes) -> tuple[str, list]:
    """The ticks of one published frame on the ticks endpoint, either form, as ``(symbol, rows)``.

    Each row is a :data:`TickRow` tuple ``(seq, ts, last, bid, ask, bid_size, ask_size,
    volume)``, checked by the declarations above (prices are floats).  The topic must be
    ``tick.<symbol>``.  A frame is taken whole or not at all: any problem raises
    :class:`ProtocolError` and nothing is returned.  :func:`tick_frame` also gives the epoch.
    """
    sym, rows, _ = tick_frame(frame)
    return sym, rows


def tick_frame(frame: bytes) -> tuple[str, list, int]:
    """:func:`tick_rows` with the publisher's epoch: ``(symbol, rows, epoch)``."""
    i = frame.find(TOPIC_SEP)
    if i <= 0:
        raise ProtocolError("published frame has no topic separator")
    payload = frame[i + 1:]
    msg = decode(payload, _TICK_FRAME)
    sym = msg.symbol
    if not frame.startswith(tick_prefix(sym)) or i != len(sym) + 5:
        raise ProtocolError(f"topic {bytes(frame[:min(i, 40)])!r} does not match symbol {sym!r}")
    if msg.__class__ is Ticks:
        return sym, msg.ticks, msg.epoch
    return sym, [msg.row], msg.epoch


def iter_ticks(frame: bytes) -> Iterator[Tick]:
    """Typed :class:`Tick`s of one published tick frame, either form, oldest first.

    The whole frame is checked before the first tick is yielded (ProtocolError otherwise), so a
    caller never acts on half a bad frame."""
    sym, rows, epoch = tick_frame(frame)
    return iter([Tick(sym, *r, epoch=epoch) for r in rows])


def last_tick(frame: bytes) -> Tick:
    """The newest tick of a published tick frame, either form (for consumers that only want
    the latest price).  The whole frame is checked; ProtocolError otherwise."""
    sym, rows, epoch = tick_frame(frame)
    return Tick(sym, *rows[-1], epoch=epoch)


def positional_fields(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    """The fields ``cls(...)`` takes by position, in order (keyword-only ones -- a base's
    ``kw_only`` group such as :class:`Traced` -- are not among them)."""
    return tuple(n for n, prm in inspect.signature(cls).parameters.items() if prm.kind is prm.POSITIONAL_OR_KEYWORD)


def fields_of(cls: type[msgspec.Struct]) -> tuple[msgspec.structs.FieldInfo, ...]:
    """The declared fields of a message, without the envelope (``v``)."""
    return tuple(f for f in msgspec.structs.fields(cls) if f.name != "v")


# ---- records derived from the declarations (the gateway's orders, the window's rows)


def _plain(t: Any) -> Any:
    """The Python type under a constrained wire type, ``Price | None`` -> ``float | None``
    (records hold trusted values: the gateway's own state, or rows the journal wrote)."""
    if get_origin(t) is Annotated:
        return get_args(t)[0]
    if get_origin(t) in (Union, types.UnionType):
        return Union[tuple(_plain(a) for a in get_args(t))]  # noqa: UP007 (built at run time)
    return t


#: fields of an execution report that belong to the stream (its numbering and the publisher's
#: incarnation), not to the order or fill: records of an order or fill leave them out
STREAM_FIELDS = ("seq", "epoch")


def derive_record(name: str, message: type[Message], *, drop: tuple[str, ...] = (), first=(), last=(),
                  frozen: bool = False, namespace: dict | None = None, module: str = __name__) -> type[msgspec.Struct]:
    """A record with the fields of ``message`` (same names, plain types), minus ``drop``, with
    ``first`` and ``last`` as extra ``(name, type[, default])`` fields.  A mutable record is
    keyword-only and gets a default for every field the message requires (the gateway's
    record of an order exists before it has an order_id); a frozen one keeps them required.
    Adding a field to the message adds it here, to the journal's columns and to what the
    gateway publishes."""
    defaults = {int: 0, float: 0.0, str: "", bool: False}
    fields = list(first)
    for f in fields_of(message):
        if f.name in drop:
            continue
        t = _plain(f.type)
        if f.required and frozen:
            default = msgspec.NODEFAULT
        elif f.required:
            default = OrderStatus.PENDING_NEW if t is OrderStatus else defaults.get(t, msgspec.NODEFAULT)
        else:
            default = f.default
        fields.append((f.name, t, default))
    fields.extend(last)
    required = [x for x in fields if len(x) == 2 or x[2] is msgspec.NODEFAULT]
    return msgspec.defstruct(name, [x[:2] if x in required else x for x in fields], kw_only=not frozen,
                             frozen=frozen, namespace=namespace, module=module)
