"""Every worker reports its sockets with its heartbeat (workers.sockmon, via Worker.socket):
the fleet's endpoints, connected, with messages counted both ways; a killed peer shows as not
connected."""

from __future__ import annotations

import os
import signal

import pytest

from tests.procs import scaled, wait_until
from workers.config import Endpoints
from workers import protocol as P
from workers.fleet import default_fleet
from workers.order_client import OrderClient, RetryPolicy
from workers.sockmon import parse_reports
from workers.supervisor import Supervisor, SupervisorConfig

pytestmark = pytest.mark.slow


def sockets_of(sup, name):
    reports, bad = parse_reports(sup.workers[name].stats.get("sockets"))
    assert bad == 0
    return {r.name: r for r in reports}


def test_heartbeats_carry_every_socket_with_its_state_and_counts(tmp_path):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    specs = default_fleet(data=tmp_path, fresh_journal=True)
    sup = Supervisor(eps, specs, SupervisorConfig(log_dir=str(tmp_path / "logs"), heartbeat_timeout=5.0))
    sup.start()

    def pump(pred, message):
        def check():
            sup.poll(10)
            return pred()
        return wait_until(check, timeout=30, interval=0.0, message=message)

    try:
        pump(lambda: all(w.state == "running" for w in sup.workers.values()), "fleet running")
        strategy = next(w.name for w in sup.workers.values() if w.spec.kind == "strategy")
        pump(lambda: (s := sockets_of(sup, strategy).get("ticks")) and s.state == "connected" and s.msgs_in > 0,
             "the strategy's ticks SUB connected, with ticks counted")
        ticks = sockets_of(sup, strategy)["ticks"]
        assert (ticks.type, ticks.role, ticks.endpoint) == ("SUB", "connect", eps.ticks) and ticks.bytes_in > 0
        md = next(w.name for w in sup.workers.values() if w.spec.kind == "marketdata")
        pump(lambda: (s := sockets_of(sup, md).get("ticks")) and s.state == "listening" and s.peers >= 2,
             "the gateway's ticks PUB listening with subscribers")
        ex = next(w for w in sup.workers.values() if w.spec.kind == "exchange")
        executor = next(w.name for w in sup.workers.values() if w.spec.kind == "executor")

        # what the workers send: each heartbeat's socket counts agree with the worker's own
        # counters taken at the same moment
        def counters(name):
            return sup.workers[name].stats.get("counters", {})

        pump(lambda: sockets_of(sup, md)["ticks"].msgs_out > 0, "the gateway's ticks PUB counting what it sends")
        pub = sockets_of(sup, md)["ticks"]
        assert pub.bytes_out > pub.msgs_out  # every frame is more than a byte
        assert pub.msgs_out == counters(md).get("frames")  # one per frame, however many ticks it holds
        pump(lambda: sockets_of(sup, strategy)["signals"].msgs_out > 0, "the strategy's signals PUSH counting its levels and signals")
        push, c = sockets_of(sup, strategy)["signals"], counters(strategy)
        assert (push.type, push.role) == ("PUSH", "connect") and push.bytes_out > 0
        assert push.msgs_out == c.get("signals", 0) + c.get("levels", 0)
        assert push.drops == c.get("signals_dropped", 0) + c.get("levels_dropped", 0)
        # the executor's queries go out on its orders DEALER, and the exchange answers them on its ROUTER
        pump(lambda: sockets_of(sup, executor)["orders"].msgs_out > 0, "the executor's orders DEALER counting its requests")
        pump(lambda: sockets_of(sup, ex.name)["orders"].msgs_out > 0, "the exchange's orders ROUTER counting its replies")
        router = sockets_of(sup, ex.name)["orders"]
        assert router.type == "ROUTER" and router.bytes_out > 0 and router.drops == counters(ex.name).get("reply_dropped", 0)
        # a trader's market order: its fill goes out on the exchange's execution PUB
        trader = OrderClient(eps.orders, RetryPolicy(timeout=scaled(5.0), retries=1))
        try:
            reply = trader.ask(P.SendOrder(client_order_id="sockets-manual-1", symbol="AAPL", side=P.Side.BUY, qty=1))
        finally:
            trader.close()
        assert isinstance(reply, P.SendOrderReply) and reply.ok, reply
        pump(lambda: counters(ex.name).get("published", 0) > 0, "the exchange publishing the order's execution reports")
        execution, c = sockets_of(sup, ex.name)["execution"], counters(ex.name)
        assert execution.msgs_out > 0 and execution.bytes_out > 0
        assert execution.msgs_out + execution.drops == c["published"]
        for name in sup.workers:
            pump(lambda: sockets_of(sup, name)["control"].msgs_out > 0, f"{name}'s control DEALER counting its heartbeats")

        pump(lambda: (s := sockets_of(sup, executor).get("orders")) and s.state == "connected", "executor's orders connected")
        before = sockets_of(sup, executor)["orders"].disconnects
        os.kill(ex.pid, signal.SIGKILL)  # the supervisor restarts it: the executor's DEALER reconnects
        pump(lambda: sockets_of(sup, executor)["orders"].disconnects > before, "the executor saw the gateway go")
    finally:
        sup.stop()
