"""A client written from docs/protocol.md alone: raw pyzmq + msgpack, no TickDesk imports on the
client side.  The fleet behind it is the real one, started by the supervisor."""

from __future__ import annotations

import time

import msgpack
import pytest
import zmq

from tests.procs import wait_until
from workers.config import Endpoints
from workers.fleet import default_fleet
from workers.supervisor import Supervisor, SupervisorConfig

pytestmark = pytest.mark.slow

# No strategies: the client is the only trader, so positions move only by its own orders.
NO_STRATEGIES = """
[fleet]
strategies = []

[fleet.marketdata]
rate = 50
symbols = "AAPL,MSFT"
"""


@pytest.fixture
def fleet(tmp_path):
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(NO_STRATEGIES)
    eps = Endpoints.ephemeral_tcp()
    sup = Supervisor(eps, default_fleet(data=tmp_path, config_path=str(cfg), fresh_journal=True), SupervisorConfig(log_dir=str(tmp_path / "logs")))
    sup.start()

    def pump(pred, timeout=20.0, message=""):
        def check():
            sup.poll(5)
            return pred()

        return wait_until(check, timeout, interval=0.0, message=message)

    pump(lambda: all(w.state == "running" for w in sup.workers.values()), message="fleet running")
    yield sup, eps, pump
    sup.stop()


def request(ctx, endpoint, payload: bytes) -> dict:
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    try:
        s.send(payload)
        assert s.poll(5000), "no reply within 5 s"
        return s.recv()
    finally:
        s.close()


def test_a_client_from_the_docs_trades(fleet):
    sup, eps, pump = fleet
    ctx = zmq.Context()
    try:
        ticks = ctx.socket(zmq.SUB)
        ticks.setsockopt(zmq.SUBSCRIBE, b"tick.")
        ticks.connect(eps.ticks)
        execs = ctx.socket(zmq.SUB)
        execs.setsockopt(zmq.SUBSCRIBE, b"exec.")
        execs.connect(eps.execution)

        # 1. a tick: one frame, topic NUL msgpack map
        frame = None

        def got_tick():
            nonlocal frame
            sup.poll(0)
            if ticks.poll(50):
                frame = ticks.recv()
            return frame

        wait_until(got_tick, 20, interval=0, message="a tick")
        topic, payload = frame.split(b"\x00", 1)
        tick = msgpack.unpackb(payload)
        assert tick["v"] == 1 and tick["type"] in ("tick", "ticks")  # the docs: accept both forms
        assert topic == b"tick." + tick["symbol"].encode()
        if tick["type"] == "ticks":  # rows of seq, ts, last, bid, ask, bid_size, ask_size, volume
            seq, ts, _last, bid, ask, *_ = tick["ticks"][-1]
            tick = dict(tick, seq=seq, ts=ts, bid=bid, ask=ask)
        assert tick["bid"] <= tick["ask"] and tick["seq"] >= 1 and isinstance(tick["ts"], int)

        # let the exchange see the market for this symbol and the exec SUB join: ping until both hold
        ping = msgpack.packb({"v": 1, "type": "ping"})
        assert msgpack.unpackb(request(ctx, eps.orders, ping))["ok"] is True

        # 2. a market order -> ack
        coid = f"doc-client-{time.time_ns()}"
        order = {"v": 1, "type": "send_order", "client_order_id": coid, "symbol": "AAPL", "side": "buy", "qty": 100, "order_type": "market", "source": "docs-test"}
        raw = msgpack.packb(order)
        first = request(ctx, eps.orders, raw)
        ack = msgpack.unpackb(first)
        assert ack["type"] == "send_order_reply" and ack["ok"] is True, ack
        assert ack["client_order_id"] == coid and ack["order_id"] and ack["status"] in ("new", "partially_filled", "filled")

        # 3. its fill(s) on the execution stream add up to the order
        fills = []

        def filled():
            sup.poll(0)
            while execs.poll(20):
                t, p = execs.recv().split(b"\x00", 1)
                m = msgpack.unpackb(p)
                if m["type"] == "fill" and m["client_order_id"] == coid:
                    assert t == b"exec.fill.AAPL"
                    fills.append(m)
            return sum(f["qty"] for f in fills) == 100

        wait_until(filled, 20, interval=0, message="fill of the order")

        # 4. the same client_order_id again: the same answer, no second order or fill
        again = request(ctx, eps.orders, raw)
        assert again == first
        got = msgpack.unpackb(request(ctx, eps.orders, msgpack.packb({"v": 1, "type": "get_orders"})))
        assert [o["client_order_id"] for o in got["orders"]].count(coid) == 1
        positions = msgpack.unpackb(request(ctx, eps.orders, msgpack.packb({"v": 1, "type": "get_positions"})))
        aapl = [p for p in positions["positions"] if p["symbol"] == "AAPL"]
        assert aapl and aapl[0]["qty"] == 100, positions
        one = msgpack.unpackb(request(ctx, eps.orders, msgpack.packb({"v": 1, "type": "get_order", "client_order_id": coid})))
        assert one["ok"] and one["status"] == "filled" and one["order"]["filled_qty"] == 100

        # 5. garbage and an unknown type: ok false with a reason
        bad = msgpack.unpackb(request(ctx, eps.orders, b"\xde\xad\xbe\xef garbage"))
        assert bad["ok"] is False and bad["reason"], bad
        unknown = msgpack.unpackb(request(ctx, eps.orders, msgpack.packb({"v": 1, "type": "buy_everything"})))
        assert unknown["ok"] is False and "unknown message type" in unknown["reason"], unknown

        # 6. every process is still up and still serves
        assert msgpack.unpackb(request(ctx, eps.orders, ping))["ok"] is True
        sup.poll(0)
        for w in sup.workers.values():
            assert w.proc is not None and w.proc.poll() is None and w.restarts == 0, w.name
    finally:
        ctx.destroy(linger=0)
