"""Socket monitoring: the state of every ZeroMQ socket of a process, from libzmq's own
socket-monitor events, and its message/byte/drop counters, for the heartbeat's ``sockets``
entry and the window's Network panel (docs/architecture.md, Monitoring).

One :class:`SocketMonitor` per process.  :meth:`SocketMonitor.watch` attaches a monitor
(an inproc PAIR libzmq writes events to) to a socket; :meth:`SocketMonitor.poll` reads what
is waiting on all of them without blocking, so any loop can call it when it reports (the
worker runtime at each heartbeat, the window from a timer or an asyncio task) and no extra
thread or poller registration is needed.  Events wait in the PAIR queue in between; the
state a report shows is the state after every event so far.

What libzmq does not tell: how many messages went through a socket, and what a PUB dropped
at its high-water mark (it drops silently, no event, no error).  Callers count what they
receive and send with :meth:`SocketMonitor.count_in` / :meth:`count_out`, and a send that
failed with ``zmq.Again`` with :meth:`count_drop` (PUSH, DEALER, ROUTER with NOBLOCK).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

import msgspec
import zmq

#: what each socket reports, in the heartbeat's ``sockets`` list (plain msgpack types)
STATES = ("connecting", "connected", "retrying", "disconnected", "handshake failed",
          "listening", "bind failed", "closed")

_HANDSHAKE_FAILED = {zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                     zmq.EVENT_HANDSHAKE_FAILED_AUTH}
#: at most this many events are read per socket and poll: a flapping peer cannot hold a
#: report up (the rest waits for the next poll)
MAX_EVENTS_PER_POLL = 256


def _plain_v4(endpoint: str) -> str:
    """``tcp://[::ffff:127.0.0.1]:5559`` -> ``tcp://127.0.0.1:5559``: an IPv6-enabled socket
    (workers.config.enable_ipv6) names an IPv4 address in its mapped form."""
    return endpoint.replace("[::ffff:", "", 1).replace("]:", ":", 1) if "[::ffff:" in endpoint else endpoint


class SocketReport(msgspec.Struct, forbid_unknown_fields=False):
    """One socket, as a heartbeat carries it (``stats["sockets"]``: a list of these)."""

    name: str  # what the socket is for: the fleet endpoint's name ("ticks", "orders"...) or a label
    type: str  # SUB, PUB, DEALER, ...
    endpoint: str
    role: str  # "bind" | "connect"
    state: str  # one of STATES
    since: float = 0.0  # seconds in this state
    peers: int = 0  # live connections (a bound socket: accepted peers; a connecting one: 0/1)
    connects: int = 0  # connections made (connected, or accepted when bound)
    disconnects: int = 0
    retries: int = 0  # reconnect attempts (CONNECT_RETRIED)
    handshake_failures: int = 0
    msgs_in: int = 0
    msgs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    drops: int = 0  # sends refused at the high-water mark (zmq.Again), as counted by the caller
    last_error: str = ""  # the last failure event, e.g. "handshake failed (auth)"


def parse_reports(raw: Any) -> tuple[list[SocketReport], int]:
    """A peer's ``sockets`` entry as reports: the valid ones, and how many were not (dropped,
    counted by the caller; a malformed heartbeat must not break a panel)."""
    if not isinstance(raw, list):
        return [], 0 if raw is None else 1
    out, bad = [], 0
    for item in raw:
        try:
            out.append(msgspec.convert(item, SocketReport))
        except (msgspec.ValidationError, TypeError):
            bad += 1
    return out, bad


class _Watched:
    __slots__ = ("sock", "monitor", "owner", "report", "changed_at")

    def __init__(self, sock: zmq.Socket, monitor: zmq.Socket, owner: zmq.Socket, report: SocketReport, now: float):
        self.sock = sock
        self.monitor = monitor  # a plain (blocking-API) socket: recv(NOBLOCK) is a call, not a future
        self.owner = owner  # what get_monitor_socket returned (an asyncio socket keeps its shadow alive)
        self.report = report
        self.changed_at = now


class SocketMonitor:
    """Per-socket state and counters of the sockets it watches."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._watched: dict[int, _Watched] = {}  # id(sock) -> entry; sockets are not hashable-stable across shadows

    def watch(self, sock: zmq.Socket, name: str, *, bind: str | None = None, connect: str | None = None) -> None:
        """Monitor ``sock``; call before it binds or connects, so that no event is missed."""
        if id(sock) in self._watched:
            return
        owner = sock.get_monitor_socket(zmq.EVENT_ALL)
        mon = owner
        # a window's asyncio socket: its monitor is read through a plain shadow (a worker never
        # imports zmq.asyncio, and without it no socket can be an asyncio one)
        zasync = sys.modules.get("zmq.asyncio")
        if zasync is not None and isinstance(owner, zasync.Socket):
            mon = zmq.Socket.shadow(owner.underlying)
        role = "bind" if bind else "connect"
        rep = SocketReport(name=name, type=zmq.SocketType(sock.type).name, endpoint=bind or connect or "",
                           role=role, state="connecting" if role == "connect" else "closed")
        self._watched[id(sock)] = _Watched(sock, mon, owner, rep, self._clock())

    def forget(self, sock: zmq.Socket) -> None:
        """Stop monitoring ``sock`` (before it closes)."""
        w = self._watched.pop(id(sock), None)
        if w is not None:
            self._stop(w)

    def close(self) -> None:
        for w in self._watched.values():
            self._stop(w)
        self._watched.clear()

    def report_of(self, sock: zmq.Socket) -> SocketReport | None:
        """The live report of ``sock`` (None: not watched)."""
        w = self._watched.get(id(sock))
        return None if w is None else w.report

    # -- counters the caller keeps (libzmq has none) --
    def count_in(self, sock: zmq.Socket, nbytes: int, msgs: int = 1) -> None:
        w = self._watched.get(id(sock))
        if w is not None:
            w.report.msgs_in += msgs
            w.report.bytes_in += nbytes

    def count_out(self, sock: zmq.Socket, nbytes: int, msgs: int = 1) -> None:
        w = self._watched.get(id(sock))
        if w is not None:
            w.report.msgs_out += msgs
            w.report.bytes_out += nbytes

    def count_drop(self, sock: zmq.Socket, msgs: int = 1) -> None:
        w = self._watched.get(id(sock))
        if w is not None:
            w.report.drops += msgs

    # -- events --
    def poll(self) -> int:
        """Read every waiting monitor event (never blocks); returns how many were read."""
        from zmq.utils.monitor import parse_monitor_message

        n = 0
        now = self._clock()
        for w in self._watched.values():
            for _ in range(MAX_EVENTS_PER_POLL):
                try:
                    frames = w.monitor.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                except zmq.ZMQError:  # the socket (or its context) is closed: nothing more to read
                    self._set(w, "closed", now)
                    break
                try:
                    ev = parse_monitor_message(frames)
                except Exception:  # not an event libzmq would send; nothing to learn from it
                    continue
                n += 1
                self._apply(w, ev["event"], ev.get("endpoint", b""), now)
        return n

    def _apply(self, w: _Watched, event: int, endpoint: bytes, now: float) -> None:
        r = w.report
        if event == zmq.EVENT_LISTENING:
            # a bound port 0 or wildcard is named by what it really listens on
            r.endpoint = _plain_v4(endpoint.decode(errors="replace")) if isinstance(endpoint, bytes) and endpoint else r.endpoint
            self._set(w, "listening", now)
        elif event == zmq.EVENT_BIND_FAILED:
            r.last_error = "bind failed"
            self._set(w, "bind failed", now)
        elif event == zmq.EVENT_CONNECT_DELAYED:
            if r.state != "retrying":  # a retry's own delay is still a retry
                self._set(w, "connecting", now)
        elif event == zmq.EVENT_CONNECT_RETRIED:
            r.retries += 1
            self._set(w, "retrying", now)
        elif event in (zmq.EVENT_CONNECTED, zmq.EVENT_ACCEPTED):
            r.connects += 1
            r.peers += 1
            if r.role == "connect":
                r.peers = 1
                self._set(w, "connected", now)
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            if r.role == "connect":
                self._set(w, "connected", now)
        elif event in _HANDSHAKE_FAILED:
            r.handshake_failures += 1
            r.last_error = {zmq.EVENT_HANDSHAKE_FAILED_AUTH: "handshake failed (auth)",
                            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed (protocol)"}.get(event, "handshake failed")
            if r.role == "connect":  # a stranger failing on a bound socket is not the socket's state
                self._set(w, "handshake failed", now)
        elif event == zmq.EVENT_DISCONNECTED:
            r.disconnects += 1
            r.peers = max(0, r.peers - 1)
            # a connecting socket whose handshake failed stays so until it connects again
            if r.role == "connect" and r.state != "handshake failed":
                self._set(w, "disconnected", now)
        elif event in (zmq.EVENT_CLOSED, zmq.EVENT_MONITOR_STOPPED):
            if r.role == "bind":
                self._set(w, "closed", now)

    def _set(self, w: _Watched, state: str, now: float) -> None:
        if w.report.state != state:
            w.report.state = state
            w.changed_at = now

    def reports(self) -> list[SocketReport]:
        """Every watched socket, after the events read so far (call :meth:`poll` first)."""
        now = self._clock()
        out = []
        for w in self._watched.values():
            w.report.since = round(max(0.0, now - w.changed_at), 3)
            out.append(msgspec.structs.replace(w.report))
        return out

    def heartbeat_entry(self) -> list[dict]:
        """:meth:`poll`, then the reports as plain maps: the heartbeat's ``sockets`` entry."""
        self.poll()
        return [msgspec.to_builtins(r) for r in self.reports()]

    def _stop(self, w: _Watched) -> None:
        try:
            w.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        try:
            w.owner.close(0)  # the owner of the handle; a shadow of it is only dropped
        except zmq.ZMQError:
            pass


__all__ = ["SocketMonitor", "SocketReport", "STATES", "parse_reports"]
