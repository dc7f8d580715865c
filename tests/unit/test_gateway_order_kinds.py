"""The exchange gateway's side of the order kinds, in-process (inproc sockets, driven by hand):
replace_order and its idempotency, set_oco, the kill switch's cancels, bracket children under
the hard limits, depth, DAY expiry at --session-end, and the emulation over a venue that only
does market and limit orders (--exchange simulated-core)."""

from __future__ import annotations

import datetime
import itertools

import pytest
import zmq

from tests.procs import wait_until
from workers import protocol as P
from workers.config import add_common_args
from workers.exchange.gateway import KILL_SWITCH_CANCEL, ExchangeGateway, build_parser, oco_group_name
from workers.exchange.kinds import OrderKinds
from workers.exchange.simulated import SimulatedExchange
from workers.protocol import OrderType, Side, TimeInForce

_n = itertools.count(1)


class InProc:
    """A gateway with a ticks PUB and a DEALER client on inproc sockets."""

    def __init__(self, tmp_path, *options: str, journal: str = "g"):
        parser = build_parser()
        add_common_args(parser)
        tag = next(_n)
        eps = [f"--{n}=inproc://{n}-{tag}" for n in ("ticks", "orders", "execution", "control")]
        self.args = parser.parse_args([*eps, "--no-control", "--market-wait", "0", "--journal", str(tmp_path / f"{journal}.sqlite"), *options])
        self.gw = ExchangeGateway(self.args)
        self.ticks = self.gw.ctx.socket(zmq.PUB)
        self.ticks.bind(f"inproc://ticks-{tag}")
        self.gw.setup()
        self.client = self.gw.ctx.socket(zmq.DEALER)
        self.client.connect(f"inproc://orders-{tag}")
        self.execution = self.gw.ctx.socket(zmq.SUB)
        self.execution.setsockopt(zmq.SUBSCRIBE, b"")
        self.execution.connect(f"inproc://execution-{tag}")
        self.seq = itertools.count(1)
        self.depth_seq = itertools.count(1)

    def frame(self, frame: bytes) -> None:
        for _ in range(100):
            self.ticks.send(frame)
            if self.gw.ticks.poll(20):
                break
        self.gw._on_ticks(self.gw.ticks.recv())

    def tick(self, last=100.0, bid=99.0, ask=101.0, size=1000, symbol="AAA") -> None:
        s = next(self.seq)
        self.frame(P.encode_ticks(symbol, [(s, P.now_ns(), last, bid, ask, size, size, 0)]))

    def depth(self, bids, asks, symbol="AAA") -> None:
        self.frame(P.pub(P.Depth(symbol=symbol, seq=next(self.depth_seq), ts=P.now_ns(), bids=bids, asks=asks)))

    def batch(self, *msgs: P.Message) -> list[bytes]:
        for m in msgs:
            self.client.send(m.pack())
        assert self.gw.router.poll(1000)
        self.gw._on_requests(self.gw.router.recv_multipart())
        return [self.client.recv() for _ in msgs]

    def raw(self, msg: P.Message) -> bytes:
        return self.batch(msg)[0]

    def call(self, msg: P.Message) -> dict:
        return P.unpack_map(self.raw(msg))

    def reports(self) -> list[P.Message]:
        got = []
        while self.execution.poll(0):
            got.append(P.decode_pub(self.execution.recv())[1])
        return got

    def order(self, cid: str) -> dict:
        return self.call(P.GetOrder(client_order_id=cid))["order"]

    def close(self) -> None:
        for s in (self.client, self.ticks, self.execution):
            s.close(0)
        self.gw.teardown()
        self.gw._close()


@pytest.fixture
def make(tmp_path):
    made = []

    def start(*options: str, journal: str = "g") -> InProc:
        g = InProc(tmp_path, *options, journal=journal)
        made.append(g)
        return g

    yield start
    for g in made:
        if g.gw.journal is not None and g.gw.journal._fd >= 0:
            g.close()


def send(cid, side=Side.BUY, qty=10, order_type=OrderType.MARKET, **kw) -> P.SendOrder:
    return P.SendOrder(client_order_id=cid, symbol=kw.pop("symbol", "AAA"), side=side, qty=qty, order_type=order_type, **kw)


def lim(cid, side, qty, price, **kw) -> P.SendOrder:
    return send(cid, side, qty, OrderType.LIMIT, limit_price=price, **kw)


def test_the_simulated_venue_is_not_wrapped_and_the_core_is_emulated(make):
    g = make()
    assert isinstance(g.gw.client, SimulatedExchange) and g.gw.client.emulated is False
    core = make("--exchange", "simulated-core", "--session-end", "16:30", journal="core")
    assert isinstance(core.gw.client, OrderKinds) and core.gw.client.emulated is True
    assert core.gw.client.session_end == datetime.time(16, 30)
    core.tick()
    r = core.call(send("s1", Side.BUY, 5, OrderType.STOP, stop_price=105.0, tif=TimeInForce.GTC))
    assert r["ok"] and r["status"] == "new"
    o = core.order("s1")
    assert o["emulated"] is True and o["triggered"] is False
    core.tick(last=106.0, bid=105.0, ask=107.0)
    o = core.order("s1")
    assert (o["status"], o["triggered"], o["filled_qty"], o["avg_price"], o["emulated"]) == ("filled", True, 5, 107.0, True)
    # natively: the same stop, not emulated
    g.tick()
    assert g.call(send("s1", Side.BUY, 5, OrderType.STOP, stop_price=105.0))["ok"]
    assert g.order("s1")["emulated"] is False


def test_replace_order_is_idempotent_on_its_own_id_and_survives_a_restart(make):
    g = make()
    g.tick()
    assert g.call(lim("L1", Side.BUY, 10, 95.0))["status"] == "new"
    g.reports()
    rep = P.ReplaceOrder(orig_client_order_id="L1", client_order_id="R1", qty=20, limit_price=96.0)
    first = g.raw(rep)
    r = P.unpack_map(first)
    assert (r["type"], r["ok"], r["client_order_id"], r["replace_id"], r["status"]) == ("replace_order_reply", True, "L1", "R1", "new")
    assert (r["order"]["qty"], r["order"]["limit_price"]) == (20, 96.0)
    ups = [m for m in g.reports() if isinstance(m, P.OrderUpdate)]
    assert ups and (ups[-1].client_order_id, ups[-1].qty, ups[-1].limit_price) == ("L1", 20, 96.0)
    # a repeat: the same bytes, and nothing changes; another change under the same id: refused
    assert g.raw(rep) == first
    assert not [m for m in g.reports() if isinstance(m, P.OrderUpdate)]
    other = g.call(P.ReplaceOrder(orig_client_order_id="L1", client_order_id="R1", qty=30))
    assert not other["ok"] and other["reason"] == "client_order_id R1 already used for a different replace_order"
    # the same request twice in one batch: one change, the same reply
    a, b = g.batch(P.ReplaceOrder(orig_client_order_id="L1", client_order_id="R2", qty=25),
                   P.ReplaceOrder(orig_client_order_id="L1", client_order_id="R2", qty=25))
    assert a == b and P.unpack_map(a)["order"]["qty"] == 25
    # ids taken by an order, and orders taken by a replace
    clash = g.call(P.ReplaceOrder(orig_client_order_id="L1", client_order_id="L1x", qty=26))
    assert clash["ok"]
    assert g.call(send("L1x"))["reason"] == "client_order_id L1x already used for a replace_order"
    assert g.call(P.ReplaceOrder(orig_client_order_id="L1", client_order_id="L1x0", qty=27))["ok"]
    g.call(lim("L2", Side.BUY, 1, 90.0))
    assert g.call(P.ReplaceOrder(orig_client_order_id="L1", client_order_id="L2", qty=28))["reason"] == \
        "client_order_id L2 already used for an order"
    # the journal keeps the reply: a new gateway on it answers the repeat with the same bytes
    g.close()
    g2 = make()
    assert g2.raw(rep) == first
    assert g2.order("L1")["qty"] == 27 and g2.order("L1")["limit_price"] == 96.0
    assert g2.call(send("L1x"))["reason"] == "client_order_id L1x already used for a replace_order"


def test_replace_order_refusals_say_why(make):
    g = make("--hard-max-order-qty", "100")
    g.tick(size=5)
    g.call(send("M1", Side.BUY, 10))  # 5 filled, 5 working
    g.call(lim("L1", Side.BUY, 10, 95.0, take_profit_price=110.0, stop_loss_price=90.0))
    g.call(send("S1", Side.SELL, 3, OrderType.STOP, stop_price=90.0))
    g.call(send("T1", Side.SELL, 3, OrderType.TRAILING_STOP, trail_amount=2.0))
    g.call(lim("done", Side.SELL, 1, 98.0))  # fills at once

    def refused(cid, rid, **change) -> str:
        r = g.call(P.ReplaceOrder(orig_client_order_id=cid, client_order_id=rid, **change))
        assert r["ok"] is False and r["type"] == "replace_order_reply", r
        return r["reason"]

    assert refused("nope", "r1", qty=5) == "unknown client_order_id nope"
    assert refused("done", "r2", qty=5) == "order done is already filled"
    assert refused("M1", "r3", qty=5) == "qty 5 must exceed the 5 already filled of order M1"
    assert refused("M1", "r4", limit_price=100.0) == "order M1 (market) has no limit price"
    assert refused("L1", "r5", stop_price=100.0) == "order L1: a limit order has no stop price"
    assert refused("T1", "r6", stop_price=95.0) == "order T1: a trailing_stop's stop follows the market (change its qty only)"
    assert refused("L1", "r7", limit_price=111.0) == "order L1: take_profit_price must be above the limit price for a buy"
    assert refused("L1", "r8", qty=500) == "hard limit: qty 500 exceeds max order qty 100"
    # a refusal is an answer: stored, and a repeat gets it again
    assert refused("L1", "r8", qty=500) == "hard limit: qty 500 exceeds max order qty 100"
    # what passes: the stop's price, the trailing stop's qty
    assert g.call(P.ReplaceOrder(orig_client_order_id="S1", client_order_id="r9", stop_price=91.0))["order"]["stop_price"] == 91.0
    assert g.call(P.ReplaceOrder(orig_client_order_id="T1", client_order_id="r10", qty=4))["order"]["qty"] == 4
    # a triggered stop keeps its stop price
    g.tick(last=90.5, bid=90.0, ask=91.0, size=1)
    assert g.order("S1")["triggered"] is True
    if g.order("S1")["status"] != "filled":
        assert refused("S1", "r11", stop_price=80.0) == "order S1: its stop has already triggered"


def test_set_oco_names_the_group_after_its_members_and_a_fill_cancels_the_others(make):
    g = make()
    g.tick()
    g.call(lim("a", Side.BUY, 10, 95.0))
    g.call(lim("b", Side.SELL, 10, 105.0))
    r = g.call(P.SetOco(client_order_ids=["b", "a"]))
    assert (r["type"], r["ok"], r["oco_group"]) == ("set_oco_reply", True, "a,b")
    assert g.order("a")["oco_group"] == g.order("b")["oco_group"] == "a,b"
    assert g.call(P.SetOco(client_order_ids=["a", "b"])) == r  # a repeat: the same group
    g.call(lim("c", Side.BUY, 1, 90.0))
    assert g.call(P.SetOco(client_order_ids=["a", "c"]))["reason"] == "order a is already in oco group a,b"
    assert g.call(P.SetOco(client_order_ids=["c", "zz"]))["reason"] == "unknown client_order_id zz"
    assert g.call(P.SetOco(client_order_ids=["c", "c"]))["reason"] == "set_oco: client_order_ids must be distinct"
    g.reports()
    g.tick(last=95.0, bid=94.0, ask=95.0, size=4)  # a fills 4 of 10: b goes
    assert g.order("b")["status"] == "cancelled" and g.order("b")["reason"] == "oco: a filled"
    assert g.call(P.SetOco(client_order_ids=["b", "a"]))["ok"]  # still the same group, after the fact
    g.call(lim("done", Side.SELL, 1, 90.0))
    assert g.call(P.SetOco(client_order_ids=["c", "done"]))["reason"] == "order done is not working (status filled)"
    # long ids: a hash
    long = ["x" * 100, "y" * 100]
    assert oco_group_name(long).startswith("oco-") and len(oco_group_name(long)) <= P.MAX_STR
    assert oco_group_name(long) == oco_group_name(long[::-1])


def test_the_kill_switch_cancels_what_would_increase_and_keeps_what_closes(make):
    g = make()
    g.tick()
    r = g.call(send("P", Side.BUY, 10, take_profit_price=120.0, stop_loss_price=90.0))
    assert r["status"] == "filled"
    assert g.order("P.tp")["status"] == "new" and g.order("P.sl")["status"] == "new"
    g.call(lim("add", Side.BUY, 5, 95.0))  # would add to the long
    g.call(send("addstop", Side.BUY, 5, OrderType.STOP, stop_price=110.0))
    g.call(lim("close", Side.SELL, 5, 115.0))  # closes with the bracket: 10 + 5 > 10, the newest goes
    g.reports()
    r = g.call(P.SetKillSwitch(on=True, reason="test"))
    assert r["ok"] and r["on"]
    status = {c: (g.order(c)["status"], g.order(c)["reason"]) for c in ("P.tp", "P.sl", "add", "addstop", "close")}
    assert status == {"P.tp": ("new", ""), "P.sl": ("new", ""), "add": ("cancelled", KILL_SWITCH_CANCEL),
                      "addstop": ("cancelled", KILL_SWITCH_CANCEL), "close": ("cancelled", KILL_SWITCH_CANCEL)}
    ups = {m.client_order_id: m for m in g.reports() if isinstance(m, P.OrderUpdate)}
    assert ups["add"].reason == KILL_SWITCH_CANCEL and ups["addstop"].status == "cancelled"
    # while on: a closing sell passes only beyond what the bracket already closes (nothing
    # here), a replace that grows a child is refused, one that shrinks it passes
    assert g.call(lim("more", Side.SELL, 1, 115.0))["reason"].startswith("kill switch on")
    r = g.call(P.ReplaceOrder(orig_client_order_id="P.tp", client_order_id="grow", qty=11))
    assert r["ok"] is False and r["reason"].startswith("kill switch on")
    assert g.call(P.ReplaceOrder(orig_client_order_id="P.tp", client_order_id="shrink", qty=6))["ok"]


def test_bracket_children_are_refused_by_the_hard_limits_and_the_parent_stands(make):
    g = make("--hard-price-band-pct", "5")
    g.tick()
    r = g.call(send("P", Side.BUY, 10, take_profit_price=130.0, stop_loss_price=99.0))
    assert r["ok"] and r["status"] == "filled"
    tp, sl = g.order("P.tp"), g.order("P.sl")
    assert tp["status"] == "rejected" and tp["reason"].startswith("hard limit: price 130.00 outside")
    assert (tp["parent_id"], tp["oco_group"], tp["side"], tp["qty"]) == ("P", "P", "sell", 10)
    assert sl["status"] == "new" and sl["order_type"] == "stop" and sl["stop_price"] == 99.0


def test_bracket_ids_are_reserved(make):
    g = make()
    g.tick()
    g.call(lim("B", Side.BUY, 10, 90.0, take_profit_price=110.0))
    assert g.call(send("B.tp"))["reason"] == "client_order_id B.tp belongs to the child of bracket B"
    g.call(send("C.sl"))
    assert g.call(send("C", take_profit_price=110.0, stop_loss_price=90.0))["reason"] == \
        "client_order_id C.sl (this bracket's child) is already used"


def test_depth_reaches_the_venue_and_a_fok_walks_it(make):
    g = make()
    g.tick(bid=99.0, ask=101.0, size=10)
    g.depth([(99.0, 10), (98.0, 50)], [(101.0, 10), (102.0, 50)])
    assert g.gw.stats.counters["depth_in"] == 1
    r = g.call(send("F", Side.BUY, 40, tif=TimeInForce.FOK))
    assert (r["status"], r["filled_qty"]) == ("filled", 40)
    assert r["avg_price"] == pytest.approx((10 * 101.0 + 30 * 102.0) / 40)
    r = g.call(send("F2", Side.BUY, 100, tif=TimeInForce.FOK))
    assert (r["status"], r["filled_qty"]) == ("cancelled", 0) and r["reason"].startswith("fok:")
    r = g.call(send("I", Side.BUY, 100, tif=TimeInForce.IOC))
    assert (r["status"], r["filled_qty"]) == ("cancelled", 20) and r["reason"].startswith("ioc:")


def test_day_orders_expire_at_the_session_end(make):
    end = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)).time().replace(microsecond=0)
    g = make("--session-end", end.strftime("%H:%M:%S"))
    g.tick()
    g.call(lim("day", Side.BUY, 1, 90.0))
    g.call(lim("gtc", Side.BUY, 1, 90.0, tif=TimeInForce.GTC))
    g.reports()

    def expired():
        g.gw.on_timer(0.0)
        return g.order("day")["status"] == "expired"

    wait_until(expired, timeout=6, interval=0.05, message="the DAY order expired")
    assert g.order("day")["reason"] == "day order expired at the session end"
    assert g.order("gtc")["status"] == "new"
    assert any(isinstance(m, P.OrderUpdate) and m.status == "expired" for m in g.reports())


def test_unsupported_terms_are_refused_with_a_reason(make):
    g = make()
    assert g.gw._unsupported.__doc__
    g.gw._tifs = frozenset({TimeInForce.DAY, TimeInForce.GTC})  # a venue without ioc / fok
    g.tick()
    r = g.call(send("x", tif=TimeInForce.IOC))
    assert (r["ok"], r["status"], r["order_id"], r["reason"]) == (False, "rejected", "-",
                                                                   "time in force ioc is not supported by the simulated exchange")


def test_a_resend_must_repeat_every_term_of_the_new_kinds(make):
    g = make()
    g.tick()
    stop = send("S", Side.SELL, 5, OrderType.STOP_LIMIT, stop_price=95.0, limit_price=94.5, tif=TimeInForce.GTC,
                take_profit_price=80.0, stop_loss_price=99.0, stop_loss_tif=TimeInForce.DAY)
    first = g.raw(stop)
    assert P.unpack_map(first)["status"] == "new"
    assert g.raw(P.from_map({**stop.to_dict(), "source": "elsewhere", "ts": 5})) == first  # timestamps, source: free
    for change in ({"tif": "day"}, {"stop_price": 95.5}, {"stop_loss_tif": "gtc"}, {"take_profit_price": 81.0}):
        other = P.from_map({**stop.to_dict(), **change})
        r = P.unpack_map(g.raw(other))
        assert (r["ok"], r["reason"]) == (False, "client_order_id S already used for a different order"), change
    assert len([o for o in g.call(P.GetOrders())["orders"] if o["client_order_id"] == "S"]) == 1


def test_a_late_resend_of_a_replaced_order_gets_its_stored_reply_not_a_refusal(make):
    """A retry of the first send_order that arrives after a replace changed the order's qty and
    price is the same order: it gets the stored reply (a refusal would read as a rejection of a
    live order), while other terms under that id, or an order never replaced, stay refused."""
    g = make()
    g.tick()
    first = lim("L1", Side.BUY, 10, 95.0)
    stored = g.raw(first)
    assert P.unpack_map(stored)["status"] == "new"
    assert g.call(P.ReplaceOrder(orig_client_order_id="L1", client_order_id="R1", qty=20, limit_price=96.0))["ok"]
    assert g.raw(first) == stored
    assert g.order("L1")["qty"] == 20  # the resend changed nothing
    other_side = g.call(lim("L1", Side.SELL, 10, 95.0))
    assert not other_side["ok"] and "already used for a different order" in other_side["reason"]
    # a refused replace does not make a different qty a resend
    assert g.call(lim("L2", Side.BUY, 10, 95.0))["ok"]
    assert not g.call(P.ReplaceOrder(orig_client_order_id="L2", client_order_id="R2", qty=5, stop_price=1.0))["ok"]
    assert "already used for a different order" in g.call(lim("L2", Side.BUY, 11, 95.0))["reason"]
    # and it holds across a restart (the replace is read back from the journal)
    g.close()
    g2 = make()
    assert g2.raw(first) == stored


# ----------------------------------------------------------------------------- review (H7)

@pytest.mark.parametrize("venue", ["simulated", "simulated-core"])
def test_a_trailing_stops_level_is_its_stop_price_journaled_and_kept_across_a_restart(make, venue):
    """The venue reports a trailing stop's level as its stop_price; a resend of the
    send_order (which carries none) is still the same order, a replace of its qty passes the
    terms' check, and a gateway restarted on the journal neither loosens nor forgets it."""
    g = make("--exchange", venue)
    g.tick(last=100.0)
    tr = send("TR", Side.SELL, 5, OrderType.TRAILING_STOP, trail_amount=2.0, tif=TimeInForce.GTC)
    first = g.raw(tr)
    assert P.unpack_map(first)["status"] == "new"
    assert g.order("TR")["stop_price"] == 98.0
    g.reports()
    g.tick(last=105.0, bid=104.0, ask=106.0)
    ups = [m for m in g.reports() if isinstance(m, P.OrderUpdate) and m.client_order_id == "TR"]
    assert [u.stop_price for u in ups] == [103.0] and ups[0].status == "new"
    assert g.order("TR")["stop_price"] == 103.0
    assert g.raw(tr) == first  # the level is the venue's, not a term of the order
    r = g.call(P.ReplaceOrder(orig_client_order_id="TR", client_order_id="TR-q", qty=6))
    assert r["ok"], r
    assert (r["order"]["qty"], r["order"]["stop_price"]) == (6, 103.0)
    assert "trailing_stop's stop follows the market" in g.call(
        P.ReplaceOrder(orig_client_order_id="TR", client_order_id="TR-s", stop_price=104.0))["reason"]
    g.close()
    g2 = make("--exchange", venue)
    assert g2.order("TR")["stop_price"] == 103.0
    assert g2.raw(tr) == first
    g2.tick(last=104.0, bid=103.5, ask=104.5)  # the first trade after the restart: not a new high
    assert g2.order("TR")["stop_price"] == 103.0
    g2.tick(last=102.9, bid=102.5, ask=103.5)  # through 103 (before the fix: 102, no fill)
    o = g2.order("TR")
    assert (o["status"], o["triggered"], o["filled_qty"], o["stop_price"]) == ("filled", True, 6, 103.0)


def test_a_bracket_named_like_an_oco_group_never_joins_it(make):
    """A bracket's children are grouped under the parent's client_order_id, and set_oco names a
    group after its members ("a,b"): the two must never meet, or a fill of one group would
    cancel the other's orders (a bracket's stop-loss among them)."""
    g = make()
    g.tick()
    g.call(lim("a", Side.BUY, 1, 90.0))
    g.call(lim("b", Side.BUY, 1, 89.0))
    assert g.call(P.SetOco(client_order_ids=["a", "b"]))["oco_group"] == "a,b"
    r = g.call(send("a,b", Side.BUY, 5, take_profit_price=120.0, stop_loss_price=80.0))
    assert not r["ok"] and r["reason"] == "client_order_id a,b is the name of an oco group", r
    # the other way round: the bracket first (not filled yet), then the group of its name
    g.call(lim("c", Side.BUY, 1, 90.0))
    g.call(lim("d", Side.BUY, 1, 89.0))
    assert g.call(send("c,d", Side.BUY, 5, OrderType.LIMIT, limit_price=95.0, take_profit_price=110.0,
                       stop_loss_price=80.0))["status"] == "new"
    group = g.call(P.SetOco(client_order_ids=["c", "d"]))["oco_group"]
    assert group != "c,d" and group.startswith("oco-")
    assert g.call(P.SetOco(client_order_ids=["d", "c"]))["oco_group"] == group  # a repeat: the same
    g.tick(last=95.0, bid=94.0, ask=95.0)  # the bracket fills: its children, in group c,d
    assert g.order("c,d.sl")["oco_group"] == "c,d" and g.order("c,d.sl")["status"] == "new"
    g.tick(last=90.0, bid=89.5, ask=90.0, size=1000)  # c fills (a too): d goes, the bracket's children stay
    assert g.order("d")["status"] == "cancelled"
    assert (g.order("c,d.sl")["status"], g.order("c,d.tp")["status"]) == ("new", "new")


def test_a_replace_cannot_take_the_id_of_a_brackets_child(make):
    g = make()
    g.tick()
    g.call(lim("L", Side.BUY, 1, 90.0))
    assert g.call(send("P", Side.BUY, 5, OrderType.LIMIT, limit_price=95.0, take_profit_price=120.0))["status"] == "new"
    r = g.call(P.ReplaceOrder(orig_client_order_id="L", client_order_id="P.tp", qty=2))
    assert not r["ok"] and r["reason"] == "client_order_id P.tp belongs to the child of bracket P", r
    assert g.order("L")["qty"] == 1


def test_hard_limits_judge_a_replace_that_moves_a_price_out_of_the_band_or_grows_past_the_position(make):
    g = make("--hard-price-band-pct", "5", "--hard-max-position", "20")
    g.tick(last=100.0)
    assert g.call(lim("L", Side.BUY, 10, 99.0))["status"] == "new"
    assert g.call(send("SL", Side.BUY, 5, OrderType.STOP_LIMIT, stop_price=101.0, limit_price=101.5))["status"] == "new"

    def reason(rid, cid="L", **change):
        return g.call(P.ReplaceOrder(orig_client_order_id=cid, client_order_id=rid, **change))["reason"]

    assert reason("r1", limit_price=120.0).startswith("hard limit: price 120.00 outside")
    assert reason("r2", cid="SL", limit_price=90.0).startswith("hard limit: price 90.00 outside")
    assert reason("r3", qty=16).startswith("hard limit:")  # 16 + the stop's 5 working > 20
    assert g.call(P.ReplaceOrder(orig_client_order_id="L", client_order_id="r4", qty=15))["ok"]
    assert (g.order("L")["qty"], g.order("L")["limit_price"], g.order("SL")["limit_price"]) == (15, 99.0, 101.5)
