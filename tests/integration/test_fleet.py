"""The whole fleet as real processes under the supervisor: tick -> signal -> order -> fill -> position."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from tests.procs import REPO, scaled, wait_until
from workers import protocol as P
from workers.config import Endpoints
from workers.fleet import default_fleet
from workers.supervisor import Supervisor, SupervisorConfig

pytestmark = pytest.mark.slow

FAST_FLEET = """
[fleet.marketdata]
rate = 50
seed = 7

[[fleet.strategies]]
name = "sr-fast"
symbols = "AAPL,MSFT,GOOG,AMZN"
mode = "both"
window = 30
cooldown = 0.5
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture
def fleet(tmp_path):
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(FAST_FLEET)
    eps = Endpoints.ephemeral_ipc(tmp_path)
    specs = default_fleet(data=tmp_path, config_path=str(cfg), fresh_journal=True)
    sup = Supervisor(eps, specs, SupervisorConfig(log_dir=str(tmp_path / "logs"), heartbeat_timeout=5.0))
    sup.start()

    def pump(pred, timeout=20.0, message=""):
        def check():
            sup.poll(10)
            return pred()

        return wait_until(check, timeout, interval=0.0, message=message)

    sup.pump = pump  # type: ignore[attr-defined]
    yield sup, eps
    pids = [w.pid for w in sup.workers.values() if w.pid]
    sup.stop()
    for pid in pids:
        assert not alive(pid), f"worker pid {pid} survived stop()"


def sub(ctx, endpoint, *topics):
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    for t in topics:
        s.setsockopt(zmq.SUBSCRIBE, t)
    s.connect(endpoint)
    return s


def drain(sock, into: list):
    while True:
        try:
            frame = sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        into.append(P.decode_pub(frame)[1])


def test_tick_to_signal_order_fill_position(fleet):
    sup, eps = fleet
    ctx = zmq.Context.instance()
    events = sub(ctx, eps.events, b"signal.", b"position.", b"levels.")
    execs = sub(ctx, eps.execution, b"exec.")
    seen_events: list = []
    seen_execs: list = []
    try:
        sup.pump(lambda: all(w.state == "running" for w in sup.workers.values()), message="all workers running")

        def accepted_and_filled():
            drain(events, seen_events)
            drain(execs, seen_execs)
            accepted = {m.client_order_id for m in seen_events if isinstance(m, P.SignalDecision) and m.accepted}
            fills = [f for f in seen_execs if isinstance(f, P.Fill) and f.client_order_id in accepted]
            if not fills:
                return None
            sym = fills[0].symbol
            positions = [p for p in seen_events if isinstance(p, P.Position) and p.symbol == sym]
            return (fills[0], positions[-1]) if positions else None

        fill, position = sup.pump(accepted_and_filled, timeout=60, message="a strategy signal filled with a position")
        assert fill.source.startswith("strategy:")
        assert fill.origin_ts > 0 and fill.ts >= fill.origin_ts
        assert position.qty != 0 or position.realized_pnl != 0
        assert any(isinstance(m, P.Levels) for m in seen_events), "strategy levels reach the events stream"
        # the supervisor saw the same flow in the workers' counters
        sup.pump(lambda: sup.totals()["fills"] > 0 and sup.totals()["signals"] > 0, message="counters reach the supervisor")
    finally:
        events.close(0)
        execs.close(0)


def test_killed_worker_is_restarted_with_a_new_pid(fleet):
    sup, _ = fleet
    sup.pump(lambda: sup.workers["marketdata"].state == "running")
    w = sup.workers["marketdata"]
    old = w.pid
    os.kill(old, signal.SIGKILL)
    sup.pump(lambda: w.restarts == 1 and w.state == "running" and w.pid != old, message="restart after SIGKILL")
    assert not alive(old)
    # and it works again: heartbeats with counters flow
    sup.pump(lambda: w.counter("ticks") > 0 and w.heartbeat_age is not None and w.heartbeat_age < 2)


def test_paused_strategy_reports_paused_and_resumes(fleet):
    sup, _ = fleet
    sup.pump(lambda: sup.workers["sr-fast"].state == "running")
    cid = sup.command("sr-fast", "pause")
    sup.pump(lambda: sup.reply_for(cid) is not None and sup.workers["sr-fast"].state == "paused")
    assert sup.reply_for(cid).ok
    cid = sup.command("sr-fast", "resume")
    sup.pump(lambda: sup.workers["sr-fast"].state == "running")


def test_unknown_command_gets_a_refusal_and_the_worker_stays_up(fleet):
    sup, _ = fleet
    sup.pump(lambda: sup.workers["executor"].state == "running")
    cid = sup.command("executor", "self_destruct", {"now": True})
    sup.pump(lambda: sup.reply_for(cid) is not None)
    r = sup.reply_for(cid)
    assert not r.ok and "unknown command" in r.reason
    assert sup.workers["executor"].proc.poll() is None


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(") ", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_headless_run_reports_and_exits_clean(tmp_path):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(FAST_FLEET)
    cmd = [sys.executable, "main.py", "--headless", "--duration", "12", "--status-every", "2", "--data-dir", str(tmp_path), "--config", str(cfg), "--fresh", *eps.as_args()]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    kids: set[int] = set()
    deadline = time.monotonic() + scaled(60)
    while proc.poll() is None and time.monotonic() < deadline:
        kids.update(_children(proc.pid))
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=scaled(30))
    assert proc.returncode == 0, out
    assert "TickDesk headless run" in out
    status = [line for line in out.splitlines() if "ticks " in line and "| signals" in line]
    assert status, out
    final = status[-1]
    ticks = int(final.split("ticks ", 1)[1].split()[0])
    assert ticks > 0, final
    assert len(kids) >= 4, f"expected the fleet's processes, saw {kids}"
    assert not [k for k in kids if alive(k)], "a worker outlived the headless run"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_the_supervisor_is_killed(tmp_path):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    cmd = [sys.executable, "main.py", "--headless", "--data-dir", str(tmp_path), "--fresh", *eps.as_args()]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        kids = wait_until(lambda: (k := _children(proc.pid)) and len(k) >= 5 and k, timeout=30, message="fleet started")
        proc.kill()
        proc.wait(scaled(10))
        wait_until(lambda: not [k for k in kids if alive(k)], timeout=15, message="orphaned workers exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for k in _children(proc.pid):
            os.kill(k, signal.SIGKILL)


def test_silent_worker_is_killed_and_restarted(fleet):
    sup, _ = fleet
    w = sup.workers["sr-fast"]
    sup.pump(lambda: w.state == "running")
    old = w.pid
    os.kill(old, signal.SIGSTOP)  # alive but silent: a hung worker
    try:
        sup.pump(lambda: w.pid != old and w.state == "running", timeout=30, message="silent worker replaced")
    finally:
        try:
            os.kill(old, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert w.restarts == 1
    assert any("silent" in text for _, name, text in sup.events if name == "sr-fast")


def test_stop_and_restart_requests_return_at_once_and_complete_in_poll(fleet):
    sup, _ = fleet
    w = sup.workers["executor"]
    sup.pump(lambda: w.state == "running")
    old = w.pid
    sup.restart_worker("executor")
    assert w.state == "stopping" and w.proc is not None  # asked, not waited for
    sup.pump(lambda: w.pid != old and w.state == "running", message="restarted by poll")
    assert w.restarts == 1 and not alive(old)
    second = w.pid
    sup.stop_worker("executor")
    sup.pump(lambda: w.state == "stopped" and w.proc is None, message="stopped by poll")
    assert not alive(second)
    sup.start_worker("executor")
    sup.pump(lambda: w.state == "running" and w.pid not in (old, second))


def test_a_worker_that_cannot_start_fails_the_run_with_its_reason(tmp_path):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    bad = Endpoints(**{**eps.__dict__, "orders": "tcp://0.0.0.0:0"})  # refused without CurveZMQ
    cmd = [sys.executable, "main.py", "--headless", "--duration", "30", "--data-dir", str(tmp_path), "--fresh", *bad.as_args()]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=scaled(60))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "exchange could not start" in out.stderr and "requires CurveZMQ" in out.stderr


def test_a_second_fleet_on_the_same_endpoints_says_why_it_cannot_start(tmp_path):
    eps = Endpoints.ephemeral_tcp()
    ctx = zmq.Context()
    taken = ctx.socket(zmq.ROUTER)  # the control endpoint of a TickDesk already running
    taken.bind(eps.control)
    try:
        cmd = [sys.executable, "main.py", "--headless", "--duration", "5", "--data-dir", str(tmp_path), *eps.as_args()]
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=scaled(60))
    finally:
        ctx.destroy(linger=0)
    assert out.returncode == 2
    assert "cannot bind the control endpoint" in out.stderr and "another TickDesk" in out.stderr
    assert "Traceback" not in out.stderr
