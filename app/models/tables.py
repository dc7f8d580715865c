"""The columns of every table in the window, declared in one place (no Qt)."""

from __future__ import annotations

from typing import Any

from workers import protocol as P
from workers.protocol import OrderStatus, Side
from app.models import columns as F
from app.models.columns import Column, attr
from app.orders import TYPE_LABELS


def _side_tone(row: Any) -> str:
    return "up" if row.side is Side.BUY else "down"


def _status_tone(row: Any) -> str | None:
    s = row.status
    if s is OrderStatus.FILLED:
        return "up"
    if s is OrderStatus.REJECTED:
        return "bad"
    if s is OrderStatus.UNKNOWN:
        return "warn"
    if s in (OrderStatus.CANCELLED, OrderStatus.EXPIRED):
        return "muted"
    return None


# ----------------------------------------------------------------------------- market watch

def _quote_tone(q: Any) -> str | None:
    # a stale quote is greyed whatever its direction: its price is not the market's now
    return "muted" if q.stale else F.updown(q.change)


def _stale_muted(q: Any) -> str | None:
    return "muted" if q.stale else None


def _stale_tip(q: Any) -> str:
    return "STALE: no tick for a while (the feed for this symbol stopped)" if q.stale else ""


MARKET_COLUMNS = (
    Column("symbol", "Symbol", attr("symbol"), width=66, tone=_stale_muted, tip=_stale_tip),
    Column("last", "Last", attr("last"), F.price, "r", _quote_tone, width=66, tip=_stale_tip),
    Column("change", "Chg", attr("change"), F.signed, "r", _quote_tone, width=52,
           header_tip="Change since the first price this window saw"),
    Column("change_pct", "Chg%", attr("change_pct"), F.pct, "r", _quote_tone, width=56),
    Column("bid", "Bid", attr("bid"), F.price, "r", _stale_muted, width=62),
    Column("ask", "Ask", attr("ask"), F.price, "r", _stale_muted, width=62),
    Column("bid_size", "BidSz", attr("bid_size"), F.integer, "r", width=46),
    Column("ask_size", "AskSz", attr("ask_size"), F.integer, "r", width=46),
    Column("volume", "Volume", attr("volume"), F.integer, "r", width=68),
    Column("rate", "Tick/s", attr("rate"), F.rate, "r", width=44),
    Column("missed", "Gaps", attr("missed"), F.integer, "r", lambda q: "warn" if q.missed else "muted", width=38,
           header_tip="Ticks lost in sequence gaps (feed faster than the window, or a reconnect)"),
    # the time of the newest tick, "STALE" in front once it is old (sorted by the time alone)
    Column("ts", "Time", lambda q: (q.ts, q.stale), lambda v: ("STALE " if v[1] else "") + F.clock_ns(v[0]), "r",
           lambda q: "warn" if q.stale else None, width=110, tip=_stale_tip, csv=lambda q: F.iso_ns(q.ts)),
)

# ----------------------------------------------------------------------------- orders

def _status_text(o: Any) -> str:
    """The status, and that the window is asking the exchange about it ("PENDING_NEW (QUERYING)")."""
    text = o.status.value.upper()
    return f"{text} (QUERYING)" if getattr(o, "querying", False) else text



def is_child(o: Any) -> bool:
    """A bracket's child (``<parent>.tp`` / ``<parent>.sl``): shown under its parent."""
    return bool(getattr(o, "parent_id", ""))


def _leg(o: Any) -> str:
    coid = o.client_order_id
    return "take-profit" if coid.endswith(P.BRACKET_SUFFIXES[0]) else "stop-loss" if coid.endswith(P.BRACKET_SUFFIXES[1]) else "child"


def _symbol_text(o: Any) -> str:
    return f"↳ {o.symbol}" if is_child(o) else o.symbol


def _symbol_tip(o: Any) -> str:
    return f"the {_leg(o)} of {o.parent_id}" if is_child(o) else ""


def _type_text(o: Any) -> str:
    return TYPE_LABELS.get(o.order_type, o.order_type.value.upper())


def _trail_text(o: Any) -> str:
    if o.trail_amount:
        return f"trail {o.trail_amount:,.2f}"
    if o.trail_pct:
        return f"trail {o.trail_pct:g}%"
    return ""


def order_flags(o: Any) -> str:
    """What the order's state adds to its status: triggered, emulated, its trail, OCO, bracket."""
    out = []
    if getattr(o, "triggered", False):
        out.append("TRIGGERED")
    if getattr(o, "emulated", False):
        out.append("EMULATED")
    trail = _trail_text(o)
    if trail:
        out.append(trail)
    if not is_child(o):
        if o.take_profit_price:
            out.append(f"TP {o.take_profit_price:,.2f}")
        if o.stop_loss_price:
            out.append(f"SL {o.stop_loss_price:,.2f}")
    if getattr(o, "oco_group", ""):
        out.append("OCO")
    return " · ".join(out)


def _flags_tip(o: Any) -> str:
    tips = []
    if o.triggered:
        tips.append("triggered: the stop was reached; the order now works as a "
                    + ("limit" if o.order_type is P.OrderType.STOP_LIMIT else "market") + " order")
    if o.emulated:
        tips.append("emulated: held and worked by the exchange gateway (the venue lacks this order type)")
    if o.oco_group:
        tips.append(f"one-cancels-other group {o.oco_group}: when one of its orders fills, the others are cancelled")
    if o.take_profit_price or o.stop_loss_price:
        tips.append(f"bracket: children {o.client_order_id}.tp / .sl when it fills")
    return "\n".join(tips)


#: the columns the working and history blotters share, by key; each blotter picks its own set
#: and order, so a column's look is declared once for both
_ORDER_COLUMNS = {c.key: c for c in (
    Column("symbol", "Symbol", _symbol_text, width=66, tip=_symbol_tip, csv=attr("symbol")),
    Column("side", "Side", attr("side"), F.upper, tone=_side_tone, width=44),
    Column("qty", "Qty", attr("qty"), F.integer, "r", width=56),
    Column("filled_qty", "Filled", attr("filled_qty"), F.integer, "r", width=56),
    Column("avg_price", "AvgPx", attr("avg_price"), F.price, "r", width=72),
    Column("order_type", "Type", _type_text, width=60, csv=lambda o: o.order_type.value),
    Column("limit_price", "Limit", attr("limit_price"), F.price, "r", width=72,
           header_tip="Double-click or F2 on a working order's price or quantity to modify it"),
    Column("stop_price", "Stop", attr("stop_price"), F.price, "r", width=72,
           header_tip="The stop price (a trailing stop's as it moves)"),
    Column("tif", "TIF", attr("tif"), F.upper, width=40),
    Column("flags", "Flags", order_flags, width=130, tip=_flags_tip,
           header_tip="TRIGGERED (a stop reached), EMULATED (held by the gateway), the trail, the bracket, OCO"),
    # the working blotter has no reason column, so its status cell tells the reason
    Column("status", "Status", _status_text, tone=_status_tone, width=100,
           tip=lambda o: ("pending past its timeout: asking the exchange (get_order)" if o.querying
                          else (o.reason or o.status.value))),
    Column("reason", "Reason", attr("reason"), width=220, tip=lambda o: o.reason),
    Column("source", "Source", attr("source"), width=90),
    Column("client_order_id", "ClOrdID", attr("client_order_id"), width=150),
    Column("order_id", "OrderID", attr("order_id"), width=70),
)}


def _order_columns(time: Column, keys: str, **changed: Column) -> tuple[Column, ...]:
    return (time, *(changed.get(k, _ORDER_COLUMNS[k]) for k in keys.split()))


WORKING_COLUMNS = _order_columns(
    Column("created_ts", "Time", attr("created_ts"), F.clock_ns, width=90, csv=lambda o: F.iso_ns(o.created_ts)),
    "symbol side qty filled_qty order_type limit_price stop_price tif status flags source client_order_id order_id")

# the history lists orders by submission, so its Time is the submission time (it showed the
# last update's, which made the order look unsorted); the last update has its own column
HISTORY_COLUMNS = (*_order_columns(
    Column("created_ts", "Time", attr("created_ts"), F.clock_ns, width=90, csv=lambda o: F.iso_ns(o.created_ts),
           header_tip="When the order was submitted (the history is in this order)"),
    "symbol side qty filled_qty avg_price order_type limit_price stop_price tif status flags reason source "
    "client_order_id order_id",
    status=Column("status", "Status", _status_text, tone=_status_tone, width=100)),
    Column("ts", "Updated", attr("ts"), F.clock_ns, width=90, csv=lambda o: F.iso_ns(o.ts),
           header_tip="The order's last change"))

def tick_to_fill_ms(us: float | None) -> str:
    """Microseconds as milliseconds with two decimals for every row: with the unit switching
    between rows (1,500 µs beside 25.0 ms) the column could not be read down or compared."""
    if not us:
        return ""
    return f"{us / 1000.0:,.2f}"


FILL_COLUMNS = (
    Column("ts", "Time", attr("ts"), F.clock_ns, width=90, csv=lambda f: F.iso_ns(f.ts)),
    Column("symbol", "Symbol", attr("symbol"), width=60),
    Column("side", "Side", attr("side"), F.upper, tone=_side_tone, width=44),
    Column("qty", "Qty", attr("qty"), F.integer, "r", width=56),
    Column("price", "Price", attr("price"), F.price, "r", width=76),
    Column("value", "Value", lambda f: f.qty * f.price, F.price, "r", width=90),
    Column("source", "Source", attr("source"), width=90),
    Column("latency_us", "Tick→Fill ms", attr("latency_us"), tick_to_fill_ms, "r", width=86,
           header_tip="Milliseconds from the tick that caused the order to the fill reaching this window "
                      "(empty for a fill loaded from the exchange's history: not measured here)"),
    Column("client_order_id", "ClOrdID", attr("client_order_id"), width=150),
    Column("order_id", "OrderID", attr("order_id"), width=70),
    Column("fill_id", "FillID", attr("fill_id"), width=70),
)


def _total_pnl(p: Any) -> float:
    return p.realized_pnl + p.unrealized_pnl


POSITION_COLUMNS = (
    Column("symbol", "Symbol", attr("symbol"), width=70, tone=lambda p: None if getattr(p, "is_net", True) else "muted"),
    Column("qty", "Qty", attr("qty"), F.signed_int, "r", lambda p: F.updown(p.qty), width=70),
    Column("avg_price", "AvgPx", attr("avg_price"), F.price, "r", width=80),
    Column("last", "Last", attr("last"), F.price, "r", width=80),
    Column("unrealized", "Unrealized", lambda p: p.unrealized_pnl, F.signed, "r", lambda p: F.updown(p.unrealized_pnl), width=90),
    Column("realized", "Realized", attr("realized_pnl"), F.signed, "r", lambda p: F.updown(p.realized_pnl), width=90),
    Column("total", "Total P&L", _total_pnl, F.signed, "r", lambda p: F.updown(_total_pnl(p)), width=90),
    Column("exposure", "Exposure", lambda p: p.qty * p.last, F.signed, "r", width=100,
           header_tip="Quantity times last price"),
    Column("source", "Source", lambda p: getattr(p, "source", "net"), width=110,
           header_tip="Who holds it: manual (the ticket) or strategy.<name>, from each fill's source. A symbol "
                      "that several sources traded has a net row (the account at the exchange) and one row each"),
)

# ----------------------------------------------------------------------------- signals

SIGNAL_COLUMNS = (
    Column("ts", "Time", attr("ts"), F.clock_ns, width=90, csv=lambda s: F.iso_ns(s.ts)),
    Column("strategy", "Strategy", attr("strategy"), width=90),
    Column("symbol", "Symbol", attr("symbol"), width=60),
    Column("side", "Side", attr("side"), F.upper, tone=_side_tone, width=44),
    Column("qty", "Qty", attr("qty"), F.integer, "r", width=50),
    Column("price", "Price", attr("price"), F.price, "r", width=72),
    Column("accepted", "Decision", attr("accepted"), lambda a: "ACCEPTED" if a else "REJECTED",
           tone=lambda s: "up" if s.accepted else "bad", width=80),
    Column("decision", "Decision reason", attr("decision"), width=200, tip=lambda s: s.decision),
    Column("reason", "Signal reason", attr("reason"), width=220, tip=lambda s: s.reason),
    Column("client_order_id", "ClOrdID", attr("client_order_id"), width=150),
)

# ----------------------------------------------------------------------------- workers

#: counters that count a worker's input and output messages, per kind (rates are per second)
IN_OUT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "marketdata": ((), ("ticks",)),
    "strategy": (("ticks",), ("signals", "levels")),
    "executor": (("signals", "levels", "ticks", "fills", "order_updates"), ("orders",)),
    "exchange": (("requests", "ticks_in"), ("published",)),
    "recorder": (("frames",), ()),  # the tick and depth frames it took; it sends nothing
}


def rate_in(w: Any) -> float:
    keys = IN_OUT.get(w.spec.kind, (("msgs_in",), ()))[0]
    return sum(w.rates.get(k, 0.0) for k in keys)


def rate_out(w: Any) -> float:
    keys = IN_OUT.get(w.spec.kind, ((), ("msgs_out",)))[1]
    return sum(w.rates.get(k, 0.0) for k in keys)


#: ``*dropped`` counters that are not messages lost: ``levels_dropped`` is a Levels push that
#: found no executor connected (at every start, before the executor's PULL is up) and is sent
#: again once the throttle allows; ``reply_dropped`` is the exchange's undelivered replies, which
#: it also counts in ``dropped``
NOT_LOST = frozenset({"levels_dropped", "reply_dropped"})


def lost_counters(w: Any) -> list[str]:
    """The counters that count messages a worker lost for good: its ``dropped`` (unsent on a
    full socket, refused on a failed journal), every other ``*_dropped`` but :data:`NOT_LOST`,
    and ``ticks_missed`` (ticks lost in sequence gaps)."""
    return sorted(k for k in _counter_keys(w)
                  if ("dropped" in k and k not in NOT_LOST) or k == "ticks_missed")


def drops(w: Any) -> int:
    return sum(int(w.counter(k)) for k in lost_counters(w))


def _drops_tip(w: Any) -> str:
    parts = [f"{k}: {int(w.counter(k)):,}" for k in lost_counters(w) if w.counter(k)]
    return "\n".join(parts) or "nothing lost"


def errors(w: Any) -> int:
    return sum(int(w.counter(k)) for k in _counter_keys(w) if k.endswith("errors"))


def _counter_keys(w: Any) -> set[str]:
    return set(w.stats.get("counters", {})) | set(w.carried)


def _ms(us: float | None) -> str:
    if not us:
        return "0"
    ms = us / 1000.0
    return f"{ms:.2f}" if ms < 10 else f"{ms:.0f}"


def latency_text(w: Any) -> str:
    """``hop p50/p99`` in milliseconds for every hop the worker measured."""
    lat = w.stats.get("latency", {}) or {}
    parts = [f"{hop} {_ms(s['p50_us'])}/{_ms(s.get('p99_us'))}" for hop, s in sorted(lat.items())
             if isinstance(s, dict) and "p50_us" in s]
    return ("  ".join(parts) + " ms") if parts else ""


def latency_tip(w: Any) -> str:
    lat = w.stats.get("latency", {}) or {}
    lines = [f"{hop}: p50 {F.micros(s.get('p50_us'))}, p99 {F.micros(s.get('p99_us'))}, "
             f"p99.9 {F.micros(s.get('p999_us'))}, max {F.micros(s.get('max_us'))} (n={s.get('n')})"
             for hop, s in sorted(lat.items()) if isinstance(s, dict)]
    return "\n".join(lines) or "no latency samples in the last heartbeat"


def _state_tone(w: Any) -> str | None:
    return {"running": "up", "paused": "warn", "crashed": "bad", "backoff": "bad", "stopped": "muted",
            "starting": "warn", "stopping": "warn"}.get(w.state)


def _hb_tone(w: Any) -> str | None:
    a = w.heartbeat_age
    if w.proc is None or a is None:
        return "muted"
    return "bad" if a > 2.0 else ("warn" if a > 1.0 else None)


def _counters_tip(w: Any) -> str:
    c = {k: w.counter(k) for k in sorted(_counter_keys(w))}
    return "\n".join(f"{k}: {v:,}" for k, v in c.items() if v) or "no counters yet"


WORKER_COLUMNS = (
    Column("name", "Worker", attr("name"), width=92, tip=_counters_tip),
    Column("state", "State", attr("state"), F.upper, tone=_state_tone, width=70, tip=lambda w: w.reason or w.state),
    Column("pid", "PID", attr("pid"), lambda p: str(p) if p else "", "r", width=52),
    Column("uptime", "Uptime", attr("uptime"), F.duration, "r", width=54),
    Column("restarts", "Restarts", attr("restarts"), F.integer, "r", lambda w: "warn" if w.restarts else None, width=62),
    Column("heartbeat_age", "HB age", attr("heartbeat_age"), F.age, "r", _hb_tone, width=58,
           header_tip="Seconds since the worker's last heartbeat"),
    Column("in", "In/s", rate_in, F.rate, "r", width=52),
    Column("out", "Out/s", rate_out, F.rate, "r", width=52),
    Column("drops", "Drops", drops, F.integer, "r", lambda w: "warn" if drops(w) else "muted", width=46,
           tip=_drops_tip, header_tip="Messages lost for good: dropped on a full or unconnected socket, ticks "
                                      "missed in sequence gaps (a Levels push retried later is not counted)"),
    Column("errors", "Errors", errors, F.integer, "r", lambda w: "bad" if errors(w) else "muted", width=46),
    Column("latency", "Latency p50/p99 per hop", latency_text, width=300, tip=latency_tip,
           header_tip="Per hop: median / 99th percentile over the last heartbeat, in milliseconds"),
    Column("kind", "Kind", lambda w: w.spec.kind, width=72),
    Column("rss", "RSS", lambda w: w.stats.get("gauges", {}).get("rss", 0),
           lambda b: f"{b / 2**20:.0f} MB" if b else "", "r", width=56),
)
