"""Every order kind x time in force at the ExchangeClient level (no processes): the simulated
venue (SimulatedExchange: the kinds held by the venue) and the same engine emulating them over
a venue that lacks them (OrderKinds(SimulatedCore(), emulated=True)).  docs/exchange.md,
"Order kinds in the simulated venue"."""

from __future__ import annotations

import datetime
import itertools
from dataclasses import dataclass, field

import pytest

from workers import protocol as P
from workers.exchange.client import CancelResult, ExchangeClient, FillEvent, Order, OrderEvent
from workers.exchange.kinds import EXPIRED_REASON, OrderKinds
from workers.exchange.simulated import SimulatedCore, SimulatedExchange
from workers.protocol import OrderStatus as S
from workers.protocol import OrderType as T
from workers.protocol import Side
from workers.protocol import TimeInForce as TIF

SYM = "AAA"
#: 2026-01-05 15:00 UTC: an hour before the session end the tests configure
T0 = int(datetime.datetime(2026, 1, 5, 15, 0, tzinfo=datetime.timezone.utc).timestamp()) * 1_000_000_000
SESSION_END = datetime.time(16, 0)
END = T0 + 3600 * 1_000_000_000
_seq = itertools.count(1)


def tick(last=100.0, bid=None, ask=None, bid_size=100, ask_size=100, symbol=SYM) -> P.Tick:
    n = next(_seq)
    return P.Tick(symbol=symbol, seq=n, ts=T0 + n * 1000, last=last, bid=last - 0.5 if bid is None else bid,
                  ask=last + 0.5 if ask is None else ask, bid_size=bid_size, ask_size=ask_size, volume=0)


def depth(bids, asks, ts=None, symbol=SYM) -> P.Depth:
    return P.Depth(symbol=symbol, seq=next(_seq), ts=ts if ts is not None else T0 + next(_seq) * 1000, bids=bids, asks=asks)


def order(cid="o", *, now=T0, **terms) -> Order:
    terms.setdefault("side", Side.BUY)
    terms.setdefault("qty", 50)
    return Order.from_request(P.SendOrder(client_order_id=cid, symbol=SYM, ts=now, source="test", **terms), now)


def fills(events):
    return [(e.fill.client_order_id, e.fill.qty, e.fill.price) for e in events if isinstance(e, FillEvent)]


def snaps(events, cid=None):
    return [e.order for e in events if isinstance(e, OrderEvent) and (cid is None or e.order.client_order_id == cid)]


def last_snap(events, cid):
    got = snaps(events, cid)
    assert got, f"no snapshot of {cid} in {events}"
    return got[-1]


# ----------------------------------------------------------------------------- the two venues

class Bare(ExchangeClient):
    """A venue with the ExchangeClient interface only (as a broker's would be): none of the
    core's optional helpers (reserve_order_id, last_trade, working), no day, stops, brackets."""

    name = "bare"
    capabilities = SimulatedCore.capabilities

    def __init__(self) -> None:
        self.core = SimulatedCore()

    def submit(self, order, now):
        return self.core.submit(order, now)

    def cancel(self, order, now, cause_ts=0):
        return self.core.cancel(order, now, cause_ts)

    def replace(self, order, qty, limit_price, stop_price, now, cause_ts=0):
        return self.core.replace(order, qty, limit_price, stop_price, now, cause_ts)

    def on_tick(self, tick):
        return self.core.on_tick(tick)

    def on_depth(self, depth):
        return self.core.on_depth(depth)

    def working_symbols(self):
        return self.core.working_symbols()

    def state(self):
        return self.core.state()

    def recover(self, orders, state, now):
        return self.core.recover(orders, state, now)

    def restore(self, orders, state, now):
        return self.core.restore(orders, state, now)


VENUES = {
    "simulated": lambda **kw: SimulatedExchange(session_end=SESSION_END, **kw),
    "emulated": lambda **kw: OrderKinds(SimulatedCore(), emulated=True, session_end=SESSION_END, **kw),
    "bare": lambda **kw: OrderKinds(Bare(), emulated=True, session_end=SESSION_END, **kw),
}


@pytest.fixture(params=sorted(VENUES))
def venue(request):
    ex = VENUES[request.param]()
    ex.is_emulating = request.param != "simulated"
    ex.is_bare = request.param == "bare"
    return ex


def working_ids(venue) -> set[str]:
    """What works (the bare venue cannot list its book: ask the core behind it)."""
    inner = venue.inner.core.working() if isinstance(venue.inner, Bare) else venue.inner.working()
    return {o.client_order_id for o in inner + venue.held()}


def test_both_venues_declare_every_kind_and_tif_while_the_core_lacks_them():
    core = SimulatedCore.capabilities
    assert core["order_types"] == {T.MARKET, T.LIMIT} and TIF.DAY not in core["tifs"]
    assert not core["brackets"] and not core["oco"] and core["replace"] and core["depth"]
    for make in VENUES.values():
        caps = make().capabilities
        assert caps["order_types"] == set(T) and caps["tifs"] == set(TIF)
        assert caps["brackets"] and caps["oco"] and caps["replace"] and caps["depth"] and caps["needs_ticks"]
    assert SimulatedExchange().name == "simulated"  # built with no arguments, as the gateway does


# ----------------------------------------------------------------------------- kind x tif table
#
# A case: the ticks before the order, the order's terms, then steps -- a tick (or None: the
# submission itself) and the order's (status, filled_qty) after it -- and every fill expected.


@dataclass
class Case:
    id: str
    terms: dict
    before: list[dict]
    steps: list[tuple[dict | None, S, int]]
    fills: list[tuple[int, float]]
    reason: str = ""
    triggered: bool = False
    tifs: tuple[TIF, ...] = ()


def _case(id, kind, tifs, terms, before, steps, fills, reason="", triggered=False):
    return [Case(f"{id}-{t.value}", {"order_type": kind, "tif": t, **terms}, before, steps, fills, reason, triggered)
            for t in tifs]


REST = (TIF.DAY, TIF.GTC)
CASES: list[Case] = [
    # market: the touch (30) is smaller than the order (50): the rest fills on the next tick
    *_case("market-partial", T.MARKET, REST, {}, [dict(last=100.0, ask_size=30)],
           [(None, S.PARTIALLY_FILLED, 30), (dict(last=100.0), S.FILLED, 50)], [(30, 100.5), (20, 100.5)]),
    *_case("market-sell", T.MARKET, REST, {"side": Side.SELL, "qty": 10}, [dict(last=100.0)],
           [(None, S.FILLED, 10)], [(10, 99.5)]),
    *_case("market-ioc", T.MARKET, (TIF.IOC,), {}, [dict(last=100.0, ask_size=30)],
           [(None, S.CANCELLED, 30), (dict(last=100.0), S.CANCELLED, 30)], [(30, 100.5)], reason="ioc: 20 of 50"),
    *_case("market-fok-short", T.MARKET, (TIF.FOK,), {}, [dict(last=100.0, ask_size=30)],
           [(None, S.CANCELLED, 0)], [], reason="fok: only 30 of 50"),
    *_case("market-fok-whole", T.MARKET, (TIF.FOK,), {}, [dict(last=100.0, ask_size=50)],
           [(None, S.FILLED, 50)], [(50, 100.5)]),
    # limit: rests until crossed, fills at the touch up to its size per tick
    *_case("limit-rest-partial", T.LIMIT, REST, {"limit_price": 100.0}, [dict(last=101.0)],
           [(None, S.NEW, 0), (dict(last=100.2, ask=100.3), S.NEW, 0),
            (dict(last=99.5, ask=99.8, ask_size=30), S.PARTIALLY_FILLED, 30), (dict(last=99.5, ask=100.0), S.FILLED, 50)],
           [(30, 99.8), (20, 100.0)]),
    *_case("limit-sell", T.LIMIT, REST, {"side": Side.SELL, "qty": 10, "limit_price": 105.0}, [dict(last=101.0)],
           [(None, S.NEW, 0), (dict(last=106.0, bid=106.0), S.FILLED, 10)], [(10, 106.0)]),
    *_case("limit-ioc", T.LIMIT, (TIF.IOC,), {"limit_price": 102.0}, [dict(last=100.0, ask_size=30)],
           [(None, S.CANCELLED, 30)], [(30, 100.5)], reason="ioc: 20 of 50"),
    *_case("limit-ioc-away", T.LIMIT, (TIF.IOC,), {"limit_price": 99.0}, [dict(last=100.0)],
           [(None, S.CANCELLED, 0)], [], reason="ioc: 50 of 50"),
    *_case("limit-fok-short", T.LIMIT, (TIF.FOK,), {"limit_price": 102.0}, [dict(last=100.0, ask_size=49)],
           [(None, S.CANCELLED, 0), (dict(last=100.0), S.CANCELLED, 0)], [], reason="fok: only 49 of 50"),
    *_case("limit-fok-whole", T.LIMIT, (TIF.FOK,), {"limit_price": 102.0}, [dict(last=100.0, ask_size=80)],
           [(None, S.FILLED, 50)], [(50, 100.5)]),
    # stop: a buy triggers at or above the stop (not before), then fills as a market order
    *_case("stop-buy", T.STOP, REST, {"stop_price": 105.0}, [dict(last=100.0)],
           [(None, S.NEW, 0), (dict(last=104.99), S.NEW, 0), (dict(last=105.0, ask_size=30), S.PARTIALLY_FILLED, 30),
            (dict(last=103.0), S.FILLED, 50)], [(30, 105.5), (20, 103.5)], triggered=True),
    *_case("stop-sell", T.STOP, REST, {"side": Side.SELL, "qty": 10, "stop_price": 95.0}, [dict(last=100.0)],
           [(None, S.NEW, 0), (dict(last=95.01), S.NEW, 0), (dict(last=94.0), S.FILLED, 10)], [(10, 93.5)],
           triggered=True),
    # placed beyond its trigger: it triggers on the last trade already seen
    *_case("stop-through", T.STOP, REST, {"qty": 10, "stop_price": 99.0}, [dict(last=100.0)],
           [(None, S.FILLED, 10)], [(10, 100.5)], triggered=True),
    # stop_limit: a limit order once triggered
    *_case("stop-limit-buy", T.STOP_LIMIT, REST, {"stop_price": 105.0, "limit_price": 105.4}, [dict(last=100.0)],
           [(None, S.NEW, 0), (dict(last=105.0, ask=105.5), S.NEW, 0),
            (dict(last=105.2, ask=105.3, ask_size=20), S.PARTIALLY_FILLED, 20), (dict(last=105.0, ask=105.4), S.FILLED, 50)],
           [(20, 105.3), (30, 105.4)], triggered=True),
    *_case("stop-limit-sell", T.STOP_LIMIT, REST, {"side": Side.SELL, "qty": 10, "stop_price": 95.0, "limit_price": 94.8},
           [dict(last=100.0)], [(None, S.NEW, 0), (dict(last=95.0, bid=94.9), S.FILLED, 10)], [(10, 94.9)], triggered=True),
    # trailing: a sell's stop follows the highest last trade down by the trail
    *_case("trail-amount-sell", T.TRAILING_STOP, REST, {"side": Side.SELL, "qty": 10, "trail_amount": 2.0},
           [dict(last=100.0)],
           [(None, S.NEW, 0), (dict(last=103.0), S.NEW, 0), (dict(last=101.5), S.NEW, 0), (dict(last=101.01), S.NEW, 0),
            (dict(last=101.0), S.FILLED, 10)], [(10, 100.5)], triggered=True),
    *_case("trail-pct-buy", T.TRAILING_STOP, REST, {"qty": 10, "trail_pct": 1.0}, [dict(last=100.0)],
           [(None, S.NEW, 0), (dict(last=98.0), S.NEW, 0), (dict(last=98.9), S.NEW, 0), (dict(last=99.0), S.FILLED, 10)],
           [(10, 99.5)], triggered=True),
    # a trailing stop placed before any trade starts at the first one
    *_case("trail-no-market", T.TRAILING_STOP, REST, {"side": Side.SELL, "qty": 10, "trail_amount": 1.0}, [],
           [(None, S.NEW, 0), (dict(last=50.0), S.NEW, 0), (dict(last=49.5), S.NEW, 0), (dict(last=49.0), S.FILLED, 10)],
           [(10, 48.5)], triggered=True),
]


def _valid(kind: T, tif: TIF) -> bool:
    extra = {T.LIMIT: {"limit_price": 1.0}, T.STOP: {"stop_price": 1.0}, T.STOP_LIMIT: {"stop_price": 1.0, "limit_price": 1.0},
             T.TRAILING_STOP: {"trail_amount": 1.0}}.get(kind, {})
    try:
        P.SendOrder(client_order_id="x", symbol=SYM, side=Side.BUY, qty=1, order_type=kind, tif=tif, **extra)
    except ValueError:
        return False
    return True


def test_the_table_covers_every_valid_kind_and_tif():
    valid = {(k, t) for k in T for t in TIF if _valid(k, t)}
    covered = {(c.terms["order_type"], c.terms["tif"]) for c in CASES}
    assert valid - covered == set()
    assert {(T.STOP, TIF.IOC), (T.TRAILING_STOP, TIF.FOK)} & valid == set()  # the protocol refuses those
    pct = [c for c in CASES if "trail_pct" in c.terms and c.terms["order_type"] is T.TRAILING_STOP]
    amount = [c for c in CASES if "trail_amount" in c.terms]
    assert pct and amount


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kind_x_tif(venue, case: Case):
    for t in case.before:
        venue.on_tick(tick(**t))
    o = order("k", **case.terms)
    all_events = []
    for step, status, filled in case.steps:
        ev = venue.submit(o, T0) if step is None else venue.on_tick(tick(**step))
        all_events += ev
        assert (o.status, o.filled_qty) == (status, filled), f"after {step or 'submit'}: {o.status} {o.filled_qty}"
    assert [(q, p) for _, q, p in fills(all_events)] == case.fills
    if case.fills:
        total = sum(q for q, _ in case.fills)
        assert o.avg_price == pytest.approx(sum(q * p for q, p in case.fills) / total)
    assert case.reason in o.reason
    # every step is reported, and the last report is the order's state
    assert last_snap(all_events, "k") == o
    assert o.triggered is case.triggered
    assert o.order_type is case.terms["order_type"] and o.tif is case.terms["tif"]  # the kind is kept
    # one id, from acknowledgement to fill, also while held: the venue's, or a local E<n> when
    # the venue cannot hand one out before the order reaches it
    assert o.order_id.startswith("E" if venue.is_bare and o.order_type.is_stop else "O")
    kind_emulated = o.order_type.is_stop or o.tif is TIF.DAY
    assert o.emulated is (venue.is_emulating and kind_emulated)
    assert all(s.emulated is o.emulated for s in snaps(all_events, "k"))
    if not o.is_working:
        assert venue.working_symbols() == set() or list(venue.working_symbols()) == []


@pytest.mark.parametrize("case", [c for c in CASES if c.terms["order_type"].is_stop], ids=lambda c: c.id)
def test_held_stops_are_working_orders_whose_symbol_gets_every_tick(venue, case: Case):
    for t in case.before:
        venue.on_tick(tick(**t))
    o = order("k", **case.terms)
    venue.submit(o, T0)
    if o.is_working and not o.triggered:
        assert o.status is S.NEW and SYM in set(venue.working_symbols())
        assert venue.held(SYM) == [o]
        assert o.order_id == ("E1" if venue.is_bare else "O1")


# ----------------------------------------------------------------------------- DAY expiry

RESTING = [
    ({"order_type": T.MARKET}, dict(last=100.0, ask_size=0)),  # no liquidity: a market order works on
    ({"order_type": T.LIMIT, "limit_price": 90.0}, dict(last=100.0)),
    ({"order_type": T.STOP, "stop_price": 110.0}, dict(last=100.0)),
    ({"order_type": T.STOP_LIMIT, "stop_price": 110.0, "limit_price": 110.5}, dict(last=100.0)),
    ({"order_type": T.TRAILING_STOP, "trail_amount": 3.0}, dict(last=100.0)),
    ({"order_type": T.TRAILING_STOP, "trail_pct": 3.0}, dict(last=100.0)),
]


@pytest.mark.parametrize("tif", REST, ids=lambda t: t.value)
@pytest.mark.parametrize("terms,market", RESTING, ids=["market", "limit", "stop", "stop_limit", "trail_amount", "trail_pct"])
def test_day_orders_expire_at_the_session_end_and_gtc_ones_do_not(venue, terms, market, tif):
    venue.on_tick(tick(**market))
    o = order("d", tif=tif, **terms)
    venue.submit(o, T0)
    assert o.is_working
    assert venue.on_time(END - 1) == [] and o.is_working  # not before
    ev = venue.on_time(END)
    if tif is TIF.DAY:
        assert (o.status, o.reason) == (S.EXPIRED, EXPIRED_REASON)
        assert [s.status for s in snaps(ev, "d")] == [S.EXPIRED]
        assert venue.working_symbols() == set() or list(venue.working_symbols()) == []
        assert fills(venue.on_tick(tick(last=80.0)) + venue.on_tick(tick(last=200.0))) == []  # would have filled
    else:
        assert ev == [] and o.is_working
    assert venue.on_time(END + 10**9) == []


def test_a_day_order_placed_after_the_session_end_lives_to_the_next_one(venue):
    venue.on_tick(tick(last=100.0))
    venue.on_time(END - 10**9)
    late = order("late", now=END + 1, order_type=T.LIMIT, limit_price=90.0)
    venue.submit(late, END + 1)
    assert venue.on_time(END + 2) == [] and late.is_working
    day = 24 * 3600 * 10**9
    assert venue.on_time(END + day - 1) == []
    venue.on_time(END + day)
    assert late.status is S.EXPIRED


def test_session_end_in_a_time_zone():
    ny = datetime.timezone(datetime.timedelta(hours=-5))
    ex = SimulatedExchange(session_end=datetime.time(16, 0, tzinfo=ny))
    ex.on_tick(tick())
    o = order("ny", order_type=T.LIMIT, limit_price=90.0)  # 15:00 UTC is 10:00 in New York
    ex.submit(o, T0)
    ex.on_time(END)
    assert o.is_working
    ex.on_time(T0 + 6 * 3600 * 10**9)  # 21:00 UTC = 16:00 -05:00
    assert o.status is S.EXPIRED


# ----------------------------------------------------------------------------- brackets

def bracket(cid="p", **terms) -> Order:
    terms = {"qty": 50, "take_profit_price": 110.0, "stop_loss_price": 95.0, **terms}
    return order(cid, **terms)


def test_bracket_children_on_partial_and_full_fills(venue):
    venue.on_tick(tick(last=100.0, ask_size=30))
    p = bracket(take_profit_tif=TIF.DAY)
    ev = venue.submit(p, T0)
    assert (p.status, p.filled_qty) == (S.PARTIALLY_FILLED, 30)
    fill = next(e.fill for e in ev if isinstance(e, FillEvent))
    tp, sl = last_snap(ev, "p.tp"), last_snap(ev, "p.sl")
    assert [o.client_order_id for o in snaps(ev)][-2:] == ["p.tp", "p.sl"]  # after the parent's own reports
    for child, kind, price_field, price, tif in ((tp, T.LIMIT, "limit_price", 110.0, TIF.DAY), (sl, T.STOP, "stop_price", 95.0, TIF.GTC)):
        assert (child.side, child.qty, child.order_type, getattr(child, price_field), child.tif) == (Side.SELL, 30, kind, price, tif)
        assert (child.parent_id, child.oco_group, child.source, child.status) == ("p", "p", "test", S.NEW)
        assert (child.cause_ts, child.origin_ts) == (fill.cause_ts, fill.origin_ts)
        assert child.take_profit_price is None and child.stop_loss_price is None
        assert child.emulated is venue.is_emulating
        assert child.order_id.startswith("E" if venue.is_bare and child.order_type.is_stop else "O")
    # the rest of the parent fills: the children grow to the filled quantity
    ev = venue.on_tick(tick(last=100.0))
    assert p.status is S.FILLED
    assert (last_snap(ev, "p.tp").qty, last_snap(ev, "p.sl").qty) == (50, 50)
    assert working_ids(venue) == {"p.tp", "p.sl"}
    # take-profit fills (partly): the stop-loss is cancelled
    ev = venue.on_tick(tick(last=110.0, bid=110.0, bid_size=20))
    assert fills(ev) == [("p.tp", 20, 110.0)]
    sl_now = last_snap(ev, "p.sl")
    assert (sl_now.status, sl_now.reason) == (S.CANCELLED, "oco: p.tp filled")
    ev = venue.on_tick(tick(last=90.0))  # would have triggered the stop-loss
    assert fills(ev) == []
    ev = venue.on_tick(tick(last=111.0, bid=110.5))
    assert fills(ev) == [("p.tp", 30, 110.5)] and working_ids(venue) == set()


def test_bracket_stop_loss_triggers_and_cancels_the_take_profit(venue):
    venue.on_tick(tick(last=100.0))
    p = bracket(side=Side.SELL, take_profit_price=90.0, stop_loss_price=105.0, qty=10)
    ev = venue.submit(p, T0)
    tp, sl = last_snap(ev, "p.tp"), last_snap(ev, "p.sl")
    assert (tp.side, tp.limit_price, sl.side, sl.stop_price, tp.qty) == (Side.BUY, 90.0, Side.BUY, 105.0, 10)
    assert venue.on_tick(tick(last=104.9)) == []
    ev = venue.on_tick(tick(last=105.0))
    assert fills(ev) == [("p.sl", 10, 105.5)]
    assert last_snap(ev, "p.sl").triggered
    assert (last_snap(ev, "p.tp").status, last_snap(ev, "p.tp").reason) == (S.CANCELLED, "oco: p.sl filled")


def test_bracket_on_a_limit_parent_and_a_walk_of_several_fills_makes_one_set_of_children(venue):
    venue.on_tick(tick(last=100.0))
    venue.on_depth(depth([(99.5, 100)], [(100.5, 10), (100.6, 10), (100.7, 10)]))
    p = bracket(order_type=T.LIMIT, limit_price=100.6, qty=25)
    ev = venue.submit(p, T0)
    assert [q for _, q, _ in fills(ev)] == [10, 10] and p.filled_qty == 20
    assert [s.qty for s in snaps(ev, "p.tp")] == [20] and [s.qty for s in snaps(ev, "p.sl")] == [20]


def test_bracket_take_profit_filling_at_once_leaves_no_stop_loss(venue):
    venue.on_tick(tick(last=100.0))
    p = bracket(qty=10, take_profit_price=99.0, stop_loss_price=95.0)  # tp at or below the bid: marketable
    ev = venue.submit(p, T0)
    assert fills(ev) == [("p", 10, 100.5), ("p.tp", 10, 99.5)]
    assert snaps(ev, "p.sl") == [] and working_ids(venue) == set()


def test_bracket_with_only_a_stop_loss(venue):
    venue.on_tick(tick(last=100.0))
    ev = venue.submit(bracket(qty=10, take_profit_price=None), T0)
    assert snaps(ev, "p.tp") == [] and last_snap(ev, "p.sl").qty == 10


def test_a_vetoed_child_is_rejected_and_not_placed():
    for make in VENUES.values():
        ex = make(check_child=lambda o: "hard limit: too big" if o.qty > 20 else "")
        ex.on_tick(tick(last=100.0, ask_size=20))
        p = bracket()
        ev = ex.submit(p, T0)
        assert last_snap(ev, "p.tp").status is S.NEW  # 20 passes
        ev = ex.on_tick(tick(last=100.0))  # growing to 50 does not
        assert p.status is S.FILLED and snaps(ev, "p.tp") == [] and snaps(ev, "p.sl") == []
        ex2 = make(check_child=lambda o: "hard limit: no" if o.client_order_id.endswith(".sl") else "")
        ex2.on_tick(tick(last=100.0))
        ev = ex2.submit(bracket(qty=10), T0)
        sl = last_snap(ev, "p.sl")
        assert (sl.status, sl.order_id, sl.reason) == (S.REJECTED, "-", "hard limit: no")


def test_the_gateway_may_hand_back_its_own_copy_of_a_child(venue):
    venue.on_tick(tick(last=100.0))
    ev = venue.submit(bracket(qty=10), T0)
    gw_tp = last_snap(ev, "p.tp").snapshot()  # the gateway adopts a copy
    res = venue.replace(gw_tp, 15, 111.0, None, T0, 0)
    assert res.ok
    gw_tp.copy_state_from(last_snap(res.events, "p.tp"))
    assert (gw_tp.qty, gw_tp.limit_price) == (15, 111.0)
    res = venue.cancel(gw_tp, T0)
    assert res.ok and last_snap(res.events, "p.tp").status is S.CANCELLED


# ----------------------------------------------------------------------------- OCO

def test_set_oco_then_one_fills_and_the_other_is_cancelled(venue):
    venue.on_tick(tick(last=100.0))
    a = order("a", side=Side.SELL, qty=10, order_type=T.LIMIT, limit_price=110.0, tif=TIF.GTC)
    b = order("b", side=Side.SELL, qty=10, order_type=T.STOP, stop_price=95.0, tif=TIF.GTC)
    venue.submit(a, T0)
    venue.submit(b, T0)
    res = venue.set_oco([a, b], "g1", T0)
    assert res.ok and [(s.client_order_id, s.oco_group) for s in snaps(res.events)] == [("a", "g1"), ("b", "g1")]
    assert all(s.emulated is venue.is_emulating for s in snaps(res.events))
    assert venue.set_oco([a, b], "g1", T0).ok  # the same again: fine
    ev = venue.on_tick(tick(last=94.0))
    assert fills(ev) == [("b", 10, 93.5)]
    assert (a.status, a.reason) == (S.CANCELLED, "oco: b filled")


def test_set_oco_refusals(venue):
    venue.on_tick(tick(last=100.0))
    a = order("a", qty=10, order_type=T.LIMIT, limit_price=90.0)
    b = order("b", qty=10, order_type=T.LIMIT, limit_price=91.0)
    c = order("c", qty=10)
    for o in (a, b, c):
        venue.submit(o, T0)
    res = venue.set_oco([a, c], "g", T0)
    assert not res.ok and "c is not working" in res.reason and a.oco_group == ""
    assert venue.set_oco([a, b], "g", T0).ok
    res = venue.set_oco([a, order("x")], "h", T0)
    assert not res.ok and "already in oco group g" in res.reason


# ----------------------------------------------------------------------------- replace

def test_replace_qty_down_and_up_and_priority(venue):
    venue.on_tick(tick(last=101.0))
    a = order("a", qty=10, order_type=T.LIMIT, limit_price=100.0)
    b = order("b", qty=10, order_type=T.LIMIT, limit_price=100.0)
    venue.submit(a, T0)
    venue.submit(b, T0)
    res = venue.replace(a, 8, None, None, T0 + 5, 0)  # down: keeps its place
    assert res.ok and [(s.qty, s.status) for s in snaps(res.events)] == [(8, S.NEW)]
    assert (a.ts, a.cause_ts) == (T0 + 5, T0 + 5)
    venue.on_tick(tick(last=99.9, ask=100.0, ask_size=8))
    assert (a.filled_qty, b.filled_qty) == (8, 0)
    res = venue.replace(b, 12, None, None, T0, 0)  # up: to the back of the queue
    c = order("c", qty=5, order_type=T.LIMIT, limit_price=100.0)
    venue.submit(c, T0)
    venue.replace(b, 13, None, None, T0, 0)
    venue.on_tick(tick(last=99.9, ask=100.0, ask_size=5))
    assert (c.filled_qty, b.filled_qty) == (5, 0)


def test_replace_a_limit_through_the_market_fills_at_once(venue):
    venue.on_tick(tick(last=100.0, ask=101.0))
    o = order("l", qty=10, order_type=T.LIMIT, limit_price=99.0)
    venue.submit(o, T0)
    res = venue.replace(o, None, 101.5, None, T0, 0)
    assert res.ok and fills(res.events) == [("l", 10, 101.0)] and o.status is S.FILLED
    assert [s.status for s in snaps(res.events)] == [S.NEW, S.FILLED] and o.limit_price == 101.5


def test_replace_refusals(venue):
    venue.on_tick(tick(last=100.0, ask_size=30))
    m = order("m")  # market 50: 30 filled, 20 working
    venue.submit(m, T0)
    for qty in (30, 20):
        res = venue.replace(m, qty, None, None, T0, 0)
        assert not res.ok and f"qty {qty} must exceed the 30 already filled" in res.reason
    res = venue.replace(m, None, 100.0, None, T0, 0)
    assert not res.ok and "has no limit price" in res.reason
    assert venue.replace(m, 60, None, None, T0, 0).ok and m.qty == 60
    done = order("done", qty=5)
    venue.on_tick(tick(last=100.0))
    venue.submit(done, T0)
    res = venue.replace(done, 10, None, None, T0, 0)
    assert done.status is S.FILLED and not res.ok and "not working (status filled)" in res.reason
    t = order("t", side=Side.SELL, qty=5, order_type=T.TRAILING_STOP, trail_amount=1.0)
    venue.submit(t, T0)
    res = venue.replace(t, None, None, 90.0, T0, 0)
    assert not res.ok and "trailing_stop" in res.reason
    assert venue.replace(t, 7, None, None, T0, 0).ok and t.qty == 7


def test_replace_a_held_stop_through_the_last_trade_triggers_it(venue):
    venue.on_tick(tick(last=100.0))
    s = order("s", qty=10, order_type=T.STOP_LIMIT, stop_price=105.0, limit_price=105.5)
    venue.submit(s, T0)
    res = venue.replace(s, 12, 101.0, 106.0, T0, 0)  # still above the market: held
    assert res.ok and (s.qty, s.limit_price, s.stop_price, s.triggered) == (12, 101.0, 106.0, False)
    res = venue.replace(s, None, None, 99.0, T0, 0)
    assert s.triggered and fills(res.events) == [("s", 12, 100.5)] and s.status is S.FILLED


# ----------------------------------------------------------------------------- depth

def test_a_market_order_larger_than_the_touch_walks_the_depth(venue):
    venue.on_tick(tick(last=100.0, bid=99.5, ask=100.5, ask_size=10))
    venue.on_depth(depth([(99.5, 10), (99.4, 10)], [(100.5, 10), (100.6, 20), (100.7, 50)]))
    o = order("big", qty=50)
    ev = venue.submit(o, T0)
    assert fills(ev) == [("big", 10, 100.5), ("big", 20, 100.6), ("big", 20, 100.7)]
    assert o.avg_price == pytest.approx((10 * 100.5 + 20 * 100.6 + 20 * 100.7) / 50)
    # the levels are used up until the next depth message (30 left at 100.7)
    o2 = order("next", qty=40)
    venue.submit(o2, T0)
    assert o2.filled_qty == 30
    s = order("sell", side=Side.SELL, qty=15)
    assert fills(venue.submit(s, T0)) == [("sell", 10, 99.5), ("sell", 5, 99.4)]


def test_fok_counts_the_depth_and_ioc_walks_it(venue):
    venue.on_tick(tick(last=100.0, ask=100.5, ask_size=10))
    venue.on_depth(depth([], [(100.5, 10), (100.6, 20)], ts=T0))  # no newer than the tick: the touch stays
    fok = order("fok", qty=30, tif=TIF.FOK, order_type=T.LIMIT, limit_price=100.6)
    assert [q for _, q, _ in fills(venue.submit(fok, T0))] == [10, 20]
    venue.on_depth(depth([], [(100.5, 10), (100.6, 20)]))
    short = order("short", qty=31, tif=TIF.FOK)
    ev = venue.submit(short, T0)
    assert fills(ev) == [] and short.status is S.CANCELLED and "fok: only 30 of 31" in short.reason
    ioc = order("ioc", qty=31, tif=TIF.IOC, order_type=T.LIMIT, limit_price=100.5)
    ev = venue.submit(ioc, T0)
    assert fills(ev) == [("ioc", 10, 100.5)] and ioc.status is S.CANCELLED


def test_a_tick_after_depth_resets_the_touch_and_skips_stale_levels(venue):
    venue.on_depth(depth([(99.0, 5)], [(101.0, 5), (101.5, 5), (102.0, 5)]))
    venue.on_tick(tick(last=101.4, ask=101.6, ask_size=5))  # 101.0 and 101.5 are gone
    o = order("o", qty=12)
    assert fills(venue.submit(o, T0)) == [("o", 5, 101.6), ("o", 5, 102.0)]


def test_a_resting_order_fills_against_a_new_depth(venue):
    venue.on_tick(tick(last=100.0, ask=100.5, ask_size=0))
    o = order("m", qty=20)
    venue.submit(o, T0)
    assert o.filled_qty == 0
    ev = venue.on_depth(depth([(99.5, 1)], [(100.5, 5), (100.7, 10)]))
    assert fills(ev) == [("m", 5, 100.5), ("m", 10, 100.7)]


def test_without_depth_the_touch_is_the_only_level(venue):
    venue.on_tick(tick(last=100.0, ask_size=10))
    o = order("o", qty=50)
    assert fills(venue.submit(o, T0)) == [("o", 10, 100.5)] and o.is_working


# ----------------------------------------------------------------------------- restart

@pytest.mark.parametrize("make", sorted(VENUES))
def test_recover_takes_held_stops_back(make):
    ex = VENUES[make]()
    ex.on_tick(tick(last=100.0))
    s = order("s", qty=10, order_type=T.STOP, stop_price=105.0)
    tr = order("tr", side=Side.SELL, qty=10, order_type=T.TRAILING_STOP, trail_amount=2.0, tif=TIF.GTC)
    pend = order("pend", qty=10, order_type=T.STOP, stop_price=105.0)
    ex.submit(s, T0)
    ex.submit(tr, T0)
    state = ex.state()
    ex2 = VENUES[make]()
    ev = ex2.recover([s, tr, pend], state, T0)
    assert [(e.order.client_order_id, e.order.status) for e in ev] == [("pend", S.REJECTED)]
    assert "not placed" in pend.reason and pend.order_id == ("E3" if make == "bare" else "O3")
    assert set(ex2.working_symbols()) == {SYM} and ex2.held(SYM) == [s, tr]
    ids = (s.order_id, tr.order_id)
    ex2.on_tick(tick(last=100.0))  # the trailing stop starts again from here: stop 98
    ev = ex2.on_tick(tick(last=105.0))
    assert fills(ev) == [("s", 10, 105.5)] and s.triggered
    assert fills(ex2.on_tick(tick(last=103.5))) == []  # max 105, stop 103
    assert fills(ex2.on_tick(tick(last=103.0))) == [("tr", 10, 102.5)]
    assert (s.order_id, tr.order_id) == ids
    used = {*ids, pend.order_id}
    for cid, terms in (("n", {}), ("n2", {"order_type": T.STOP, "stop_price": 200.0})):
        n = order(cid, qty=1, **terms)
        ex2.submit(n, T0)
        assert n.order_id not in used  # counters (the venue's, or the local one) carried on
        used.add(n.order_id)


@pytest.mark.parametrize("make", sorted(VENUES))
def test_recover_a_partly_filled_bracket_grows_its_children_without_new_ones(make):
    ex = VENUES[make]()
    ex.on_tick(tick(last=100.0, ask_size=30))
    p = bracket()
    ev = ex.submit(p, T0)
    tp, sl = last_snap(ev, "p.tp").snapshot(), last_snap(ev, "p.sl").snapshot()  # as journaled
    ex2 = VENUES[make]()
    assert ex2.recover([p.snapshot(), tp, sl], ex.state(), T0) == []
    ev = ex2.on_tick(tick(last=100.0))
    assert [s.qty for s in snaps(ev, "p.tp")] == [50] and [s.qty for s in snaps(ev, "p.sl")] == [50]
    assert all(s.status is S.NEW for s in snaps(ev, "p.tp") + snaps(ev, "p.sl"))
    ev = ex2.on_tick(tick(last=94.0))  # the stop-loss: tp cancelled by the group restored from oco_group
    assert fills(ev) == [("p.sl", 50, 93.5)] and last_snap(ev, "p.tp").reason == "oco: p.sl filled"


def test_restore_forgets_what_the_journal_lacks(venue):
    venue.on_tick(tick(last=100.0))
    s = order("s", qty=10, order_type=T.STOP, stop_price=105.0)
    venue.submit(s, T0)
    stored = s.snapshot()
    venue.submit(order("lost", qty=10, order_type=T.STOP, stop_price=104.0), T0)  # the lost batch
    assert venue.restore([stored], venue.state(), T0) == []
    assert [o.client_order_id for o in venue.held()] == ["s"]
    ev = venue.on_tick(tick(last=106.0))
    assert fills(ev) == [("s", 10, 106.5)]


def test_day_orders_recovered_after_the_session_end_expire_at_the_first_on_time(venue):
    venue.on_tick(tick(last=100.0))
    a = order("a", qty=10, order_type=T.LIMIT, limit_price=90.0)
    b = order("b", qty=10, order_type=T.STOP, stop_price=120.0)
    venue.submit(a, T0)
    venue.submit(b, T0)
    again = VENUES["bare" if venue.is_bare else "emulated" if venue.is_emulating else "simulated"]()
    again.recover([a, b], venue.state(), END + 5)
    ev = again.on_time(END + 5)
    assert {(s.client_order_id, s.status) for s in snaps(ev)} == {("a", S.EXPIRED), ("b", S.EXPIRED)}


def test_cancel_a_held_stop_and_the_kill_switch_path(venue):
    venue.on_tick(tick(last=100.0))
    s = order("s", qty=10, order_type=T.STOP, stop_price=105.0)
    venue.submit(s, T0)
    res = venue.cancel(s, T0 + 1, 7)
    assert res.ok and (s.status, s.cause_ts) == (S.CANCELLED, 7) and venue.held() == []
    assert fills(venue.on_tick(tick(last=110.0))) == []
    assert not venue.cancel(s, T0).ok


# ----------------------------------------------------------------------------- review (H7)

@pytest.mark.parametrize("size", [100, 5])
def test_two_oco_members_crossed_on_one_tick_fill_only_one(venue, size):
    """Both limits are crossed by the same tick: the older fills (wholly or partly), the other
    never fills, on that tick or later (it is cancelled)."""
    venue.on_tick(tick(last=100.0))
    a = order("a", qty=10, order_type=T.LIMIT, limit_price=99.0, tif=TIF.GTC)
    b = order("b", qty=10, order_type=T.LIMIT, limit_price=98.0, tif=TIF.GTC)
    venue.submit(a, T0)
    venue.submit(b, T0)
    assert venue.set_oco([a, b], "g", T0).ok
    ev = venue.on_tick(tick(last=97.0, ask=97.0, ask_size=size))
    assert fills(ev) == [("a", min(size, 10), 97.0)]
    assert (b.status, b.filled_qty, b.reason) == (S.CANCELLED, 0, "oco: a filled")
    assert fills(venue.on_tick(tick(last=96.0, ask=96.0))) == ([("a", 5, 96.0)] if size == 5 else [])
    assert b.filled_qty == 0


def test_two_oco_members_crossed_by_one_depth_fill_only_one(venue):
    venue.on_tick(tick(last=100.0, ask=100.5, ask_size=0))
    a = order("a", qty=10, order_type=T.LIMIT, limit_price=99.0, tif=TIF.GTC)
    b = order("b", qty=10, order_type=T.LIMIT, limit_price=99.5, tif=TIF.GTC)
    c = order("c", qty=3, order_type=T.LIMIT, limit_price=99.5, tif=TIF.GTC)  # not in the group
    for o in (a, b, c):
        venue.submit(o, T0)
    assert venue.set_oco([a, b], "g", T0).ok
    ev = venue.on_depth(depth([(98.0, 10)], [(99.0, 4), (99.2, 50)]))
    assert fills(ev) == [("a", 4, 99.0), ("c", 3, 99.2)]
    assert (b.status, b.filled_qty) == (S.CANCELLED, 0)


def test_a_bracket_whose_two_legs_are_both_in_the_book_fills_one_leg_per_tick(venue):
    """The stop-loss triggered (a market order still working for lack of liquidity) and the
    take-profit crossed on one tick: one leg fills, never both (the position would flip)."""
    venue.on_tick(tick(last=100.0))
    p = bracket(qty=10, take_profit_price=101.0, stop_loss_price=99.0)
    venue.submit(p, T0)
    ev = venue.on_tick(tick(last=99.0, bid=98.5, bid_size=0))  # sl triggers, nothing to sell into
    assert last_snap(ev, "p.sl").triggered and fills(ev) == []
    ev = venue.on_tick(tick(last=101.5, bid=101.5, bid_size=100))
    assert len(fills(ev)) == 1 and sum(q for _, q, _ in fills(ev)) == 10


@pytest.mark.parametrize("make", sorted(VENUES))
@pytest.mark.parametrize("side, trail, path, level, back, fire", [
    # a sell trailing 2.0: high 105 -> stop 103; after the restart a first trade at 104 must
    # not pull it down to 102 (then 102.9 would not fire)
    (Side.SELL, {"trail_amount": 2.0}, [100.0, 105.0], 103.0, 104.0, 102.9),
    # a buy trailing 1%: low 90 -> stop 90.9; after the restart 90.5 must not push it up to 91.405
    (Side.BUY, {"trail_pct": 1.0}, [100.0, 90.0], 90.9, 90.5, 91.0),
])
def test_a_trailing_stops_level_is_reported_and_never_moves_back_across_a_restart(make, side, trail, path, level, back, fire):
    ex = VENUES[make]()
    ex.on_tick(tick(last=path[0]))
    tr = order("tr", side=side, qty=10, order_type=T.TRAILING_STOP, tif=TIF.GTC, **trail)
    ack = last_snap(ex.submit(tr, T0), "tr")
    assert ack.stop_price == pytest.approx(path[0] - 2.0 if side is Side.SELL else path[0] * 1.01)
    ev = ex.on_tick(tick(last=path[1]))
    moved = last_snap(ev, "tr")  # the level's move is a change of the order: reported (and journaled)
    assert moved.stop_price == pytest.approx(level) and moved.status is S.NEW and not moved.triggered
    assert ex.trailing_stop_price(tr) == pytest.approx(level)
    assert ex.on_tick(tick(last=(level + path[1]) / 2)) == []  # no new extreme: no report
    stored = tr.snapshot()  # as journaled
    ex2 = VENUES[make]()
    assert ex2.recover([stored], ex.state(), T0) == []
    assert ex2.on_tick(tick(last=back)) == []  # not a new extreme: the level stays
    assert ex2.trailing_stop_price(stored) == pytest.approx(level)
    ev = ex2.on_tick(tick(last=fire))
    assert [c for c, _, _ in fills(ev)] == ["tr"] and stored.triggered
    assert stored.stop_price == pytest.approx(level)  # the level it triggered at stays on the order


class Reconciling(Bare):
    """A venue (as a broker would be) whose recover reports what happened while the gateway
    was down: here, fills of the orders it is given, taken from a script."""

    def __init__(self, fills_while_down=()):
        super().__init__()
        self.fills_while_down = dict(fills_while_down)

    def recover(self, orders, state, now):
        events = list(self.core.recover(orders, state, now))
        for o in orders:
            qty = self.fills_while_down.get(o.client_order_id)
            if qty:
                ev: list = []
                self.core._fill(o, qty, o.limit_price or 100.0, now, now, now, ev)
                if not o.is_working:
                    self.core._remove(o)
                events += ev
        return events


def test_fills_a_venue_reports_on_recover_fire_oco_and_make_bracket_children():
    """An emulating gateway restarts; the venue reports fills that happened meanwhile: the OCO
    peer of a filled member is cancelled (it could fill too), a bracket parent's first fill
    makes its children -- as for the same fill while up."""
    a = order("a", qty=10, order_type=T.LIMIT, limit_price=99.0, tif=TIF.GTC)
    b = order("b", qty=10, order_type=T.LIMIT, limit_price=98.0, tif=TIF.GTC)
    p = bracket("p", order_type=T.LIMIT, limit_price=99.0, qty=10, tif=TIF.GTC)
    for o in (a, b, p):  # as journaled: acknowledged, a and b one group
        o.order_id, o.status = "X" + o.client_order_id, S.NEW
    a.oco_group = b.oco_group = "g"
    ex = OrderKinds(Reconciling({"a": 4, "p": 10}), emulated=True, session_end=SESSION_END)
    ev = ex.recover([a, b, p], {}, T0)
    assert fills(ev) == [("a", 4, 99.0), ("p", 10, 99.0)]
    assert (b.status, b.reason) == (S.CANCELLED, "oco: a filled")
    assert (last_snap(ev, "p.tp").qty, last_snap(ev, "p.sl").qty) == (10, 10)
    assert {o.client_order_id for o in ex.inner.core.working() + ex.held()} == {"a", "p.tp", "p.sl"}


class Flaky(Bare):
    """A venue whose cancels fail for a while (a broker's session down)."""

    def __init__(self):
        super().__init__()
        self.refuse = 0

    def cancel(self, order, now, cause_ts=0):
        if self.refuse:
            self.refuse -= 1
            return CancelResult(False, "session down")
        return super().cancel(order, now, cause_ts)


def test_a_day_order_whose_expiry_the_venue_refuses_is_expired_at_a_later_try_not_next_session():
    ex = OrderKinds(Flaky(), emulated=True, session_end=SESSION_END)
    ex.on_tick(tick(last=100.0))
    o = order("d", qty=10, order_type=T.LIMIT, limit_price=90.0)
    ex.submit(o, T0)
    ex.inner.refuse = 1
    assert snaps(ex.on_time(END + 1)) == [] and o.status is S.NEW
    assert snaps(ex.on_time(END + 2)) == []  # retried once a second, not on every call
    ev = ex.on_time(END + 1 + 1_000_000_000)
    assert [(s.client_order_id, s.status) for s in snaps(ev)] == [("d", S.EXPIRED)]
