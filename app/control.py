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
#: how often the account's kill switch is read from the exchange (get_positions): the gateway
#: publishes no event when another client (a second window, a script) switches it
ACCOUNT_EVERY = 2.0
#: the reason the window gives the gateway when the trader presses the button
KILL_REASON = "kill switch pressed in the window"


@dataclass
class KillReport:
    """What the kill switch did, step by step, for the banner and the log."""

    account: str = ""  # the exchange's set_kill_switch: "on", "NO REPLY", "refused: ..."
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
        return (self.account == "on" and self.cancel_ok and self.live_left == 0 and all(v == "paused" for v in self.strategies.values())
                and all(v == "on" for v in self.executor.values()))

    def text(self) -> str:
        strat = ", ".join(f"{k} {v}" for k, v in self.strategies.items()) or "none running"
        exe = ", ".join(f"{k} {v}" for k, v in self.executor.items()) or "no executor running"
        left = f"; {self.live_left} orders STILL WORKING" if self.live_left else ""
        done = f", {self.ended} of {self.live_before} working orders done" if self.cancel_ok else ""
        return (f"KILL SWITCH {'engaged' if self.ok else 'INCOMPLETE'}: account: {self.account}; "
                f"cancel all: {self.cancel_all}{done}; "
                f"strategies: {strat}; executor kill switch: {exe}{left} ({self.elapsed:.1f}s)")


class FleetControl:
    """Commands the window sends to the fleet, none of which blocks the UI thread."""

    def __init__(self, sup: SupervisorThread, orders: OrderService, state: AppState, tasks: Tasks | None = None):
        self.sup = sup
        self.orders = orders
        self.state = state
        self.kill_engaged = False
        #: why the switch is on (the account's reason when it was found on at the exchange)
        self.kill_reason = ""
        #: the account's kill switch as the exchange last reported it (None: not read yet)
        self.account_kill: bool | None = None
        #: ``fn(on, reason)`` whenever the window's switch turns on or off, whoever turned it
        #: (the button, or the account found on at start or after another client switched it)
        self.kill_listeners: list = []
        self._enforced: dict[str, float] = {}
        self.tasks = tasks.child("control", self._task_failed) if tasks is not None else Tasks("control", self._task_failed)

    def spawn(self, coro, name: str | None = None) -> asyncio.Task:
        """Run a command coroutine without blocking the UI (the window's buttons call this)."""
        return self.tasks.spawn(coro, name)

    def _task_failed(self, name: str, e: BaseException) -> None:
        self.state.log.error("control", f"{type(e).__name__}: {e}")

    def start(self) -> None:
        """Read the account's kill switch now and then every ACCOUNT_EVERY seconds."""
        self.tasks.spawn(self._watch_account(), "account")

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
        self._set_engaged(True, KILL_REASON)
        self.state.log.error("kill switch", "KILL SWITCH pressed: cancelling all orders, stopping strategies")
        strategies = self.names("strategy")
        executors = self.names("executor")
        for n in strategies + executors:  # their heartbeats lag the commands: no re-sends meanwhile
            self._enforced[n] = t0
        before = [o.client_order_id for o in self.state.orders.live()]
        results = await asyncio.gather(
            self.orders.cancel_all(),
            self.orders.client.ask(P.SetKillSwitch(on=True, reason=KILL_REASON, ts=P.now_ns())),
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
        rep.account = _account_text(results[1], True)
        if rep.account == "on":
            self.account_kill = True
        for name, r in zip(strategies, results[2:2 + len(strategies)]):
            rep.strategies[name] = _cmd_text(r, "paused")
        for name, r in zip(executors, results[2 + len(strategies):]):
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

    async def release_kill_switch(self, resume: bool = True) -> str:
        """Switch the account's kill switch off, and the executor's; the strategies resume
        only if ``resume`` (the trader may keep them paused and trade by hand)."""
        self._set_engaged(False, "")
        strategies = self.names("strategy") if resume else []
        executors = self.names("executor")
        results = await asyncio.gather(
            self.orders.client.ask(P.SetKillSwitch(on=False, ts=P.now_ns())),
            *(self.command(n, "kill_switch", {"on": False}) for n in executors),
            *(self.command(n, "resume") for n in strategies),
            return_exceptions=True,
        )
        account = _account_text(results[0], False)
        if account == "off":
            self.account_kill = False
        parts = [f"account {account}"]
        parts += [f"{n} {_cmd_text(r, 'off')}" for n, r in zip(executors, results[1:])]
        parts += [f"{n} {_cmd_text(r, 'resumed')}" for n, r in zip(strategies, results[1 + len(executors):])]
        if not resume:
            parts.append("strategies kept paused (Resume each in the Workers panel)")
        text = "kill switch released: " + ", ".join(parts)
        self.state.log.add(logging.WARNING if account == "off" else logging.ERROR, "kill switch", text)
        return text

    def _set_engaged(self, on: bool, reason: str) -> None:
        changed = on != self.kill_engaged
        self.kill_engaged = on
        self.kill_reason = reason if on else ""
        self.orders.set_kill_switch(on)
        if changed:
            for fn in list(self.kill_listeners):
                try:
                    fn(on, self.kill_reason)
                except Exception:
                    log.exception("kill switch listener failed")

    def apply_account(self, on: bool, reason: str = "") -> None:
        """The account's kill switch as the exchange reports it (get_positions_reply).

        Found on: the window's switch goes on too (blocks the ticket but for reducing orders,
        pauses every strategy at the next poll) -- a restart never turns it off silently.
        Found off while the window's is on: the window keeps it on and says so; only Release
        turns it off here (someone else released the account, or the gateway predates it)."""
        was = self.account_kill
        self.account_kill = on
        if on and not self.kill_engaged:
            self._set_engaged(True, reason or "on at the exchange")
            self.state.log.error("kill switch", f"the account's kill switch is ON at the exchange ({self.kill_reason}): "
                                 "strategies paused, only orders that reduce a position are accepted")
        elif not on and self.kill_engaged and was is not False:
            self.state.log.warning("kill switch", "the exchange reports the account's kill switch OFF while this "
                                   "window's is on: it stays on here until Release")

    async def load_account(self) -> bool:
        """Ask the exchange for the account's kill switch once; False: no answer."""
        reply = await self.orders.client.ask(P.GetPositions())
        if not isinstance(reply, P.GetPositionsReply) or not reply.ok:
            return False
        self.apply_account(reply.kill_switch, reply.kill_reason)
        return True

    async def _watch_account(self) -> None:
        while True:
            await self.load_account()
            await asyncio.sleep(ACCOUNT_EVERY)

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


def _account_text(r, on: bool) -> str:
    """The exchange's answer to set_kill_switch, as the report shows it."""
    if isinstance(r, BaseException):
        return f"error: {r}"
    if r is None:
        return "NO REPLY from the exchange"
    if not isinstance(r, P.SetKillSwitchReply) or not r.ok:
        return f"refused: {getattr(r, 'reason', '') or 'no reason given'}"
    return ("on" if r.on else "STILL OFF") if on else ("off" if not r.on else "STILL ON")
