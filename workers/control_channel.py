"""The worker's end of the control channel: a DEALER to the supervisor's ROUTER.

It says hello, sends heartbeats with the worker's telemetry, runs the supervisor's commands
(``stop``, ``pause``, ``resume``, ``stats``, and the worker's own through
``Worker.on_command``), and tells the loop when the supervisor has gone or when the
connection has gone deaf (another connection took our routing id over: ROUTER_HANDOVER), so
that the loop can stop or reconnect.  With ``--no-control`` every method is a no-op.

"Gone" depends on where the supervisor is.  Started by a local supervisor (its pid in
``TICKDESK_SUPERVISOR_PID``), a worker lives exactly as long as that parent: the kernel
sends SIGTERM when it dies (PR_SET_PDEATHSIG, Linux) and the loop sees the parent pid
change (everywhere).  Silence is not death then: a supervisor that is alive but slow (a
stalled window process) kills a really hung worker itself, and it must not lose the whole
fleet to its own stall.  Only a worker with no local parent supervisor (started on another
host, or by hand) takes ``--orphan-timeout`` seconds of silence as the supervisor's end.

Commands are run once: the supervisor resends one it has no reply to (after a reconnect,
or every second), and a repeat of an id already run is answered from a small cache.

The frames on the wire are exactly those of the protocol's ``Hello``, ``Heartbeat`` and
``CommandReply`` messages, one frame each; the supervisor (workers/supervisor.py) reads them.
"""

from __future__ import annotations

import collections
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
#: replies kept to answer a resent command without running it again
REPLY_CACHE = 64


class ControlChannel:
    """Heartbeats, commands and supervisor liveness for one :class:`~workers.runtime.Worker`."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.enabled = not worker.runtime.no_control
        self.sock: zmq.Socket | None = None
        self.last_heard = worker.clock.monotonic()
        self.opened = 0.0
        self.supervisor_pid = int(os.environ.get(SUPERVISOR_PID_ENV, "0") or 0)
        self._replies: collections.OrderedDict[str, P.CommandReply] = collections.OrderedDict()

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
        data = msg.pack()
        try:
            self.sock.send(data, zmq.NOBLOCK)
        except zmq.Again:
            self.worker.stats.inc("control_dropped")
            self.worker.sockmon.count_drop(self.sock)
            return
        # a heartbeat's own bytes show in the next one: its report was taken before it went out
        self.worker.sockmon.count_out(self.sock, len(data))

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
            done = self._replies.get(msg.id)
            if done is not None:
                self.worker.stats.inc("control_repeats")
                self.send(done)
                return
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
        reply = P.CommandReply(id=msg.id, cmd=msg.cmd, ok=ok, reason=reason, result=result)
        self._replies[msg.id] = reply
        while len(self._replies) > REPLY_CACHE:
            self._replies.popitem(last=False)
        self.send(reply)
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
        if self.supervisor_pid:
            # a local parent: its death is the end (see the module's doc), silence is not
            return os.getppid() != self.supervisor_pid
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
