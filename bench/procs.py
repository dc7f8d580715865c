"""Real TickDesk worker processes for the benchmarks, under a minimal stand-in supervisor.

:class:`Fleet` makes a temp dir with ``ipc://`` endpoints, binds the control endpoint with a
ROUTER and starts workers as ``python main.py worker KIND ...`` (or through
:mod:`bench.instrumented`, the same ``main`` with every latency sample kept).  Workers run
*with* the control channel, not ``--no-control``: their heartbeats (every 0.1 s here) carry the
counters the benchmarks wait on (ticks received, orders acked), and ``set_rate``/``pause``
commands start and stop the feed at the right moment.  Nothing is waited for with a fixed sleep
where a condition can be checked.  :meth:`Fleet.close` stops every process (``stop`` command,
SIGTERM, SIGKILL) and removes the temp dir.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from workers import protocol as P
from workers.config import Endpoints

REPO = Path(__file__).resolve().parent.parent
HEARTBEAT = 0.1
#: the product's default heartbeat interval, used where a measurement must not see ours
DEFAULT_HEARTBEAT = 0.5


class BenchError(RuntimeError):
    """A benchmark could not run (a worker died, a condition never came true)."""


def page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4096


def rss_of(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (Linux /proc), 0 where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * page_size()
    except (OSError, ValueError, IndexError):
        return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (Linux /proc), 0.0 where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.01, pump: Callable[[], Any] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if pump is not None:
            pump()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class Worker:
    """One started process and what its heartbeats said last."""

    def __init__(self, name: str, kind: str, proc: subprocess.Popen, log: Path, out: Path | None):
        self.name = name
        self.kind = kind
        self.proc = proc
        self.log = log
        self.out = out  # bench.instrumented result file (None for plain main.py workers)
        self.stats: dict[str, Any] = {}
        self.heartbeats = 0
        self.hello = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def counter(self, key: str) -> int:
        return int(self.stats.get("counters", {}).get(key, 0))

    def gauge(self, key: str, default: Any = None) -> Any:
        return self.stats.get("gauges", {}).get(key, default)

    def rss(self) -> int:
        return rss_of(self.proc.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Fleet:
    """Temp dir + ipc endpoints + a control ROUTER that answers heartbeats and sends commands."""

    def __init__(self, label: str = "bench"):
        self.dir = Path(tempfile.mkdtemp(prefix=f"tickdesk-{label}-"))
        self.endpoints = Endpoints.ephemeral_ipc(self.dir)
        self.ctx = zmq.Context()
        self.control = self.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.control.bind(self.endpoints.control)
        self.workers: dict[str, Worker] = {}
        self._replies: dict[str, P.CommandReply] = {}
        self._ids = itertools.count(1)
        self._extra_sockets: list[zmq.Socket] = []

    # ------------------------------------------------------------------ processes
    def start(self, kind: str, name: str, *args: str, instrumented: bool = False, wait: bool = True,
              heartbeat: float = HEARTBEAT) -> Worker:
        """Start ``main.py worker KIND`` (or the instrumented runner) and wait for its first heartbeat.

        ``heartbeat``: seconds between heartbeats.  0.1 makes conditions quick to see; latency
        runs use the product's default 0.5, because each heartbeat sorts the recent latency
        samples (~0.7 ms for 8192), a pause that would otherwise show in the tail."""
        # --orphan-timeout 0: the benchmark does not answer heartbeats while its own client is
        # busy (a REQ loop); the workers die with it instead (TICKDESK_SUPERVISOR_PID below).
        common = [*self.endpoints.as_args(), "--name", name, "--heartbeat", str(heartbeat), "--log-level", "WARNING",
                  "--orphan-timeout", "0"]
        out = None
        if instrumented:
            out = self.dir / f"{name}.result"
            cmd = [sys.executable, "-m", "bench.instrumented", str(out), kind, *common, *args]
        else:
            cmd = [sys.executable, str(REPO / "main.py"), "worker", kind, *common, *args]
        log = self.dir / f"{name}.log"
        # as under the real supervisor: the kernel SIGTERMs the worker if this process dies
        env = dict(os.environ, PYTHONUNBUFFERED="1", TICKDESK_SUPERVISOR_PID=str(os.getpid()))
        with open(log, "wb") as f:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=f, env=env)
        w = self.workers[name] = Worker(name, kind, proc, log, out)
        if wait:
            self.wait(lambda: w.heartbeats > 0, 30, f"{name} to start")
        return w

    def check_alive(self) -> None:
        for w in self.workers.values():
            if w.proc.poll() is not None:
                raise BenchError(f"{w.name} exited with {w.proc.returncode}:\n{w.log_tail()}")

    # ------------------------------------------------------------------ control channel
    def pump(self, timeout_ms: int = 0) -> None:
        """Read every waiting control message; answer heartbeats so workers know we are here."""
        sock = self.control
        if timeout_ms and not sock.poll(timeout_ms):
            return
        while True:
            try:
                ident, payload = sock.recv_multipart(zmq.NOBLOCK)[:2]
            except zmq.Again:
                return
            except ValueError:
                continue
            try:
                msg = P.decode(payload)
            except P.ProtocolError:
                continue
            w = self.workers.get(ident.decode(errors="replace"))
            if w is None:
                continue
            if isinstance(msg, P.Heartbeat):
                w.stats = msg.stats
                w.heartbeats += 1
                try:
                    sock.send_multipart([ident, P.Heartbeat(ts=P.now_ns()).pack()], zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
            elif isinstance(msg, P.Hello):
                w.hello = True
            elif isinstance(msg, P.CommandReply):
                self._replies[msg.id] = msg

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        # pump() returns as soon as a control message arrives; the 20 ms cap only bounds how
        # late a time-based predicate is seen, and keeps this process off the measured cores.
        def pump() -> None:
            self.pump(20)
            self.check_alive()

        return wait_for(predicate, timeout, what, interval=0.0, pump=pump)

    def command(self, name: str, cmd: str, timeout: float = 10.0, **args: Any) -> P.CommandReply:
        cid = f"b{next(self._ids)}"
        self.control.send_multipart([name.encode(), P.Command(id=cid, cmd=cmd, args=args).pack()])
        reply = self.wait(lambda: self._replies.pop(cid, None), timeout, f"{name} to answer {cmd}")
        if not reply.ok:
            raise BenchError(f"{name} refused {cmd}: {reply.reason}")
        return reply

    def fresh_stats(self, *names: str) -> None:
        """Wait for a heartbeat sent after now from each worker (so counters are current)."""
        marks = {n: self.workers[n].heartbeats for n in names}
        self.wait(lambda: all(self.workers[n].heartbeats >= marks[n] + 2 for n in names), 15, "fresh heartbeats")

    def socket(self, kind: int, **opts: int) -> zmq.Socket:
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        for k, v in opts.items():
            s.setsockopt(getattr(zmq, k), v)
        self._extra_sockets.append(s)
        return s

    # ------------------------------------------------------------------ results
    def result(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        """Stop an instrumented worker and read what it recorded (see bench.instrumented)."""
        w = self.workers[name]
        self.stop(name)
        if w.out is None:
            raise BenchError(f"{name} is not instrumented")
        from bench.instrumented import load_result

        wait_for(lambda: w.out.exists(), timeout, f"{name}'s result file")
        return load_result(w.out)

    def stop(self, name: str, timeout: float = 10.0) -> None:
        w = self.workers[name]
        if w.proc.poll() is not None:
            return
        try:
            w.proc.send_signal(signal.SIGTERM)
            w.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait(5)

    def close(self) -> None:
        for name in list(self.workers):
            try:
                self.stop(name, timeout=5.0)
            except Exception:
                pass
        for w in self.workers.values():  # belt and braces: nothing outlives the benchmark
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait(5)
        for s in self._extra_sockets:
            s.close(0)
        self.control.close(0)
        self.ctx.destroy(linger=0)
        if os.environ.get("TICKDESK_BENCH_KEEP"):
            print(f"(kept {self.dir})", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_peer(module: str, *args: str, cwd: Path = REPO) -> subprocess.Popen:
    """Start ``python -m MODULE ARGS`` (a raw baseline peer); its last stdout line is JSON."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def peer_result(proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise BenchError(f"peer timed out: {err[-2000:]}") from None
    if proc.returncode != 0:
        raise BenchError(f"peer failed ({proc.returncode}): {err[-2000:]}")
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise BenchError(f"peer printed no result: {err[-2000:]}")
    return json.loads(lines[-1])


def kill_peers(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
