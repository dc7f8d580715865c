"""Fleet control from the window: worker stop/restart, strategy commands, the kill switch.

``sup`` is the supervisor thread's client (``workers.supervisor_thread.SupervisorThread``):
``stop_worker``/``restart_worker``/``command`` are queued to the supervisor's thread and
return at once; the stop (command, then SIGTERM, then SIGKILL on deadlines) and any restart
are carried out there.  Command replies are awaited by polling ``reply_for`` (a lock-guarded
map) from a coroutine; what this reads of the workers is the UI thread's snapshot.  No Qt here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from workers import protocol as P
from workers.supervisor_thread import SupervisorThread
from app.orders import OrderService
from app.state import AppState
from app.tasks import Tasks

log = logging.getLogger("tickdesk.app.control")

#: while the kill switch is on, a strategy seen running again is paused again, at most this often
ENFORCE_EVERY = 2.0


@dataclass
class KillReport:
    """What the kill switch did, step by step, for the banner and the log."""

    cancel_all: str = ""
    cancel_ok: bool = False
    cancelled: int = 0  # what the exchange's cancel_all reply counted (the executor may have been first)
    live_before: int = 0  # working orders the window knew of when the switch was pressed
    ended: int = 0  # of those, how many are finished (cancelled, or filled meanwhile) now
    strategies: dict[str, str] = field(default_factory=dict)
    executor: dict[str, str] = field(default_factory=dict)
    live_left: int = 0
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.cancel_ok and self.live_left == 0 and all(v == "paused" for v in self.strategies.values())
                and all(v == "on" for v in self.executor.values()))

    def text(self) -> str:
        strat = ", ".join(f"{k} {v}" for k, v in self.strategies.items()) or "none running"
        exe = ", ".join(f"{k} {v}" for k, v in self.executor.items()) or "no executor running"
        left = f"; {self.live_left} orders STILL WORKING" if self.live_left else ""
        done = f", {self.ended} of {self.live_before} working orders done" if self.cancel_ok else ""
        return (f"KILL SWITCH {'engaged' if self.ok else 'INCOMPLETE'}: cancel all: {self.cancel_all}{done}; "
                f"strategies: {strat}; executor kill switch: {exe}{left} ({self.elapsed:.1f}s)")


class FleetControl:
    """Commands the window sends to the fleet, none of which blocks the UI thread."""

    def __init__(self, sup: SupervisorThread, orders: OrderService, state: AppState, tasks: Tasks | None = None):
        self.sup = sup
        self.orders = orders
        self.state = state
        self.kill_engaged = False
        self._enforced: dict[str, float] = {}
        self.tasks = tasks.child("control", self._task_failed) if tasks is not None else Tasks("control", self._task_failed)

    def spawn(self, coro, name: str | None = None) -> asyncio.Task:
        """Run a command coroutine without blocking the UI (the window's buttons call this)."""
        return self.tasks.spawn(coro, name)

    def _task_failed(self, name: str, e: BaseException) -> None:
        self.state.log.error("control", f"{type(e).__name__}: {e}")

    def close(self) -> None:
        self.tasks.cancel_all()

    async def aclose(self) -> None:
        await self.tasks.aclose()

    # ------------------------------------------------------------------ commands
    async def command(self, name: str, cmd: str, args: dict | None = None, timeout: float = 2.0):
        """Send a command and wait for its reply (None: no reply within ``timeout``)."""
        cid = self.sup.command(name, cmd, args)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.sup.reply_for(cid)
            if r is not None:
                return r
            await asyncio.sleep(0.03)
        return None

    def names(self, kind: str, running_only: bool = True) -> list[str]:
        return [w.name for w in self.sup.workers.values() if w.spec.kind == kind and (w.proc is not None or not running_only)]

    async def strategy_command(self, name: str, cmd: str, args: dict | None = None):
        r = await self.command(name, cmd, args)
        if r is None:
            self.state.log.warning(name, f"{cmd}: no reply")
        elif not r.ok:
            self.state.log.error(name, f"{cmd} refused: {r.reason}")
        else:
            self.state.log.info(name, f"{cmd}: ok")
        return r

    # ------------------------------------------------------------------ processes
    async def stop_worker(self, name: str) -> None:
        """Stop a worker for good (until started again), without blocking."""
        self.sup.stop_worker(name)

    async def start_worker(self, name: str) -> None:
        self.sup.start_worker(name)

    async def restart_worker(self, name: str) -> None:
        self.sup.restart_worker(name)

    # ------------------------------------------------------------------ kill switch
    async def engage_kill_switch(self) -> KillReport:
        """Block manual orders, pause every strategy, switch the executor's kill switch on
        and cancel every working order at the exchange -- all at once -- then report."""
        t0 = time.monotonic()
        self.kill_engaged = True
        self.orders.set_kill_switch(True)
        self.state.log.error("kill switch", "KILL SWITCH pressed: cancelling all orders, stopping strategies")
        strategies = self.names("strategy")
        executors = self.names("executor")
        for n in strategies + executors:  # their heartbeats lag the commands: no re-sends meanwhile
            self._enforced[n] = t0
        before = [o.client_order_id for o in self.state.orders.live()]
        results = await asyncio.gather(
            self.orders.cancel_all(),
            *(self.command(n, "pause") for n in strategies),
            *(self.command(n, "kill_switch", {"on": True}) for n in executors),
            return_exceptions=True,
        )
        rep = KillReport()
        cancel = results[0]
        if isinstance(cancel, (P.CancelAllReply, P.ErrorReply)):
            rep.cancel_ok = cancel.ok
            rep.cancelled = len(getattr(cancel, "cancelled", ()))
            rep.cancel_all = "ok" if rep.cancel_ok else f"refused: {cancel.reason}"
        else:
            rep.cancel_all = "NO REPLY from the exchange" if cancel is None else f"error: {cancel}"
        for name, r in zip(strategies, results[1:1 + len(strategies)]):
            rep.strategies[name] = _cmd_text(r, "paused")
        for name, r in zip(executors, results[1 + len(strategies):]):
            rep.executor[name] = _cmd_text(r, "on")
        # Cancels reach the blotter on the execution stream; give them a moment.
        deadline = time.monotonic() + 2.0
        while self.state.orders.live() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        rep.live_left = len(self.state.orders.live())
        rep.live_before = len(before)
        rep.ended = sum(1 for c in before if (o := self.state.orders.get(c)) is not None and not o.is_live)
        rep.elapsed = time.monotonic() - t0
        self.state.log.add(logging.ERROR if not rep.ok else logging.WARNING, "kill switch", rep.text())
        return rep

    async def release_kill_switch(self) -> str:
        self.kill_engaged = False
        self.orders.set_kill_switch(False)
        strategies = self.names("strategy")
        executors = self.names("executor")
        results = await asyncio.gather(
            *(self.command(n, "kill_switch", {"on": False}) for n in executors),
            *(self.command(n, "resume") for n in strategies),
            return_exceptions=True,
        )
        parts = [f"{n} {_cmd_text(r, 'off')}" for n, r in zip(executors, results)]
        parts += [f"{n} {_cmd_text(r, 'resumed')}" for n, r in zip(strategies, results[len(executors):])]
        text = "kill switch released: " + ", ".join(parts)
        self.state.log.warning("kill switch", text)
        return text

    def enforce(self) -> None:
        """While the kill switch is on, a strategy or executor that (re)started is stopped
        again: a restart must not bring trading back.  Called from the supervisor poll."""
        if not self.kill_engaged:
            return
        now = time.monotonic()
        for w in self.sup.workers.values():
            if w.proc is None or w.state != "running":
                continue
            if w.spec.kind == "strategy":
                need, cmd, args = True, "pause", None
            elif w.spec.kind == "executor":
                need = w.stats.get("gauges", {}).get("kill_switch") is False
                cmd, args = "kill_switch", {"on": True, "cancel_all": False}
            else:
                continue
            if need and now - self._enforced.get(w.name, 0.0) >= ENFORCE_EVERY:
                self._enforced[w.name] = now
                self.sup.command(w.name, cmd, args)
                self.state.log.warning("kill switch", f"{w.name} came back while the kill switch is on: sent {cmd}")


def _cmd_text(r, ok_word: str) -> str:
    if isinstance(r, BaseException):
        return f"error: {r}"
    if r is None:
        return "NO REPLY"
    return ok_word if r.ok else f"refused: {r.reason}"
