"""Everything behind the window that is not Qt: the fleet, the state, the feeds, the orders.

A :class:`Session` owns the supervisor (it starts and stops the worker processes), the
in-memory :class:`~app.state.AppState`, the subscriptions that fill it, the order service
and the fleet controls.  The window drives it (``poll`` from a timer) and shows it; tests
build one on ephemeral endpoints.

The supervisor runs on its own thread (:class:`~workers.supervisor_thread.SupervisorThread`):
``self.sup`` is that thread's client, so a stalled UI thread never delays a heartbeat answer
or a restart.  ``poll`` (UI thread) takes the supervisor's snapshots and events, and the log
records the supervisor's thread writes reach the Log panel through a queue drained there
too: everything the UI reads, the UI thread wrote.
"""

from __future__ import annotations

import collections
import logging
import threading

from workers.config import Endpoints
from workers.executor.risk import RiskLimits
from workers.security import CurveKeys
from workers.supervisor import Supervisor
from workers.supervisor_thread import SupervisorThread
from app.control import FleetControl
from app.feeds import Feeds
from app.orders import OrderService
from app.state import AppState, LogBridgeHandler
from app.tasks import Tasks

log = logging.getLogger("tickdesk.app")

_EVENT_LEVELS = (("died", logging.ERROR), ("silent", logging.ERROR), ("crash loop", logging.ERROR),
                 ("refused", logging.WARNING), ("cannot start", logging.ERROR), ("stop requested", logging.WARNING))

#: log records from other threads waiting for the UI thread; past this the oldest go (the
#: supervisor's peer-caused lines are rate-limited at the source, so this is a last fence)
LOG_BACKLOG = 5000


class ThreadHandoff(logging.Handler):
    """Records of the owner's thread go straight to ``target``; records of any other thread
    (the supervisor's) wait in a bounded queue until :meth:`drain` runs on the owner's."""

    def __init__(self, target: logging.Handler):
        super().__init__(target.level)
        self.target = target
        self.owner = threading.get_ident()
        self.queue: collections.deque[logging.LogRecord] = collections.deque(maxlen=LOG_BACKLOG)

    def emit(self, record: logging.LogRecord) -> None:
        if threading.get_ident() == self.owner:
            self.target.handle(record)
        else:
            self.queue.append(record)

    def drain(self) -> None:
        while self.queue:
            self.target.handle(self.queue.popleft())


class Session:
    def __init__(self, sup: Supervisor | SupervisorThread, limits: RiskLimits | None = None, state: AppState | None = None):
        self.sup = sup if isinstance(sup, SupervisorThread) else SupervisorThread(sup)
        self.endpoints: Endpoints = sup.endpoints
        self.state = state or AppState()
        # With CurveZMQ on, the window is one more client of the fleet's server key.
        curve = CurveKeys.load(sup.config.curve_dir) if sup.config.curve_dir else None
        # every asyncio task of the window belongs to this group: close() ends them all
        self.tasks = Tasks("session")
        self.feeds = Feeds(self.state, self.endpoints, curve=curve, tasks=self.tasks)
        self.orders = OrderService(self.state, self.endpoints.orders, limits, curve=curve, tasks=self.tasks)
        self.control = FleetControl(self.sup, self.orders, self.state, tasks=self.tasks)
        self.started = False
        self.closed = False
        self._log_handler = ThreadHandoff(LogBridgeHandler(self.state.log))
        for ts, name, text in list(self.sup.events):
            self._on_sup_event(name, text)
        self.sup.listeners.append(self._on_sup_event)

    def _on_sup_event(self, name: str, text: str) -> None:
        level = next((lvl for word, lvl in _EVENT_LEVELS if word in text), logging.INFO)
        self.state.log.add(level, name, text)

    def start(self) -> None:
        """Start the fleet and the subscriptions (needs a running asyncio loop)."""
        logging.getLogger("tickdesk").addHandler(self._log_handler)
        self.sup.start()
        self.feeds.start()
        self.orders.start()
        self.control.start()
        self.started = True

    def poll(self) -> None:
        """Called from the window's timer: the supervisor's snapshots, events and log lines
        (the supervising itself goes on in its own thread)."""
        if self.closed:
            return
        self.sup.poll()
        self._log_handler.drain()
        self.control.enforce()

    def close(self) -> None:
        """Stop everything now: tasks cancelled, sockets closed, every worker process ended
        and waited for (this blocks for as long as the workers take to exit)."""
        if self.closed:
            return
        self.closed = True
        self.control.close()
        self.orders.close()
        self.feeds.close()
        self.tasks.cancel_all()  # and any task spawned on the group itself
        try:
            self.sup.stop()
        finally:
            logging.getLogger("tickdesk").removeHandler(self._log_handler)
            self._log_handler.drain()

