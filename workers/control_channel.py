"""The worker's end of the control channel: a DEALER to the supervisor's ROUTER.

It says hello, sends heartbeats with the worker's telemetry, runs the supervisor's commands
(``stop``, ``pause``, ``resume``, ``stats``, and the worker's own through
``Worker.on_command``), and tells the loop when the supervisor has gone (our parent pid
changed, or it has been silent for ``--orphan-timeout``) or when the connection has gone
deaf (another connection took our routing id over: ROUTER_HANDOVER), so that the loop can
stop or reconnect.  With ``--no-control`` every method is a no-op.

The frames on the wire are exactly those of the protocol's ``Hello``, ``Heartbeat`` and
``CommandReply`` messages, one frame each; the supervisor (workers/supervisor.py) reads them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

import zmq

from workers import protocol as P
from workers.errors import CommandError

if TYPE_CHECKING:  # the runtime imports this module; only type checkers look back
    from workers.runtime import Worker

log = logging.getLogger("tickdesk.worker")

SUPERVISOR_PID_ENV = "TICKDESK_SUPERVISOR_PID"
#: supervisor silent this long (and at least 3 heartbeats) -> reconnect the control DEALER: a
#: connection that took over our routing id (ROUTER_HANDOVER) leaves ours deaf for good
CONTROL_RECONNECT_AFTER = 1.5


class ControlChannel:
    """Heartbeats, commands and supervisor liveness for one :class:`~workers.runtime.Worker`."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.enabled = not worker.runtime.no_control
        self.sock: zmq.Socket | None = None
        self.last_heard = worker.clock.monotonic()
        self.opened = 0.0
        self.supervisor_pid = int(os.environ.get(SUPERVISOR_PID_ENV, "0") or 0)

    # ------------------------------------------------------------------ socket
    def open(self) -> None:
        if not self.enabled:
            return
        w = self.worker
        self.sock = w.socket(zmq.DEALER, connect=w.endpoints.control, routing_id=w.name.encode(), sndhwm=100)
        # silence is counted from here: a long setup (a large journal replayed) is not silence
        self.opened = self.last_heard = w.clock.monotonic()
        w.add_reader(self.sock, self.on_frame)
        self.send(P.Hello(name=w.name, role=w.kind, pid=os.getpid(), ts=P.now_ns()))

    def reopen(self) -> None:
        """A new connection (and hello): it takes our routing id back at the supervisor."""
        old = self.sock
        if old is None:
            return
        self.worker.remove_socket(old)
        self.sock = None
        self.worker.stats.inc("control_reconnects")
        self.worker.rlog.warning("control", "no word from the supervisor for a while; reconnecting the control channel")
        self.open()

    def send(self, msg: P.Message) -> None:
        if self.sock is None:
            return
        try:
            self.sock.send(msg.pack(), zmq.NOBLOCK)
        except zmq.Again:
            self.worker.stats.inc("control_dropped")

    # ------------------------------------------------------------------ incoming
    def on_frame(self, frame: bytes) -> None:
        self.last_heard = self.worker.clock.monotonic()
        try:
            msg = P.decode(frame)
        except P.ProtocolError as e:
            self.worker.stats.inc("decode_errors")
            self.worker.rlog.warning("control", "bad control message: %s", e)
            return
        if isinstance(msg, P.Command):
            self.run_command(msg)

    def run_command(self, msg: P.Command) -> None:
        w = self.worker
        ok, reason, result = True, "", {}
        try:
            if msg.cmd == "stop":
                w.request_stop("stop command")
            elif msg.cmd == "pause":
                w.state = "paused"
                w.on_pause(True)
            elif msg.cmd == "resume":
                w.state = "running"
                w.on_pause(False)
            elif msg.cmd == "stats":
                result = w.heartbeat_stats()
            else:
                result = w.on_command(msg.cmd, msg.args) or {}
        except CommandError as e:
            ok, reason = False, str(e)
        except Exception as e:  # a bad command must not end the worker
            log.exception("command %s failed", msg.cmd)
            ok, reason = False, f"{type(e).__name__}: {e}"
        self.send(P.CommandReply(id=msg.id, cmd=msg.cmd, ok=ok, reason=reason, result=result))
        self.send_heartbeat()

    # ------------------------------------------------------------------ outgoing
    def send_heartbeat(self) -> None:
        # the snapshot is taken even with no channel: it also ends each latency window
        w = self.worker
        self.send(P.Heartbeat(ts=P.now_ns(), name=w.name, role=w.kind, pid=os.getpid(), stats=w.heartbeat_stats(), state=w.state))

    # ------------------------------------------------------------------ liveness
    def deaf(self, now: float, hb_every: float) -> bool:
        if self.sock is None:
            return False
        quiet = now - max(self.last_heard, self.opened)
        return quiet > max(CONTROL_RECONNECT_AFTER, 3 * hb_every)

    def supervisor_gone(self, now: float) -> bool:
        if self.sock is None:
            return False
        if self.supervisor_pid and os.getppid() != self.supervisor_pid:
            return True
        timeout = self.worker.runtime.orphan_timeout
        return bool(timeout) and now - self.last_heard > timeout

    def die_with_supervisor(self) -> None:
        """On Linux, ask the kernel to SIGTERM us when the supervisor dies (even by SIGKILL).
        The heartbeat timeout covers other systems and remote supervisors."""
        if self.supervisor_pid and self.enabled:
            die_with_parent()


def die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


__all__ = ["CONTROL_RECONNECT_AFTER", "SUPERVISOR_PID_ENV", "ControlChannel", "die_with_parent"]
