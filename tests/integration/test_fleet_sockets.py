"""Every worker reports its sockets with its heartbeat (workers.sockmon, via Worker.socket):
the fleet's endpoints, connected, with messages counted; a killed peer shows as not connected."""

from __future__ import annotations

import os
import signal

import pytest

from tests.procs import wait_until
from workers.config import Endpoints
from workers.fleet import default_fleet
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
        pump(lambda: (s := sockets_of(sup, executor).get("orders")) and s.state == "connected", "executor's orders connected")
        before = sockets_of(sup, executor)["orders"].disconnects
        os.kill(ex.pid, signal.SIGKILL)  # the supervisor restarts it: the executor's DEALER reconnects
        pump(lambda: sockets_of(sup, executor)["orders"].disconnects > before, "the executor saw the gateway go")
    finally:
        sup.stop()
