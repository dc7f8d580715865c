"""The supervisor: starts each worker as its own OS process and keeps it alive.

It binds a ROUTER on the control endpoint; every worker connects a DEALER whose routing id
is its name, says ``hello``, then sends a heartbeat with its counters every ~0.5 s.  The
supervisor answers each heartbeat (so workers know it is alive), restarts a worker that
died or fell silent, relays commands (resent until answered: a worker that reconnects its
control channel gets them again, and answers a repeat from its cache), and on :meth:`stop`
ends every worker: a ``stop`` command, then SIGTERM, then SIGKILL, and waits for each one.

Restarts: a worker that had become ready (said hello) and served a while is restarted at
once, every time -- an order gateway that crashes is serving again within its start-up time.
Only a crash loop at start-up backs off: the second and later starts in a row that die
before they are ready (or within ``startup_crash_window`` of it) wait 0.5 s doubling to 10 s,
shown as state ``backoff`` with the reason.

This class has no thread and no loop of its own: :meth:`poll` does one round.  In the product
it runs on its own thread (:mod:`workers.supervisor_thread`, the window and the headless
runner alike) so that nothing the UI thread does can delay a heartbeat answer or a restart;
tests drive :meth:`poll` directly.  Its silence check only counts time it was listening: a
stall of its own loop (a C++ call holding the GIL, a suspended VM) never makes a worker look
silent.

Time and processes are injected (``clock``, ``popen``): every backoff, silence limit and stop
escalation is decided from ``clock.monotonic()``, so tests drive them on a
:class:`~workers.clock.ManualClock` with fake processes, exactly and without waiting.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import math
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import zmq

from workers import protocol as P
from workers.clock import LIVE_CLOCK, Clock
from workers.config import Endpoints, enable_ipv6
from workers.errors import ConfigError
from workers.ratelimit import KeyedLimiter, RateLimitedLogger
from workers.runtime import EXIT_CONFIG_ERROR, EXIT_CORRUPT_STATE, SUPERVISOR_PID_ENV, check_bind_allowed

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


class WorkerReadout:
    """What :class:`WorkerState` and its snapshot :class:`WorkerView` both answer (the
    window's columns read either)."""

    spec: WorkerSpec
    proc: Any
    started_at: float
    last_heartbeat: float
    stats: dict
    carried: dict
    clock: Clock

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

    def counters(self) -> dict[str, int | float]:
        """Every counter summed over every incarnation (the live one and the dead ones)."""
        out = dict(self.carried)
        for k, v in self.stats.get("counters", {}).items():
            out[k] = out.get(k, 0) + v
        return out


@dataclass
class WorkerState(WorkerReadout):
    """What the supervisor knows of one worker (the supervisor's thread alone touches it;
    others read :class:`WorkerView` snapshots)."""

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
    ready_at: float = 0.0  # when this incarnation said hello (0: not ready yet)
    #: incarnations in a row that died before they were ready or just after: a crash loop
    #: at start-up (the only case that backs off)
    quick_deaths: int = 0
    #: silence is counted from here at the earliest: the supervisor's own stall is not the
    #: worker's silence
    heard_floor: float = 0.0
    _prev_counters: dict = field(default_factory=dict)
    _prev_ts: float = 0.0
    #: the supervisor's clock (what uptime and heartbeat_age are measured on)
    clock: Clock = field(default=LIVE_CLOCK, repr=False, compare=False)

    def view(self) -> WorkerView:
        """A snapshot for another thread (shares the stats maps, which are replaced, never
        changed in place)."""
        # every field the view declares, copied by name: a field added to both is never forgotten
        values = {f.name: getattr(self, f.name) for f in fields(WorkerView)}
        values.update(
            spec=WorkerSpec(self.spec.name, self.spec.kind, list(self.spec.args), self.spec.restart, list(self.spec.first_start_args)),
            proc=self.pid if self.proc is not None else None, carried=dict(self.carried),
        )
        return WorkerView(**values)

    def retire_stats(self) -> None:
        """The process is gone: keep its counters so fleet totals never go backwards."""
        for k, v in self.stats.get("counters", {}).items():
            if isinstance(v, (int, float)):
                self.carried[k] = self.carried.get(k, 0) + v
        self.stats = {}
        self.rates = {}


@dataclass
class WorkerView(WorkerReadout):
    """A copy of a :class:`WorkerState` at one instant, for the window and the headless
    runner.  ``proc`` is the pid while a process runs, None otherwise (as WorkerState's)."""

    spec: WorkerSpec
    proc: int | None = None
    pid: int = 0
    state: str = "stopped"
    started_at: float = 0.0
    restarts: int = 0
    last_heartbeat: float = 0.0
    stats: dict = field(default_factory=dict)
    rates: dict = field(default_factory=dict)
    exit_code: int | None = None
    next_start: float = 0.0
    backoff: float = 0.0
    reason: str = ""
    wanted: bool = True
    carried: dict = field(default_factory=dict)
    quick_deaths: int = 0
    clock: Clock = field(default=LIVE_CLOCK, repr=False, compare=False)


@dataclass
class SupervisorConfig:
    heartbeat_timeout: float = 3.0  # a running worker silent this long is killed and restarted
    startup_timeout: float = 20.0  # a new worker has this long to say hello
    #: a worker that dies before its hello or this soon after it died "at start-up"; the
    #: second such death in a row starts the backoff (any other death restarts at once)
    startup_crash_window: float = 1.0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    stop_timeout: float = 5.0
    #: a command not answered is sent again this often (the worker answers a repeat from
    #: its cache), until ``command_ttl`` after it was first sent
    command_resend: float = 1.0
    command_ttl: float = 10.0
    #: a gap this long between two polls is the supervisor's own stall, not the workers'
    #: silence: every silence clock restarts from the end of the gap
    stall_grace: float = 1.0
    #: peer-caused log lines (unknown names, bad frames, impostors): one per kind per interval
    log_interval: float = 5.0
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
    # each entry is checked where it is shown (workers.sockmon.parse_reports); here only its shape
    sockets = stats.get("sockets")
    clean["sockets"] = sockets if isinstance(sockets, list) else []
    return clean


@dataclass
class _Pending:
    """A command sent and not yet answered."""

    name: str
    pid: int
    frame: bytes
    first_sent: float
    last_sent: float


#: peer names are cut to this in log lines (a name is whatever bytes a peer chose)
_NAME_IN_LOG = 40


def _peer_name(ident: bytes) -> str:
    text = ident.decode(errors="replace")
    return text if len(text) <= _NAME_IN_LOG else text[:_NAME_IN_LOG] + "…"


def fleet_totals(workers: Any) -> dict[str, Any]:
    """Fleet-wide counters (every incarnation of every worker) for the status line and the
    summary; ``workers`` are WorkerStates or WorkerViews."""
    out = {"ticks": 0, "signals": 0, "orders": 0, "fills": 0, "rejected": 0, "decode_errors": 0, "dropped": 0}
    rates = {"ticks": 0.0}
    workers = list(workers)
    for w in workers:
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
    out["restarts"] = sum(w.restarts for w in workers)
    return out


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
        self.ctx = ctx or enable_ipv6(zmq.Context.instance())
        self.clock = clock
        self._popen = popen
        self.workers: dict[str, WorkerState] = {s.name: WorkerState(spec=s, clock=clock) for s in specs}
        self.command_replies: deque[tuple[str, P.CommandReply]] = deque(maxlen=256)
        self.events: deque[tuple[float, str, str]] = deque(maxlen=1000)
        self.listeners: list[Callable[[str, str], None]] = []
        self._router: zmq.Socket | None = None
        # ids unique across supervisors: a remote worker that outlives one must not take the
        # next one's c1 for a repeat of the old c1 (it answers repeats from its cache)
        self._cmd_prefix = f"{secrets.token_hex(3)}-"
        self._cmd_ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._stopping = False
        self._zap = None
        self._last_poll = 0.0
        self.decode_errors = 0
        self.impostors = 0  # hello/heartbeats under a worker's name from another pid
        self.unknown_peers = 0  # control messages under names that are not the fleet's
        self.stalls = 0  # gaps between polls longer than stall_grace
        #: the one log of everything a peer can cause: a flood costs a line per kind per interval
        self.rlog = RateLimitedLogger(log, self.config.log_interval, clock)
        self._event_limit = KeyedLimiter(self.config.log_interval, burst=5, clock=clock)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        try:
            check_bind_allowed(self.endpoints.control, self.config.curve_dir)
        except ConfigError as e:
            raise SupervisorError(f"control endpoint: {e}") from None
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
        if "[" in self.endpoints.control:
            r.setsockopt(zmq.IPV6, 1)  # tcp://[::1]:port binds only on an IPv6 socket
        try:
            r.bind(self.endpoints.control)
        except zmq.ZMQError as e:
            r.close(0)
            hint = " (is another TickDesk running? pass other endpoints, e.g. --control)" if e.errno == zmq.EADDRINUSE else ""
            raise SupervisorError(f"cannot bind the control endpoint {self.endpoints.control}: {e.strerror}{hint}") from None
        self._router = r
        self._last_poll = self.clock.monotonic()
        for w in self.workers.values():
            if w.wanted:
                self._spawn(w)

    def _emit_limited(self, key: Any, name: str, text: str) -> None:
        """:meth:`_emit` for events a peer can cause: a few per key, then one per interval with
        the count of those suppressed."""
        if not self._event_limit.allow(key):
            return
        skipped = self._event_limit.take_suppressed(key)
        self._emit(name, f"{text} ({skipped} similar suppressed)" if skipped else text)

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
            w.quick_deaths += 1  # a start that failed is a start-up crash (and ends the recursion)
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
        w.ready_at = 0.0
        w.heard_floor = 0.0
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
        """Start it again: at once unless it is in a crash loop at start-up (the second death
        in a row before ready), then after a backoff doubling to ``backoff_max``."""
        if not w.spec.restart or not w.wanted or self._stopping:
            return
        if w.quick_deaths <= 1:
            w.backoff = 0.0
            self._spawn(w)
            return
        c = self.config
        w.backoff = min(c.backoff_initial * 2 ** (w.quick_deaths - 2), c.backoff_max)
        w.next_start = self.clock.monotonic() + w.backoff
        w.state = "backoff"
        w.reason = (f"crash loop at start-up: {w.quick_deaths} starts in a row died before ready "
                    f"(or within {c.startup_crash_window:g}s of it); next try in {w.backoff:.1f}s ({w.reason})")
        self._emit(w.name, w.reason)

    # ------------------------------------------------------------------ polling
    def poll(self, timeout_ms: int = 0) -> None:
        """Drain the control socket, answer heartbeats, restart what died.  Never blocks
        longer than ``timeout_ms``."""
        if self._router is None:
            return
        if self._zap is not None:
            while self._zap.sock.poll(0, zmq.POLLIN):
                self._zap.handle(self._zap.sock.recv_multipart())
        ready = self._router.poll(timeout_ms, zmq.POLLIN)
        self._note_stall(timeout_ms / 1000)
        if ready:
            for _ in range(10_000):
                try:
                    frames = self._router.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._on_control(frames)
        self._check_processes()
        self._resend_commands()
        self._last_poll = self.clock.monotonic()

    def _note_stall(self, waited: float) -> None:
        """A long gap since the last poll (beyond what this one waited for) was our own stall:
        no worker was heard meanwhile, however often it spoke, so every silence clock starts
        again from now.  (What they sent meanwhile is read right after, so heartbeats queued
        during the stall count too.)"""
        now = self.clock.monotonic()
        gap = now - self._last_poll - waited
        if self._last_poll and gap > self.config.stall_grace:
            self.stalls += 1
            for w in self.workers.values():
                w.heard_floor = now
            log.warning("the supervisor's loop stalled for %.1fs; worker silence is counted from now", gap)

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
            self.rlog.warning("decode", "bad control message from %r: %s (%d so far)", _peer_name(ident), e, self.decode_errors)
            return
        if w is None:
            self.unknown_peers += 1
            self.rlog.warning("unknown", "control message from unknown worker %r ignored (%d so far)",
                              _peer_name(ident), self.unknown_peers)
            return
        now = self.clock.monotonic()
        if isinstance(msg, (P.Hello, P.Heartbeat)):
            if w.proc is None or msg.pid != w.pid:
                # a late message from a previous incarnation, or someone else using the name:
                # only the process this supervisor started speaks for a worker
                self.impostors += 1
                self.rlog.warning("impostor", "%s from pid %s under the name %r, not the pid %s this supervisor started: "
                                  "ignored (%d so far)", msg.TYPE, msg.pid, name, w.pid or "-", self.impostors)
                return
            w.last_heartbeat = now
            if isinstance(msg, P.Hello):
                if w.state == "starting":
                    w.state = "running"
                    w.reason = ""
                    w.ready_at = now
                # a new connection (a start, or a reconnect after the old one went deaf):
                # what it may have missed is sent again
                self._resend_commands(name)
            else:
                if w.state in ("starting", "running", "paused"):
                    w.state = "paused" if msg.state == "paused" else "running"
                self._update_stats(w, msg.stats, now)
            self._send(ident, P.Heartbeat(ts=P.now_ns()))
        elif isinstance(msg, P.CommandReply):
            pending = self._pending.get(msg.id)
            if pending is None or pending.name != name:
                return  # a repeat of an answered command, or a reply nobody asked for
            del self._pending[msg.id]
            self.command_replies.append((name, msg))
            if not msg.ok:
                self._emit_limited(("refused", name), name, f"command {msg.cmd} refused: {msg.reason[:200]}")

    def _update_stats(self, w: WorkerState, stats: dict, now: float) -> None:
        stats = _clean_stats(stats)
        counters = stats["counters"]
        if w._prev_ts and now > w._prev_ts:
            dt = now - w._prev_ts
            w.rates = {k: max(0.0, (v - w._prev_counters.get(k, 0)) / dt) for k, v in counters.items() if isinstance(v, (int, float))}
        w._prev_counters, w._prev_ts = dict(counters), now
        w.stats = stats

    def _send(self, ident: bytes, msg: P.Message) -> None:
        self._send_frame(ident, msg.pack())

    def _send_frame(self, ident: bytes, frame: bytes) -> None:
        try:
            self._router.send_multipart([ident, frame], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # peer gone or queue full: the next heartbeat (or the resend) will do

    def _check_processes(self) -> None:
        now = self.clock.monotonic()
        for w in self.workers.values():
            if w.proc is not None:
                code = w.proc.poll()
                if code is not None:
                    w.proc = None
                    w.exit_code = code
                    self._drop_pending(w.name)
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
                    if code == EXIT_CORRUPT_STATE:
                        # It refused state it cannot trust (a damaged journal): every restart
                        # would refuse again, and a person must restore or decide.
                        w.state, w.reason = "failed", self._last_log_line(w) or f"exited with code {code}"
                        self._emit(w.name, f"refuses to start on damaged state: {w.reason}; not restarting")
                        continue
                    w.restarts += 1
                    served = now - w.ready_at if w.ready_at else 0.0
                    at_startup = not w.ready_at or served < self.config.startup_crash_window
                    w.quick_deaths = w.quick_deaths + 1 if at_startup else 0
                    w.state, w.reason = "crashed", f"exited with code {code}"
                    how = "before it was ready" if not w.ready_at else f"after {served:.1f}s ready"
                    self._emit(w.name, f"died ({w.reason}) {how}; restarting")
                    self._schedule_restart(w)
                    continue
                if w.stopping_since:
                    self._escalate_stop(w, now)
                    continue
                silent_for = now - max(w.last_heartbeat or w.started_at, w.heard_floor)
                limit = self.config.startup_timeout if w.state == "starting" else self.config.heartbeat_timeout
                if silent_for > limit and not self._stopping:
                    self._emit(w.name, f"silent for {silent_for:.1f}s; killing pid {w.pid}")
                    self._kill(w.proc)
                    # the next poll sees it dead and restarts it
            elif w.state == "backoff" and now >= w.next_start and w.wanted and not self._stopping:
                self._spawn(w)

    # ------------------------------------------------------------------ commands
    def new_command_id(self) -> str:
        """A fresh command id (safe from any thread: itertools.count is atomic)."""
        return f"{self._cmd_prefix}{next(self._cmd_ids)}"

    def command(self, name: str, cmd: str, args: dict | None = None, cid: str | None = None) -> str:
        """Send a command to a worker; its reply lands in :attr:`command_replies`.  It is sent
        again on the worker's next hello and every ``command_resend`` seconds until answered
        (or ``command_ttl``, or the process ends)."""
        cid = cid or self.new_command_id()
        if self._router is None:
            return cid
        frame = P.Command(id=cid, cmd=cmd, args=args or {}).pack()
        w = self.workers.get(name)
        if w is not None and w.proc is not None:
            now = self.clock.monotonic()
            self._pending[cid] = _Pending(name, w.pid, frame, now, now)
        self._send_frame(name.encode(), frame)
        return cid

    def _resend_commands(self, name: str | None = None) -> None:
        """Send again what is not answered: ``name``'s all at once (it has just said hello),
        or, with no name, every command whose resend interval is over."""
        if not self._pending:
            return
        now = self.clock.monotonic()
        c = self.config
        for cid, p in list(self._pending.items()):
            if now - p.first_sent > c.command_ttl:
                del self._pending[cid]
            elif (p.name == name) if name is not None else (now - p.last_sent >= c.command_resend):
                p.last_sent = now
                self._send_frame(p.name.encode(), p.frame)

    def _drop_pending(self, name: str) -> None:
        """The process is gone: its commands are not for the next incarnation."""
        for cid in [cid for cid, p in self._pending.items() if p.name == name]:
            del self._pending[cid]

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
        w.quick_deaths = 0  # the trader asked: no backoff left over
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
        return fleet_totals(self.workers.values())
