"""The worker runtime: one process, one zmq.Poller loop, heartbeats, commands, clean exit.

A worker subclasses :class:`Worker`, opens its sockets in ``setup`` with :meth:`Worker.socket`
and registers readers with :meth:`Worker.add_reader`.  The runtime drains every readable
socket in batches (NOBLOCK until EAGAIN, capped so one busy socket cannot starve the others),
sends a heartbeat with counters to the supervisor every ``--heartbeat`` seconds, runs
commands from the supervisor, and exits cleanly on SIGTERM/SIGINT, on a ``stop`` command, or
when the supervisor has gone.  An exception raised by a handler is counted and logged
(rate-limited); it never ends the process.
"""

from __future__ import annotations

import argparse
import collections
import logging
import math
import os
import signal
import sys
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import zmq

from workers import protocol as P
from workers.config import Endpoints, add_common_args, apply_toml_defaults, is_loopback
from workers.security import CurveKeys, ZapHandler

try:  # for cheap percentiles at every heartbeat (LatencyRecorder.snapshot); optional
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is a dependency, but the runtime works without
    _np = None

_I64_MAX = 2**63 - 1
try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
    _PAGE_SIZE = 4096

log = logging.getLogger("tickdesk.worker")

DRAIN_BATCH = 4096  # max messages taken from one socket per wake-up before looking at others
SUPERVISOR_PID_ENV = "TICKDESK_SUPERVISOR_PID"
#: exit code of a worker that cannot start as configured (bad option, endpoint refused, ...)
EXIT_CONFIG_ERROR = 2
#: MAXMSGSIZE of receiving sockets that connect (see Worker.socket): against memory exhaustion only
CONNECTED_MAXMSGSIZE = 64 * P.MAX_MESSAGE_BYTES
#: supervisor silent this long (and at least 3 heartbeats) -> reconnect the control DEALER: a
#: connection that took over our routing id (ROUTER_HANDOVER) leaves ours deaf for good
CONTROL_RECONNECT_AFTER = 1.5


class CommandError(Exception):
    """A command from the supervisor that cannot be carried out; the text goes back to it."""


class RateLimitedLog:
    """Log at most one line per ``interval`` seconds per key, with a count of what was skipped."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0):
        self._log = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._skipped: collections.Counter[str] = collections.Counter()

    def warning(self, key: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self._interval:
            skipped = self._skipped.pop(key, 0)
            suffix = f" ({skipped} similar suppressed)" if skipped else ""
            self._log.warning(msg + suffix, *args)
            self._last[key] = now
        else:
            self._skipped[key] += 1


class LatencyRecorder:
    """Recent latency samples (ns) of one hop; percentiles in microseconds per snapshot.

    The samples since the last snapshot are kept in an ``array('q')`` (at most the newest
    ``maxlen`` count), not as Python ints: the snapshot at every heartbeat then needs no sort,
    no conversion and no freeing of thousands of int objects (a deque of 8192 ints cost ~0.3 ms
    per heartbeat, all of it a pause in the worker's loop).
    """

    __slots__ = ("samples", "count", "maxlen")

    def __init__(self, maxlen: int = 8192):
        self.samples = array("q")
        self.maxlen = maxlen
        self.count = 0

    def add(self, ns: int) -> None:
        s = self.samples
        try:
            s.append(ns)
        except OverflowError:  # beyond int64: a broken clock; keep the sample, clamped
            s.append(_I64_MAX if ns > 0 else -_I64_MAX)
        self.count += 1
        if len(s) >= 2 * self.maxlen:
            del s[: len(s) - self.maxlen]

    def add_many(self, values: list[int]) -> None:
        """Several samples at once (e.g. every tick of a batched frame)."""
        s = self.samples
        before = len(s)
        try:
            s.extend(values)
        except OverflowError:
            del s[before:]  # extend may have taken a prefix before failing
            for v in values:
                self.add(v)
            return
        self.count += len(values)
        if len(s) >= 2 * self.maxlen:
            del s[: len(s) - self.maxlen]

    def snapshot(self) -> dict[str, float] | None:
        s = self.samples
        if not s:
            return None
        if len(s) > self.maxlen:
            del s[: len(s) - self.maxlen]
        n = len(s)
        ranks = [min(n - 1, int(q * n)) for q in (0.50, 0.99, 0.999)] + [n - 1]
        if _np is not None and n > 64:
            # the same order statistics as sorting, by partition, on a copy of the raw buffer
            a = _np.frombuffer(s, dtype=_np.int64).copy()
            a.partition(ranks)
            vals = [int(a[k]) for k in ranks]
        else:
            srt = sorted(s)
            vals = [srt[k] for k in ranks]
        del s[:]
        p50, p99, p999, mx = vals
        return {"n": n, "p50_us": p50 / 1000.0, "p99_us": p99 / 1000.0, "p999_us": p999 / 1000.0, "max_us": mx / 1000.0}


class Stats:
    """Counters and per-hop latencies that a worker reports with every heartbeat."""

    def __init__(self) -> None:
        self.counters: collections.Counter[str] = collections.Counter()
        self.latency: dict[str, LatencyRecorder] = {}
        self.gauges: dict[str, Any] = {}

    def inc(self, key: str, n: int = 1) -> None:
        self.counters[key] += n

    def lat(self, hop: str, ns: int) -> None:
        rec = self.latency.get(hop)
        if rec is None:
            rec = self.latency[hop] = LatencyRecorder()
        rec.add(ns)

    def lat_many(self, hop: str, values: list[int]) -> None:
        """Record several latency samples (ns) of one hop; cheaper than one :meth:`lat` each."""
        rec = self.latency.get(hop)
        if rec is None:
            rec = self.latency[hop] = LatencyRecorder()
        rec.add_many(values)

    def snapshot(self) -> dict[str, Any]:
        lat = {}
        for hop, rec in self.latency.items():
            snap = rec.snapshot()
            if snap:
                lat[hop] = snap
        return {"counters": dict(self.counters), "latency": lat, "gauges": dict(self.gauges)}


_statm: tuple[int, int] | None = None  # (pid, fd): a forked child must open its own


def rss_bytes() -> int:
    """Resident set size of this process, or 0 where it cannot be read cheaply."""
    global _statm
    try:
        # one raw fd kept open and re-read from offset 0 (the kernel regenerates the text):
        # a text-mode open() per heartbeat cost ~50 us of the loop
        pid = os.getpid()
        if _statm is None or _statm[0] != pid:
            _statm = (pid, os.open("/proc/self/statm", os.O_RDONLY))
        return int(os.pread(_statm[1], 128, 0).split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024
    except Exception:
        return 0


class Worker:
    """Base class of every TickDesk worker process."""

    #: worker kind, as in ``main.py worker KIND``
    kind: ClassVar[str] = "worker"
    #: seconds between calls of :meth:`on_timer`
    timer_interval: ClassVar[float] = 0.1

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.name: str = args.name or self.kind
        self.endpoints = Endpoints.from_args(args)
        self.ctx = zmq.Context()
        self.poller = zmq.Poller()
        self.stats = Stats()
        self.state = "running"
        self.rlog = RateLimitedLog(logging.getLogger(f"tickdesk.{self.name}"))
        self.log = logging.getLogger(f"tickdesk.{self.name}")
        self._readers: dict[zmq.Socket, tuple[Callable[[Any], None], bool, bool]] = {}
        self._sockets: list[zmq.Socket] = []
        self._stop = False
        self._exit_code = 0
        self._control: zmq.Socket | None = None
        self._last_supervisor = time.monotonic()
        self._control_opened = 0.0
        self._started = time.monotonic()
        self._supervisor_pid = int(os.environ.get(SUPERVISOR_PID_ENV, "0") or 0)
        curve_dir = getattr(args, "curve_dir", None)
        self.curve = CurveKeys.load(curve_dir) if curve_dir else None
        self._zap: ZapHandler | None = None
        if self._supervisor_pid and not getattr(args, "no_control", False):
            _die_with_parent()

    # ------------------------------------------------------------------ for subclasses
    def setup(self) -> None:
        """Open sockets and register readers."""

    def on_timer(self, now: float) -> None:
        """Called about every ``timer_interval`` seconds."""

    def on_batch_end(self) -> None:
        """Called after every poll round that read input (e.g. to commit a group of work)."""

    def next_wakeup(self, now: float) -> float | None:
        """Monotonic time at which the worker wants to run again (None: no wish)."""
        return None

    def on_command(self, cmd: str, args: dict) -> dict | None:
        """Handle a worker-specific command; raise CommandError to refuse it."""
        raise CommandError(f"unknown command {cmd!r} for {self.kind}")

    def teardown(self) -> None:
        """Last chance to flush state before sockets close."""

    # ------------------------------------------------------------------ socket helpers
    def socket(
        self,
        kind: int,
        *,
        bind: str | None = None,
        connect: str | None = None,
        sndhwm: int | None = None,
        rcvhwm: int | None = None,
        linger: int = 0,
        subscribe: list[bytes] | None = None,
        routing_id: bytes | None = None,
        options: dict[int, int] | None = None,
    ) -> zmq.Socket:
        """A socket with LINGER, MAXMSGSIZE (receivers), HWMs and ``options`` set before it binds
        or connects (most options only take effect then), plus CURVE when keys are configured."""
        sock = self.ctx.socket(kind)
        self._sockets.append(sock)  # before bind/connect, which may raise: _close must see it
        sock.setsockopt(zmq.LINGER, linger)
        if kind in (zmq.SUB, zmq.PULL, zmq.ROUTER, zmq.DEALER, zmq.REP, zmq.REQ, zmq.XSUB):
            # Bound sockets: a stranger's oversized frame costs it its connection.  Connecting
            # sockets get a wide cap instead: libzmq (4.3) treats an oversized frame as a protocol
            # error and never reconnects, so one big frame from a publisher would deafen a SUB
            # for good, silently.  Frames over MAX_MESSAGE_BYTES are still refused, by decode.
            sock.setsockopt(zmq.MAXMSGSIZE, P.MAX_MESSAGE_BYTES if bind else CONNECTED_MAXMSGSIZE)
        if sndhwm is not None:
            sock.setsockopt(zmq.SNDHWM, sndhwm)
        if rcvhwm is not None:
            sock.setsockopt(zmq.RCVHWM, rcvhwm)
        if routing_id is not None:
            sock.setsockopt(zmq.ROUTING_ID, routing_id)
        for opt, value in (options or {}).items():
            sock.setsockopt(opt, value)
        for t in subscribe or ():
            sock.setsockopt(zmq.SUBSCRIBE, t)
        if bind:
            check_bind_allowed(bind, getattr(self.args, "curve_dir", None))
            if self.curve is not None:
                self._ensure_zap()
                self.curve.apply_server(sock)
            sock.bind(bind)
        if connect:
            if self.curve is not None:
                self.curve.apply_client(sock)
            sock.connect(connect)
        return sock

    def _ensure_zap(self) -> None:
        if self._zap is None:
            self._zap = ZapHandler(self.ctx, self.curve.authorized)
            self._sockets.append(self._zap.sock)
            self.add_reader(self._zap.sock, self._zap.handle, multipart=True)

    def add_reader(self, sock: zmq.Socket, handler: Callable[[Any], None], multipart: bool = False, drains: bool = False) -> None:
        """Call ``handler`` with each message waiting on ``sock`` (a list of frames if
        ``multipart``).  ``drains``: the handler reads the rest of what is waiting itself,
        up to zmq.Again, so it is handed the first message only (one failed recv per wake-up
        instead of two)."""
        self._readers[sock] = (handler, multipart, drains)
        self.poller.register(sock, zmq.POLLIN)

    # ------------------------------------------------------------------ control channel
    def _open_control(self) -> None:
        if getattr(self.args, "no_control", False):
            return
        self._control = self.socket(zmq.DEALER, connect=self.endpoints.control, routing_id=self.name.encode(), sndhwm=100)
        self._control_opened = time.monotonic()
        self.add_reader(self._control, self._on_control)
        self._send_control(P.Hello(name=self.name, role=self.kind, pid=os.getpid(), ts=P.now_ns()))

    def _send_control(self, msg: P.Message) -> None:
        if self._control is None:
            return
        try:
            self._control.send(msg.pack(), zmq.NOBLOCK)
        except zmq.Again:
            self.stats.inc("control_dropped")

    def _on_control(self, frame: bytes) -> None:
        self._last_supervisor = time.monotonic()
        try:
            msg = P.decode(frame)
        except P.ProtocolError as e:
            self.stats.inc("decode_errors")
            self.rlog.warning("control", "bad control message: %s", e)
            return
        if isinstance(msg, P.Command):
            self._run_command(msg)

    def _run_command(self, msg: P.Command) -> None:
        ok, reason, result = True, "", {}
        try:
            if msg.cmd == "stop":
                self.request_stop("stop command")
            elif msg.cmd == "pause":
                self.state = "paused"
                self.on_pause(True)
            elif msg.cmd == "resume":
                self.state = "running"
                self.on_pause(False)
            elif msg.cmd == "stats":
                result = self._heartbeat_stats()
            else:
                result = self.on_command(msg.cmd, msg.args) or {}
        except CommandError as e:
            ok, reason = False, str(e)
        except Exception as e:  # a bad command must not end the worker
            log.exception("command %s failed", msg.cmd)
            ok, reason = False, f"{type(e).__name__}: {e}"
        self._send_control(P.CommandReply(id=msg.id, cmd=msg.cmd, ok=ok, reason=reason, result=result))
        self._send_heartbeat()

    def on_pause(self, paused: bool) -> None:
        """Called when the supervisor pauses or resumes the worker."""

    def _heartbeat_stats(self) -> dict:
        if self._zap is not None:
            self.stats.counters["auth_denied"] = self._zap.denied
        snap = self.stats.snapshot()
        snap["gauges"]["rss"] = rss_bytes()
        snap["gauges"]["uptime"] = time.monotonic() - self._started
        return snap

    def _send_heartbeat(self) -> None:
        self._send_control(
            P.Heartbeat(ts=P.now_ns(), name=self.name, role=self.kind, pid=os.getpid(), stats=self._heartbeat_stats(), state=self.state)
        )

    def _control_deaf(self, now: float, hb_every: float) -> bool:
        if self._control is None:
            return False
        quiet = now - max(self._last_supervisor, self._control_opened)
        return quiet > max(CONTROL_RECONNECT_AFTER, 3 * hb_every)

    def _reopen_control(self) -> None:
        """A new control connection (and hello): it takes our routing id back at the supervisor."""
        old = self._control
        self.poller.unregister(old)
        self._readers.pop(old, None)
        if old in self._sockets:
            self._sockets.remove(old)
        old.close(0)
        self._control = None
        self.stats.inc("control_reconnects")
        self.rlog.warning("control", "no word from the supervisor for a while; reconnecting the control channel")
        self._open_control()

    def _supervisor_gone(self, now: float) -> bool:
        if self._control is None:
            return False
        if self._supervisor_pid and os.getppid() != self._supervisor_pid:
            return True
        timeout = getattr(self.args, "orphan_timeout", 5.0)
        return bool(timeout) and now - self._last_supervisor > timeout

    # ------------------------------------------------------------------ loop
    def request_stop(self, why: str = "", code: int = 0) -> None:
        if not self._stop:
            self.log.info("stopping: %s", why)
        self._stop = True
        self._exit_code = code

    def _drain(self, sock: zmq.Socket) -> None:
        handler, multipart, drains = self._readers[sock]
        recv = sock.recv_multipart if multipart else sock.recv
        for _ in range(1 if drains else DRAIN_BATCH):
            try:
                data = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                handler(data)
            except Exception as e:
                self.stats.inc("handler_errors")
                self.rlog.warning("handler", "handler error on %s: %s: %s", self.name, type(e).__name__, e)
                if self.log.isEnabledFor(logging.DEBUG):
                    self.log.exception("handler error")

    def _hook(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a worker's loop hook; a bug in it is counted and logged, never the end of the
        loop (the worker keeps serving, and the count shows in the workers panel)."""
        try:
            return fn(*args)
        except Exception as e:
            self.stats.inc("handler_errors")
            self.rlog.warning(fn.__name__, "%s failed: %s: %s", fn.__name__, type(e).__name__, e)
            if self.log.isEnabledFor(logging.DEBUG):
                self.log.exception("%s failed", fn.__name__)
            return None

    def run(self) -> int:
        self._install_signal_handlers()
        try:
            self.setup()
            self._open_control()
        except Exception as e:
            self.log.error("%s failed to start: %s", self.name, e)
            self._close()
            return EXIT_CONFIG_ERROR
        hb_every = getattr(self.args, "heartbeat", 0.5)
        next_hb = time.monotonic()
        next_timer = time.monotonic()
        try:
            while not self._stop:
                now = time.monotonic()
                wake = min(next_hb, next_timer)
                want = self._hook(self.next_wakeup, now)
                if want is not None:
                    wake = min(wake, want)
                timeout_ms = min(100, max(0, math.ceil((wake - now) * 1000)))
                if self._readers:
                    ready = self.poller.poll(timeout_ms)
                else:
                    # zmq.Poller returns at once with nothing registered: sleep instead of spinning
                    time.sleep(timeout_ms / 1000)
                    ready = []
                for sock, _ in ready:
                    self._drain(sock)
                if ready:
                    self._hook(self.on_batch_end)
                now = time.monotonic()
                if now >= next_timer:
                    self._hook(self.on_timer, now)
                    next_timer = now + self.timer_interval
                if now >= next_hb:
                    self._send_heartbeat()
                    next_hb = now + hb_every
                    if self._supervisor_gone(now):
                        self.request_stop("supervisor is gone")
                    elif self._control_deaf(now, hb_every):
                        self._reopen_control()
        except KeyboardInterrupt:
            pass
        finally:
            try:
                self.teardown()
            except Exception:
                log.exception("teardown failed")
            self._close()
        return self._exit_code

    def _close(self) -> None:
        for s in self._sockets:
            try:
                s.close(0)
            except Exception:
                pass
        # destroy, not term: a socket opened outside Worker.socket() must not hang the exit
        self.ctx.destroy(linger=0)

    def _install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            self.request_stop(f"signal {signum}")

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def _die_with_parent() -> None:
    """On Linux, ask the kernel to SIGTERM us when the supervisor dies (even by SIGKILL).
    The heartbeat timeout covers other systems and remote supervisors."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


def check_bind_allowed(endpoint: str, curve_dir: str | None) -> None:
    """Refuse to bind a non-loopback address without CurveZMQ (see docs/reliability.md)."""
    if not is_loopback(endpoint) and not curve_dir:
        raise RuntimeError(
            f"refusing to bind {endpoint}: binding a non-loopback address requires CurveZMQ keys (--curve-dir)"
        )


def setup_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s [{name}] %(message)s",
        stream=sys.stderr,
    )


def run_worker(cls: type[Worker], parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """Parse argv (TOML defaults, then flags), set up logging, run the worker, return its exit code."""
    add_common_args(parser)
    apply_toml_defaults(parser, argv, f"worker.{cls.kind}")
    args = parser.parse_args(argv)
    if args.name:
        apply_toml_defaults(parser, argv, f"worker.{args.name}")
        args = parser.parse_args(argv)
    setup_logging(args.log_level, args.name or cls.kind)
    worker = cls(args)
    profile_dir = os.environ.get("TICKDESK_PROFILE")
    if not profile_dir:
        return worker.run()
    # A developer's switch (docs/performance.md): cProfile the whole run, one file per process.
    import cProfile

    prof = cProfile.Profile()
    try:
        return prof.runcall(worker.run)
    finally:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        prof.dump_stats(str(Path(profile_dir) / f"{worker.name}-{os.getpid()}.prof"))
