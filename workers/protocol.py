"""TickDesk wire protocol: typed messages, msgpack encoding, strict validation.

Every payload is a msgpack map with ``v`` (schema version) and ``type``.  Published
messages are ONE zmq frame: ``topic + b"\\x00" + payload`` so that SUB prefix filtering works
without the ~2.6x cost of a multipart send (see docs/protocol.md).

Decoding is strict: anything malformed raises :class:`ProtocolError` with a reason that
names the problem.  Callers on streams count and drop; callers on request/reply answer
``ok: false`` with that reason.  Nothing here ever lets bad input escape as another
exception type.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import time
from dataclasses import dataclass, field
from enum import StrEnum
from collections.abc import Iterator
from typing import Any, ClassVar

import msgpack

PROTOCOL_VERSION = 1
#: Largest frame any TickDesk socket accepts (also set as ZMQ MAXMSGSIZE on receivers).
MAX_MESSAGE_BYTES = 256 * 1024
TOPIC_SEP = b"\x00"
MAX_STR = 128
MAX_QTY = 10_000_000
MAX_PRICE = 1e9
#: most ticks in one ``ticks`` frame (a row is ~55 bytes: 1024 rows stay far below the frame limit)
MAX_TICKS_PER_FRAME = 1024
#: the fields of a row of a ``ticks`` message, in order
TICK_ROW_FIELDS = ("seq", "ts", "last", "bid", "ask", "bid_size", "ask_size", "volume")


class ProtocolError(ValueError):
    """Input that does not follow the protocol; the message says what is wrong."""


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


_TERMINAL = {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
WORKING_STATUSES = frozenset({OrderStatus.PENDING_NEW, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


def now_ns() -> int:
    return time.time_ns()


# ----------------------------------------------------------------------------- field checks
# Each check takes (name, value) and returns the normalised value or raises ProtocolError.


def _str(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ProtocolError(f"field '{name}' must be a string, got {type(v).__name__}")
    if not v or len(v) > MAX_STR:
        raise ProtocolError(f"field '{name}' must be 1..{MAX_STR} characters")
    return v


def _text(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ProtocolError(f"field '{name}' must be a string, got {type(v).__name__}")
    if len(v) > 1024:
        raise ProtocolError(f"field '{name}' is longer than 1024 characters")
    return v


#: symbols already found valid: the character scan costs more than the rest of a tick's checks,
#: and a feed has few symbols.  Bounded so that a flood of made-up symbols cannot grow it.
_VALID_SYMBOLS: set[str] = set()
_VALID_SYMBOLS_MAX = 10_000


def _symbol(name: str, v: Any) -> str:
    if v.__class__ is str and v in _VALID_SYMBOLS:
        return v
    v = _str(name, v)
    if len(v) > 32 or not all(c.isalnum() or c in "._-/" for c in v):
        raise ProtocolError(f"field '{name}' is not a valid symbol: {v!r}")
    if len(_VALID_SYMBOLS) < _VALID_SYMBOLS_MAX and v.__class__ is str:
        _VALID_SYMBOLS.add(v)
    return v


def _int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProtocolError(f"field '{name}' must be an integer, got {type(v).__name__}")
    return v


def _nonneg_int(name: str, v: Any) -> int:
    v = _int(name, v)
    if v < 0:
        raise ProtocolError(f"field '{name}' must be >= 0, got {v}")
    return v


def _qty(name: str, v: Any) -> int:
    v = _int(name, v)
    if not 0 < v <= MAX_QTY:
        raise ProtocolError(f"field '{name}' must be between 1 and {MAX_QTY}, got {v}")
    return v


def _float(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ProtocolError(f"field '{name}' must be a number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ProtocolError(f"field '{name}' must be finite, got {v}")
    return v


def _price(name: str, v: Any) -> float:
    v = _float(name, v)
    if not 0.0 < v < MAX_PRICE:
        raise ProtocolError(f"field '{name}' must be a positive price below {MAX_PRICE:g}, got {v}")
    return v


def _opt_price(name: str, v: Any) -> float | None:
    return None if v is None else _price(name, v)


def _opt_str(name: str, v: Any) -> str | None:
    return None if v is None else _text(name, v)


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ProtocolError(f"field '{name}' must be true or false, got {type(v).__name__}")
    return v


def _enum(enum_cls: type[StrEnum]):
    allowed = ", ".join(e.value for e in enum_cls)
    members = {e.value: e for e in enum_cls}

    def check(name: str, v: Any):
        if v.__class__ is str:
            m = members.get(v)
            if m is not None:
                return m
        try:
            return enum_cls(v)
        except (ValueError, TypeError):
            raise ProtocolError(f"field '{name}' must be one of {allowed}, got {v!r}") from None

    return check


def _map(name: str, v: Any) -> dict:
    if not isinstance(v, dict):
        raise ProtocolError(f"field '{name}' must be a map, got {type(v).__name__}")
    return v


def _list(name: str, v: Any) -> list:
    if not isinstance(v, list):
        raise ProtocolError(f"field '{name}' must be an array, got {type(v).__name__}")
    return v


def _price_list(name: str, v: Any) -> tuple[float, ...]:
    v = _list(name, v)
    if len(v) > 64:
        raise ProtocolError(f"field '{name}' holds more than 64 levels")
    return tuple(_price(name, x) for x in v)


# ----------------------------------------------------------------------------- messages

_SIDES: dict[str, Side] = {e.value: e for e in Side}
_ORDER_TYPES: dict[str, OrderType] = {e.value: e for e in OrderType}

_REGISTRY: dict[str, type[Message]] = {}
_MISSING = object()


class Message:
    """Base of every wire message: a frozen dataclass with a ``TYPE`` and field checks.

    ``FIELDS`` maps a field name to (check, required).  Optional fields fall back to the
    dataclass default when absent.  Extra keys are ignored so that newer peers may add
    fields without breaking older ones (the version ``v`` guards incompatible changes).
    """

    TYPE: ClassVar[MsgType]
    FIELDS: ClassVar[dict[str, tuple[Any, bool]]]
    _names: ClassVar[tuple[str, ...]]
    _checks: ClassVar[tuple[tuple[str, Any, bool], ...]]
    _type: ClassVar[str]
    _values: ClassVar[Any]  # obj -> tuple of its field values, in _names order

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "TYPE" in cls.__dict__:
            _REGISTRY[cls.TYPE.value] = cls

    @classmethod
    def from_dict(cls, d: dict) -> Message:
        kwargs = {}
        get = d.get
        for name, check, required in cls._checks:
            v = get(name, _MISSING)
            if v is not _MISSING:
                kwargs[name] = check(name, v)
            elif required:
                raise ProtocolError(f"'{cls.TYPE.value}' is missing field '{name}'")
        obj = cls(**kwargs)
        obj.validate()
        return obj

    def validate(self) -> None:
        """Cross-field checks; raise ProtocolError."""

    def to_dict(self) -> dict:
        d = {"v": PROTOCOL_VERSION, "type": self._type}
        # one C call for every field (attrgetter) instead of a getattr per field
        for name, val in zip(self._names, self._values(self)):
            if val.__class__ is tuple:
                val = list(val)
            d[name] = val
        return d

    def pack(self) -> bytes:
        return _packb(self.to_dict())


def message(cls):
    """Class decorator: frozen slotted dataclass registered as a wire message."""
    dc = dataclass(frozen=True, slots=True)(cls)
    dc._names = tuple(f.name for f in dataclasses.fields(dc))
    dc._checks = tuple((name, check, required) for name, (check, required) in dc.FIELDS.items())
    dc._type = dc.TYPE.value
    if len(dc._names) > 1:
        dc._values = operator.attrgetter(*dc._names)  # not a descriptor: no self binding
    elif dc._names:
        getter = operator.attrgetter(dc._names[0])
        dc._values = staticmethod(lambda obj: (getter(obj),))
    else:
        dc._values = staticmethod(lambda obj: ())
    missing = set(dc._names) ^ set(dc.FIELDS)
    assert not missing, f"{dc.__name__}: FIELDS and dataclass fields differ: {missing}"
    return dc


@message
class Tick(Message):
    TYPE = MsgType.TICK
    FIELDS = {
        "symbol": (_symbol, True),
        "seq": (_nonneg_int, True),
        "ts": (_nonneg_int, True),
        "last": (_price, True),
        "bid": (_price, True),
        "ask": (_price, True),
        "bid_size": (_nonneg_int, True),
        "ask_size": (_nonneg_int, True),
        "volume": (_nonneg_int, True),
    }
    symbol: str
    seq: int
    ts: int
    last: float
    bid: float
    ask: float
    bid_size: int
    ask_size: int
    volume: int

    def validate(self) -> None:
        if self.bid > self.ask:
            raise ProtocolError(f"tick {self.symbol}: bid {self.bid} above ask {self.ask}")

    @property
    def topic(self) -> bytes:
        return tick_topic(self.symbol)

    @classmethod
    def from_dict(cls, d: dict) -> Tick:
        # The hottest message gets a specialised validator: the checks of FIELDS and validate()
        # inline, for the ordinary case (floats, ints, a symbol seen before).  Anything else --
        # an int price, a new symbol, a bad value, a missing field -- takes the generic path,
        # which accepts it or names the problem.  Same verdicts, about 5x cheaper.
        try:
            sym = d["symbol"]
            seq = d["seq"]
            ts = d["ts"]
            last = d["last"]
            bid = d["bid"]
            ask = d["ask"]
            bsz = d["bid_size"]
            asz = d["ask_size"]
            vol = d["volume"]
        except (KeyError, TypeError):
            return Message.from_dict.__func__(cls, d)
        if (
            last.__class__ is float and bid.__class__ is float and ask.__class__ is float
            and 0.0 < last < MAX_PRICE and 0.0 < bid <= ask < MAX_PRICE
            and seq.__class__ is int and ts.__class__ is int and bsz.__class__ is int and asz.__class__ is int and vol.__class__ is int
            and seq >= 0 and ts >= 0 and bsz >= 0 and asz >= 0 and vol >= 0
            and sym.__class__ is str and sym in _VALID_SYMBOLS
        ):
            return cls(sym, seq, ts, last, bid, ask, bsz, asz, vol)
        return Message.from_dict.__func__(cls, d)

    def to_dict(self) -> dict:
        return {"v": PROTOCOL_VERSION, "type": "tick", "symbol": self.symbol, "seq": self.seq, "ts": self.ts, "last": self.last,
                "bid": self.bid, "ask": self.ask, "bid_size": self.bid_size, "ask_size": self.ask_size, "volume": self.volume}

    @property
    def row(self) -> list:
        """This tick as a row of a ``ticks`` message (see :data:`TICK_ROW_FIELDS`)."""
        return [self.seq, self.ts, self.last, self.bid, self.ask, self.bid_size, self.ask_size, self.volume]


def _row_ok(r: Any) -> bool:
    """The fast check of one ``ticks`` row: exactly what the Tick checks accept, the usual way."""
    if r.__class__ is not list or len(r) != 8:
        return False
    seq, ts, last, bid, ask, bsz, asz, vol = r
    return (
        last.__class__ is float and bid.__class__ is float and ask.__class__ is float
        and 0.0 < last < MAX_PRICE and 0.0 < bid <= ask < MAX_PRICE
        and seq.__class__ is int and ts.__class__ is int and bsz.__class__ is int and asz.__class__ is int and vol.__class__ is int
        and seq >= 0 and ts >= 0 and bsz >= 0 and asz >= 0 and vol >= 0
    )


def _row(i: int, r: Any) -> list:
    """Check one row the long way: a normalised row (int prices as floats) or ProtocolError."""
    if not isinstance(r, (list, tuple)) or len(r) != 8:
        raise ProtocolError(f"ticks[{i}] must be an array of 8 values ({', '.join(TICK_ROW_FIELDS)})")
    seq = _nonneg_int(f"ticks[{i}].seq", r[0])
    ts = _nonneg_int(f"ticks[{i}].ts", r[1])
    last = _price(f"ticks[{i}].last", r[2])
    bid = _price(f"ticks[{i}].bid", r[3])
    ask = _price(f"ticks[{i}].ask", r[4])
    bsz = _nonneg_int(f"ticks[{i}].bid_size", r[5])
    asz = _nonneg_int(f"ticks[{i}].ask_size", r[6])
    vol = _nonneg_int(f"ticks[{i}].volume", r[7])
    if bid > ask:
        raise ProtocolError(f"ticks[{i}]: bid {bid} above ask {ask}")
    return [seq, ts, last, bid, ask, bsz, asz, vol]


def _tick_rows(name: str, v: Any) -> list:
    """Check the rows of a ``ticks`` message; returns the list, bad-but-fixable rows normalised."""
    if not isinstance(v, list):
        if not isinstance(v, tuple):
            raise ProtocolError(f"field '{name}' must be an array, got {type(v).__name__}")
        v = list(v)
    if not 0 < len(v) <= MAX_TICKS_PER_FRAME:
        raise ProtocolError(f"field '{name}' must hold 1..{MAX_TICKS_PER_FRAME} ticks, got {len(v)}")
    i = 0
    for r in v:
        # _row_ok inline (a call per row costs as much as the checks)
        if r.__class__ is list and len(r) == 8:
            seq, ts, last, bid, ask, bsz, asz, vol = r
            if not (
                last.__class__ is float and bid.__class__ is float and ask.__class__ is float
                and 0.0 < last < MAX_PRICE and 0.0 < bid <= ask < MAX_PRICE
                and seq.__class__ is int and ts.__class__ is int and bsz.__class__ is int and asz.__class__ is int
                and vol.__class__ is int and seq >= 0 and ts >= 0 and bsz >= 0 and asz >= 0 and vol >= 0
            ):
                v[i] = _row(i, r)
        else:
            v[i] = _row(i, r)
        i += 1
    return v


@message
class Ticks(Message):
    """Consecutive ticks of ONE symbol in one published frame (topic ``tick.<SYMBOL>``).

    The gateway sends this instead of several ``tick`` frames when more than one tick of a
    symbol is due in the same wake-up (it never waits to fill a batch).  On the wire the ticks
    are rows ``[seq, ts, last, bid, ask, bid_size, ask_size, volume]`` (docs/protocol.md);
    decoded, they are :class:`Tick` objects.  Use :func:`iter_ticks` / :func:`tick_rows` to read
    a tick frame of either form.
    """

    TYPE = MsgType.TICKS
    FIELDS = {"symbol": (_symbol, True), "ticks": (_tick_rows, True)}
    symbol: str
    ticks: tuple[Tick, ...]

    @classmethod
    def from_dict(cls, d: dict) -> Ticks:
        if "symbol" not in d:
            raise ProtocolError("'ticks' is missing field 'symbol'")
        if "ticks" not in d:
            raise ProtocolError("'ticks' is missing field 'ticks'")
        sym = _symbol("symbol", d["symbol"])
        rows = _tick_rows("ticks", d["ticks"])
        return cls(sym, tuple([Tick(sym, *r) for r in rows]))

    def validate(self) -> None:
        if not 0 < len(self.ticks) <= MAX_TICKS_PER_FRAME:
            raise ProtocolError(f"'ticks' must hold 1..{MAX_TICKS_PER_FRAME} ticks, got {len(self.ticks)}")
        for t in self.ticks:
            if t.symbol != self.symbol:
                raise ProtocolError(f"'ticks' of {self.symbol} holds a tick of {t.symbol}")

    def to_dict(self) -> dict:
        return {"v": PROTOCOL_VERSION, "type": "ticks", "symbol": self.symbol, "ticks": [t.row for t in self.ticks]}

    @property
    def topic(self) -> bytes:
        return tick_topic(self.symbol)


@message
class Signal(Message):
    TYPE = MsgType.SIGNAL
    FIELDS = {
        "id": (_str, True),
        "strategy": (_str, True),
        "symbol": (_symbol, True),
        "side": (_enum(Side), True),
        "qty": (_qty, True),
        "price": (_price, True),
        "ts": (_nonneg_int, True),
        "cause_ts": (_nonneg_int, True),
        "reason": (_text, False),
    }
    id: str
    strategy: str
    symbol: str
    side: Side
    qty: int
    price: float
    ts: int
    cause_ts: int
    reason: str = ""


@message
class Levels(Message):
    """A strategy's current support/resistance levels (strategy -> executor -> events)."""

    TYPE = MsgType.LEVELS
    FIELDS = {
        "strategy": (_str, True),
        "symbol": (_symbol, True),
        "support": (_opt_price, False),
        "resistance": (_opt_price, False),
        "ts": (_nonneg_int, True),
        "position": (_int, False),
        "active": (_bool, False),
    }
    strategy: str
    symbol: str
    ts: int
    support: float | None = None
    resistance: float | None = None
    position: int = 0
    active: bool = True


@message
class SignalDecision(Message):
    """Every signal the executor pulled, with its risk decision (events endpoint)."""

    TYPE = MsgType.SIGNAL_DECISION
    FIELDS = {
        "signal": (_map, True),
        "accepted": (_bool, True),
        "reason": (_text, False),
        "client_order_id": (_opt_str, False),
        "ts": (_nonneg_int, True),
    }
    signal: dict
    accepted: bool
    ts: int
    reason: str = ""
    client_order_id: str | None = None

    def validate(self) -> None:
        # The nested signal must itself be a valid signal.
        Signal.from_dict(self.signal)

    @property
    def parsed_signal(self) -> Signal:
        return Signal.from_dict(self.signal)


@message
class Position(Message):
    TYPE = MsgType.POSITION
    FIELDS = {
        "symbol": (_symbol, True),
        "qty": (_int, True),
        "avg_price": (_float, True),
        "realized_pnl": (_float, True),
        "unrealized_pnl": (_float, True),
        "ts": (_nonneg_int, True),
        "last": (_float, False),
    }
    symbol: str
    qty: int
    avg_price: float
    realized_pnl: float
    unrealized_pnl: float
    ts: int
    last: float = 0.0


@message
class OrderUpdate(Message):
    TYPE = MsgType.ORDER_UPDATE
    FIELDS = {
        "client_order_id": (_str, True),
        "order_id": (_str, True),
        "symbol": (_symbol, True),
        "side": (_enum(Side), True),
        "qty": (_qty, True),
        "filled_qty": (_nonneg_int, True),
        "avg_price": (_float, True),
        "status": (_enum(OrderStatus), True),
        "ts": (_nonneg_int, True),
        "reason": (_text, False),
        "order_type": (_enum(OrderType), False),
        "limit_price": (_opt_price, False),
        "source": (_text, False),
        "cause_ts": (_nonneg_int, False),
        "origin_ts": (_nonneg_int, False),
        "seq": (_nonneg_int, False),
    }
    client_order_id: str
    order_id: str
    symbol: str
    side: Side
    qty: int
    filled_qty: int
    avg_price: float
    status: OrderStatus
    ts: int
    reason: str = ""
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    source: str = ""
    cause_ts: int = 0
    origin_ts: int = 0
    seq: int = 0


@message
class Fill(Message):
    TYPE = MsgType.FILL
    FIELDS = {
        "fill_id": (_str, True),
        "client_order_id": (_str, True),
        "order_id": (_str, True),
        "symbol": (_symbol, True),
        "side": (_enum(Side), True),
        "qty": (_qty, True),
        "price": (_price, True),
        "ts": (_nonneg_int, True),
        "source": (_text, False),
        "cause_ts": (_nonneg_int, False),
        "origin_ts": (_nonneg_int, False),
        "seq": (_nonneg_int, False),
    }
    fill_id: str
    client_order_id: str
    order_id: str
    symbol: str
    side: Side
    qty: int
    price: float
    ts: int
    source: str = ""
    cause_ts: int = 0
    origin_ts: int = 0
    seq: int = 0


# ---- requests on the orders endpoint


@message
class SendOrder(Message):
    TYPE = MsgType.SEND_ORDER
    FIELDS = {
        "client_order_id": (_str, True),
        "symbol": (_symbol, True),
        "side": (_enum(Side), True),
        "qty": (_qty, True),
        "order_type": (_enum(OrderType), False),
        "limit_price": (_opt_price, False),
        "source": (_text, False),
        "ts": (_nonneg_int, False),
        "cause_ts": (_nonneg_int, False),
        "origin_ts": (_nonneg_int, False),
    }
    client_order_id: str
    symbol: str
    side: Side
    qty: int
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    source: str = ""
    ts: int = 0
    cause_ts: int = 0
    origin_ts: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> SendOrder:
        # On the order path of every order: FIELDS and validate() inline for the ordinary
        # case, the generic path for anything else (same verdicts, about 2x cheaper).
        get = d.get
        try:
            side = _SIDES.get(get("side"))
            otype = _ORDER_TYPES.get(get("order_type", "market"))
        except TypeError:  # an unhashable value: let the generic path name it
            return Message.from_dict.__func__(cls, d)
        cid = get("client_order_id")
        sym = get("symbol")
        qty = get("qty")
        lp = get("limit_price")
        src = get("source", "")
        ts = get("ts", 0)
        cause = get("cause_ts", 0)
        origin = get("origin_ts", 0)
        if (
            side is not None and otype is not None
            and cid.__class__ is str and 0 < len(cid) <= MAX_STR
            and sym.__class__ is str and sym in _VALID_SYMBOLS
            and qty.__class__ is int and 0 < qty <= MAX_QTY
            and src.__class__ is str and len(src) <= 1024
            and ts.__class__ is int and ts >= 0 and cause.__class__ is int and cause >= 0
            and origin.__class__ is int and origin >= 0
            and ((lp is None and otype is OrderType.MARKET)
                 or (otype is OrderType.LIMIT and lp.__class__ is float and 0.0 < lp < MAX_PRICE))
        ):
            return cls(cid, sym, side, qty, otype, lp, src, ts, cause, origin)
        return Message.from_dict.__func__(cls, d)

    def validate(self) -> None:
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            raise ProtocolError("a limit order needs 'limit_price'")
        if self.order_type is OrderType.MARKET and self.limit_price is not None:
            raise ProtocolError("a market order must not carry 'limit_price'")


@message
class CancelOrder(Message):
    TYPE = MsgType.CANCEL_ORDER
    FIELDS = {"client_order_id": (_str, True), "ts": (_nonneg_int, False)}
    client_order_id: str
    ts: int = 0


@message
class CancelAll(Message):
    TYPE = MsgType.CANCEL_ALL
    FIELDS = {"symbol": (_opt_str, False), "ts": (_nonneg_int, False)}
    symbol: str | None = None
    ts: int = 0


@message
class GetOrder(Message):
    TYPE = MsgType.GET_ORDER
    FIELDS = {"client_order_id": (_str, True)}
    client_order_id: str


@message
class GetOrders(Message):
    TYPE = MsgType.GET_ORDERS
    FIELDS = {"working_only": (_bool, False)}
    working_only: bool = False


@message
class GetPositions(Message):
    TYPE = MsgType.GET_POSITIONS
    FIELDS: ClassVar = {}


@message
class Ping(Message):
    TYPE = MsgType.PING
    FIELDS = {"ts": (_nonneg_int, False)}
    ts: int = 0


REQUEST_TYPES = frozenset(
    {
        MsgType.SEND_ORDER,
        MsgType.CANCEL_ORDER,
        MsgType.CANCEL_ALL,
        MsgType.GET_ORDER,
        MsgType.GET_ORDERS,
        MsgType.GET_POSITIONS,
        MsgType.PING,
    }
)

REQUEST_CLASSES: tuple[type[Message], ...] = (SendOrder, CancelOrder, CancelAll, GetOrder, GetOrders, GetPositions, Ping)
assert {c.TYPE for c in REQUEST_CLASSES} == REQUEST_TYPES

# ---- control channel (supervisor ROUTER <-> worker DEALER)


@message
class Hello(Message):
    TYPE = MsgType.HELLO
    FIELDS = {"name": (_str, True), "role": (_str, True), "pid": (_nonneg_int, True), "ts": (_nonneg_int, True)}
    name: str
    role: str
    pid: int
    ts: int


@message
class Heartbeat(Message):
    TYPE = MsgType.HEARTBEAT
    FIELDS = {
        "name": (_text, False),
        "role": (_text, False),
        "pid": (_nonneg_int, False),
        "ts": (_nonneg_int, True),
        "stats": (_map, False),
        "state": (_text, False),
    }
    ts: int
    name: str = ""
    role: str = ""
    pid: int = 0
    stats: dict = field(default_factory=dict)
    state: str = ""


@message
class Command(Message):
    TYPE = MsgType.COMMAND
    FIELDS = {"id": (_str, True), "cmd": (_str, True), "args": (_map, False)}
    id: str
    cmd: str
    args: dict = field(default_factory=dict)


@message
class CommandReply(Message):
    TYPE = MsgType.COMMAND_REPLY
    FIELDS = {"id": (_str, True), "cmd": (_str, True), "ok": (_bool, True), "reason": (_text, False), "result": (_map, False)}
    id: str
    cmd: str
    ok: bool
    reason: str = ""
    result: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- encode/decode

_packer = msgpack.Packer(use_bin_type=True)


def _packb(obj: Any) -> bytes:
    return _packer.pack(obj)


def packb(obj: Any) -> bytes:
    """Pack a plain map (replies, ad-hoc maps) the same way messages are packed."""
    return _packer.pack(obj)


def unpack_map(data: bytes) -> dict:
    """Unpack one msgpack map; raise ProtocolError on anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("payload must be bytes")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit")
    if not data:
        raise ProtocolError("empty message")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types: ExtraData, FormatError, ValueError, ...
        raise ProtocolError(f"not a msgpack message: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"message must be a msgpack map, got {type(obj).__name__}")
    return obj


def check_envelope(d: dict) -> str:
    """Check ``v`` and ``type``; return the type name."""
    v = d.get("v")
    if v != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {v!r}; this peer speaks v{PROTOCOL_VERSION}")
    t = d.get("type")
    if t is None:
        raise ProtocolError("message has no 'type'")
    if not isinstance(t, str):
        raise ProtocolError(f"'type' must be a string, got {type(t).__name__}")
    return t


def from_map(d: dict, expect: type[Message] | tuple[type[Message], ...] | None = None) -> Message:
    t = check_envelope(d)
    cls = _REGISTRY.get(t)
    if cls is None:
        raise ProtocolError(f"unknown message type {t!r}")
    if expect is not None and not issubclass(cls, expect):
        raise ProtocolError(f"unexpected message type {t!r} on this endpoint")
    return cls.from_dict(d)


def decode(data: bytes, expect: type[Message] | tuple[type[Message], ...] | None = None) -> Message:
    """Decode one payload (no topic) into its typed message, or raise ProtocolError."""
    return from_map(unpack_map(data), expect)


# ---- topics (published messages are one frame: topic NUL payload)


def tick_topic(symbol: str) -> bytes:
    return b"tick." + symbol.encode()


_TICK_PREFIX: dict[str, bytes] = {}  # symbol -> b"tick.<SYMBOL>\0" (bounded like _VALID_SYMBOLS)


def tick_prefix(symbol: str) -> bytes:
    """``tick.<SYMBOL>`` NUL: what comes before the payload in a published tick frame."""
    p = _TICK_PREFIX.get(symbol)
    if p is None:
        p = b"tick." + symbol.encode() + TOPIC_SEP
        if len(_TICK_PREFIX) < _VALID_SYMBOLS_MAX:
            _TICK_PREFIX[symbol] = p
    return p


def encode_ticks(symbol: str, rows: list[list]) -> bytes:
    """One published frame with the ticks ``rows`` of ``symbol`` (see :data:`TICK_ROW_FIELDS`):
    the classic ``tick`` form for a single row, a ``ticks`` message for 2..1024 rows.
    The rows are trusted (the caller made them from valid ticks)."""
    if len(rows) == 1:
        seq, ts, last, bid, ask, bsz, asz, vol = rows[0]
        d = {"v": PROTOCOL_VERSION, "type": "tick", "symbol": symbol, "seq": seq, "ts": ts, "last": last, "bid": bid, "ask": ask,
             "bid_size": bsz, "ask_size": asz, "volume": vol}
    else:
        d = {"v": PROTOCOL_VERSION, "type": "ticks", "symbol": symbol, "ticks": rows}
    return tick_prefix(symbol) + _packer.pack(d)


def tick_rows(frame: bytes) -> tuple[str, list[list]]:
    """The ticks of one published frame on the ticks endpoint, either form, as ``(symbol, rows)``.

    Each row is ``[seq, ts, last, bid, ask, bid_size, ask_size, volume]``, checked exactly like a
    :class:`Tick` (prices are floats).  The topic must be ``tick.<symbol>``.  A frame is taken
    whole or not at all: any problem raises :class:`ProtocolError` and nothing is returned.
    This is the fast path (no Tick objects); :func:`iter_ticks` gives typed ticks.
    """
    i = frame.find(TOPIC_SEP)
    if i <= 0:
        raise ProtocolError("published frame has no topic separator")
    d = unpack_map(frame[i + 1:])
    t = d.get("type")
    if t == "tick" and d.get("v") == PROTOCOL_VERSION:
        try:
            sym = d["symbol"]
            seq = d["seq"]
            ts = d["ts"]
            last = d["last"]
            bid = d["bid"]
            ask = d["ask"]
            bsz = d["bid_size"]
            asz = d["ask_size"]
            vol = d["volume"]
            ok = (  # the checks of _row_ok, inline: this is the per-tick path of classic frames
                last.__class__ is float and bid.__class__ is float and ask.__class__ is float
                and 0.0 < last < MAX_PRICE and 0.0 < bid <= ask < MAX_PRICE
                and seq.__class__ is int and ts.__class__ is int and bsz.__class__ is int and asz.__class__ is int
                and vol.__class__ is int and seq >= 0 and ts >= 0 and bsz >= 0 and asz >= 0 and vol >= 0
                and sym.__class__ is str and sym in _VALID_SYMBOLS
            )
        except KeyError:
            ok = False
        if ok:
            row = [seq, ts, last, bid, ask, bsz, asz, vol]
        else:
            tick = Tick.from_dict(d)  # names the problem, or accepts an unusual encoding
            sym, row = tick.symbol, tick.row
        if not frame.startswith(tick_prefix(sym)):  # the first NUL is at i: this is topic == tick.<sym>
            raise ProtocolError(f"topic {bytes(frame[:min(i, 40)])!r} does not match symbol {sym!r}")
        return sym, [row]
    elif t == "ticks" and d.get("v") == PROTOCOL_VERSION:
        sym = d.get("symbol", _MISSING)
        if sym is _MISSING:
            raise ProtocolError("'ticks' is missing field 'symbol'")
        sym = _symbol("symbol", sym)
        rows = _tick_rows("ticks", d.get("ticks"))
    else:
        check_envelope(d)
        if t in _REGISTRY:
            raise ProtocolError(f"unexpected message type {t!r} on this endpoint")
        raise ProtocolError(f"unknown message type {t!r}")
    if not frame.startswith(tick_prefix(sym)):
        raise ProtocolError(f"topic {bytes(frame[:min(i, 40)])!r} does not match symbol {sym!r}")
    return sym, rows


def iter_ticks(frame: bytes) -> Iterator[Tick]:
    """Typed :class:`Tick`s of one published tick frame, either form, oldest first.

    The whole frame is checked before the first tick is yielded (ProtocolError otherwise), so a
    caller never acts on half a bad frame.  One-line change for a consumer that did
    ``_, tick = decode_pub(frame, expect=Tick)``: ``for tick in iter_ticks(frame): ...``.
    """
    sym, rows = tick_rows(frame)
    return iter([Tick(sym, *r) for r in rows])


def last_tick(frame: bytes) -> Tick:
    """The newest tick of a published tick frame, either form (for consumers that only want
    the latest price).  The whole frame is checked; ProtocolError otherwise."""
    sym, rows = tick_rows(frame)
    return Tick(sym, *rows[-1])


def encode_pub(topic: bytes, msg: Message | dict) -> bytes:
    payload = msg.pack() if isinstance(msg, Message) else _packb(msg)
    return topic + TOPIC_SEP + payload


def split_pub(frame: bytes) -> tuple[bytes, bytes]:
    """Split a published frame into (topic, payload)."""
    i = frame.find(TOPIC_SEP)
    if i <= 0:
        raise ProtocolError("published frame has no topic separator")
    return frame[:i], frame[i + 1 :]


def decode_pub(frame: bytes, expect=None) -> tuple[bytes, Message]:
    topic, payload = split_pub(frame)
    return topic, decode(payload, expect)


def topic_for(msg: Message) -> bytes:
    """The canonical topic of a published message (see docs/protocol.md)."""
    t = msg.TYPE
    if t is MsgType.TICK or t is MsgType.TICKS:
        return b"tick." + msg.symbol.encode()
    if t is MsgType.ORDER_UPDATE:
        return b"exec.order." + msg.symbol.encode()
    if t is MsgType.FILL:
        return b"exec.fill." + msg.symbol.encode()
    if t is MsgType.SIGNAL_DECISION:
        return b"signal." + str(msg.signal.get("symbol", "")).encode()
    if t is MsgType.POSITION:
        return b"position." + msg.symbol.encode()
    if t is MsgType.LEVELS:
        return b"levels." + msg.symbol.encode()
    return t.value.encode()


def pub(msg: Message) -> bytes:
    """Encode a message as one published frame with its canonical topic."""
    if msg.__class__ is Tick:
        return tick_prefix(msg.symbol) + _packer.pack(msg.to_dict())
    return topic_for(msg) + TOPIC_SEP + msg.pack()


# ---- replies on the orders endpoint


def reply(request_type: str, ok: bool, reason: str = "", **fields: Any) -> dict:
    """Build a reply map: ``type`` is ``<request>_reply`` (``error`` if the request was unreadable)."""
    d = {"v": PROTOCOL_VERSION, "type": f"{request_type}_reply" if request_type else "error", "ok": ok, "reason": reason}
    d.update(fields)
    return d


def error_reply(reason: str, request_type: str = "") -> bytes:
    return _packb(reply(request_type, False, reason))
