"""The supervisor on a thread of its own, and the thread-safe face its owner uses.

Why a thread: the window's UI thread stalls (a slow dialog, a long paint, a flood of rows);
the supervisor must not stall with it, or the workers hear nothing, and a dead order gateway
waits for the UI before it is restarted.  On its own thread, :meth:`Supervisor.poll` keeps
answering heartbeats and restarting workers while the UI thread sleeps, blocks or spins in
Python code (the interpreter hands the GIL over every 5 ms).  The window and the headless
runner use the same class, so both run the same loop.

What a thread cannot do: a single C++ call that holds the GIL (measured with PySide6 6.11:
``QPainter.drawPath`` of a 20,000-segment antialiased path, 3.7 s; ``QImage.scaled`` of a
large image, 1.7 s -- the probe thread got nothing for the whole call) stalls every Python
thread of the process.  Two things make that harmless too: the supervisor counts silence
only over time it was listening (``Supervisor._note_stall``: the heartbeats queued during
the stall are read first, and the silence clocks restart after it), and a worker whose
supervisor is its local parent exits on its parent's death, never on silence
(``workers/control_channel.py``).  A stall then delays a restart; it never causes one.
A separate supervisor process would also keep restarts going through such a call, at the
price of a second IPC hop for every command and state snapshot; see docs/architecture.md.

Threads: only the supervisor's thread touches the :class:`Supervisor` (its zmq sockets, its
WorkerStates).  The owner's thread calls this class: commands and worker actions are queued
to the supervisor's thread; state comes back as :class:`WorkerView` snapshots and events,
which :meth:`poll` (on the owner's thread, e.g. from a UI timer) applies to :attr:`workers`
and hands to :attr:`listeners`.  So everything the owner reads is its own copy.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from workers import protocol as P
from workers.supervisor import Supervisor, SupervisorError, WorkerSpec, WorkerView, fleet_totals
from workers.ratelimit import RateLimitedLogger

log = logging.getLogger("tickdesk.supervisor")

#: the supervisor thread's poll timeout: how long a queued command may wait to be sent
POLL_MS = 20
#: events kept for an owner that does not drain them (a stalled UI): the oldest go first
EVENT_BACKLOG = 10_000


class SupervisorThread:
    """A :class:`Supervisor` run by its own thread.  Same reading API as the supervisor
    (``workers``, ``events``, ``listeners``, ``totals``, ``failed``, ``command``,
    ``reply_for``, ``start_worker``/``stop_worker``/``restart_worker``), all of it safe to
    call from one owner thread while the supervisor runs."""

    def __init__(self, sup: Supervisor, poll_ms: int = POLL_MS):
        self.sup = sup
        self.endpoints = sup.endpoints
        self.config = sup.config
        self.poll_ms = poll_ms
        #: the owner's copies, updated by :meth:`poll`
        self.workers: dict[str, WorkerView] = {n: w.view() for n, w in sup.workers.items()}
        self.events: collections.deque[tuple[float, str, str]] = collections.deque(sup.events, maxlen=1000)
        #: called with (worker name, text) for every supervisor event, on the owner's thread
        self.listeners: list[Callable[[str, str], None]] = []
        self._calls: queue.SimpleQueue[Callable[[Supervisor], Any]] = queue.SimpleQueue()
        self._incoming: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=EVENT_BACKLOG)
        self._snapshot: tuple[int, dict[str, WorkerView], dict[str, int]] | None = None
        self._applied = 0
        self._replies: collections.OrderedDict[str, P.CommandReply] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.loop_errors = 0
        #: counts the supervisor reports (decode errors, unknown peers, impostors, stalls)
        self.health: dict[str, int] = {}
        self._rlog = RateLimitedLogger(log)
        sup.listeners.append(lambda name, text: self._incoming.append((sup.clock.time_ns() / 1e9, name, text)))

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 30.0) -> None:
        """Start the thread, which binds the control endpoint and starts the fleet; returns
        once that is done.  SupervisorError (nothing started) when the endpoint is refused."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="tickdesk-supervisor", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise SupervisorError(f"the supervisor did not start within {timeout:g}s")
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise self._start_error
        self.poll()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop every worker (as :meth:`Supervisor.stop`) and the thread; blocks until done."""
        if self._thread is None:
            self.sup.stop()  # never started: nothing runs, only sockets to close
        else:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self._publish()
        self.poll()

    def _run(self) -> None:
        # Workers are started from this thread, and PR_SET_PDEATHSIG follows the thread that
        # started a process: they get SIGTERM when it ends, which is only ever after stop()
        # (or when the whole process dies).  So nothing may end this loop but a stop.
        try:
            self.sup.start()
        except BaseException as e:  # noqa: BLE001 -- handed to start() in the owner's thread
            self._start_error = e
            self._started.set()
            return
        self._publish()
        self._started.set()
        try:
            while not self._stop.is_set():
                self._run_calls()
                try:
                    self.sup.poll(self.poll_ms)
                except Exception as e:  # a bug in one round must not end the supervision
                    self.loop_errors += 1
                    self._rlog.error("poll", "supervisor poll failed: %s: %s", type(e).__name__, e)
                self._publish()
        finally:
            self._run_calls()
            self.sup.stop()

    def _run_calls(self) -> None:
        while True:
            try:
                fn = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                fn(self.sup)
            except Exception as e:
                self._incoming.append((self.sup.clock.time_ns() / 1e9, "supervisor", f"{type(e).__name__}: {e}"))

    def _publish(self) -> None:
        """A snapshot of every worker for the owner (a reference swap: atomic)."""
        sup = self.sup
        views = {n: w.view() for n, w in sup.workers.items()}
        health = {"decode_errors": sup.decode_errors, "unknown_peers": sup.unknown_peers,
                  "impostors": sup.impostors, "stalls": sup.stalls, "loop_errors": self.loop_errors}
        seq = (self._snapshot[0] + 1) if self._snapshot else 1
        if sup.command_replies:
            with self._lock:
                while sup.command_replies:
                    _, r = sup.command_replies.popleft()
                    self._replies[r.id] = r
                while len(self._replies) > 512:
                    self._replies.popitem(last=False)
        self._snapshot = (seq, views, health)

    def _call(self, fn: Callable[[Supervisor], Any]) -> None:
        if self._thread is None:
            fn(self.sup)  # not running: nothing else touches it
        else:
            self._calls.put(fn)

    # ------------------------------------------------------------------ the owner's side
    def poll(self) -> None:
        """On the owner's thread: take the newest snapshot into :attr:`workers` and hand new
        events to :attr:`listeners`.  Never blocks."""
        snap = self._snapshot
        if snap is not None and snap[0] != self._applied:
            self._applied = snap[0]
            for name, v in snap[1].items():
                mine = self.workers.get(name)
                if mine is None:
                    self.workers[name] = v
                else:  # in place: tables hold these objects as their rows
                    for f in dataclasses.fields(WorkerView):
                        setattr(mine, f.name, getattr(v, f.name))
            self.health = snap[2]
        while self._incoming:
            ev = self._incoming.popleft()
            self.events.append(ev)
            for fn in list(self.listeners):
                try:
                    fn(ev[1], ev[2])
                except Exception:
                    log.exception("supervisor listener failed")

    def totals(self) -> dict[str, Any]:
        return fleet_totals(self.workers.values())

    def failed(self) -> list[WorkerView]:
        return [w for w in self.workers.values() if w.state == "failed"]

    def command(self, name: str, cmd: str, args: dict | None = None) -> str:
        """Queue a command to a worker; returns its id at once (see :meth:`reply_for`)."""
        cid = self.sup.new_command_id()
        self._call(lambda sup: sup.command(name, cmd, args, cid=cid))
        return cid

    def broadcast(self, kind: str, cmd: str, args: dict | None = None) -> list[str]:
        return [self.command(w.name, cmd, args) for w in self.workers.values() if w.spec.kind == kind and w.proc is not None]

    def reply_for(self, cid: str) -> P.CommandReply | None:
        with self._lock:
            r = self._replies.get(cid)
        if r is None and self._thread is None:
            r = self.sup.reply_for(cid)
        return r

    def restart_worker(self, name: str) -> None:
        self._call(lambda sup: sup.restart_worker(name))

    def stop_worker(self, name: str) -> None:
        self._call(lambda sup: sup.stop_worker(name))

    def start_worker(self, name: str) -> None:
        self._call(lambda sup: sup.start_worker(name))

    def set_worker_args(self, name: str, args: list[str]) -> None:
        args = list(args)
        self.workers[name].spec.args = list(args)  # shown at once; applied at the next start
        self._call(lambda sup: sup.set_worker_args(name, args))

    def add_worker(self, spec: WorkerSpec, start: bool = True) -> None:
        if spec.name in self.workers:
            raise ValueError(f"a worker named {spec.name!r} exists already")
        self._call(lambda sup: sup.add_worker(spec, start))


__all__ = ["SupervisorThread", "POLL_MS"]
