"""CurveZMQ: binding beyond loopback needs keys; only allow-listed client keys get in."""

from __future__ import annotations

import subprocess
import sys

import msgpack
import pytest
import zmq

from tests.procs import REPO, log_text, scaled, scaled_ms, start_worker, stop, wait_until
from workers.config import Endpoints, free_port
from workers.security import CurveKeys, generate

PING = msgpack.packb({"v": 1, "type": "ping"})


def ping(ctx, endpoint, keys: CurveKeys | None, server_public: bytes | None = None, timeout_ms=1500):
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        keys.apply_client(s)
        if server_public is not None:
            s.curve_serverkey = server_public
    s.connect(endpoint)
    try:
        s.send(PING)
        if s.poll(timeout_ms):
            return msgpack.unpackb(s.recv())
        return None
    finally:
        s.close(0)


def test_keys_generate_command_writes_a_usable_layout(tmp_path):
    out = subprocess.run([sys.executable, "main.py", "keys", "generate", str(tmp_path / "k"), "--client", "trader2"], cwd=REPO, capture_output=True, text=True, timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    keys = CurveKeys.load(tmp_path / "k")
    assert keys.server_secret is not None and len(keys.authorized) == 2
    assert (tmp_path / "k" / "server.key_secret").stat().st_mode & 0o077 == 0


def test_binding_beyond_loopback_without_curve_is_refused(tmp_path):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    eps = Endpoints(**{**eps.__dict__, "orders": f"tcp://0.0.0.0:{free_port()}"})
    proc = start_worker("exchange", eps, "--journal", str(tmp_path / "j.sqlite"), tmp_path=tmp_path)
    try:
        assert proc.wait(scaled(30)) != 0
        assert "requires CurveZMQ" in log_text(proc)
    finally:
        stop(proc)


@pytest.fixture
def curve_gateway(tmp_path):
    generate(tmp_path / "fleet")
    generate(tmp_path / "stranger")  # a valid key pair that nobody allowed
    eps = Endpoints.ephemeral_tcp()
    proc = start_worker("exchange", eps, "--journal", str(tmp_path / "j.sqlite"), "--curve-dir", str(tmp_path / "fleet"), tmp_path=tmp_path)
    ctx = zmq.Context()
    allowed = CurveKeys.load(tmp_path / "fleet")
    wait_until(lambda: ping(ctx, eps.orders, allowed, timeout_ms=300), timeout=20, message="gateway answers an allowed client")
    yield ctx, eps, allowed, CurveKeys.load(tmp_path / "stranger"), proc
    ctx.destroy(linger=0)
    stop(proc)


def test_allowed_key_is_served_and_others_are_refused(curve_gateway):
    ctx, eps, allowed, stranger, proc = curve_gateway
    assert ping(ctx, eps.orders, allowed, timeout_ms=scaled_ms(1500))["ok"] is True
    # a stranger who knows the server's public key but holds no allowed key
    assert ping(ctx, eps.orders, stranger, server_public=allowed.server_public) is None
    # a client without CURVE at all
    assert ping(ctx, eps.orders, None) is None
    assert proc.poll() is None
    assert "key not authorized" in log_text(proc)
    # and the allowed client is still served afterwards
    assert ping(ctx, eps.orders, allowed, timeout_ms=scaled_ms(1500))["ok"] is True
