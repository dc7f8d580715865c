"""``tcp://[::1]:PORT`` is loopback (docs/window.md lists it): a worker binds it without keys,
and a client reaches it (issue 11 item 11; libzmq leaves IPv6 off unless asked)."""

from __future__ import annotations

import socket

import msgpack
import pytest
import zmq

from tests.procs import log_text, scaled_ms, start_worker, stop, wait_until
from workers.config import Endpoints, enable_ipv6, is_loopback


def free_port_v6() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


@pytest.fixture
def v6():
    try:
        free_port_v6()
    except OSError as e:  # pragma: no cover - a host without IPv6 loopback
        pytest.skip(f"no IPv6 loopback here: {e}")
    return free_port_v6


def test_a_gateway_binds_and_serves_ipv6_loopback(tmp_path, v6):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    orders = f"tcp://[::1]:{v6()}"
    assert is_loopback(orders)
    eps = Endpoints(**{**eps.__dict__, "orders": orders})
    proc = start_worker("exchange", eps, "--journal", str(tmp_path / "j.sqlite"), tmp_path=tmp_path)
    ctx = enable_ipv6(zmq.Context())
    try:
        def ping():
            s = ctx.socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(orders)
            s.send(msgpack.packb({"v": 1, "type": "ping", "ts": 1}))
            try:
                return s.poll(scaled_ms(300)) and msgpack.unpackb(s.recv())
            finally:
                s.close(0)

        reply = wait_until(lambda: proc.poll() is not None or ping(), timeout=20, message="gateway on [::1] answers")
        assert proc.poll() is None, log_text(proc)
        assert reply["ok"] is True
    finally:
        ctx.destroy(linger=0)
        stop(proc)
