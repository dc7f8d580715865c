"""CURVE keys have one role each (issue 11 item 10): a key admitted to place orders is not a
key admitted to the control channel or to the signals the executor turns into orders.

Real gateway and executor processes bind with CURVE; clients holding keys of each role
connect, and the ZMQ handshake itself says whether the server's ZAP handler let them in."""

from __future__ import annotations

import subprocess
import sys

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from tests.procs import REPO, log_text, scaled, scaled_ms, start_worker, stop, wait_until
from workers.config import Endpoints
from workers.security import ENDPOINT_ROLES, ROLES, CurveKeys, ZapHandler, generate

SUCCEEDED, FAILED_AUTH = zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_HANDSHAKE_FAILED_AUTH
#: every way a handshake can end, so that a wrong socket pairing fails the test instead of hanging it
OUTCOMES = SUCCEEDED | FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


def keys_of(directory, name: str) -> CurveKeys:
    """The key directory as client ``name`` would hold it: the fleet's server.key and its own pair."""
    fleet = CurveKeys.load(directory)
    if name == "client":
        return fleet
    import zmq.auth

    pub, sec = zmq.auth.load_certificate(directory / f"{name}.key_secret")
    return CurveKeys(fleet.server_public, None, pub, sec, {})


def handshake(ctx: zmq.Context, kind: int, endpoint: str, keys: CurveKeys, timeout: float = 10.0) -> int:
    """Connect a ``kind`` socket with ``keys`` and return how the CURVE handshake ended."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    keys.apply_client(s)
    mon = s.get_monitor_socket(OUTCOMES)
    try:
        s.connect(endpoint)
        if not mon.poll(scaled_ms(int(timeout * 1000))):
            raise AssertionError(f"no handshake outcome on {endpoint} within {scaled(timeout):g}s")
        return recv_monitor_message(mon)["event"]
    finally:
        s.disable_monitor()
        mon.close(0)
        s.close(0)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("roles")
    keydir = tmp / "keys"
    generate(keydir, ["desk:trader", "algo:strategy", "eve:observer"])
    eps = Endpoints.ephemeral_tcp()
    curve = ["--curve-dir", str(keydir)]
    procs = [
        start_worker("exchange", eps, "--journal", str(tmp / "j.sqlite"), *curve, tmp_path=tmp),
        start_worker("executor", eps, *curve, tmp_path=tmp),
    ]
    ctx = zmq.Context()
    try:
        own = keys_of(keydir, "client")
        for kind, ep in ((zmq.DEALER, eps.orders), (zmq.PUSH, eps.signals)):  # both processes serve CURVE
            wait_until(lambda kind=kind, ep=ep: handshake(ctx, kind, ep, own) == SUCCEEDED, timeout=20, message=f"{ep} serves")
        yield ctx, eps, keydir, procs
    finally:
        ctx.destroy(linger=0)
        for p in procs:
            stop(p)


@pytest.mark.parametrize("who, kind, endpoint, admitted", [
    ("desk", zmq.DEALER, "orders", True),       # a trader places orders
    ("desk", zmq.PUSH, "signals", False),       # ... but cannot forge a strategy's signal
    ("desk", zmq.SUB, "execution", True),
    ("algo", zmq.PUSH, "signals", True),        # a strategy pushes signals
    ("algo", zmq.DEALER, "orders", False),      # ... but does not place orders around the executor
    ("algo", zmq.SUB, "events", True),
    ("eve", zmq.SUB, "execution", True),        # an observer reads
    ("eve", zmq.SUB, "events", True),
    ("eve", zmq.DEALER, "orders", False),       # ... and nothing else
    ("eve", zmq.PUSH, "signals", False),
    ("client", zmq.PUSH, "signals", True),      # the fleet's own key (role worker) everywhere
    ("client", zmq.DEALER, "orders", True),
])
def test_each_key_is_admitted_only_where_its_role_may_go(fleet, who, kind, endpoint, admitted):
    ctx, eps, keydir, procs = fleet
    outcome = handshake(ctx, kind, getattr(eps, endpoint), keys_of(keydir, who))
    assert outcome == (SUCCEEDED if admitted else FAILED_AUTH)
    assert all(p.poll() is None for p in procs)


def test_a_refused_role_is_logged_once_per_interval_not_per_knock(fleet):
    ctx, eps, keydir, procs = fleet
    desk = keys_of(keydir, "desk")
    for _ in range(30):
        assert handshake(ctx, zmq.PUSH, eps.signals, desk) == FAILED_AUTH
    executor_log = log_text(procs[1])
    lines = [ln for ln in executor_log.splitlines() if "role trader" in ln or "a trader key" in ln]
    assert 1 <= len(lines) <= 3, lines


def test_control_endpoint_admits_only_worker_keys(tmp_path):
    # The supervisor's control socket has no endpoint name of its own (domain "tickdesk"):
    # ZAP answers there exactly as for any unnamed endpoint.
    generate(tmp_path / "k", ["desk:trader", "algo:strategy", "eve:observer"])
    keys = CurveKeys.load(tmp_path / "k")
    roles = sorted(set(keys.authorized.values()))
    assert roles == sorted(ROLES)
    ctx = zmq.Context()
    try:
        zap = ZapHandler(ctx, keys.authorized)
        asker = ctx.socket(zmq.REQ)
        asker.connect("inproc://zeromq.zap.01")

        def ask(domain: str, key: bytes) -> bytes:
            asker.send_multipart([b"1.0", b"1", domain.encode(), b"127.0.0.1", b"", b"CURVE", key])
            zap.handle(zap.sock.recv_multipart())
            return asker.recv_multipart()[2]

        by_role = {role: zmq.utils.z85.decode(k) for k, role in keys.authorized.items()}
        for role, key in by_role.items():
            assert ask("tickdesk", key) == (b"200" if role == "worker" else b"400"), role
            for ep, allowed in ENDPOINT_ROLES.items():
                assert ask(ep, key) == (b"200" if role in allowed else b"400"), (role, ep)
        assert ask("orders", b"\x01" * 32) == b"400"  # a stranger
        asker.close(0)
        zap.close()
    finally:
        ctx.destroy(linger=0)


def test_older_flat_key_layout_reads_as_trader_and_worker(tmp_path):
    import shutil

    d = tmp_path / "old"
    generate(d, ["desk"])
    # the layout before roles: authorized/*.key
    for f in (d / "authorized").rglob("*.key"):
        shutil.move(f, d / "authorized" / f.name)
    for sub in (d / "authorized").iterdir():
        if sub.is_dir():
            sub.rmdir()
    roles = sorted(CurveKeys.load(d).authorized.values())
    assert roles == ["trader", "worker"]


def test_keys_command_takes_a_role_and_refuses_an_unknown_one(tmp_path):
    ok = subprocess.run([sys.executable, "main.py", "keys", "generate", str(tmp_path / "k"), "--client", "eve:observer"],
                        cwd=REPO, capture_output=True, text=True, timeout=scaled(60))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "k" / "authorized" / "observer" / "eve.key").exists()
    bad = subprocess.run([sys.executable, "main.py", "keys", "generate", str(tmp_path / "k2"), "--client", "eve:admin"],
                         cwd=REPO, capture_output=True, text=True, timeout=scaled(60))
    assert bad.returncode == 2 and "unknown role 'admin'" in bad.stderr
