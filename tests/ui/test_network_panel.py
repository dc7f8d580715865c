"""The Network panel: sockets and their states from the workers' heartbeats and the window's own
socket monitor; rates from successive heartbeats; the order path's hop latencies in path order."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import zmq

from tests.procs import wait_until
from workers.sockmon import SocketMonitor
from app.qt import Qt
from app.panels.network import HOP_STALE_S, HOPS, NetworkPanel


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def view(sockets, latency=None, beat=1.0, running=True):
    return SimpleNamespace(proc=1234 if running else None, last_heartbeat=beat,
                           stats={"counters": {}, "gauges": {}, "latency": latency or {}, "sockets": sockets})


def sock(name, state="connected", role="connect", **counts):
    return dict(name=name, type="SUB" if role == "connect" else "PUB", endpoint=f"ipc:///tmp/{name}", role=role,
                state=state, **counts)


def cell(panel, table, row_key, col_key):
    t = getattr(panel, table)
    model = t.model
    col = [c.key for c in model.columns].index(col_key)
    row = model.keys().index(row_key)
    return model.index(row, col).data()


@pytest.fixture
def panel(qtbot):
    def make(workers, monitor=None, clock=None):
        p = NetworkPanel(workers, monitor, clock=clock or Clock())
        qtbot.addWidget(p)
        p.refresh()
        return p
    return make


def test_rates_come_from_two_heartbeats_and_a_restart_starts_again_from_zero(panel):
    workers = {"sr-bounce": view([sock("ticks", msgs_in=1000, bytes_in=100_000)], beat=10.0)}
    p = panel(workers)
    key = ("sr-bounce", "ticks", "connect", "ipc:///tmp/ticks")
    assert cell(p, "sockets", key, "state") == "connected"
    workers["sr-bounce"] = view([sock("ticks", msgs_in=1800, bytes_in=180_000)], beat=12.0)  # 2 s later
    p.refresh()
    assert cell(p, "sockets", key, "in") == "400"
    assert cell(p, "sockets", key, "bytes") == "40.0 kB/s"
    p.refresh()  # the same heartbeat read again: the rate stays, it is not divided by zero
    assert cell(p, "sockets", key, "in") == "400"
    # restarted: its counters start again; never a negative rate
    workers["sr-bounce"] = view([sock("ticks", state="retrying", msgs_in=5, bytes_in=500, retries=3)], beat=13.0)
    p.refresh()
    assert cell(p, "sockets", key, "in") == "0"
    assert cell(p, "sockets", key, "state") == "retrying"
    assert cell(p, "sockets", key, "retries") == "3"
    workers["sr-bounce"] = view([sock("ticks", msgs_in=105, bytes_in=10_500)], beat=14.0)
    p.refresh()
    assert cell(p, "sockets", key, "in") == "100"


def test_bound_sockets_show_their_peers_and_a_stopped_worker_s_sockets_go(panel):
    workers = {"marketdata": view([sock("ticks", state="listening", role="bind", peers=3, drops=2)]),
               "exchange": view([sock("orders", state="handshake failed", handshake_failures=4,
                                      last_error="handshake failed (auth)")])}
    p = panel(workers)
    md = ("marketdata", "ticks", "bind", "ipc:///tmp/ticks")
    assert cell(p, "sockets", md, "state") == "listening · 3 peers"
    assert cell(p, "sockets", md, "drops") == "2"
    ex = ("exchange", "orders", "connect", "ipc:///tmp/orders")
    assert cell(p, "sockets", ex, "handshake") == "4"
    state_col = [c.key for c in p.sockets.model.columns].index("state")
    tip = p.sockets.model.index(p.sockets.model.keys().index(ex), state_col).data(Qt.ItemDataRole.ToolTipRole)
    assert "handshake failed (auth)" in tip
    workers["exchange"] = view([], running=False)
    p.refresh()
    assert p.sockets.model.keys() == [md]


def test_a_malformed_sockets_entry_is_counted_and_the_rest_shown(panel):
    workers = {"executor": view([sock("orders"), {"name": 7}, "junk"]), "odd": view("not a list", beat=2.0)}
    p = panel(workers)
    assert [r.report.name for r in p.socket_rows()] == ["orders"]
    assert p.bad_reports == 3


def test_hops_in_path_order_with_p50_p99_p999_and_stale_when_not_measured(panel):
    clock = Clock()
    lat = {"tick_to_fill": {"n": 10, "p50_us": 900.0, "p99_us": 2500.0, "p999_us": 12_000.0, "max_us": 15_000.0},
           "order_ack": {"n": 10, "p50_us": 300.0, "p99_us": 800.0, "p999_us": 950.0, "max_us": 990.0},
           "signal_to_executor": {"n": 10, "p50_us": 80.0, "p99_us": 200.0, "p999_us": 260.0, "max_us": 300.0},
           "journal_fold": {"n": 1, "p50_us": 5.0}}
    workers = {"sr-bounce": view([], {"tick_to_strategy": {"n": 400, "p50_us": 120.0, "p99_us": 450.0,
                                                          "p999_us": 700.0, "max_us": 800.0}}),
               "executor": view([], lat)}
    p = panel(workers, clock=clock)
    assert [h.hop for h in p.hop_rows()] == ["tick_to_strategy", "signal_to_executor", "order_ack", "tick_to_fill",
                                             "journal_fold"]
    assert [h.hop for h in p.hops.visible_rows()] == [h.hop for h in p.hop_rows()]  # shown in that order
    k = ("tick_to_fill", "executor")
    assert (cell(p, "hops", k, "hop"), cell(p, "hops", k, "p50"), cell(p, "hops", k, "p99"),
            cell(p, "hops", k, "p999")) == ("5 tick → fill", "900 µs", "2,500 µs", "12.0 ms")
    assert {key for key, _, _ in HOPS} >= {h.hop for h in p.hop_rows()} - {"journal_fold"}
    # no new heartbeat for a while: the figures stay, marked as old
    clock.t += HOP_STALE_S + 1
    p.refresh()
    assert all(h.stale for h in p.hop_rows())
    workers["executor"] = view([], {"order_ack": {"n": 3, "p50_us": 310.0}}, beat=9.0)
    p.refresh()
    assert not p._hops[("order_ack", "executor")].stale and p._hops[("tick_to_fill", "executor")].stale


def test_the_window_s_own_sockets_show_their_live_state(panel, tmp_path: Path):
    ctx = zmq.Context()
    mon = SocketMonitor()
    try:
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RECONNECT_IVL, 20)
        addr = f"ipc://{tmp_path}/ticks"
        mon.watch(sub, "ticks", connect=addr)
        sub.connect(addr)
        p = panel({}, mon)
        key = ("window", "ticks", "connect", addr)

        def state():
            p.refresh()
            return cell(p, "sockets", key, "state")

        wait_until(lambda: state() == "retrying", timeout=10, message="nobody listens yet")
        pub = ctx.socket(zmq.PUB)
        pub.bind(addr)
        wait_until(lambda: state() == "connected", timeout=10, message="the window's SUB connected")
        pub.close(0)
        wait_until(lambda: state() in ("disconnected", "retrying"), timeout=10, message="the publisher went")
    finally:
        mon.close()
        ctx.destroy(linger=0)
