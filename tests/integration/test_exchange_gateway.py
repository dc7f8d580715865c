"""The exchange gateway as a real process: orders, idempotency, bad input, SIGKILL, recovery."""

from __future__ import annotations

import itertools
import time
import signal
import sys

import pytest
import zmq

from tests.procs import log_text, start_worker, stop, wait_until
from workers import protocol as P
from workers.config import Endpoints

pytestmark = pytest.mark.timeout(60)

TIMEOUT_MS = 5000


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def env(tmp_path, ctx):
    """Endpoints, a ticks PUB bound by the test, an execution SUB, and a process starter."""
    eps = Endpoints.ephemeral_ipc(tmp_path)
    ticks = ctx.socket(zmq.PUB)
    ticks.setsockopt(zmq.LINGER, 0)
    ticks.bind(eps.ticks)
    execution = ctx.socket(zmq.SUB)
    execution.setsockopt(zmq.LINGER, 0)
    execution.setsockopt(zmq.SUBSCRIBE, b"exec.")
    execution.connect(eps.execution)
    procs = []
    journal = tmp_path / "j.sqlite"

    def start():
        proc = start_worker("exchange", eps, "--journal", str(journal), tmp_path=tmp_path)
        procs.append(proc)
        return proc

    yield eps, ticks, execution, start
    for proc in procs:
        stop(proc)


def req_socket(ctx, endpoint):
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    s.connect(endpoint)
    return s


def call_raw(sock, payload: bytes) -> bytes:
    sock.send(payload)
    return sock.recv()


def call(sock, msg: P.Message) -> dict:
    return P.unpack_map(call_raw(sock, msg.pack()))


_seq = itertools.count(1)


def publish_tick(ticks, symbol="AAA", bid=99.0, ask=101.0, size=1000):
    t = P.Tick(symbol=symbol, seq=next(_seq), ts=P.now_ns(), last=100.0, bid=bid, ask=ask, bid_size=size, ask_size=size, volume=1)
    ticks.send(P.pub(t))


def wait_for_service(proc, sock):
    """Ping until the gateway answers (it binds after opening and recovering its journal)."""
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    reply = call(sock, P.Ping(ts=P.now_ns()))
    assert proc.poll() is None, log_text(proc)
    sock.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    return reply


def wait_for_market(ticks, sock, symbol, execution, size=1000):
    """Both SUBs join late.  Publish ``symbol`` and then PROBE ticks until a PROBE market
    order fills and its report reaches ``execution``.  Ticks arrive in order on one pipe, so
    once a PROBE tick has been seen, the ``symbol`` tick published before it has been too."""

    def probe():
        publish_tick(ticks, symbol, size=size)
        publish_tick(ticks, "PROBE")
        r = call(sock, P.SendOrder(client_order_id=f"probe-{next(_seq)}", symbol="PROBE", side=P.Side.BUY, qty=1))
        return r["ok"] and execution.poll(50)

    wait_until(probe, timeout=10, interval=0.05, message="the gateway never saw a tick")


def collect(sub, predicate, timeout=5.0):
    """Read execution messages until ``predicate(messages)`` holds; return them all."""
    got = []

    def more():
        while sub.poll(10):
            topic, msg = P.decode_pub(sub.recv())
            got.append((topic, msg))
        return predicate(got)

    wait_until(more, timeout=timeout, message="execution reports")
    return got


def test_orders_idempotency_bad_input_and_recovery_after_sigkill(env, ctx):
    eps, ticks, execution, start = env
    proc = start()
    sock = req_socket(ctx, eps.orders)
    pong = wait_for_service(proc, sock)
    assert pong["type"] == "ping_reply" and pong["ok"] is True and pong["ts"] > 0

    # A market order before any tick: rejected, with the reason.
    r = call(sock, P.SendOrder(client_order_id="early", symbol="NOMKT", side=P.Side.BUY, qty=1))
    assert (r["ok"], r["status"], r["reason"]) == (False, "rejected", "no market data for NOMKT")

    send = P.SendOrder(client_order_id="ord-1", symbol="AAA", side=P.Side.BUY, qty=10, source="test", ts=P.now_ns())
    wait_for_market(ticks, sock, "AAA", execution)
    first = call_raw(sock, send.pack())
    ack = P.unpack_map(first)
    assert ack["type"] == "send_order_reply", ack
    assert ack["ok"] is True and ack["status"] == "filled", ack
    assert (ack["client_order_id"], ack["filled_qty"], ack["avg_price"]) == ("ord-1", 10, 101.0)
    assert ack["order_id"].startswith("O") and ack["ts"] > 0

    def ord1_done(got):
        mine = [m for _, m in got if m.client_order_id == "ord-1"]
        return any(isinstance(m, P.Fill) for m in mine) and any(isinstance(m, P.OrderUpdate) and m.status == "filled" for m in mine)

    msgs = collect(execution, ord1_done)
    ord1 = [(t, m) for t, m in msgs if m.client_order_id == "ord-1"]
    fills = [m for _, m in ord1 if isinstance(m, P.Fill)]
    assert len(fills) == 1 and (fills[0].qty, fills[0].price) == (10, 101.0)
    assert {t for t, _ in ord1} == {b"exec.order.AAA", b"exec.fill.AAA"}
    seqs = [m.seq for _, m in msgs]
    assert seqs == sorted(seqs) and seqs[0] >= 1 and len(set(seqs)) == len(seqs)

    # The same request again: the very same bytes, and no second order or fill.
    assert call_raw(sock, send.pack()) == first
    assert call_raw(sock, send.pack()) == first
    # Same id, different order: refused.
    other = P.SendOrder(client_order_id="ord-1", symbol="AAA", side=P.Side.SELL, qty=10)
    r = call(sock, other)
    assert r["ok"] is False and r["reason"] == "client_order_id ord-1 already used for a different order"

    # Bad input: garbage, truncated msgpack, non-map, wrong version, unknown and stream types.
    bad = {
        b"\xc1\xff garbage": "error",
        send.pack()[:-3]: "error",
        P.packb([1, 2, 3]): "error",
        P.packb({"v": 99, "type": "ping"}): "ping_reply",
        P.packb({"v": 1, "type": "no_such_request"}): "no_such_request_reply",
        P.packb({"v": 1, "type": "send_order", "client_order_id": "x", "symbol": "AAA", "side": "buy", "qty": -5}): "send_order_reply",
        P.Tick(symbol="AAA", seq=1, ts=1, last=1.0, bid=1.0, ask=1.0, bid_size=1, ask_size=1, volume=0).pack(): "tick_reply",
    }
    for payload, reply_type in bad.items():
        r = P.unpack_map(call_raw(sock, payload))
        assert r["ok"] is False and r["reason"], r
        assert r["type"] == reply_type, (payload, r)
    assert proc.poll() is None

    # A DEALER without the empty delimiter, one good frame and one with too many frames.
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    dealer.connect(eps.orders)
    dealer.send(P.Ping().pack())
    assert P.unpack_map(dealer.recv())["type"] == "ping_reply"
    dealer.send_multipart([b"one", b"two"])
    r = P.unpack_map(dealer.recv())
    assert r["ok"] is False and "exactly one frame" in r["reason"]
    dealer.close(0)

    # Still alive and serving.
    r = call(sock, P.GetPositions())
    assert r["ok"] is True
    pos_before = {p["symbol"]: p for p in r["positions"]}
    assert pos_before["AAA"]["qty"] == 10 and pos_before["AAA"]["avg_price"] == 101.0
    last_fill_seq = r["last_fill_seq"]
    assert last_fill_seq >= 1

    # A resting limit order that must come back into the book after the crash.
    r = call(sock, P.SendOrder(client_order_id="rest-1", symbol="AAA", side=P.Side.SELL, qty=5, order_type=P.OrderType.LIMIT, limit_price=115.0))
    assert r["ok"] and r["status"] == "new"

    # SIGKILL: no teardown, no checkpoint.  Then restart on the same journal.
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    sock.close(0)
    proc2 = start()
    sock = req_socket(ctx, eps.orders)
    wait_for_service(proc2, sock)

    r = call(sock, P.GetOrder(client_order_id="ord-1"))
    assert r["ok"] is True and r["status"] == "filled" and r["order_id"] == ack["order_id"]
    order = P.from_map(r["order"])
    assert isinstance(order, P.OrderUpdate) and (order.filled_qty, order.avg_price, order.source) == (10, 101.0, "test")
    r = call(sock, P.GetPositions())
    assert {p["symbol"]: p for p in r["positions"]} == pos_before
    assert r["last_fill_seq"] == last_fill_seq
    # Idempotency survives the crash: the stored reply, byte for byte.
    assert call_raw(sock, send.pack()) == first
    r = call(sock, P.GetOrders(working_only=True))
    assert [o["client_order_id"] for o in r["orders"]] == ["rest-1"]

    # The recovered resting order fills when the market crosses it; fill ids continue.
    def crossed():
        publish_tick(ticks, "AAA", bid=116.0, ask=117.0, size=100)
        return call(sock, P.GetOrder(client_order_id="rest-1"))["status"] == "filled"

    wait_until(crossed, timeout=10, interval=0.05)
    r = call(sock, P.GetPositions())
    assert r["last_fill_seq"] == last_fill_seq + 1
    aaa = {p["symbol"]: p for p in r["positions"]}["AAA"]
    assert aaa["qty"] == 5 and aaa["realized_pnl"] == pytest.approx(5 * (116.0 - 101.0))  # a sell limit fills at the better bid

    # cancel paths
    r = call(sock, P.CancelOrder(client_order_id="ord-1"))
    assert r["ok"] is False and r["status"] == "filled" and "already filled" in r["reason"]
    r = call(sock, P.CancelOrder(client_order_id="nope"))
    assert r["ok"] is False and r["reason"] == "unknown client_order_id nope"
    for i in range(3):
        call(sock, P.SendOrder(client_order_id=f"w{i}", symbol="BBB" if i else "AAA", side=P.Side.BUY, qty=1, order_type=P.OrderType.LIMIT, limit_price=100.0))
    r = call(sock, P.CancelOrder(client_order_id="w0"))
    assert (r["ok"], r["status"]) == (True, "cancelled")
    r = call(sock, P.CancelAll(symbol="BBB"))
    assert r["ok"] and sorted(r["cancelled"]) == ["w1", "w2"] and r["count"] == 2
    assert call(sock, P.GetOrders(working_only=True))["orders"] == []

    stop(proc2)
    assert proc2.returncode == 0, log_text(proc2)


def test_sigkill_mid_stream_loses_and_duplicates_nothing(env, ctx):
    """Pipeline orders, SIGKILL the gateway mid-stream, restart, resend everything: every
    order that was answered keeps its exact reply, and each order fills exactly once."""
    eps, ticks, execution, start = env
    proc = start()
    sock = req_socket(ctx, eps.orders)
    wait_for_service(proc, sock)
    wait_for_market(ticks, sock, "AAA", execution, size=10**6)  # enough touch for every order

    total, window = 3000, 300
    orders = [P.SendOrder(client_order_id=f"k{i}", symbol="AAA", side=P.Side.BUY, qty=1).pack() for i in range(total)]

    def pipeline(until: int) -> tuple[zmq.Socket, dict[str, bytes]]:
        """Sends the orders from the first, ``window`` unanswered at most, until ``until`` are
        answered; the dealer is left open, so what is still in flight stays in flight."""
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
        dealer.connect(eps.orders)
        replies: dict[str, bytes] = {}
        sent = 0
        while len(replies) < until:
            while sent < total and sent - len(replies) < window:
                dealer.send(orders[sent])
                sent += 1
            data = dealer.recv()
            replies[P.unpack_map(data)["client_order_id"]] = data
        return dealer, replies

    dealer, answered = pipeline(total // 3)
    proc.send_signal(signal.SIGKILL)  # with up to `window` orders in flight
    proc.wait(5)
    dealer.close(0)
    sock.close(0)

    proc2 = start()
    sock = req_socket(ctx, eps.orders)
    wait_for_service(proc2, sock)
    wait_for_market(ticks, sock, "AAA", execution, size=10**6)
    dealer, replies = pipeline(total)
    dealer.close(0)

    for cid, data in answered.items():
        assert replies[cid] == data, cid
    assert all(P.unpack_map(r)["status"] == "filled" for r in replies.values())
    r = call(sock, P.GetPositions())
    assert {p["symbol"]: p["qty"] for p in r["positions"]}["AAA"] == total


def test_hard_limits_hold_for_any_client(tmp_path):
    """A stranger on the orders endpoint cannot bypass risk: the gateway enforces hard limits."""
    eps = Endpoints.ephemeral_ipc(tmp_path)
    proc = start_worker("exchange", eps, "--journal", str(tmp_path / "j.sqlite"), "--hard-max-order-qty", "500", "--hard-max-position", "800", "--hard-price-band-pct", "10", tmp_path=tmp_path)
    ctx = zmq.Context()
    ticks = ctx.socket(zmq.PUB)
    ticks.setsockopt(zmq.LINGER, 0)
    ticks.bind(eps.ticks)
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    sock.connect(eps.orders)
    try:
        # the gateway has seen a market once a market order can fill
        def market_seen():
            publish_tick(ticks, "AAA", bid=100.0, ask=101.0, size=10_000)
            r = call(sock, P.SendOrder(client_order_id=f"probe-{time.monotonic_ns()}", symbol="AAA", side=P.Side.BUY, qty=1))
            return r["status"] == "filled"

        wait_until(market_seen, timeout=10, interval=0.05)
        big = call(sock, P.SendOrder(client_order_id="big", symbol="AAA", side=P.Side.BUY, qty=501))
        assert big["ok"] is False and big["reason"] == "hard limit: qty 501 exceeds max order qty 500"
        far = call(sock, P.SendOrder(client_order_id="far", symbol="AAA", side=P.Side.BUY, qty=10, order_type=P.OrderType.LIMIT, limit_price=200.0))
        assert far["ok"] is False and "band" in far["reason"]
        for i in range(3):  # 1 + 3 * 250 = 751 long, still within 800 ...
            assert call(sock, P.SendOrder(client_order_id=f"b{i}", symbol="AAA", side=P.Side.BUY, qty=250))["ok"]
        over = call(sock, P.SendOrder(client_order_id="over", symbol="AAA", side=P.Side.BUY, qty=100))
        assert over["ok"] is False and "beyond max 800" in over["reason"]  # ... 851 is not
        # a refusal is journaled like any answer: the resend gets the same reply
        assert call(sock, P.SendOrder(client_order_id="over", symbol="AAA", side=P.Side.BUY, qty=100)) == over
        assert call(sock, P.SendOrder(client_order_id="flatten", symbol="AAA", side=P.Side.SELL, qty=500))["ok"]
        assert proc.poll() is None
    finally:
        ctx.destroy(linger=0)
        stop(proc)


def _status_mib(pid: int, key: str) -> float:
    """VmRSS (now) or VmHWM (the peak, as the kernel recorded it) of a process, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {key}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the gateway's RSS from /proc")
def test_a_client_that_never_reads_its_replies_cannot_grow_the_gateway(tmp_path):
    """The outside check's DEALER that sent requests and never read the replies took the
    gateway from 35 to 279 MB, kept after it left.  Replies queued for one peer stop at
    --orders-hwm (beyond it they are dropped and counted); the memory goes back once the
    peer is gone; other clients are served throughout."""
    hwm, n_orders, n_requests = 2000, 20, 20_000
    eps = Endpoints.ephemeral_ipc(tmp_path)
    proc = start_worker("exchange", eps, "--journal", str(tmp_path / "j.sqlite"), "--orders-hwm", str(hwm), tmp_path=tmp_path)
    ctx = zmq.Context()
    try:
        sock = req_socket(ctx, eps.orders)
        wait_for_service(proc, sock)
        for i in range(n_orders):  # get_orders replies of ~3 KB each
            assert call(sock, P.SendOrder(client_order_id=f"r{i}", symbol="AAA", side=P.Side.BUY, qty=1,
                                          order_type=P.OrderType.LIMIT, limit_price=10.0))["ok"]
        request = P.GetOrders(working_only=True).pack()
        reply_size = len(call_raw(sock, request))
        assert reply_size > 2000
        base = _status_mib(proc.pid, "VmRSS")

        rude = ctx.socket(zmq.DEALER)
        rude.setsockopt(zmq.LINGER, 0)
        rude.setsockopt(zmq.RCVHWM, 1)
        rude.setsockopt(zmq.RCVBUF, 4096)
        rude.connect(eps.orders)
        for _ in range(n_requests):
            rude.send(request)
        # replies dropped (counted, logged rate-limited), other clients served meanwhile
        wait_until(lambda: "could not deliver a reply" in log_text(proc), timeout=30, message="replies dropped")
        assert call(sock, P.Ping())["ok"]
        rude.close(0)
        # the peer's queue is freed when it goes; the heap is handed back within a few trims
        wait_until(lambda: _status_mib(proc.pid, "VmRSS") - base < 8, timeout=20, interval=0.5,
                   message=f"memory back near {base:.0f} MiB after the peer left")
        # the kernel's record of the peak covers the whole flood (what the closed peer still
        # had in flight was answered into nothing before the memory came back)
        growth = _status_mib(proc.pid, "VmHWM") - base
        unbounded = n_requests * reply_size / 2**20  # what a queue without a bound would hold
        bound = 2 * hwm * reply_size / 2**20 + 16
        assert bound < unbounded / 2, "the test must tell bounded from unbounded"
        assert growth < bound, (base, growth, bound)
        assert call(sock, P.Ping())["ok"] and proc.poll() is None
    finally:
        ctx.destroy(linger=0)
        stop(proc)
