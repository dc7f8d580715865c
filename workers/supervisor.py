"""The supervisor: starts each worker as its own OS process and keeps it alive.

It binds a ROUTER on the control endpoint; every worker connects a DEALER whose routing id
is its name, says ``hello``, then sends a heartbeat with its counters every ~0.5 s.  The
supervisor answers each heartbeat (so workers know it is alive), restarts a worker that
died or fell silent with exponential backoff, relays commands, and on :meth:`stop` ends every
worker: a ``stop`` command, then SIGTERM, then SIGKILL, and waits for each one.

It has no thread and no event loop of its own: the owner calls :meth:`poll` (the headless
runner in a loop, the window from a timer), so it fits a blocking loop and Qt alike.

Time and processes are injected (``clock``, ``popen``): every backoff, silence limit and stop
escalation is decided from ``clock.monotonic()``, so tests drive them on a
:class:`~workers.clock.ManualClock` with fake processes, exactly and without waiting.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import zmq

from workers import protocol as P
from workers.clock import LIVE_CLOCK, Clock
from workers.config import Endpoints
from workers.runtime import EXIT_CONFIG_ERROR, SUPERVISOR_PID_ENV, check_bind_allowed

log = logging.getLogger("tickdesk.supervisor")

REPO_ROOT = Path(__file__).resolve().parent.parent


class SupervisorError(RuntimeError):
    """The fleet cannot be started as configured; the message says why."""


class Process(Protocol):
    """What the supervisor uses of a :class:`subprocess.Popen` (tests pass fakes)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


#: how the supervisor starts a process: ``subprocess.Popen``'s signature
Popen = Callable[..., Process]


def worker_command(kind: str) -> list[str]:
    """argv prefix that runs ``worker KIND`` from source or from a frozen (PyInstaller) build."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "worker", kind]
    return [sys.executable, str(REPO_ROOT / "main.py"), "worker", kind]


@dataclass
class WorkerSpec:
    name: str
    kind: str
    args: list[str] = field(default_factory=list)
    restart: bool = True
    #: options for the first start only (the exchange's --fresh): a restart after a crash must
    #: pick up where the dead process left off, not wipe its state again
    first_start_args: list[str] = field(default_factory=list)


@dataclass
class WorkerState:
    """What the supervisor knows of one worker; the window shows exactly this."""

    spec: WorkerSpec
    proc: Process | None = None
    pid: int = 0
    state: str = "stopped"  # starting | running | paused | stopping | stopped | crashed | backoff
    started_at: float = 0.0
    restarts: int = 0
    last_heartbeat: float = 0.0
    stats: dict = field(default_factory=dict)
    rates: dict = field(default_factory=dict)
    exit_code: int | None = None
    next_start: float = 0.0
    backoff: float = 0.0
    reason: str = ""
    wanted: bool = True  # False once the user stopped it: no automatic restart
    carried: dict = field(default_factory=dict)  # counters of earlier incarnations
    stopping_since: float = 0.0  # a requested stop is under way (0: none)
    signalled: int = 0  # 0: stop command sent, 1: SIGTERM sent, 2: SIGKILL sent
    restart_after_stop: bool = False
    starts: int = 0  # processes started so far
    _prev_counters: dict = field(default_factory=dict)
    _prev_ts: float = 0.0
    #: the supervisor's clock (what uptime and heartbeat_age are measured on)
    clock: Clock = field(default=LIVE_CLOCK, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def uptime(self) -> float:
        return self.clock.monotonic() - self.started_at if self.proc is not None and self.started_at else 0.0

    @property
    def heartbeat_age(self) -> float | None:
        return self.clock.monotonic() - self.last_heartbeat if self.last_heartbeat else None

    def counter(self, key: str) -> int:
        """A counter summed over every incarnation of this worker."""
        return int(self.stats.get("counters", {}).get(key, 0)) + int(self.carried.get(key, 0))

    def retire_stats(self) -> None:
        """The process is gone: keep its counters so fleet totals never go backwards."""
        for k, v in self.stats.get("counters", {}).items():
            if isinstance(v, (int, float)):
                self.carried[k] = self.carried.get(k, 0) + v
        self.stats = {}
        self.rates = {}


@dataclass
class SupervisorConfig:
    heartbeat_timeout: float = 3.0  # a running worker silent this long is killed and restarted
    startup_timeout: float = 20.0  # a new worker has this long to say hello
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    stable_after: float = 30.0  # a worker up this long gets its backoff reset
    stop_timeout: float = 5.0
    log_dir: str | None = None  # worker stderr goes here (one file each), else inherited
    curve_dir: str | None = None  # CurveZMQ keys: control socket and every worker use CURVE


def _clean_stats(stats: Any) -> dict:
    """A heartbeat's stats in the shape the rest of the code reads: counters are numbers,
    latency and gauges are maps.  Anything else is dropped here, so that a malformed or forged
    heartbeat cannot break poll(), counter() or totals()."""
    if not isinstance(stats, dict):
        stats = {}
    counters = stats.get("counters")
    clean = {
        "counters": {
            k: v
            for k, v in (counters.items() if isinstance(counters, dict) else ())
            if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }
    }
    for key in ("latency", "gauges"):
        v = stats.get(key)
        clean[key] = v if isinstance(v, dict) else {}
    return clean


class Supervisor:
    def __init__(
        self,
        endpoints: Endpoints,
        specs: list[WorkerSpec],
        config: SupervisorConfig | None = None,
        ctx: zmq.Context | None = None,
        *,
        clock: Clock = LIVE_CLOCK,
        popen: Popen = subprocess.Popen,
    ):
        self.endpoints = endpoints
        self.config = config or SupervisorConfig()
        self.ctx = ctx or zmq.Context.instance()
        self.clock = clock
        self._popen = popen
        self.workers: dict[str, WorkerState] = {s.name: WorkerState(spec=s, clock=clock) for s in specs}
        self.command_replies: deque[tuple[str, P.CommandReply]] = deque(maxlen=256)
        self.events: deque[tuple[float, str, str]] = deque(maxlen=1000)
        self.listeners: list[Callable[[str, str], None]] = []
        self._router: zmq.Socket | None = None
        self._cmd_ids = itertools.count(1)
        self._stopping = False
        self._zap = None
        self.decode_errors = 0
        self.impostors = 0  # hello/heartbeats under a worker's name from another pid

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        check_bind_allowed(self.endpoints.control, self.config.curve_dir)
        r = self.ctx.socket(zmq.ROUTER)
        self._zap = None
        if self.config.curve_dir:
            from workers.security import CurveKeys, ZapHandler

            keys = CurveKeys.load(self.config.curve_dir)
            self._zap = ZapHandler(self.ctx, keys.authorized)
            keys.apply_server(r)
        r.setsockopt(zmq.LINGER, 0)
        r.setsockopt(zmq.MAXMSGSIZE, P.MAX_MESSAGE_BYTES)
        r.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted worker takes over its name at once
        r.setsockopt(zmq.ROUTER_MANDATORY, 0)
        try:
            r.bind(self.endpoints.control)
        except zmq.ZMQError as e:
            r.close(0)
            hint = " (is another TickDesk running? pass other endpoints, e.g. --control)" if e.errno == zmq.EADDRINUSE else ""
            raise SupervisorError(f"cannot bind the control endpoint {self.endpoints.control}: {e.strerror}{hint}") from None
        self._router = r
        for w in self.workers.values():
            if w.wanted:
                self._spawn(w)

    def _emit(self, name: str, text: str) -> None:
        self.events.append((self.clock.time_ns() / 1e9, name, text))
        log.info("%s: %s", name, text)
        for fn in list(self.listeners):
            try:
                fn(name, text)
            except Exception:
                log.exception("supervisor listener failed")

    def _spawn(self, w: WorkerState) -> None:
        spec = w.spec
        cmd = worker_command(spec.kind) + ["--name", spec.name, *self.endpoints.as_args(), *spec.args]
        if not w.starts:
            cmd += spec.first_start_args
        if self.config.curve_dir:
            cmd += ["--curve-dir", self.config.curve_dir]
        env = dict(os.environ)
        env[SUPERVISOR_PID_ENV] = str(os.getpid())
        env["PYTHONUNBUFFERED"] = "1"
        out = None
        if self.config.log_dir:
            Path(self.config.log_dir).mkdir(parents=True, exist_ok=True)
            out = open(Path(self.config.log_dir) / f"{spec.name}.log", "ab")
        try:
            # A new session: Ctrl-C in a terminal reaches the supervisor only, which then
            # stops the workers in order instead of racing them.
            w.proc = self._popen(cmd, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            w.state, w.reason = "crashed", f"cannot start: {e}"
            self._schedule_restart(w)
            return
        finally:
            if out is not None:
                out.close()
        w.pid = w.proc.pid
        w.starts += 1
        w.state = "starting"
        w.started_at = self.clock.monotonic()
        w.last_heartbeat = 0.0
        w.exit_code = None
        w.retire_stats()
        w._prev_counters, w._prev_ts = {}, 0.0
        self._emit(spec.name, f"started pid {w.pid}")

    def _last_log_line(self, w: WorkerState) -> str:
        """The last error line of a worker's log file (where it says why it could not start)."""
        if not self.config.log_dir:
            return ""
        try:
            lines = (Path(self.config.log_dir) / f"{w.name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        for line in reversed(lines[-50:]):
            if "ERROR" in line or "error:" in line:
                return line.split("] ", 1)[-1].strip()
        return lines[-1].strip() if lines else ""

    def failed(self) -> list[WorkerState]:
        """Workers whose first start failed on their configuration (never restarted)."""
        return [w for w in self.workers.values() if w.state == "failed"]

    def _schedule_restart(self, w: WorkerState) -> None:
        if not w.spec.restart or not w.wanted or self._stopping:
            return
        w.backoff = self.config.backoff_initial if not w.backoff else min(w.backoff * 2, self.config.backoff_max)
        w.next_start = self.clock.monotonic() + w.backoff
        w.state = "backoff"

    # ------------------------------------------------------------------ polling
    def poll(self, timeout_ms: int = 0) -> None:
        """Drain the control socket, answer heartbeats, restart what died.  Never blocks
        longer than ``timeout_ms``."""
        if self._router is None:
            return
        if self._zap is not None:
            while self._zap.sock.poll(0, zmq.POLLIN):
                self._zap.handle(self._zap.sock.recv_multipart())
        if self._router.poll(timeout_ms, zmq.POLLIN):
            for _ in range(10_000):
                try:
                    frames = self._router.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._on_control(frames)
        self._check_processes()

    def _on_control(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            self.decode_errors += 1
            return
        ident, payload = frames
        name = ident.decode(errors="replace")
        w = self.workers.get(name)
        try:
            msg = P.decode(payload)
        except P.ProtocolError as e:
            self.decode_errors += 1
            log.warning("bad control message from %s: %s", name, e)
            return
        if w is None:
            log.warning("control message from unknown worker %r", name)
            return
        now = self.clock.monotonic()
        if isinstance(msg, (P.Hello, P.Heartbeat)):
            if w.proc is None or msg.pid != w.pid:
                # a late message from a previous incarnation, or someone else using the name:
                # only the process this supervisor started speaks for a worker
                self.impostors += 1
                return
            w.last_heartbeat = now
            if isinstance(msg, P.Hello):
                if w.state == "starting":
                    w.state = "running"
                    w.reason = ""
            else:
                if w.state in ("starting", "running", "paused"):
                    w.state = "paused" if msg.state == "paused" else "running"
                self._update_stats(w, msg.stats, now)
            self._send(ident, P.Heartbeat(ts=P.now_ns()))
        elif isinstance(msg, P.CommandReply):
            self.command_replies.append((name, msg))
            if not msg.ok:
                self._emit(name, f"command {msg.cmd} refused: {msg.reason}")

    def _update_stats(self, w: WorkerState, stats: dict, now: float) -> None:
        stats = _clean_stats(stats)
        counters = stats["counters"]
        if w._prev_ts and now > w._prev_ts:
            dt = now - w._prev_ts
            w.rates = {k: max(0.0, (v - w._prev_counters.get(k, 0)) / dt) for k, v in counters.items() if isinstance(v, (int, float))}
        w._prev_counters, w._prev_ts = dict(counters), now
        w.stats = stats

    def _send(self, ident: bytes, msg: P.Message) -> None:
        try:
            self._router.send_multipart([ident, msg.pack()], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # peer gone or queue full: the next heartbeat will do

    def _check_processes(self) -> None:
        now = self.clock.monotonic()
        for w in self.workers.values():
            if w.proc is not None:
                code = w.proc.poll()
                if code is not None:
                    w.proc = None
                    w.exit_code = code
                    if w.stopping_since:
                        self._stopped_on_request(w)
                        continue
                    if self._stopping or not w.wanted:
                        w.state = "stopped"
                        continue
                    if code == EXIT_CONFIG_ERROR and w.starts == 1 and not w.last_heartbeat:
                        # Its very first start failed before it said hello: a configuration
                        # error (bad option, endpoint refused).  Restarting cannot fix it.
                        w.state, w.reason = "failed", self._last_log_line(w) or f"exited with code {code}"
                        self._emit(w.name, f"failed to start: {w.reason}; not restarting")
                        continue
                    w.restarts += 1
                    w.state, w.reason = "crashed", f"exited with code {code}"
                    self._emit(w.name, f"died ({w.reason}); restarting")
                    if now - w.started_at > self.config.stable_after:
                        w.backoff = 0.0
                    self._schedule_restart(w)
                    continue
                if w.stopping_since:
                    self._escalate_stop(w, now)
                    continue
                silent_for = now - (w.last_heartbeat or w.started_at)
                limit = self.config.startup_timeout if w.state == "starting" else self.config.heartbeat_timeout
                if silent_for > limit and not self._stopping:
                    self._emit(w.name, f"silent for {silent_for:.1f}s; killing pid {w.pid}")
                    self._kill(w.proc)
                    # the next poll sees it dead and restarts it
            elif w.state == "backoff" and now >= w.next_start and w.wanted and not self._stopping:
                self._spawn(w)

    # ------------------------------------------------------------------ commands
    def command(self, name: str, cmd: str, args: dict | None = None) -> str:
        """Send a command to a worker; its reply lands in :attr:`command_replies`."""
        cid = f"c{next(self._cmd_ids)}"
        if self._router is not None:
            self._send(name.encode(), P.Command(id=cid, cmd=cmd, args=args or {}))
        return cid

    def broadcast(self, kind: str, cmd: str, args: dict | None = None) -> list[str]:
        return [self.command(w.name, cmd, args) for w in self.workers.values() if w.spec.kind == kind and w.proc is not None]

    def reply_for(self, cid: str) -> P.CommandReply | None:
        for _, r in self.command_replies:
            if r.id == cid:
                return r
        return None

    def restart_worker(self, name: str) -> None:
        """Ask a worker to stop and start it again once it is gone.  Returns at once; the
        stop escalates (command, SIGTERM, SIGKILL) in :meth:`poll`."""
        self._request_stop(name, restart=True)

    def stop_worker(self, name: str) -> None:
        """Stop a worker until it is started again.  Returns at once (see restart_worker)."""
        self._request_stop(name, restart=False)

    def start_worker(self, name: str) -> None:
        w = self.workers[name]
        w.wanted = True
        w.restart_after_stop = w.stopping_since > 0  # a stop under way becomes a restart
        if w.proc is None:
            w.backoff = 0.0
            self._spawn(w)

    def _request_stop(self, name: str, restart: bool) -> None:
        w = self.workers[name]
        w.wanted = restart
        w.restart_after_stop = restart
        if w.proc is None:
            w.state = "stopped"
            if restart:
                self._spawn(w)
            return
        if not w.stopping_since:
            self._emit(name, "restart requested" if restart else "stop requested")
            w.stopping_since = self.clock.monotonic()
            w.signalled = 0
            w.state = "stopping"
            self.command(name, "stop")

    def _escalate_stop(self, w: WorkerState, now: float) -> None:
        """A requested stop that takes too long: SIGTERM after the grace, SIGKILL after 1 s more."""
        waited = now - w.stopping_since
        if w.signalled == 0 and waited > self.config.stop_timeout:
            w.signalled = 1
            w.proc.terminate()
        elif w.signalled == 1 and waited > self.config.stop_timeout + 1.0:
            w.signalled = 2
            self._kill(w.proc)

    def _stopped_on_request(self, w: WorkerState) -> None:
        w.stopping_since = 0.0
        if w.restart_after_stop and not self._stopping:
            w.restart_after_stop = False
            w.restarts += 1
            w.backoff = 0.0
            self._spawn(w)
        else:
            w.state = "stopped"

    def add_worker(self, spec: WorkerSpec, start: bool = True) -> WorkerState:
        if spec.name in self.workers:
            raise ValueError(f"a worker named {spec.name!r} exists already")
        w = self.workers[spec.name] = WorkerState(spec=spec, wanted=start, clock=self.clock)
        if start and self._router is not None:
            self._spawn(w)
        return w

    def set_worker_args(self, name: str, args: list[str]) -> None:
        """New command-line options for a worker; they apply from its next (re)start."""
        self.workers[name].spec.args = list(args)

    # ------------------------------------------------------------------ stopping
    @staticmethod
    def _kill(proc: Process) -> None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """Stop every worker (stop command, SIGTERM, SIGKILL) and wait for each one."""
        self._stopping = True
        procs = [w for w in self.workers.values() if w.proc is not None]
        for w in procs:
            w.state = "stopping"
            self.command(w.name, "stop")
        deadline = self.clock.monotonic() + self.config.stop_timeout
        for sig_step in ("wait", "term", "kill"):
            for w in procs:
                if w.proc is None:
                    continue
                if sig_step == "term" and w.proc.poll() is None:
                    w.proc.send_signal(signal.SIGTERM)
                elif sig_step == "kill" and w.proc.poll() is None:
                    self._kill(w.proc)
            for w in procs:
                if w.proc is None:
                    continue
                try:
                    w.proc.wait(max(0.05, deadline - self.clock.monotonic()) if sig_step != "kill" else None)
                except subprocess.TimeoutExpired:
                    continue
                w.exit_code = w.proc.returncode
                w.proc = None
                w.state = "stopped"
            if all(w.proc is None for w in procs):
                break
            deadline = self.clock.monotonic() + 2.0
        if self._router is not None:
            self._router.close(0)
            self._router = None
        if getattr(self, "_zap", None) is not None:
            self._zap.close()
            self._zap = None

    # ------------------------------------------------------------------ reporting
    def totals(self) -> dict[str, Any]:
        """Fleet-wide counters for the status line and the summary."""
        out = {"ticks": 0, "signals": 0, "orders": 0, "fills": 0, "rejected": 0, "decode_errors": 0, "dropped": 0}
        rates = {"ticks": 0.0}
        for w in self.workers.values():
            kind = w.spec.kind
            if kind == "marketdata":
                out["ticks"] += w.counter("ticks")
                rates["ticks"] += w.rates.get("ticks", 0.0)
            elif kind == "strategy":
                out["signals"] += w.counter("signals")
            elif kind == "executor":
                out["orders"] += w.counter("orders")
                out["rejected"] += w.counter("rejected")
            elif kind == "exchange":
                out["fills"] += w.counter("fills")
            out["decode_errors"] += w.counter("decode_errors")
            out["dropped"] += w.counter("dropped")
        out["ticks_per_s"] = rates["ticks"]
        out["restarts"] = sum(w.restarts for w in self.workers.values())
        return out
