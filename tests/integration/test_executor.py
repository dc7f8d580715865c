"""The real executor process against a fake exchange, fake feeds and a fake strategy.

The test binds what the executor connects to (ticks PUB, execution PUB, an orders ROUTER
that plays the exchange gateway) and connects to what it binds (signals PUSH, events SUB).
Everything runs on this thread: every wait pumps the fake exchange and the events stream.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from tests.procs import log_text, start_worker, stop, wait_until
from workers import protocol as P
from workers.config import Endpoints

SYMBOL = "AAPL"
PRICE = 100.0
_ids = itertools.count(1)


class FakeExchange:
    """A ROUTER on the orders endpoint that speaks just enough of the gateway's protocol."""

    def __init__(self, ctx: zmq.Context, endpoint: str):
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.requests: list[dict] = []
        self.orders: dict[str, P.OrderUpdate] = {}
        self.answer_send_order = True
        self.answer_get_order = True
        self.know_orders = True  # False: get_order says "unknown" (the order never arrived)
        self.hold_positions = False  # True: get_positions requests are kept, answered by release()
        self.hold_types: set[str] = set()  # requests of these types are kept too
        self.held: list[tuple[list[bytes], dict]] = []
        #: send_order is answered with this status (pending_new: held for market data)
        self.ack_status = P.OrderStatus.NEW
        self.positions: list[dict] = []
        self.last_fill_seq = 0
        #: the gateway's fill history (get_fills): every fill it made, oldest first
        self.fills: list[P.Fill] = []
        self.kill_switch = False
        self.kill_reason = ""
        self.answer_get_fills = True

    def sent_orders(self) -> list[dict]:
        return [r for r in self.requests if r.get("type") == "send_order"]

    def pump(self) -> None:
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            # [identity, ..., "", request]: REQ clients and the executor's DEALER (which puts
            # its client_order_id before the delimiter); the reply echoes the envelope
            i = frames.index(b"", 1)
            envelope, payload = frames[: i + 1], frames[i + 1]
            req = msgpack.unpackb(payload, raw=False)
            self.requests.append(req)
            if (self.hold_positions and req.get("type") == "get_positions") or req.get("type") in self.hold_types:
                self.held.append((envelope, req))
                continue
            rep = self.handle(req)
            if rep is not None:
                self.sock.send_multipart(envelope + [rep.pack()])

    def release(self) -> None:
        """Answer the held requests with the state as it is now."""
        for envelope, req in self.held:
            self.sock.send_multipart(envelope + [self.handle(req).pack()])
        self.held.clear()

    def handle(self, req: dict) -> P.Reply | None:
        # replies are the declared ones, as the real gateway packs them: the executor decodes
        # them strictly, so a fake that spoke loose maps would only test its own dialect
        t = req.get("type")
        if t == "send_order":
            coid = req["client_order_id"]
            order = self.orders.setdefault(
                coid,
                P.OrderUpdate(
                    client_order_id=coid,
                    order_id=f"O{len(self.orders) + 1}",
                    symbol=req["symbol"],
                    side=P.Side(req["side"]),
                    qty=req["qty"],
                    filled_qty=0,
                    avg_price=0.0,
                    status=self.ack_status,
                    ts=P.now_ns(),
                    source=req.get("source", ""),
                ),
            )
            if not self.answer_send_order:
                return None
            return P.SendOrderReply(ok=True, client_order_id=coid, order_id=order.order_id, status=order.status,
                                    filled_qty=order.filled_qty, avg_price=order.avg_price, ts=P.now_ns())
        if t == "get_order":
            if not self.answer_get_order:
                return None
            coid = req["client_order_id"]
            order = self.orders.get(coid) if self.know_orders else None
            if order is None:
                return P.GetOrderReply(ok=False, reason=f"unknown client_order_id {coid}", client_order_id=coid)
            return P.GetOrderReply(ok=True, client_order_id=coid, order_id=order.order_id, status=order.status, order=order)
        if t == "get_positions":
            return P.GetPositionsReply(ok=True, positions=[P.NetPosition(**p) for p in self.positions], last_fill_seq=self.last_fill_seq,
                                       kill_switch=self.kill_switch, kill_reason=self.kill_reason)
        if t == "get_orders":
            orders = [o for o in self.orders.values() if o.status in P.WORKING_STATUSES or not req.get("working_only")]
            return P.GetOrdersReply(ok=True, orders=orders)
        if t == "get_fills" and self.answer_get_fills:
            since, limit = req.get("since_fill", 0), req.get("limit") or 1000
            newer = [f for f in self.fills if int(f.fill_id[1:]) > since][:limit]
            last = max((int(f.fill_id[1:]) for f in self.fills), default=0)
            return P.GetFillsReply(ok=True, fills=newer, last_fill=last)
        if t == "set_kill_switch":
            self.kill_switch, self.kill_reason = req["on"], req.get("reason", "") if req["on"] else ""
            return P.SetKillSwitchReply(ok=True, on=self.kill_switch, kill_reason=self.kill_reason)
        if t == "cancel_all":
            return P.CancelAllReply(ok=True, cancelled=[], count=0)
        return P.ErrorReply(ok=False, reason=f"{t!r} is not supported by the fake")


class Rig:
    """The executor's world: feeds, a strategy, an exchange and an events listener."""

    def __init__(self, eps: Endpoints):
        self.eps = eps
        self.ctx = zmq.Context()
        self.ticks = self._sock(zmq.PUB, bind=eps.ticks)
        self.execution = self._sock(zmq.PUB, bind=eps.execution)
        self.exchange = FakeExchange(self.ctx, eps.orders)
        self.signals = self._sock(zmq.PUSH, connect=eps.signals)
        self.events = self._sock(zmq.SUB, connect=eps.events)
        self.events.setsockopt(zmq.SUBSCRIBE, b"")
        self.received: list[tuple[bytes, P.Message]] = []
        self.tick_seq = 0

    def _sock(self, kind, bind=None, connect=None):
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if bind:
            s.bind(bind)
        if connect:
            s.connect(connect)
        return s

    def close(self) -> None:
        self.exchange.sock.close(0)
        self.ctx.destroy(0)

    # -- pumping
    def pump(self) -> None:
        self.exchange.pump()
        while True:
            try:
                frame = self.events.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.received.append(P.decode_pub(frame))

    def wait(self, predicate, timeout: float = 5.0, message: str = ""):
        def check():
            self.pump()
            return predicate()

        return wait_until(check, timeout, message=message)

    # -- what the test sends
    def tick(self, last: float = PRICE, symbol: str = SYMBOL, epoch: int = 0) -> None:
        self.tick_seq += 1
        t = P.Tick(symbol=symbol, seq=self.tick_seq, ts=P.now_ns(), last=last, bid=last - 0.01, ask=last + 0.01, bid_size=100, ask_size=100,
                   volume=10, epoch=epoch)
        self.ticks.send(P.pub(t))

    def signal(self, qty: int = 100, side: str = "buy", price: float = PRICE, symbol: str = SYMBOL) -> P.Signal:
        now = P.now_ns()
        sig = P.Signal(
            id=f"s{next(_ids)}", strategy="sr1", symbol=symbol, side=P.Side(side), qty=qty, price=price, ts=now, cause_ts=now - 1000
        )
        self.signals.send(sig.pack())
        return sig

    def fill(self, fill_id: str, qty: int, price: float, side: str = "buy", coid: str = "manual-1", seq: int = 0) -> None:
        f = P.Fill(
            fill_id=fill_id,
            client_order_id=coid,
            order_id="O9",
            symbol=SYMBOL,
            side=P.Side(side),
            qty=qty,
            price=price,
            ts=P.now_ns(),
            origin_ts=P.now_ns(),
            seq=seq,
        )
        self.execution.send(P.pub(f))

    # -- what the test reads
    def of_type(self, cls) -> list:
        return [m for _, m in self.received if isinstance(m, cls)]

    def decisions(self, sig: P.Signal) -> list[P.SignalDecision]:
        return [d for d in self.of_type(P.SignalDecision) if d.signal.id == sig.id]

    def decision(self, sig: P.Signal, timeout: float = 5.0) -> P.SignalDecision:
        return self.wait(lambda: next(iter(self.decisions(sig)), None), timeout, f"decision for {sig.id}")

    def events_live(self, timeout: float = 10.0) -> None:
        """Push Levels until one comes back on events: the path strategy -> executor -> us is up
        (a PUB drops what it publishes before a subscription has reached it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lv = P.Levels(strategy="probe", symbol=SYMBOL, ts=P.now_ns())
            self.signals.send(lv.pack())
            try:
                self.wait(lambda: lv in self.of_type(P.Levels), timeout=0.2)
                return
            except AssertionError:
                continue
        raise AssertionError("no Levels came back on the events stream")

    def in_step_decision(self, timeout: float = 10.0, **kw) -> tuple[P.Signal, P.SignalDecision]:
        """Push signals until one is not refused for a resync under way (a refused one sends
        no order); that signal and its decision."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sig = self.signal(**kw)
            d = self.decision(sig)
            if not d.reason.startswith("resyncing with the exchange"):
                return sig, d
        raise AssertionError("the executor never finished resyncing")

    def first_priced_decision(self, qty: int = 100, timeout: float = 10.0) -> tuple[P.Signal, P.SignalDecision]:
        """Publish ticks and push signals until one is decided with a known price.

        The executor's tick subscription takes a moment to reach our publisher, and positions
        are loaded from the exchange at startup, so the first signals may meet "no last price"
        or "resyncing with the exchange".
        """
        self.events_live()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tick()
            sig = self.signal(qty=qty)
            d = self.decision(sig, timeout=5.0)
            if not d.reason.startswith(("no last price", "resyncing with the exchange")):
                return sig, d
        raise AssertionError("the executor never saw a price")


@pytest.fixture
def ipc_dir():
    # ipc:// paths must stay short (about 100 bytes), so not under pytest's deep tmp_path
    d = tempfile.mkdtemp(prefix="tdx", dir="/tmp")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def rig(ipc_dir):
    r = Rig(Endpoints.ephemeral_ipc(ipc_dir))
    yield r
    r.close()


@pytest.fixture
def executor(rig, tmp_path):
    procs = []

    def start(*args: str, control: bool = False):
        p = start_worker("executor", rig.eps, "--reconcile-interval", "0.2", *args, tmp_path=tmp_path, control=control)
        procs.append(p)
        return p

    yield start
    for p in procs:
        stop(p)


def test_signals_orders_decisions_positions(rig, executor):
    proc = executor("--order-timeout", "1.0", "--position-interval", "0.2")
    rig.wait(lambda: any(r["type"] == "get_positions" for r in rig.exchange.requests), message="get_positions at startup")

    # an ordinary signal becomes a market order with a fresh client_order_id
    sig, d = rig.first_priced_decision(qty=100)
    assert d.accepted, d.reason
    (sent,) = rig.exchange.sent_orders()
    assert sent["client_order_id"] == d.client_order_id and sent["client_order_id"].startswith("executor-")
    assert sent["source"] == "strategy:sr1"
    assert (sent["symbol"], sent["side"], sent["qty"], sent["order_type"]) == (SYMBOL, "buy", 100, "market")
    assert sent.get("limit_price") is None
    assert (sent["cause_ts"], sent["origin_ts"]) == (sig.ts, sig.cause_ts)
    assert d.reason == "order new" and d.parsed_signal == sig

    # an absurd quantity is refused with its reason, and no order goes out
    big = rig.signal(qty=5000)
    d = rig.decision(big)
    assert not d.accepted and d.reason == "qty 5000 exceeds max order qty 1000" and d.client_order_id is None
    far = rig.signal(price=PRICE * 1.2)
    assert rig.decision(far).reason == "price 120.00 outside 5.0% band around last 100.00"
    assert len(rig.exchange.sent_orders()) == 1

    # levels pass through unchanged
    lv = P.Levels(strategy="sr1", symbol=SYMBOL, ts=P.now_ns(), support=98.0, resistance=102.5, position=100)
    rig.signals.send(lv.pack())
    rig.wait(lambda: lv in rig.of_type(P.Levels), message="levels republished")

    # a fill moves the position (re-sent until the executor's subscription is live: a fill
    # is applied once per fill_id, so the repeats also prove idempotence)
    def position(qty, since=0):
        return next((p for p in reversed(rig.of_type(P.Position)[since:]) if p.symbol == SYMBOL and p.qty == qty), None)

    def fill_until_position():
        rig.fill("F1", 100, 100.0, coid=sent["client_order_id"])
        return position(100)

    pos = rig.wait(fill_until_position, message="position after F1")
    assert pos.avg_price == pytest.approx(100.0)
    rig.fill("F1", 100, 100.0)
    rig.fill("F2", 50, 103.0)
    pos = rig.wait(lambda: position(150), message="position after F2")
    assert pos.avg_price == pytest.approx(101.0)
    assert not [p for p in rig.of_type(P.Position) if p.qty > 150]

    # unrealized P&L follows the last price (positions republished periodically)
    rig.tick(last=102.0)
    pos = rig.wait(lambda: next((p for p in reversed(rig.of_type(P.Position)) if p.last == 102.0), None), message="marked")
    assert pos.unrealized_pnl == pytest.approx(150 * (102.0 - 101.0))

    # a sell reduces: realized P&L on the closed part
    seen = len(rig.of_type(P.Position))
    rig.fill("F3", 50, 104.0, side="sell")
    pos = rig.wait(lambda: position(100, since=seen), message="position after F3")
    assert pos.realized_pnl == pytest.approx(50 * (104.0 - 101.0))

    # garbage on the signals socket is counted and dropped; the process carries on
    for junk in (b"garbage", b"\x81\xa1v\x01", msgpack.packb({"v": 1, "type": "tick"}), P.Ping().pack(), b""):
        rig.signals.send(junk)
    after = rig.signal(qty=10)
    assert rig.decision(after).accepted
    assert proc.poll() is None
    rig.wait(lambda: "bad message on signals dropped" in log_text(proc), message="decode error logged")


def test_startup_snapshot_and_resync_after_an_execution_gap(rig, executor):
    rig.exchange.positions = [{"symbol": SYMBOL, "qty": 300, "avg_price": 99.0, "realized_pnl": 12.0}]
    rig.exchange.last_fill_seq = 7
    executor("--position-interval", "0.2")
    rig.events_live()
    pos = rig.wait(lambda: next(iter(rig.of_type(P.Position)), None), message="snapshot published")
    assert (pos.symbol, pos.qty, pos.avg_price, pos.realized_pnl) == (SYMBOL, 300, 99.0, 12.0)

    def latest():
        return rig.of_type(P.Position)[-1]

    # a fill the snapshot already holds (F7) is ignored; a later one (F8) counts; the repeats
    # cover the moment the executor's subscription is not yet live (seq 0: not sequenced)
    def until_f8():
        rig.fill("F7", 100, 99.0)
        rig.fill("F8", 100, 102.0)
        return latest().qty == 400

    rig.wait(until_f8, message="F8 applied")
    assert latest().avg_price == pytest.approx((300 * 99.0 + 100 * 102.0) / 400)
    # unsequenced reports (seq 0) never ask for a snapshot
    assert rig.exchange.requests.count({"v": 1, "type": "get_positions"}) == 1

    # the first sequenced report asks for one more snapshot (fills of the slow-joiner window);
    # the gateway's book then holds F9, as a real one would by the time it answers
    rig.exchange.positions = [{"symbol": SYMBOL, "qty": 500, "avg_price": (300 * 99.0 + 200 * 102.0) / 500, "realized_pnl": 12.0}]
    rig.exchange.last_fill_seq = 9
    rig.fill("F9", 100, 102.0, seq=21)
    rig.wait(lambda: latest().qty == 500, message="F9 applied")
    rig.wait(lambda: rig.exchange.requests.count({"v": 1, "type": "get_positions"}) == 2, message="snapshot once the stream is live")
    rig.wait(lambda: latest().qty == 500, message="still 500 after that snapshot")

    # seq 21 -> 25: execution reports were lost, so the executor re-bases on a snapshot (at most
    # one every RESYNC_MIN_INTERVAL_S, so this one may come a few seconds later)
    rig.exchange.positions = [{"symbol": SYMBOL, "qty": 600, "avg_price": 100.0, "realized_pnl": 20.0}]
    rig.exchange.last_fill_seq = 11
    rig.fill("F11", 100, 101.0, seq=25)  # inside the new snapshot: must not count on top of it
    rig.wait(lambda: rig.exchange.requests.count({"v": 1, "type": "get_positions"}) == 3, timeout=20.0, message="resync")
    rig.wait(lambda: latest().qty == 600 and latest().realized_pnl == 20.0, message="re-based")
    rig.fill("F12", 50, 100.0, side="sell", seq=26)
    rig.wait(lambda: latest().qty == 550, message="F12 after resync")
    assert not [p for p in rig.of_type(P.Position) if p.qty > 600]


def test_fills_read_while_a_snapshot_is_on_its_way_are_not_lost(rig, executor):
    # The snapshot is asked for without waiting for it, so fills keep being read meanwhile.
    # One the gateway's snapshot does not hold (numbered after its last_fill_seq) must count
    # on top of the snapshot when it lands; one it holds must not count twice.
    rig.exchange.positions = [{"symbol": SYMBOL, "qty": 100, "avg_price": 100.0, "realized_pnl": 0.0}]
    rig.exchange.last_fill_seq = 3
    executor("--position-interval", "0.2")
    rig.events_live()
    rig.wait(lambda: any(p.qty == 100 for p in rig.of_type(P.Position)), message="first snapshot")
    rig.exchange.hold_positions = True
    # the first sequenced report asks for a snapshot, which the gateway now holds back
    asked = rig.exchange.requests.count({"v": 1, "type": "get_positions"})
    rig.wait(lambda: (rig.fill("F3", 100, 100.0, seq=3), rig.exchange.held)[1], message="snapshot asked for")
    assert rig.exchange.requests.count({"v": 1, "type": "get_positions"}) == asked + 1
    # F4 lands on the book while the snapshot is on its way; the snapshot taken before it
    rig.fill("F4", 50, 102.0, seq=4)
    rig.wait(lambda: rig.of_type(P.Position)[-1].qty == 150, message="F4 booked")
    rig.exchange.release()  # qty 100, last_fill_seq 3: F4 is not in it
    seen = len(rig.of_type(P.Position))
    rig.wait(lambda: len(rig.of_type(P.Position)) > seen + 2, message="positions after the snapshot")
    pos = rig.of_type(P.Position)[-1]
    assert pos.qty == 150 and pos.avg_price == pytest.approx((100 * 100.0 + 50 * 102.0) / 150)
    assert not [p for p in rig.of_type(P.Position)[seen:] if p.qty != 150]


def test_unknown_order_is_reconciled_never_resent(rig, executor):
    rig.exchange.answer_send_order = False
    rig.exchange.answer_get_order = False
    executor("--order-timeout", "0.3", "--order-retries", "2")
    rig.wait(lambda: any(r["type"] == "get_positions" for r in rig.exchange.requests), message="get_positions at startup")

    sig, d = rig.first_priced_decision()
    assert d.accepted and d.reason == "order outcome unknown; reconciling"
    coid = d.client_order_id
    sends = rig.exchange.sent_orders()
    assert len(sends) == 2 and {s["client_order_id"] for s in sends} == {coid}  # Lazy Pirate: same request again

    # while the outcome is unknown, new signals are refused rather than piled on
    other = rig.signal()
    assert rig.decision(other).reason == "1 order(s) with unknown outcome; reconciling"

    # the executor keeps asking; once the gateway answers, the order is known
    rig.wait(lambda: any(r["type"] == "get_order" and r["client_order_id"] == coid for r in rig.exchange.requests))
    rig.exchange.answer_get_order = True
    follow = rig.wait(lambda: len(rig.decisions(sig)) >= 2 and rig.decisions(sig)[1], message="reconciled")
    assert follow.accepted and follow.reason == "reconciled: order new" and follow.client_order_id == coid

    # it was never sent again under another id, and trading resumes once the executor is in
    # step with the gateway that answers again (it resyncs first)
    rig.exchange.answer_send_order = True
    nxt, d2 = rig.in_step_decision()
    assert d2.accepted and d2.reason == "order new" and d2.client_order_id != coid
    by_coid = {}
    for s in rig.exchange.sent_orders():
        by_coid.setdefault(s["client_order_id"], set()).add(s["qty"])
    assert set(by_coid) == {coid, d2.client_order_id}
    assert len([r for r in rig.exchange.sent_orders() if r["client_order_id"] == coid]) == 2


def test_unknown_order_the_exchange_never_got(rig, executor):
    rig.exchange.answer_send_order = False
    rig.exchange.know_orders = False
    executor("--order-timeout", "0.3", "--order-retries", "1", "--reconcile-interval", "0.1")
    sig, d = rig.first_priced_decision()
    assert d.reason == "order outcome unknown; reconciling"
    final = rig.wait(lambda: len(rig.decisions(sig)) >= 2 and rig.decisions(sig)[1], message="declared not placed")
    assert not final.accepted and final.reason == "order never reached the exchange (reconciled)"
    assert final.client_order_id == d.client_order_id
    assert {s["client_order_id"] for s in rig.exchange.sent_orders()} == {d.client_order_id}


def test_commands_and_counters_over_the_control_channel(rig, executor, ipc_dir):
    control = rig._sock(zmq.ROUTER, bind=rig.eps.control)
    # the one test with a control channel: this test plays the supervisor, so that commands
    # can be sent and counters read from the heartbeats
    executor("--heartbeat", "0.1", "--orphan-timeout", "0", control=True)
    replies: dict[str, P.CommandReply] = {}
    beats: list[P.Heartbeat] = []

    def pump_control():
        rig.pump()
        while True:
            try:
                _ident, frame = control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = P.decode(frame)
            if isinstance(msg, P.CommandReply):
                replies[msg.id] = msg
            elif isinstance(msg, P.Heartbeat):
                beats.append(msg)

    def command(cmd: str, **args) -> P.CommandReply:
        cid = f"c{next(_ids)}"
        control.send_multipart([b"executor", P.Command(id=cid, cmd=cmd, args=args).pack()])
        return wait_until(lambda: (pump_control(), replies.get(cid))[1], 5.0, message=cmd)

    wait_until(lambda: (pump_control(), beats)[1], 5.0, message="heartbeat")
    assert beats[-1].stats["gauges"]["limits"]["max_order_qty"] == 1000

    rep = command("set_limits", max_order_qty=50)
    assert rep.ok and rep.result["limits"]["max_order_qty"] == 50
    assert not command("set_limits", bogus=1).ok
    # the switch has one way, through the gateway (the kill_switch command)
    rep = command("set_limits", kill_switch=False)
    assert not rep.ok and "kill_switch command" in rep.reason
    assert command("get_limits").result["limits"]["max_order_qty"] == 50

    sig, d = rig.first_priced_decision(qty=60)
    assert d.reason == "qty 60 exceeds max order qty 50"

    rep = command("kill_switch", on=True)
    assert rep.ok and rep.result == {"kill_switch": True, "gateway": "requested", "cancel_all": "requested"}  # answered at once
    rig.wait(lambda: any(r["type"] == "cancel_all" for r in rig.exchange.requests), message="cancel_all sent")
    wait_until(lambda: (pump_control(), beats[-1].stats["counters"].get("cancel_all_done") == 1)[1], 5.0, message="cancel_all answered")
    # the account's switch is the gateway's: the command turned it on there
    rig.wait(lambda: rig.exchange.kill_switch, message="set_kill_switch at the gateway")
    assert rig.decision(rig.signal(qty=10)).reason.startswith("kill switch is on")
    rep = command("kill_switch", on=False)
    assert rep.ok and rep.result["gateway"] == "requested"
    # off only once the gateway says off
    wait_until(lambda: (pump_control(), not rig.exchange.kill_switch and beats[-1].stats["gauges"]["kill_switch"] is False)[1], 5.0,
               message="kill switch off at the gateway and in the executor")
    assert rig.decision(rig.signal(qty=10)).accepted

    rig.signals.send(b"junk")
    rig.signals.send(b"\x92\x01\x02")

    def counted():
        pump_control()
        return beats and beats[-1].stats["counters"].get("decode_errors", 0) >= 2 and beats[-1]

    beat = wait_until(counted, 5.0, message="decode_errors counted")
    c = beat.stats["counters"]
    assert c["signals"] >= 3 and c["accepted"] >= 1 and c["rejected"] >= 2 and c["orders"] == c["acks"] >= 1
    assert "order_ack" in {k for b in beats for k in b.stats["latency"]}
    g = beat.stats["gauges"]
    assert g["kill_switch"] is False and g["synced"] is True
    assert g["positions"] == {} and g["position_count"] == 0 and g["limits"]["max_order_qty"] == 50

    def position_gauge():
        rig.fill("F1", 100, 100.0)  # idempotent: repeated until the subscription is live
        pump_control()
        return beats[-1].stats["gauges"]["positions"] == {SYMBOL: 100}

    wait_until(position_gauge, 5.0, interval=0.05, message="positions gauge")
    assert beats[-1].stats["gauges"]["position_count"] == 1


def test_a_bad_allow_list_is_a_configuration_error(rig, executor):
    # the one symbol rule (workers/symbols.py): refused at start-up with exit status 2
    proc = executor("--symbols", "AAPL,BAD!")
    assert proc.wait(20) == 2
    assert "invalid symbol 'BAD!'" in log_text(proc)
