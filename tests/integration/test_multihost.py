"""The fleet split across two hosts (network namespaces made by the test), with CurveZMQ on.

host A (10.77.<n>.1): market data, exchange gateway
host B (10.77.<n>.2): executor, strategy, and a client that watches the outcome
Every cross-host connection goes over a veth pair between the namespaces, on private addresses
that exist only inside them.  Skips with a reason where namespaces cannot be made.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import pytest

from tests.procs import REPO, scaled, stop
from workers.security import generate

pytestmark = pytest.mark.slow

WATCHER = r"""
import json, sys, time, zmq, msgpack
from workers.security import CurveKeys
keys = CurveKeys.load(sys.argv[1])
ctx = zmq.Context()
def sub(ep, topic):
    s = ctx.socket(zmq.SUB); keys.apply_client(s); s.setsockopt(zmq.SUBSCRIBE, topic); s.connect(ep); return s
events = sub(sys.argv[2], b"signal.")
execs = sub(sys.argv[3], b"exec.fill.")
accepted, fills = set(), {}
deadline = time.monotonic() + float(sys.argv[4])
poller = zmq.Poller(); poller.register(events, zmq.POLLIN); poller.register(execs, zmq.POLLIN)
while time.monotonic() < deadline:
    for s, _ in poller.poll(100):
        topic, payload = s.recv().split(b"\x00", 1)
        m = msgpack.unpackb(payload)
        if m["type"] == "signal_decision" and m["accepted"]:
            accepted.add(m["client_order_id"])
        elif m["type"] == "fill":
            fills[m["client_order_id"]] = m
    done = accepted & set(fills)
    if done:
        print(json.dumps({"filled": sorted(done)[0], "fill": fills[sorted(done)[0]]}))
        sys.exit(0)
print(json.dumps({"accepted": len(accepted), "fills": len(fills)}))
sys.exit(1)
"""


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=scaled(30))


@pytest.fixture
def two_hosts():
    if not sys.platform.startswith("linux") or shutil.which("ip") is None:
        pytest.skip("network namespaces need Linux with iproute2 ('ip')")
    n = random.randint(1, 250)
    tag = f"{os.getpid() % 10000}{n}"
    a, b = f"tdA{tag}", f"tdB{tag}"
    if _run("ip", "netns", "add", a).returncode != 0:
        pytest.skip("cannot create network namespaces here (needs root / CAP_SYS_ADMIN)")
    try:
        steps = [
            ("ip", "netns", "add", b),
            ("ip", "link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}"),
            ("ip", "link", "set", f"va{tag}", "netns", a),
            ("ip", "link", "set", f"vb{tag}", "netns", b),
            ("ip", "-n", a, "addr", "add", f"10.77.{n}.1/24", "dev", f"va{tag}"),
            ("ip", "-n", b, "addr", "add", f"10.77.{n}.2/24", "dev", f"vb{tag}"),
            ("ip", "-n", a, "link", "set", f"va{tag}", "up"),
            ("ip", "-n", b, "link", "set", f"vb{tag}", "up"),
            ("ip", "-n", a, "link", "set", "lo", "up"),
            ("ip", "-n", b, "link", "set", "lo", "up"),
        ]
        for cmd in steps:
            r = _run(*cmd)
            if r.returncode != 0:
                pytest.skip(f"cannot build the two-host network ({' '.join(cmd)}): {r.stderr.strip()}")
        yield a, b, f"10.77.{n}.1", f"10.77.{n}.2"
    finally:
        _run("ip", "netns", "del", a)
        _run("ip", "netns", "del", b)


def test_fleet_across_two_hosts_with_curve(two_hosts, tmp_path):
    ns_a, ns_b, ip_a, ip_b = two_hosts
    keys = tmp_path / "keys"
    generate(keys)
    eps = {
        "ticks": f"tcp://{ip_a}:5555",
        "orders": f"tcp://{ip_a}:5557",
        "execution": f"tcp://{ip_a}:5558",
        "signals": f"tcp://{ip_b}:5556",
        "events": f"tcp://{ip_b}:5559",
        "control": "ipc://" + str(tmp_path / "unused-control"),
    }
    ep_args = [x for name, url in eps.items() for x in (f"--{name}", url)]
    common = [*ep_args, "--curve-dir", str(keys), "--no-control"]
    procs = []

    def start(ns, kind, *args):
        log = open(tmp_path / f"{kind}.log", "wb")
        cmd = ["ip", "netns", "exec", ns, sys.executable, str(REPO / "main.py"), "worker", kind, *common, *args]
        p = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=log)
        procs.append(p)
        return p

    try:
        start(ns_a, "exchange", "--journal", str(tmp_path / "journal.sqlite"))
        start(ns_a, "marketdata", "--rate", "50", "--seed", "3", "--symbols", "AAPL,MSFT")
        start(ns_b, "executor")
        start(ns_b, "strategy", "--symbols", "AAPL,MSFT", "--mode", "both", "--window", "30", "--min-fill", "20", "--cooldown", "0.5")
        watcher = subprocess.run(
            ["ip", "netns", "exec", ns_b, sys.executable, "-c", WATCHER, str(keys), eps["events"], eps["execution"], str(scaled(60))],
            cwd=REPO, capture_output=True, text=True, timeout=scaled(120),
        )
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in tmp_path.glob("*.log"))
        assert watcher.returncode == 0, f"{watcher.stdout}\n{watcher.stderr}\n{logs}"
        result = json.loads(watcher.stdout.strip().splitlines()[-1])
        assert result["fill"]["source"].startswith("strategy:")
        for p in procs:
            assert p.poll() is None, "a worker died"
    finally:
        for p in procs:
            stop(p)
