"""workers.sockmon: socket states from libzmq's monitor events, on real sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
import zmq
import zmq.asyncio

from tests.procs import wait_until
from workers.security import ZapHandler
from workers.sockmon import STATES, SocketMonitor, SocketReport, parse_reports


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def report(mon: SocketMonitor, name: str) -> SocketReport:
    mon.poll()
    return next(r for r in mon.reports() if r.name == name)


def until_state(mon: SocketMonitor, name: str, state: str, pump=None) -> SocketReport:
    def check():
        if pump:
            pump()
        r = report(mon, name)
        return r if r.state == state else None
    return wait_until(check, timeout=10, message=f"{name} never became {state!r}")


def test_a_connecting_socket_retries_connects_and_sees_its_peer_go(ctx, tmp_path: Path):
    addr = f"ipc://{tmp_path}/s"
    mon = SocketMonitor()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RECONNECT_IVL, 20)
    mon.watch(sub, "ticks", connect=addr)
    sub.connect(addr)
    r = until_state(mon, "ticks", "retrying")  # nobody listens yet
    assert (r.type, r.role, r.endpoint, r.peers) == ("SUB", "connect", addr, 0) and r.retries >= 1

    pub = ctx.socket(zmq.PUB)
    mon.watch(pub, "ticks-pub", bind=addr)
    pub.bind(addr)
    assert until_state(mon, "ticks-pub", "listening").endpoint == addr
    r = until_state(mon, "ticks", "connected")
    assert (r.peers, r.connects) == (1, 1)
    wait_until(lambda: report(mon, "ticks-pub").peers == 1, timeout=10)

    mon.forget(pub)
    pub.close(0)
    # libzmq reconnects at once (RECONNECT_IVL 20 ms): the poll may see it disconnected or retrying
    r = wait_until(lambda: (x := report(mon, "ticks")).state in ("disconnected", "retrying") and x, timeout=10)
    assert r.peers == 0 and r.disconnects == 1
    assert [x.name for x in mon.reports()] == ["ticks"]  # a forgotten socket is no longer reported
    mon.close()


def test_a_bound_wildcard_port_reports_the_port_it_listens_on_and_counts_peers(ctx):
    mon = SocketMonitor()
    router = ctx.socket(zmq.ROUTER)
    mon.watch(router, "orders", bind="tcp://127.0.0.1:*")
    router.bind("tcp://127.0.0.1:*")
    r = until_state(mon, "orders", "listening")
    assert r.endpoint == router.getsockopt_string(zmq.LAST_ENDPOINT) and not r.endpoint.endswith("*")
    dealers = [ctx.socket(zmq.DEALER) for _ in range(3)]
    for d in dealers:
        d.connect(r.endpoint)
    wait_until(lambda: report(mon, "orders").peers == 3, timeout=10)
    dealers[0].close(0)
    r = wait_until(lambda: (x := report(mon, "orders")).peers == 2 and x, timeout=10)
    assert (r.state, r.connects, r.disconnects) == ("listening", 3, 1)
    mon.close()


def test_a_refused_curve_client_shows_handshake_failed(ctx):
    # the server's ZAP handler (the one the workers use) knows no client key: every client is denied
    zap = ZapHandler(ctx, {})
    server_pub, server_sec = zmq.curve_keypair()
    client_pub, client_sec = zmq.curve_keypair()
    mon = SocketMonitor()
    rep = ctx.socket(zmq.ROUTER)
    rep.curve_server = True
    rep.curve_secretkey = server_sec
    rep.zap_domain = b"orders"
    mon.watch(rep, "server", bind="tcp://127.0.0.1:*")
    rep.bind("tcp://127.0.0.1:*")
    endpoint = until_state(mon, "server", "listening").endpoint
    dealer = ctx.socket(zmq.DEALER)
    dealer.curve_serverkey = server_pub
    dealer.curve_publickey = client_pub
    dealer.curve_secretkey = client_sec
    mon.watch(dealer, "client", connect=endpoint)
    dealer.connect(endpoint)

    def serve_zap():
        while True:
            try:
                zap.handle(zap.sock.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return

    r = until_state(mon, "client", "handshake failed", pump=serve_zap)
    assert r.handshake_failures >= 1 and r.last_error == "handshake failed (auth)"
    srv = wait_until(lambda: (x := report(mon, "server")).handshake_failures >= 1 and x, timeout=10)
    assert srv.state == "listening"  # a stranger refused is counted, not the bound socket's state
    assert zap.denied >= 1
    mon.close()
    zap.sock.close(0)


def test_counters_add_up_and_the_heartbeat_entry_is_plain_msgpack(ctx, tmp_path: Path):
    mon = SocketMonitor()
    push = ctx.socket(zmq.PUSH)
    mon.watch(push, "signals", connect=f"ipc://{tmp_path}/p")
    mon.count_out(push, 100)
    mon.count_out(push, 50, msgs=2)
    mon.count_in(push, 7)
    mon.count_drop(push, 4)
    mon.count_out(ctx.socket(zmq.PUSH), 1)  # not watched: ignored, no error
    entry = mon.heartbeat_entry()
    assert len(entry) == 1
    e = entry[0]
    assert (e["msgs_out"], e["bytes_out"], e["msgs_in"], e["bytes_in"], e["drops"]) == (3, 150, 1, 7, 4)
    back, bad = parse_reports(msgspec.msgpack.decode(msgspec.msgpack.encode(entry)))
    assert bad == 0 and back[0].name == "signals" and back[0].state in STATES
    mon.close()


def test_malformed_socket_entries_are_dropped_and_counted():
    good = {"name": "ticks", "type": "SUB", "endpoint": "tcp://x:1", "role": "connect", "state": "connected", "extra": 1}
    reports, bad = parse_reports([good, {"name": 3}, "junk", {"name": "x", "type": "SUB", "endpoint": "",
                                                              "role": "connect", "state": "connected", "msgs_in": "many"}])
    assert [r.name for r in reports] == ["ticks"] and bad == 3
    assert parse_reports("not a list") == ([], 1)
    assert parse_reports(None) == ([], 0)  # a worker that reports no sockets


def test_the_window_s_asyncio_sockets_are_watched_the_same_way(tmp_path: Path):
    async def main():
        actx = zmq.asyncio.Context()
        try:
            mon = SocketMonitor()
            sub = actx.socket(zmq.SUB)
            addr = f"ipc://{tmp_path}/a"
            mon.watch(sub, "execution", connect=addr)
            sub.connect(addr)
            pub = actx.socket(zmq.PUB)
            pub.bind(addr)
            for _ in range(400):
                mon.poll()
                if mon.reports()[0].state == "connected":
                    break
                await asyncio.sleep(0.025)
            state = mon.reports()[0].state
            mon.close()
            return state
        finally:
            actx.destroy(linger=0)

    assert asyncio.run(main()) == "connected"


def test_an_ipv4_address_of_an_ipv6_socket_is_shown_plain():
    from workers.sockmon import _plain_v4

    assert _plain_v4("tcp://[::ffff:127.0.0.1]:5559") == "tcp://127.0.0.1:5559"
    assert _plain_v4("tcp://[::1]:5559") == "tcp://[::1]:5559"
    assert _plain_v4("ipc:///tmp/x.sock") == "ipc:///tmp/x.sock"
