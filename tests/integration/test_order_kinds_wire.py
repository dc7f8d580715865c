"""Issue 13's order kinds on the wire: a client written from docs/protocol.md alone (plain
pyzmq REQ + SUB and msgpack maps, none of TickDesk's client classes) against a real exchange
gateway process, fed by a tick publisher the test binds.

It places a stop (not filled before its trigger, filled after), an IOC (partly filled, the rest
cancelled), a FOK (all or nothing, walking the depth), a bracket (children ``<id>.tp`` /
``<id>.sl`` on the fill; the take-profit's fill cancels the stop-loss), a replace (qty and
price, then through the market), an OCO group, and checks what the docs promise on the replies
and on the execution stream.  Then the same over the matching core alone (``--exchange
simulated-core``: the gateway emulates, orders say ``emulated: true``), a DAY order expiring at
``--session-end``, and held stops, bracket children and OCO groups across ``kill -9``."""

from __future__ import annotations

import datetime
import itertools
import signal

import msgpack
import pytest
import zmq

from tests.procs import log_text, scaled, scaled_ms, start_worker, stop, wait_until
from workers import protocol as P
from workers.config import Endpoints

pytestmark = pytest.mark.timeout(120)


class DocsClient:
    """What docs/protocol.md describes, and nothing more: one REQ on the orders endpoint (one
    msgpack map per request and reply, ``v`` 1 and ``type``), one SUB on ``exec.``."""

    def __init__(self, ctx: zmq.Context, eps: Endpoints):
        self.ctx, self.eps = ctx, eps
        self.req = self._req()
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"exec.")
        self.sub.connect(eps.execution)
        self.seen: list[dict] = []  # every report, in order

    def _req(self) -> zmq.Socket:
        s = self.ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, scaled_ms(10_000))
        s.connect(self.eps.orders)
        return s

    def reconnect(self) -> None:
        self.req.close(0)
        self.req = self._req()

    def raw(self, type_: str, **fields) -> bytes:
        self.req.send(msgpack.packb({"v": 1, "type": type_, **fields}))
        return self.req.recv()

    def call(self, type_: str, **fields) -> dict:
        reply = msgpack.unpackb(self.raw(type_, **fields))
        assert reply["v"] == 1 and reply["type"] == f"{type_}_reply", reply
        return reply

    def order(self, cid: str) -> dict:
        r = self.call("get_order", client_order_id=cid)
        assert r["ok"], r
        return r["order"]

    def drain(self) -> None:
        while self.sub.poll(0):
            topic, payload = self.sub.recv().split(b"\x00", 1)
            m = msgpack.unpackb(payload)
            assert topic == (b"exec.order." if m["type"] == "order_update" else b"exec.fill.") + m["symbol"].encode()
            self.seen.append(m)

    def report(self, pred, message: str = "") -> dict:
        """The first report so far (or to come) that ``pred`` holds for."""

        def found():
            self.drain()
            return next((m for m in self.seen if pred(m)), None)

        return wait_until(found, timeout=10, interval=0.01, message=message or "a report")

    def updates(self, cid: str) -> list[dict]:
        self.drain()
        return [m for m in self.seen if m["type"] == "order_update" and m["client_order_id"] == cid]

    def fills(self, cid: str) -> list[dict]:
        self.drain()
        return [m for m in self.seen if m["type"] == "fill" and m["client_order_id"] == cid]


class Market:
    """The test's tick publisher (a PUB bound on the ticks endpoint), with a barrier: after
    publishing, a market order on the probe symbol must fill at the probe's new ask, which
    proves the gateway has taken every frame published before it (one pipe, in order)."""

    PROBE = "PRB"

    def __init__(self, ctx: zmq.Context, eps: Endpoints):
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(eps.ticks)
        self.seq: dict[str, itertools.count] = {}
        self.depth_seq = itertools.count(1)
        self.probes = itertools.count(1)

    def _tick(self, symbol, last, bid, ask, size) -> None:
        seq = next(self.seq.setdefault(symbol, itertools.count(1)))
        self.pub.send(P.pub(P.Tick(symbol=symbol, seq=seq, ts=P.now_ns(), last=last, bid=bid, ask=ask, bid_size=size,
                                   ask_size=size, volume=1)))

    def quote(self, client: DocsClient, symbol: str, last: float, bid: float | None = None, ask: float | None = None,
              size: int = 1000, depth: tuple[list, list] | None = None) -> str:
        """Publish a tick (and a depth of the same moment) and wait until the gateway has it;
        the probe order that proved it is returned."""
        bid = round(last - 0.1, 2) if bid is None else bid
        ask = round(last + 0.1, 2) if ask is None else ask

        def taken():
            self._tick(symbol, last, bid, ask, size)
            if depth is not None:
                self.pub.send(P.pub(P.Depth(symbol=symbol, seq=next(self.depth_seq), ts=P.now_ns(), bids=depth[0], asks=depth[1])))
            n = next(self.probes)
            price = 10.0 + n / 100
            self._tick(self.PROBE, price, price - 0.01, price, 1_000_000)
            r = client.call("send_order", client_order_id=f"probe-{n}", symbol=self.PROBE, side="buy", qty=1, tif="gtc")
            return r["client_order_id"] if r["status"] == "filled" and r["avg_price"] == price else ""

        return wait_until(taken, timeout=10, interval=0.05, message=f"the gateway took the {symbol} quote")


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def desk(tmp_path, ctx):
    """Endpoints, the tick publisher, a docs client, and a gateway starter (same journal)."""
    eps = Endpoints.ephemeral_ipc(tmp_path)
    market = Market(ctx, eps)
    client = DocsClient(ctx, eps)
    procs = []

    def start(*options: str):
        proc = start_worker("exchange", eps, "--journal", str(tmp_path / "j.sqlite"), "--market-wait", "0", *options,
                            tmp_path=tmp_path)
        procs.append(proc)
        client.reconnect()
        r = client.call("ping")
        assert r["ok"] and proc.poll() is None, log_text(proc)
        # the execution SUB has joined once a probe's report reaches it

        def joined():
            probe = market.quote(client, Market.PROBE, 10.0)
            client.sub.poll(scaled_ms(100))
            return client.fills(probe)

        wait_until(joined, timeout=10, interval=0, message="the execution stream joined")
        return proc

    yield start, market, client
    for proc in procs:
        stop(proc)


def send(client: DocsClient, cid: str, symbol: str, side: str, qty: int, **terms) -> dict:
    r = client.call("send_order", client_order_id=cid, symbol=symbol, side=side, qty=qty, source="docs-test", **terms)
    assert r["client_order_id"] == cid, r
    return r


def test_stop_ioc_fok_bracket_replace_and_oco_as_the_docs_say(desk):
    start, market, c = desk
    start()

    # -- a stop: held (new, not triggered) below its trigger, a market order once a trade reaches it
    market.quote(c, "STP", 100.0)
    r = send(c, "stop-1", "STP", "buy", 10, order_type="stop", stop_price=101.0, tif="gtc")
    assert (r["ok"], r["status"], r["filled_qty"]) == (True, "new", 0) and r["order_id"]
    market.quote(c, "STP", 100.9)
    o = c.order("stop-1")
    assert (o["status"], o["triggered"], o["filled_qty"], o["stop_price"], o["emulated"]) == ("new", False, 0, 101.0, False)
    assert not c.fills("stop-1")
    market.quote(c, "STP", 101.2, bid=101.1, ask=101.3)
    done = c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "stop-1" and m["status"] == "filled")
    assert done["triggered"] is True and done["avg_price"] == 101.3
    assert [(f["qty"], f["price"]) for f in c.fills("stop-1")] == [(10, 101.3)]
    assert any(u["triggered"] and u["status"] == "new" for u in c.updates("stop-1"))  # the moment it triggered

    # -- ioc: what fills at once, the rest cancelled ("ioc: ...")
    market.quote(c, "IOC", 50.0, size=30)
    r = send(c, "ioc-1", "IOC", "buy", 50, tif="ioc")
    assert (r["ok"], r["status"], r["filled_qty"], r["avg_price"]) == (True, "cancelled", 30, 50.1)
    assert r["reason"].startswith("ioc:")
    c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "ioc-1" and m["status"] == "cancelled")
    assert sum(f["qty"] for f in c.fills("ioc-1")) == 30

    # -- fok: all or nothing, against the touch and the depth behind it
    book = ([(19.9, 30), (19.8, 40)], [(20.1, 30), (20.5, 40)])
    market.quote(c, "FOK", 20.0, size=30, depth=book)
    r = send(c, "fok-1", "FOK", "buy", 100, tif="fok")
    assert (r["ok"], r["status"], r["filled_qty"]) == (True, "cancelled", 0) and r["reason"].startswith("fok:")
    r = send(c, "fok-2", "FOK", "buy", 60, tif="fok")
    assert (r["ok"], r["status"], r["filled_qty"]) == (True, "filled", 60)
    assert r["avg_price"] == pytest.approx((30 * 20.1 + 30 * 20.5) / 60)
    c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "fok-2" and m["status"] == "filled")
    assert [(f["qty"], f["price"]) for f in c.fills("fok-2")] == [(30, 20.1), (30, 20.5)]
    assert not c.fills("fok-1")

    # -- a bracket: children <id>.tp / <id>.sl when it fills; the take-profit's fill cancels the stop-loss
    market.quote(c, "BRK", 100.0)
    r = send(c, "brk-1", "BRK", "buy", 10, take_profit_price=105.0, stop_loss_price=95.0)
    assert (r["ok"], r["status"]) == (True, "filled")
    tp = c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "brk-1.tp", "the take-profit child")
    sl = c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "brk-1.sl", "the stop-loss child")
    assert (tp["side"], tp["qty"], tp["order_type"], tp["limit_price"], tp["tif"], tp["status"]) == ("sell", 10, "limit", 105.0, "gtc", "new")
    assert (sl["side"], sl["qty"], sl["order_type"], sl["stop_price"], sl["tif"], sl["status"]) == ("sell", 10, "stop", 95.0, "gtc", "new")
    assert tp["parent_id"] == sl["parent_id"] == "brk-1" and tp["oco_group"] == sl["oco_group"] == "brk-1"
    assert tp["source"] == "docs-test"
    market.quote(c, "BRK", 105.2, bid=105.1, ask=105.3)
    c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "brk-1.tp" and m["status"] == "filled")
    gone = c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "brk-1.sl" and m["status"] == "cancelled")
    assert gone["reason"] == "oco: brk-1.tp filled"
    assert [(f["qty"], f["price"]) for f in c.fills("brk-1.tp")] == [(10, 105.1)]
    positions = {p["symbol"]: p["qty"] for p in c.call("get_positions")["positions"]}
    assert positions["BRK"] == 0

    # -- a replace: qty and price in place, idempotent on its own id; then through the market
    market.quote(c, "RPL", 100.0)
    r = send(c, "rpl-1", "RPL", "sell", 10, order_type="limit", limit_price=110.0, tif="gtc")
    assert r["status"] == "new"
    first = c.raw("replace_order", orig_client_order_id="rpl-1", client_order_id="rpl-1-r1", qty=20, limit_price=109.0)
    r = msgpack.unpackb(first)
    assert (r["type"], r["ok"], r["client_order_id"], r["replace_id"], r["order_id"], r["status"]) == (
        "replace_order_reply", True, "rpl-1", "rpl-1-r1", c.order("rpl-1")["order_id"], "new")
    assert (r["order"]["qty"], r["order"]["limit_price"]) == (20, 109.0)
    up = c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "rpl-1" and m["qty"] == 20)
    assert up["limit_price"] == 109.0
    assert c.raw("replace_order", orig_client_order_id="rpl-1", client_order_id="rpl-1-r1", qty=20, limit_price=109.0) == first
    r = c.call("replace_order", orig_client_order_id="rpl-1", client_order_id="rpl-1-r1", qty=30)
    assert (r["ok"], r["reason"]) == (False, "client_order_id rpl-1-r1 already used for a different replace_order")
    r = c.call("replace_order", orig_client_order_id="rpl-1", client_order_id="rpl-1-r2", stop_price=99.0)
    assert (r["ok"], r["reason"]) == (False, "order rpl-1: a limit order has no stop price")
    r = c.call("replace_order", orig_client_order_id="rpl-1", client_order_id="rpl-1-r3", limit_price=99.5)
    assert (r["ok"], r["status"], r["order"]["filled_qty"]) == (True, "filled", 20)  # moved through the bid: filled at once
    c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "rpl-1" and m["status"] == "filled")
    assert [(f["qty"], f["price"]) for f in c.fills("rpl-1")] == [(20, 99.9)]
    r = c.call("replace_order", orig_client_order_id="rpl-1", client_order_id="rpl-1-r4", qty=25)
    assert (r["ok"], r["reason"], r["status"]) == (False, "order rpl-1 is already filled", "filled")
    r = c.call("replace_order", orig_client_order_id="nobody", client_order_id="rpl-1-r5", qty=25)
    assert (r["ok"], r["reason"]) == (False, "unknown client_order_id nobody")

    # -- set_oco: a fill of one cancels the other
    market.quote(c, "OCO", 100.0)
    send(c, "oco-buy", "OCO", "buy", 5, order_type="limit", limit_price=95.0, tif="gtc")
    send(c, "oco-sell", "OCO", "sell", 5, order_type="limit", limit_price=105.0, tif="gtc")
    r = c.call("set_oco", client_order_ids=["oco-sell", "oco-buy"])
    assert (r["ok"], r["oco_group"]) == (True, "oco-buy,oco-sell")
    assert c.call("set_oco", client_order_ids=["oco-buy", "oco-sell"]) == r
    assert c.order("oco-buy")["oco_group"] == "oco-buy,oco-sell"
    market.quote(c, "OCO", 95.0, bid=94.9, ask=95.0)
    c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "oco-buy" and m["status"] == "filled")
    gone = c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "oco-sell" and m["status"] == "cancelled")
    assert gone["reason"] == "oco: oco-buy filled"

    # -- terms that do not go together: not an order (no status)
    r = c.call("send_order", client_order_id="bad-1", symbol="OCO", side="buy", qty=5, order_type="stop", tif="ioc", stop_price=99.0)
    assert set(r) == {"v", "type", "ok", "reason"} and r["ok"] is False and "tif ioc" in r["reason"]


def test_the_gateway_emulates_what_the_matching_core_lacks(desk):
    start, market, c = desk
    start("--exchange", "simulated-core")
    market.quote(c, "EMU", 100.0)
    # a trailing stop: a sell's stop follows the highest trade (102 - 1 = 101)
    r = send(c, "trail-1", "EMU", "sell", 5, order_type="trailing_stop", trail_amount=1.0, tif="gtc")
    assert (r["ok"], r["status"]) == (True, "new")
    assert c.order("trail-1")["emulated"] is True
    market.quote(c, "EMU", 102.0)
    market.quote(c, "EMU", 101.5)
    assert c.order("trail-1")["status"] == "new"
    market.quote(c, "EMU", 100.9, bid=100.8, ask=101.0)
    done = c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "trail-1" and m["status"] == "filled")
    assert (done["triggered"], done["emulated"], done["avg_price"]) == (True, True, 100.8)
    # a bracket over a venue without brackets: the gateway makes the children, emulated
    r = send(c, "brk-e", "EMU", "buy", 4, take_profit_price=110.0, stop_loss_price=90.0, tif="gtc")
    assert r["status"] == "filled"
    for child in ("brk-e.tp", "brk-e.sl"):
        u = c.report(lambda m, child=child: m["type"] == "order_update" and m["client_order_id"] == child)
        assert (u["emulated"], u["parent_id"], u["status"], u["qty"]) == (True, "brk-e", "new", 4)
    # the stop-loss triggers on the way down and its fill cancels the take-profit
    market.quote(c, "EMU", 89.9, bid=89.8, ask=90.0)
    c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "brk-e.sl" and m["status"] == "filled")
    gone = c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "brk-e.tp" and m["status"] == "cancelled")
    assert gone["reason"] == "oco: brk-e.sl filled"
    # ioc is the core's own: not emulated
    r = send(c, "ioc-e", "EMU", "buy", 5000, tif="ioc")
    assert (r["status"], r["filled_qty"]) == ("cancelled", 1000) and c.order("ioc-e")["emulated"] is False


def test_a_day_order_expires_at_the_session_end_after_a_restart_crossed_it(desk):
    """The gateway is restarted with a session end two seconds ahead: a DAY order placed before
    it expires then (and a GTC one does not), whatever the start-up took."""
    start, market, c = desk
    proc = start()
    market.quote(c, "DAY", 100.0)
    assert send(c, "day-1", "DAY", "buy", 1, order_type="limit", limit_price=90.0)["status"] == "new"
    assert send(c, "gtc-1", "DAY", "buy", 1, order_type="limit", limit_price=90.0, tif="gtc")["status"] == "new"
    stop(proc)
    end = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)).strftime("%H:%M:%S")
    start("--session-end", end)
    # asked, not only awaited on the stream: on a slow start the expiry may be published before
    # the execution SUB has joined the new process
    u = wait_until(lambda: (o := c.order("day-1"))["status"] == "expired" and o, timeout=10, interval=0.05,
                   message="the DAY order expired")
    assert u["reason"] == "day order expired at the session end"
    assert c.order("gtc-1")["status"] == "new"


@pytest.mark.parametrize("venue", ["simulated", "simulated-core"])
def test_held_stops_bracket_children_and_oco_groups_survive_kill_9(desk, venue):
    start, market, c = desk
    proc = start("--exchange", venue)
    market.quote(c, "RST", 100.0)
    assert send(c, "stop-r", "RST", "sell", 3, order_type="stop", stop_price=97.0, tif="gtc")["status"] == "new"
    assert send(c, "brk-r", "RST", "buy", 6, take_profit_price=120.0, stop_loss_price=96.0, tif="gtc")["status"] == "filled"
    c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "brk-r.sl", "the bracket's stop-loss")
    send(c, "o1", "RST", "sell", 2, order_type="limit", limit_price=110.0, tif="gtc")
    send(c, "o2", "RST", "sell", 2, order_type="limit", limit_price=109.0, tif="gtc")
    assert c.call("set_oco", client_order_ids=["o1", "o2"])["oco_group"] == "o1,o2"
    replace = dict(orig_client_order_id="o2", client_order_id="o2-r", limit_price=108.0)
    first = c.raw("replace_order", **replace)
    before = {o["client_order_id"]: o for o in c.call("get_orders", working_only=True)["orders"]}
    assert set(before) == {"stop-r", "brk-r.tp", "brk-r.sl", "o1", "o2"}

    proc.send_signal(signal.SIGKILL)
    proc.wait(scaled(10))
    start("--exchange", venue)
    after = {o["client_order_id"]: o for o in c.call("get_orders", working_only=True)["orders"]}
    keep = ("order_id", "status", "qty", "order_type", "stop_price", "limit_price", "triggered", "emulated", "parent_id", "oco_group")
    assert {k: {f: o[f] for f in keep} for k, o in after.items()} == {k: {f: o[f] for f in keep} for k, o in before.items()}
    assert after["stop-r"]["emulated"] is (venue == "simulated-core")
    assert c.raw("replace_order", **replace) == first  # the replace's stored reply, across the crash

    # all of it still works: o2 (at its replaced price) fills and cancels o1; the stops hold
    # above their trigger and fire below it; the stop-loss's fill cancels the take-profit; no
    # child is made twice
    market.quote(c, "RST", 108.2, bid=108.1, ask=108.3)
    c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "o2" and m["status"] == "filled")
    gone = c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "o1" and m["status"] == "cancelled")
    assert gone["reason"] == "oco: o2 filled"
    assert [(f["qty"], f["price"]) for f in c.fills("o2")] == [(2, 108.1)]
    market.quote(c, "RST", 97.5)
    assert (c.order("stop-r")["status"], c.order("brk-r.sl")["status"]) == ("new", "new")
    market.quote(c, "RST", 95.0, bid=94.9, ask=95.1)
    c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "stop-r" and m["status"] == "filled")
    c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "brk-r.sl" and m["status"] == "filled")
    gone = c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "brk-r.tp" and m["status"] == "cancelled")
    assert gone["reason"] == "oco: brk-r.sl filled"
    orders = [o["client_order_id"] for o in c.call("get_orders")["orders"]]
    assert orders.count("brk-r.tp") == 1 and orders.count("brk-r.sl") == 1
    positions = {p["symbol"]: p["qty"] for p in c.call("get_positions")["positions"]}
    assert positions["RST"] == 6 - 2 - 3 - 6


@pytest.mark.parametrize("venue", ["simulated", "simulated-core"])
def test_a_trailing_stops_level_survives_kill_9_and_never_loosens(desk, venue):
    """The venue reports a trailing stop's level as ``stop_price`` on order_update and journals
    it: after kill -9 the restarted gateway keeps it (the first trade after the start, below
    the high, does not pull a sell's stop down) and fires at it."""
    start, market, c = desk
    proc = start("--exchange", venue)
    market.quote(c, "TRL", 100.0)
    r = send(c, "trail-r", "TRL", "sell", 4, order_type="trailing_stop", trail_amount=2.0, tif="gtc")
    assert r["status"] == "new" and "stop_price" not in r
    assert c.order("trail-r")["stop_price"] == 98.0
    market.quote(c, "TRL", 105.0)
    up = c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "trail-r" and m["stop_price"] == 103.0,
                  "the level's move reported")
    assert (up["status"], up["triggered"]) == ("new", False)

    proc.send_signal(signal.SIGKILL)
    proc.wait(scaled(10))
    start("--exchange", venue)
    o = c.order("trail-r")
    assert (o["status"], o["stop_price"]) == ("new", 103.0)
    # a resend of the first send_order (no stop_price) is still that order
    again = send(c, "trail-r", "TRL", "sell", 4, order_type="trailing_stop", trail_amount=2.0, tif="gtc")
    assert again == r
    market.quote(c, "TRL", 104.0)  # before the fix: the stop started again from here, at 102
    assert c.order("trail-r")["stop_price"] == 103.0
    market.quote(c, "TRL", 102.9, bid=102.8, ask=103.0)
    done = c.report(lambda m: m["type"] == "order_update" and m["client_order_id"] == "trail-r" and m["status"] == "filled",
                    "the trailing stop fired at its level")
    assert (done["triggered"], done["stop_price"], done["filled_qty"]) == (True, 103.0, 4)
