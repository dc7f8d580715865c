"""Property-based fuzzing of every bound endpoint of a running fleet, and of the tick input.

One fleet for the module, under a real Supervisor on ipc:// endpoints: exchange, executor, a
strategy, and market data.  The test binds the ticks PUB that exchange, executor and strategy
subscribe to (market data publishes on a side endpoint), so it can put anything into their
SUB sockets.  Hypothesis drives:

* orders ROUTER (exchange): REQ with any payload; DEALER with any number of frames;
* signals PULL (executor): PUSH with any payload;
* control ROUTER (supervisor): DEALER under a made-up identity and under a real worker's name;
* the tick stream (exchange, executor, strategy SUBs): any frame under their topics;
* oversized frames (> MAX_MESSAGE_BYTES) on every receiving endpoint: ZMQ_MAXMSGSIZE drops the
  connection, and a new connection is served;
* the publishers (ticks, execution, events PUBs) and every ipc endpoint: junk subscriptions
  from an XSUB, and raw bytes on the transport that are not ZMTP at all.

Inputs: random bytes, truncated msgpack, maps with wrong types, NaN/inf prices, negative and
huge quantities, unknown types and versions, wrong frame counts, oversized frames.  After
each fuzz: every process is alive (no restart), serves valid traffic again (an order acked
and filled; a signal decided; heartbeats), and its counters show what it dropped.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import socket
import tempfile
import time

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.procs import wait_until
from workers import protocol as P
from workers.config import Endpoints
from workers.supervisor import Supervisor, SupervisorConfig, WorkerSpec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
STRATEGY = "sr-fuzz"
SYMBOLS = ("AAPL", "MSFT")
OVERSIZE = P.MAX_MESSAGE_BYTES + 4096


# ----------------------------------------------------------------------------- the fleet


class Rig:
    def __init__(self, tmp: str):
        self.dir = tmp
        self.eps = Endpoints.ephemeral_ipc(tmp)
        self.md_ticks = f"ipc://{tmp}/md-ticks.sock"
        self.ctx = zmq.Context()
        self.ticks = self.ctx.socket(zmq.PUB)
        self.ticks.setsockopt(zmq.LINGER, 0)
        self.ticks.setsockopt(zmq.SNDHWM, 100_000)
        self.ticks.bind(self.eps.ticks)
        self.seq = dict.fromkeys(SYMBOLS, 0)
        specs = [
            WorkerSpec("exchange", "exchange", ["--journal", f"{tmp}/journal.sqlite"]),
            WorkerSpec("executor", "executor", ["--max-orders-per-sec", "1000"]),
            WorkerSpec(STRATEGY, "strategy", ["--symbols", ",".join(SYMBOLS), "--window", "12", "--min-fill", "6", "--cooldown", "0"]),
            # market data publishes on a side endpoint: the test owns the one the others read
            WorkerSpec("marketdata", "marketdata", ["--ticks", self.md_ticks, "--rate", "20", "--seed", "1"]),
        ]
        self.sup = Supervisor(self.eps, specs, SupervisorConfig(log_dir=f"{tmp}/logs", heartbeat_timeout=10.0))
        self.events = self.connect(zmq.SUB, self.eps.events, RCVHWM=100_000, SUBSCRIBE=b"signal.")
        self.decisions: dict[str, P.SignalDecision] = {}
        self._ids = itertools.count(1)

    def connect(self, kind: int, endpoint: str, **options) -> zmq.Socket:
        """A socket on ``endpoint`` (options by their zmq names, set before it connects), that
        drops what it holds when closed unless told a LINGER."""
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, options.pop("LINGER", 0))
        for name, value in options.items():
            s.setsockopt(getattr(zmq, name), value)
        s.connect(endpoint)
        return s

    # -- driving
    def pump(self) -> None:
        """Answer the workers' heartbeats (they leave when the supervisor is silent) and read
        the executor's decisions."""
        self.sup.poll(0)
        while True:
            try:
                frame = self.events.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            _, d = P.decode_pub(frame, expect=P.SignalDecision)
            self.decisions[d.signal.id] = d

    def wait(self, pred, timeout: float = 10.0, message: str = ""):
        def step():
            self.pump()
            return pred()

        return wait_until(step, timeout, interval=0.005, message=message)

    def tick(self, symbol: str = "AAPL", price: float = 100.0) -> None:
        self.seq[symbol] += 1
        t = P.Tick(symbol=symbol, seq=self.seq[symbol], ts=P.now_ns(), last=price, bid=price - 0.01, ask=price + 0.01,
                   bid_size=1000, ask_size=1000, volume=self.seq[symbol])
        self.ticks.send(P.pub(t))

    def market(self) -> None:
        for s in SYMBOLS:
            self.tick(s)

    # -- facts
    def counters(self, name: str) -> dict:
        return self.sup.workers[name].stats.get("counters", {})

    def all_alive(self) -> None:
        self.pump()
        for w in self.sup.workers.values():
            assert w.proc is not None and w.proc.poll() is None and w.restarts == 0, f"{w.name} died: {w.reason}\n{self.log_tail(w.name)}"

    def log_tail(self, name: str, lines: int = 40) -> str:
        try:
            with open(f"{self.dir}/logs/{name}.log", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def request(self, payload: bytes, timeout_ms: int = 5000) -> dict:
        s = self.connect(zmq.REQ, self.eps.orders)
        try:
            s.send(payload)
            assert s.poll(timeout_ms), "the orders endpoint did not answer"
            return P.unpack_map(s.recv())
        finally:
            s.close(0)

    # -- valid traffic
    def order_is_filled(self) -> None:
        """A market order is acked and filled (ticks keep coming while it waits for them: a SUB
        that just (re)connected misses what was published before)."""
        deadline = time.monotonic() + 15
        while True:
            cid = f"valid-{next(self._ids)}-{time.time_ns()}"
            s = self.connect(zmq.REQ, self.eps.orders)
            try:
                s.send(P.SendOrder(client_order_id=cid, symbol="AAPL", side=P.Side.BUY, qty=1).pack())
                while not s.poll(20):
                    self.market()
                    self.pump()
                    assert time.monotonic() < deadline, "no reply to a valid order"
                r = P.unpack_map(s.recv())
            finally:
                s.close(0)
            if r.get("reason", "").startswith("no market data") and time.monotonic() < deadline:
                continue  # the gateway's tick SUB is still reconnecting: that order was refused, rightly
            assert r["ok"] and r["status"] == "filled" and r["filled_qty"] == 1, r
            return

    def signal_is_decided(self) -> None:
        push = self.connect(zmq.PUSH, self.eps.signals)
        sid = f"valid-sig-{next(self._ids)}"
        try:
            self.market()
            sig = P.Signal(id=sid, strategy="fuzz", symbol="AAPL", side=P.Side.BUY, qty=1, price=100.0, ts=P.now_ns(), cause_ts=P.now_ns())
            push.send(sig.pack())
            self.wait(lambda: sid in self.decisions, 10, "a decision for a valid signal")
        finally:
            push.close(0)

    def strategy_reads_ticks(self) -> None:
        w = self.sup.workers[STRATEGY]
        before = w.counter("ticks")

        def more():
            self.market()
            return w.counter("ticks") > before

        self.wait(more, 10, "the strategy counts valid ticks again")

    def heartbeats_flow(self) -> None:
        since = time.monotonic()
        self.wait(lambda: all(w.last_heartbeat > since for w in self.sup.workers.values()), 10, "a heartbeat from every worker")

    def counter_grows(self, name: str, key: str, before: int) -> int:
        w = self.sup.workers[name]
        return self.wait(lambda: w.counter(key) > before and w.counter(key), 10, f"{name} counts {key}")

    def survived(self, valid, name: str, decode_errors_before: int) -> None:
        """After a fuzz: nobody died, ``valid`` traffic is served, and ``name`` counted what it dropped."""
        self.all_alive()
        valid()
        self.counter_grows(name, "decode_errors", decode_errors_before)

    def close(self) -> None:
        try:
            self.sup.stop()
        finally:
            self.ctx.destroy(linger=0)


@pytest.fixture(scope="module")
def rig():
    tmp = tempfile.mkdtemp(prefix="td-fuzz-")  # short: ipc paths are limited to ~100 bytes
    r = Rig(tmp)
    try:
        r.sup.start()
        r.wait(lambda: all(w.state == "running" for w in r.sup.workers.values()), 30, "fleet running")
        r.wait(lambda: r.sup.workers["executor"].stats.get("gauges", {}).get("synced") is True, 30, "executor synced")
        r.order_is_filled()
        yield r
    finally:
        r.close()
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- inputs

# msgpack can carry these (ints within 64 bits; floats include NaN and the infinities)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=12)
nasty_numbers = st.sampled_from([math.nan, math.inf, -math.inf, -1, 0, -1.5, 1e300, 2**63 - 1, -(2**63), 2**64 - 1, 10_000_001, True])

VALID = {
    "send_order": P.SendOrder(client_order_id="fz", symbol="AAPL", side=P.Side.BUY, qty=1).to_dict(),
    "signal": P.Signal(id="fz", strategy="fz", symbol="AAPL", side=P.Side.BUY, qty=1, price=100.0, ts=1, cause_ts=1).to_dict(),
    "levels": P.Levels(strategy="fz", symbol="AAPL", ts=1, support=99.0, resistance=101.0).to_dict(),
    "tick": P.Tick(symbol="AAPL", seq=1, ts=1, last=100.0, bid=99.9, ask=100.1, bid_size=1, ask_size=1, volume=1).to_dict(),
    "heartbeat": P.Heartbeat(ts=1, name="x", role="x", pid=0, stats={"counters": {"ticks": 1}}, state="running").to_dict(),
    "hello": P.Hello(name="x", role="x", pid=0, ts=1).to_dict(),
    "command_reply": P.CommandReply(id="c1", cmd="stats", ok=True).to_dict(),
    "ping": P.Ping(ts=1).to_dict(),
}


@st.composite
def mutated(draw, base: str) -> bytes:
    """A valid message with one field replaced by anything, a nasty number, or removed."""
    d = dict(VALID[base])
    key = draw(st.sampled_from(sorted(d) + ["extra"]))
    how = draw(st.sampled_from(["value", "number", "delete"]))
    if how == "delete":
        d.pop(key, None)
    else:
        d[key] = draw(values if how == "value" else nasty_numbers)
    return msgpack.packb(d, use_bin_type=True)


@st.composite
def truncated(draw, base: str) -> bytes:
    data = msgpack.packb(VALID[base], use_bin_type=True)
    return data[: draw(st.integers(min_value=0, max_value=len(data) - 1))]


def payloads(*bases: str):
    """Anything a peer could send as one frame."""
    return st.one_of(
        st.binary(max_size=300),
        values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
        st.dictionaries(st.sampled_from(["v", "type", "qty", "price", "symbol"]), values, max_size=5).map(lambda d: msgpack.packb(d, use_bin_type=True)),
        st.text(max_size=20).map(lambda t: msgpack.packb({"v": 1, "type": t})),
        st.sampled_from(bases).flatmap(mutated),
        st.sampled_from(bases).flatmap(truncated),
    )


def forged_heartbeats():
    """Heartbeats that decode, with stats of any shape (counters as a list, gauges as a number...)."""
    stats = st.fixed_dictionaries({}, optional={"counters": values | st.dictionaries(st.text(max_size=6), values, max_size=3), "gauges": values, "latency": values})
    return st.builds(lambda st_, pid: msgpack.packb({**VALID["heartbeat"], "stats": st_, "pid": pid}, use_bin_type=True), stats, st.sampled_from([0, 1, 2**31]))


def oversized() -> bytes:
    return os.urandom(OVERSIZE)


# ----------------------------------------------------------------------------- orders ROUTER


def test_orders_endpoint_via_req_answers_every_bad_request(rig):
    before = rig.sup.workers["exchange"].counter("decode_errors")
    req = rig.connect(zmq.REQ, rig.eps.orders)

    huge_ts = {**VALID["send_order"], "client_order_id": "huge-ts", "ts": 2**64 - 1}

    @FUZZ
    @given(payload=payloads("send_order", "ping", "tick"))
    # found by this test: a timestamp beyond SQLite's signed 64 bits failed the whole journal
    # batch (no reply to anyone in it, orders filled in memory but never journaled)
    @example(payload=msgpack.packb(huge_ts))
    @example(payload=msgpack.packb({"v": 1, "type": "cancel_order", "client_order_id": "huge-ts", "ts": 2**64 - 1}))
    def fuzz(payload):
        rig.pump()
        req.send(payload)
        assert req.poll(5000), "no reply"
        reply = P.unpack_map(req.recv())  # every request gets a readable map back
        assert isinstance(reply.get("ok"), bool) and isinstance(reply.get("reason"), str), reply
        assert reply["ok"] or reply["reason"], "a refusal names its reason"

    try:
        fuzz()
    finally:
        req.close(0)
    rig.survived(rig.order_is_filled, "exchange", before)


def test_orders_endpoint_via_dealer_with_any_frame_count(rig):
    before = rig.sup.workers["exchange"].counter("decode_errors")
    dealer = rig.connect(zmq.DEALER, rig.eps.orders)

    @FUZZ
    @given(frames=st.lists(st.one_of(st.just(b""), st.binary(max_size=64), payloads("send_order")), min_size=1, max_size=6))
    def fuzz(frames):
        rig.pump()
        dealer.send_multipart(frames)
        while dealer.poll(0):  # replies, where the envelope allowed one
            dealer.recv_multipart()

    try:
        fuzz()
    finally:
        dealer.close(0)
    # a frame count other than one is answered with an error, not dropped in silence
    dealer = rig.connect(zmq.DEALER, rig.eps.orders)
    try:
        dealer.send_multipart([b"", b"one", b"two"])
        assert dealer.poll(5000)
        frames = dealer.recv_multipart()
        assert frames[0] == b"" and "exactly one frame" in P.unpack_map(frames[-1])["reason"]
    finally:
        dealer.close(0)
    rig.survived(rig.order_is_filled, "exchange", before)


# ----------------------------------------------------------------------------- signals PULL


def test_signals_endpoint_drops_and_counts_bad_signals(rig):
    before = rig.sup.workers["executor"].counter("decode_errors")
    push = rig.connect(zmq.PUSH, rig.eps.signals, SNDHWM=100_000)

    @FUZZ
    @given(payload=payloads("signal", "levels", "tick"))
    def fuzz(payload):
        rig.pump()
        push.send(payload)

    try:
        rig.market()
        fuzz()
    finally:
        push.close(linger=1000)  # let the queued fuzz reach the executor
    rig.survived(rig.signal_is_decided, "executor", before)


# ----------------------------------------------------------------------------- control ROUTER


def test_control_endpoint_survives_strangers_and_impostors(rig):
    before = rig.sup.decode_errors
    stranger = rig.connect(zmq.DEALER, rig.eps.control, ROUTING_ID=b"nobody-we-know")

    one = payloads("heartbeat", "hello", "command_reply") | forged_heartbeats()

    @FUZZ
    @given(frames=st.one_of(one.map(lambda p: [p]), forged_heartbeats().map(lambda p: [p]), st.lists(one, min_size=2, max_size=3)), impostor=st.booleans(), name=st.sampled_from(["exchange", STRATEGY]))
    def fuzz(frames, impostor, name):
        if impostor:
            # A DEALER under a real worker's name takes its routing id over (ROUTER_HANDOVER)
            # until the worker reconnects: whatever it says must not break the supervisor.
            s = rig.connect(zmq.DEALER, rig.eps.control, LINGER=200, ROUTING_ID=name.encode())
            s.send_multipart(frames)
            s.close()
        else:
            stranger.send_multipart(frames)
        rig.pump()  # must not raise, whatever came in

    try:
        fuzz()
        # and for certain: a heartbeat under a real name whose counters are not a map
        s = rig.connect(zmq.DEALER, rig.eps.control, LINGER=200, ROUTING_ID=STRATEGY.encode())
        for junk in ([1, 2], {"ticks": "many"}, "x"):
            s.send(msgpack.packb({**VALID["heartbeat"], "stats": {"counters": junk, "gauges": 7}}))
        s.close()
        for _ in range(50):
            rig.pump()
            time.sleep(0.002)
    finally:
        stranger.close(0)
    assert rig.sup.decode_errors > before
    rig.sup.totals()  # the status line still adds up
    for w in rig.sup.workers.values():
        assert all(isinstance(v, (int, float)) for v in w.stats.get("counters", {}).values())
    # An impostor's connection leaves the worker's own one deaf (ROUTER_HANDOVER): the worker
    # notices the silence and reconnects.  Every worker must answer a command again.
    for name in rig.sup.workers:
        asked = {"cid": "", "at": 0.0}

        def answered(name=name, asked=asked):
            if asked["cid"] and rig.sup.reply_for(asked["cid"]) is not None:
                return True
            if time.monotonic() - asked["at"] > 0.5:
                asked["cid"], asked["at"] = rig.sup.command(name, "stats"), time.monotonic()
            return False

        rig.wait(answered, 15, f"{name} answers commands after the fuzz")
    rig.all_alive()
    rig.heartbeats_flow()


# ----------------------------------------------------------------------------- tick input (SUB side)


def tick_frames():
    topics = st.sampled_from([b"tick.AAPL\x00", b"tick.MSFT\x00", b"tick.ZZZ\x00", b"tick.", b"tick.AAPL", b""])
    return st.one_of(
        st.binary(max_size=200),
        st.tuples(topics, payloads("tick", "signal")).map(lambda tp: tp[0] + tp[1]),
        # a valid tick under the wrong symbol's topic
        st.just(b"tick.MSFT\x00" + msgpack.packb(VALID["tick"])),
    )


def test_tick_stream_garbage_is_dropped_and_counted(rig):
    before = {n: rig.sup.workers[n].counter("decode_errors") for n in ("exchange", "executor", STRATEGY)}

    @FUZZ
    @given(frame=tick_frames())
    def fuzz(frame):
        rig.pump()
        rig.ticks.send(frame)

    fuzz()
    # the executor decodes the newest frame per topic only when it needs a price: make it look
    for topic in (b"tick.AAPL", b"tick.ZZZ"):
        rig.ticks.send(topic + b"\x00" + b"\xc1 not msgpack")
    rig.signal_is_decided()
    rig.all_alive()
    rig.strategy_reads_ticks()
    rig.order_is_filled()
    for name, n in before.items():
        rig.counter_grows(name, "decode_errors", n)


# ----------------------------------------------------------------------------- oversized frames


def test_oversized_frames_cost_the_sender_its_connection_only(rig):
    """ZMQ_MAXMSGSIZE: a frame over 256 KiB disconnects its sender; the process goes on and
    serves the next connection."""
    big = oversized()
    # orders: REQ and DEALER
    for kind in (zmq.REQ, zmq.DEALER):
        s = rig.connect(kind, rig.eps.orders)
        s.send(big)
        assert not s.poll(300), "an oversized request gets no answer: its connection is dropped"
        s.close(0)
    # signals: PUSH
    push = rig.connect(zmq.PUSH, rig.eps.signals)
    push.send(big)
    # control: DEALER
    d = rig.connect(zmq.DEALER, rig.eps.control, ROUTING_ID=b"big-talker")
    d.send(big)
    # tick input: the test's PUB sends one oversized tick to exchange, executor and strategy;
    # each SUB drops the connection and reconnects by itself
    rig.ticks.send(b"tick.AAPL\x00" + big)
    for _ in range(30):
        rig.pump()
        time.sleep(0.01)
    push.close(0)
    d.close(0)
    rig.all_alive()
    assert rig.request(P.Ping().pack())["ok"]
    rig.order_is_filled()
    rig.signal_is_decided()
    rig.strategy_reads_ticks()
    rig.heartbeats_flow()


# ----------------------------------------------------------------------------- publishers and transports


def test_publishers_and_transports_ignore_junk(rig):
    """PUB sockets read only subscriptions: junk from an XSUB must not hurt them; and bytes
    that are not ZMTP at all, written straight to an ipc endpoint, are refused by libzmq."""
    pubs = [rig.md_ticks, rig.eps.execution, rig.eps.events]
    xsubs = []
    for ep in pubs:
        x = rig.connect(zmq.XSUB, ep)
        xsubs.append(x)

    @settings(FUZZ, max_examples=30)
    @given(frames=st.lists(st.one_of(st.binary(max_size=64), st.binary(max_size=16).map(lambda b: b"\x01" + b), st.binary(max_size=16).map(lambda b: b"\x00" + b)), min_size=1, max_size=4))
    def fuzz(frames):
        rig.pump()
        for x in xsubs:
            for f in frames:
                x.send(f)

    raw_endpoints = [rig.eps.orders, rig.eps.signals, rig.eps.control, rig.eps.execution, rig.eps.events, rig.md_ticks]

    @settings(FUZZ, max_examples=20)
    @given(junk=st.binary(min_size=1, max_size=512), which=st.sampled_from(raw_endpoints))
    def raw(junk, which):
        rig.pump()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(which[len("ipc://"):])
            try:
                s.sendall(junk)
            except OSError:
                pass  # libzmq may hang up first

    try:
        fuzz()
        raw()
    finally:
        for x in xsubs:
            x.close(0)
    rig.all_alive()
    # every publisher still publishes to a fresh subscriber
    for ep, topic in ((rig.md_ticks, b"tick."), (rig.eps.execution, b"exec."), (rig.eps.events, b"")):
        s = rig.connect(zmq.SUB, ep, SUBSCRIBE=topic)
        try:
            rig.wait(lambda: (rig.order_is_filled() if ep != rig.md_ticks else None) or s.poll(50), 15, f"{ep} publishes")
        finally:
            s.close(0)
    assert rig.request(P.Ping().pack())["ok"]
    rig.signal_is_decided()
    rig.heartbeats_flow()
