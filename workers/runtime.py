"""The worker runtime: one process, one zmq.Poller loop, heartbeats, commands, clean exit.

A worker subclasses :class:`Worker`, opens its sockets in ``setup`` with :meth:`Worker.socket`
and registers readers with :meth:`Worker.add_reader`.  The runtime drains every readable
socket in batches (NOBLOCK until EAGAIN, capped so one busy socket cannot starve the others),
sends a heartbeat with counters to the supervisor every ``--heartbeat`` seconds, runs
commands from the supervisor, and exits cleanly on SIGTERM/SIGINT, on a ``stop`` command, or
when the supervisor has gone.  An exception raised by a handler is counted and logged
(rate-limited); it never ends the process.

Around the loop: :mod:`workers.control_channel` (hello, heartbeats, commands, supervisor
liveness), :mod:`workers.telemetry` (counters, latencies, RSS), :mod:`workers.errors`
(ConfigError at start-up means exit status 2; CommandError refuses a command).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import zmq

from workers import protocol as P
from workers.clock import LIVE_CLOCK, Clock
from workers.config import ConfigOf, Endpoints, RuntimeConfig, add_common_args, enable_ipv6, from_namespace, is_loopback, parse_worker_argv
from workers.control_channel import CONTROL_RECONNECT_AFTER, SUPERVISOR_PID_ENV, ControlChannel
from workers.errors import CommandError, ConfigError, CorruptStateError
from workers.ratelimit import RateLimitedLogger
from workers.security import CurveKeys, ZapHandler
from workers.sockmon import SocketMonitor
from workers.telemetry import LatencyRecorder, Stats, rss_bytes

log = logging.getLogger("tickdesk.worker")

DRAIN_BATCH = 4096  # max messages taken from one socket per wake-up before looking at others
#: exit code of a worker that cannot start as configured (bad option, endpoint refused, ...)
EXIT_CONFIG_ERROR = 2
#: exit code of a worker that refuses to start on state it cannot trust (a damaged journal):
#: the supervisor never restarts it, since a restart would only refuse again (or, worse, a
#: later version might serve it)
EXIT_CORRUPT_STATE = 4
#: MAXMSGSIZE of receiving sockets that connect (see Worker.socket): against memory exhaustion only
CONNECTED_MAXMSGSIZE = 64 * P.MAX_MESSAGE_BYTES

#: the old name of the runtime's rate-limited log (same ``warning(key, msg, *args)``)
RateLimitedLog = RateLimitedLogger


class Worker:
    """Base class of every TickDesk worker process."""

    #: worker kind, as in ``main.py worker KIND``
    kind: ClassVar[str] = "worker"
    #: seconds between calls of :meth:`on_timer`
    timer_interval: ClassVar[float] = 0.1

    def __init__(self, args: argparse.Namespace, clock: Clock = LIVE_CLOCK):
        self.args = args
        #: the loop's time (poll deadlines, timers, heartbeats, the rate-limited log): a worker
        #: that schedules by it too sees the same instants the loop passes to its hooks
        self.clock = clock
        #: the options every worker has, typed (RuntimeConfig; a missing one is its default)
        self.runtime: RuntimeConfig = from_namespace(RuntimeConfig, args)
        self.name: str = self.runtime.name or self.kind
        self.endpoints = self.runtime.endpoints
        self.ctx = enable_ipv6(zmq.Context())
        self.poller = zmq.Poller()
        self.stats = Stats()  # looked up in this module at call time: bench/instrumented swaps it
        #: every socket made by socket(): its state from libzmq's monitor events, reported
        #: with each heartbeat (stats["sockets"]) for the window's Network panel
        self.sockmon = SocketMonitor(clock.monotonic)
        self.state = "running"
        self.rlog = RateLimitedLogger(logging.getLogger(f"tickdesk.{self.name}"), clock=clock)
        self.log = logging.getLogger(f"tickdesk.{self.name}")
        self._readers: dict[zmq.Socket, tuple[Callable[[Any], None], bool, bool]] = {}
        self._sockets: list[zmq.Socket] = []
        self._stop = False
        self._exit_code = 0
        self._started = clock.monotonic()
        curve_dir = self.runtime.curve_dir
        self.curve = CurveKeys.load(curve_dir) if curve_dir else None
        self._zap: ZapHandler | None = None
        self.control = ControlChannel(self)
        self.control.die_with_supervisor()

    # ------------------------------------------------------------------ for subclasses
    def setup(self) -> None:
        """Open sockets and register readers."""

    def on_timer(self, now: float) -> None:
        """Called about every ``timer_interval`` seconds; ``now`` is ``self.clock.monotonic()``."""

    def on_batch_end(self) -> None:
        """Called after every poll round that read input (e.g. to commit a group of work)."""

    def next_wakeup(self, now: float) -> float | None:
        """Time on ``self.clock.monotonic()`` (``now``'s clock) at which the worker wants to run
        again (None: no wish)."""
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
        # before bind/connect: the first events (listening, connect delayed) must not be missed
        address = bind or connect or ""
        self.sockmon.watch(sock, self._endpoint_name(address) or address, bind=bind, connect=connect)
        if bind:
            check_bind_allowed(bind, self.runtime.curve_dir)
            if self.curve is not None:
                self._ensure_zap()
                self.curve.apply_server(sock, self._endpoint_name(bind))
            sock.bind(bind)
        if connect:
            if self.curve is not None:
                self.curve.apply_client(sock)
            sock.connect(connect)
        return sock

    def _endpoint_name(self, address: str) -> str:
        """Which of the fleet's endpoints ``address`` is (its CURVE roles go by that name);
        '' for any other address, which admits only the fleet's own keys."""
        for name in self.endpoints.NAMES:
            if getattr(self.endpoints, name) == address:
                return name
        return ""

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

    def remove_socket(self, sock: zmq.Socket) -> None:
        """Stop reading ``sock`` and close it (linger 0)."""
        if sock in self._readers:
            self.poller.unregister(sock)
            del self._readers[sock]
        if sock in self._sockets:
            self._sockets.remove(sock)
        self.sockmon.forget(sock)
        sock.close(0)

    # ------------------------------------------------------------------ control channel
    def on_pause(self, paused: bool) -> None:
        """Called when the supervisor pauses or resumes the worker."""

    def heartbeat_stats(self) -> dict:
        """What every heartbeat (and the ``stats`` command) reports: counters, latency
        percentiles since the last snapshot, gauges, RSS and uptime."""
        if self._zap is not None:
            self.stats.counters["auth_denied"] = self._zap.denied
        snap = self.stats.snapshot()
        snap["gauges"]["rss"] = rss_bytes()
        snap["gauges"]["uptime"] = self.clock.monotonic() - self._started
        snap["sockets"] = self.sockmon.heartbeat_entry()
        return snap

    # ------------------------------------------------------------------ loop
    def request_stop(self, why: str = "", code: int = 0) -> None:
        if not self._stop:
            self.log.info("stopping: %s", why)
        self._stop = True
        self._exit_code = code

    def _drain(self, sock: zmq.Socket) -> None:
        handler, multipart, drains = self._readers[sock]
        recv = sock.recv_multipart if multipart else sock.recv
        count_in = self.sockmon.count_in
        for _ in range(1 if drains else DRAIN_BATCH):
            try:
                data = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            count_in(sock, sum(map(len, data)) if multipart else len(data))
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

    def _heartbeat(self, now: float, hb_every: float) -> None:
        # through _hook: a heartbeat that cannot be built or sent (a counter out of range, a
        # socket error) is counted and logged; ending the worker over it would turn one bad
        # value into a restart loop
        control = self.control
        control.send_heartbeat()
        if control.supervisor_gone(now):
            self.request_stop("supervisor is gone")
        elif control.deaf(now, hb_every):
            control.reopen()

    def run(self) -> int:
        self._install_signal_handlers()
        try:
            self.setup()
            self.control.open()
        except CorruptStateError as e:
            self.log.error("%s failed to start: %s", self.name, e)
            self._close()
            return EXIT_CORRUPT_STATE
        except Exception as e:
            self.log.error("%s failed to start: %s", self.name, e)
            self._close()
            return EXIT_CONFIG_ERROR
        hb_every = self.runtime.heartbeat
        monotonic = self.clock.monotonic
        next_hb = next_timer = monotonic()
        try:
            while not self._stop:
                now = monotonic()
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
                now = monotonic()
                if now >= next_timer:
                    self._hook(self.on_timer, now)
                    next_timer = now + self.timer_interval
                if now >= next_hb:
                    next_hb = now + hb_every
                    self._hook(self._heartbeat, now, hb_every)
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
        self.sockmon.close()
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


def split_envelope(frames: list[bytes]) -> tuple[list[bytes] | None, list[bytes]]:
    """A request read on a ROUTER as ``(envelope to echo, body)``: a REQ's routing id and empty
    delimiter (and any proxy's ids before it), a DEALER's id plus its own frames up to the
    delimiter (a DealerClient's tag), or only a DEALER's id when it sent no delimiter.  None:
    no body at all.  Every ROUTER that answers requests (orders, snapshot) reads them so."""
    if len(frames) < 2:
        return None, []
    try:
        i = frames.index(b"", 1)
    except ValueError:
        return frames[:1], frames[1:]
    return frames[: i + 1], frames[i + 1:]


def check_bind_allowed(endpoint: str, curve_dir: str | None) -> None:
    """Refuse to bind a non-loopback address without CurveZMQ (see docs/reliability.md)."""
    if not is_loopback(endpoint) and not curve_dir:
        raise ConfigError(
            f"refusing to bind {endpoint}: binding a non-loopback address requires CurveZMQ keys (--curve-dir)"
        )


def setup_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s [{name}] %(message)s",
        stream=sys.stderr,
    )


def run_worker(cls: type[Worker], parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """Parse argv (declared defaults < TOML tables < flags), set up logging, run the worker,
    return its exit code.  A config file that does not fit the declarations (unknown key,
    wrong type) is one line on stderr and exit status 2, like a bad flag."""
    add_common_args(parser)
    own = getattr(cls, "config", None)
    # a worker class without a declared config (a test's) gets its TOML tables unchecked
    decls = [RuntimeConfig, own.cls] if isinstance(own, ConfigOf) else []
    try:
        args = parse_worker_argv(parser, argv, cls.kind, decls)
        # built here once to refuse a bad combination before any socket opens; the worker
        # builds its own from the same namespace (self.config)
        runtime = from_namespace(RuntimeConfig, args)
        for d in decls[1:]:
            from_namespace(d, args)
    except ConfigError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    setup_logging(runtime.log_level, runtime.name or cls.kind)
    try:
        worker = cls(args)
    except ConfigError as e:
        log.error("%s failed to start: %s", runtime.name or cls.kind, e)
        return EXIT_CONFIG_ERROR
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
