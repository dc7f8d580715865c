"""The Network panel over a real fleet (needs workers.runtime's socket reports): the fleet's
sockets connected with traffic, and the order path's hops measured."""

from __future__ import annotations

import pytest

from tests.procs import wait_until
from workers.config import Endpoints
from workers.fleet import default_fleet
from workers.supervisor import Supervisor, SupervisorConfig
from app.panels.network import NetworkPanel

pytestmark = pytest.mark.slow


def test_the_panel_shows_the_fleet_s_sockets_and_hops_live(qtbot, tmp_path):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    sup = Supervisor(eps, default_fleet(data=tmp_path, fresh_journal=True),
                     SupervisorConfig(log_dir=str(tmp_path / "logs"), heartbeat_timeout=5.0))
    sup.start()
    try:
        panel = NetworkPanel(sup.workers)
        qtbot.addWidget(panel)

        def shown(pred):
            def check():
                sup.poll(10)
                panel.refresh()
                return pred()
            return check

        def row(process_kind, name):
            for r in panel.socket_rows():
                w = sup.workers.get(r.process)
                if w is not None and w.spec.kind == process_kind and r.report.name == name:
                    return r
            return None

        wait_until(shown(lambda: (r := row("strategy", "ticks")) and r.report.state == "connected" and r.msgs_in_s > 0),
                   timeout=30, message="a strategy's ticks socket connected, with a message rate")
        wait_until(shown(lambda: (r := row("marketdata", "ticks")) and r.report.state == "listening" and r.report.peers >= 3),
                   timeout=30, message="the gateway's ticks PUB with the strategies and the executor")
        assert row("marketdata", "ticks").report.endpoint == eps.ticks
        wait_until(shown(lambda: {"tick_to_strategy", "signal_to_executor"} <= {h.hop for h in panel.hop_rows()}),
                   timeout=60, message="the first hops measured")
        h = next(h for h in panel.hop_rows() if h.hop == "tick_to_strategy")
        assert h.us("p50_us") is not None and h.us("p99_us") >= h.us("p50_us")
    finally:
        sup.stop()
