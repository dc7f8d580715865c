"""A real fleet under order load while its workers are SIGKILLed, and the books checked after.

Used by ``tests/faults/test_crash.py`` (10 kills per worker kind) and ``bench/soak.py``
(minutes of random kills).  Everything runs in the caller's thread: one loop pumps the
supervisor, the order client, the observers and the killer, so there is nothing to join.

* :class:`LazyPirateClient` -- several REQ "lanes" with one request in flight each, each
  request driven by the order client's :class:`~workers.order_client.LazyPirate` (the one
  implementation of the policy): no reply within ``timeout`` -> the lane closes its socket
  (linger 0), opens a new one and sends the SAME bytes again; after ``attempts`` tries the
  request is given up.  An order
  given up on is UNKNOWN: it is never sent again under a new ``client_order_id``; the
  reconciler asks ``get_order`` until the gateway says what became of it.
* :class:`OrderLoad` -- market orders at a steady rate (default 150/s) on symbols the
  strategies do not trade, with their outcome: acked, rejected, unknown, reconciled,
  not placed.
* Observers: the tick stream (sequence gaps and feed restarts seen by a subscriber), the
  execution stream (every fill published, to check against the journal), the executor's
  decisions (the strategy orders it got acknowledged).
* :meth:`ChaosFleet.kill` -- SIGKILL one worker and measure the recovery time: kill ->
  the supervisor's new process is running *and serving* (exchange: a ping answered;
  market data: a tick of the new incarnation received; executor: positions re-loaded from
  the gateway; strategy: ticks counted by the new incarnation).
* :meth:`ChaosFleet.finish` -- stop the load, reconcile every unknown order, wait for the
  executor's positions to match the gateway's, stop the fleet, read the SQLite journal
  read-only and count what was lost or doubled (:class:`Verdict`).
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from workers import protocol as P
from workers.config import Endpoints
from workers.fleet import default_fleet
from workers.order_client import LazyPirate, PirateCounters, PirateStats, RetryPolicy, is_unreadable, open_req
from workers.sequence import SequenceTracker
from workers.supervisor import Supervisor, SupervisorConfig

KINDS = ("marketdata", "strategy", "executor", "exchange")

#: the fleet under test: the strategy trades AAPL/MSFT, the test client GOOG/AMZN, so the
#: client's orders never push the strategy's symbols into the executor's position limit
FLEET_TOML = """
[fleet.marketdata]
rate = 50
seed = 7
symbols = "AAPL,MSFT,GOOG,AMZN"

[[fleet.strategies]]
name = "sr-fast"
symbols = "AAPL,MSFT"
mode = "both"
window = 30
min_fill = 10
cooldown = 0.3
qty = 10
max_position = 50
"""

CLIENT_SYMBOLS = ("GOOG", "AMZN")


# ----------------------------------------------------------------------------- order client


@dataclass
class Job:
    """One request a lane carries until it is answered or given up."""

    payload: bytes
    attempts: int
    on_reply: Callable[[dict], None]
    on_giveup: Callable[[], None]


class Lane:
    """One REQ socket, one request in flight (the REQ lockstep).  The retry policy is the
    order client's own :class:`~workers.order_client.LazyPirate`; the lane only does the
    non-blocking I/O it asks for."""

    def __init__(self, ctx: zmq.Context, endpoint: str):
        self.ctx = ctx
        self.endpoint = endpoint
        self.sock: zmq.Socket | None = None
        self.job: Job | None = None
        self.call: LazyPirate | None = None

    def begin(self, now: float) -> None:
        """Send the call's next attempt (on a new socket if the last one was thrown away)."""
        if self.sock is None:
            self.sock = open_req(self.ctx, self.endpoint)
        self.sock.send(self.call.begin(now))

    def poll(self, now: float) -> tuple[str, dict | None]:
        """("waiting" | "reply" | "gave_up", reply): one NOBLOCK look at the socket."""
        call = self.call
        try:
            data = self.sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            if not call.expired(now):
                return "waiting", None
            self.close()  # Lazy Pirate: the REQ is stuck in its lockstep; throw it away
            if call.on_timeout():
                self.begin(now)  # the same bytes again
                return "waiting", None
            return "gave_up", None
        return "reply", call.on_reply(data)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None


class LazyPirateClient(PirateCounters):
    """Non-blocking Lazy Pirate over several REQ lanes; :meth:`step` drives it."""

    def __init__(self, ctx: zmq.Context, endpoint: str, lanes: int = 8, timeout: float = 0.25):
        self.lanes = [Lane(ctx, endpoint) for _ in range(lanes)]
        self.timeout = timeout
        self.urgent: collections.deque[Job] = collections.deque()  # queries: before new orders
        self.queue: collections.deque[Job] = collections.deque()
        self.stats = PirateStats()

    def submit(self, job: Job, urgent: bool = False) -> None:
        (self.urgent if urgent else self.queue).append(job)

    @property
    def idle(self) -> bool:
        return not self.queue and not self.urgent and all(lane.job is None for lane in self.lanes)

    def sockets(self) -> list[zmq.Socket]:
        return [lane.sock for lane in self.lanes if lane.job is not None and lane.sock is not None]

    def step(self, now: float) -> None:
        for lane in self.lanes:
            if lane.job is not None:
                self._check(lane, now)
            if lane.job is None and (self.urgent or self.queue):
                job = self.urgent.popleft() if self.urgent else self.queue.popleft()
                lane.job = job
                lane.call = LazyPirate(job.payload, RetryPolicy(self.timeout, job.attempts), self.stats)
                lane.begin(now)

    def _check(self, lane: Lane, now: float) -> None:
        what, reply = lane.poll(now)
        if what == "waiting":
            return
        job = lane.job
        lane.job = lane.call = None
        if what == "gave_up":
            job.on_giveup()
        else:
            # an unreadable reply is an error reply: no answer about this request, so each
            # job's on_reply treats it as unknown (it checks the reply's type and id)
            job.on_reply(reply)

    def close(self) -> None:
        for lane in self.lanes:
            lane.close()


@dataclass
class OrderRecord:
    cid: str
    symbol: str
    side: str
    qty: int
    payload: bytes
    state: str = "queued"  # queued | sent | acked | rejected | unknown | not_placed
    status: str = ""
    filled_qty: int = 0
    not_found: int = 0
    querying: bool = False
    was_unknown: bool = False


class OrderLoad:
    """Market orders at ``rate`` per second, Lazy Pirate, unknown ones reconciled."""

    def __init__(self, client: LazyPirateClient, rng: random.Random, rate: float = 150.0, attempts: int = 4, tag: str = "chaos"):
        self.client = client
        self.rng = rng
        self.rate = rate
        self.attempts = attempts
        self.tag = f"{tag}-{os.getpid():x}-{time.time_ns() & 0xFFFFFF:06x}"
        self.orders: dict[str, OrderRecord] = {}
        self.unknown: dict[str, OrderRecord] = {}
        self.running = False
        self._n = 0
        self._t0 = 0.0
        self._next_reconcile = 0.0
        self.reconcile_interval = 0.2

    def start(self, now: float) -> None:
        self.running = True
        self._t0 = now - self._n / self.rate

    def stop(self) -> None:
        self.running = False

    def step(self, now: float) -> None:
        if self.running:
            due = int((now - self._t0) * self.rate)
            while self._n < due:
                self._new_order()
        if self.unknown and now >= self._next_reconcile:
            self._next_reconcile = now + self.reconcile_interval
            for rec in list(self.unknown.values()):
                if not rec.querying:
                    self._query(rec)

    def _new_order(self) -> None:
        self._n += 1
        cid = f"{self.tag}-{self._n}"
        symbol = self.rng.choice(CLIENT_SYMBOLS)
        side = self.rng.choice(("buy", "sell"))
        qty = self.rng.randint(1, 10)
        msg = P.SendOrder(client_order_id=cid, symbol=symbol, side=P.Side(side), qty=qty, source="chaos-client", ts=P.now_ns())
        rec = self.orders[cid] = OrderRecord(cid, symbol, side, qty, msg.pack())
        self.client.submit(Job(rec.payload, self.attempts, lambda r, rec=rec: self._on_ack(rec, r), lambda rec=rec: self._on_giveup(rec)))

    def _on_ack(self, rec: OrderRecord, reply: dict) -> None:
        if reply.get("type") != "send_order_reply" or reply.get("client_order_id") != rec.cid:
            # not an answer about this order: its outcome is unknown
            self._on_giveup(rec)
            return
        self._settle(rec, reply)

    def _settle(self, rec: OrderRecord, fields: dict) -> None:
        rec.status = str(fields.get("status", ""))
        rec.filled_qty = int(fields.get("filled_qty", 0) or 0)
        rec.state = "rejected" if rec.status == "rejected" else "acked"
        self.unknown.pop(rec.cid, None)

    def _on_giveup(self, rec: OrderRecord) -> None:
        if rec.state in ("acked", "rejected"):
            return
        rec.state = "unknown"
        rec.was_unknown = True
        self.unknown[rec.cid] = rec

    def _query(self, rec: OrderRecord) -> None:
        rec.querying = True
        payload = P.GetOrder(client_order_id=rec.cid).pack()

        def on_reply(reply: dict) -> None:
            rec.querying = False
            if rec.cid not in self.unknown:
                return
            if reply.get("ok") and reply.get("client_order_id") == rec.cid:
                self._settle(rec, reply.get("order") or reply)
                return
            if reply.get("type") == "get_order_reply" and "unknown client_order_id" in str(reply.get("reason", "")):
                # The gateway answers and does not know it.  Three times in a row, rounds
                # apart, so a request still queued in the gateway cannot be missed.
                rec.not_found += 1
                if rec.not_found >= 3:
                    rec.state = "not_placed"
                    del self.unknown[rec.cid]

        def on_giveup() -> None:
            rec.querying = False

        self.client.submit(Job(payload, 1, on_reply, on_giveup), urgent=True)

    def settled(self) -> bool:
        return not self.unknown and all(r.state not in ("queued", "sent") for r in self.orders.values()) and self.client.idle

    def count(self, state: str) -> int:
        return sum(1 for r in self.orders.values() if r.state == state)


# ----------------------------------------------------------------------------- observers


def read_ticks(frame: bytes) -> list[P.Tick]:
    """The ticks of one frame of the ticks endpoint: one ``tick``, or a ``ticks`` batch where
    the protocol has it (workers.protocol.iter_ticks)."""
    iter_ticks = getattr(P, "iter_ticks", None)
    if iter_ticks is not None:
        return list(iter_ticks(frame))
    return [P.decode_pub(frame, expect=P.Tick)[1]]


class TickObserver:
    """A subscriber of the tick stream: gaps and restarts of the per-symbol seq, as the
    shared tracker (workers/sequence.py) sees them."""

    def __init__(self, sock: zmq.Socket):
        self.sock = sock
        self.seq = SequenceTracker()
        self.ticks = 0

    @property
    def last(self) -> dict[str, int]:
        return {k: self.seq.last(k) for k in self.seq.keys()}

    @property
    def gaps(self) -> int:
        return self.seq.gaps

    @property
    def missed(self) -> int:
        return self.seq.missing

    @property
    def restarts(self) -> int:
        return self.seq.restarts

    def drain(self) -> None:
        check = self.seq.check
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                ticks = read_ticks(frame)
            except P.ProtocolError:
                continue
            for t in ticks:
                self.ticks += 1
                check(t.symbol, t.seq, getattr(t, "epoch", None))


class ExecObserver:
    """Every fill and order update published on the execution stream."""

    def __init__(self, sock: zmq.Socket):
        self.sock = sock
        self.fills: dict[str, tuple] = {}
        self.fill_conflicts: list[str] = []  # one fill_id published with different contents
        self.messages = 0

    def drain(self) -> None:
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                _, m = P.decode_pub(frame, expect=(P.Fill, P.OrderUpdate))
            except P.ProtocolError:
                continue
            self.messages += 1
            if isinstance(m, P.Fill):
                key = (m.client_order_id, m.symbol, m.side.value, m.qty, m.price)
                old = self.fills.setdefault(m.fill_id, key)
                if old != key:
                    self.fill_conflicts.append(m.fill_id)


class DecisionObserver:
    """The executor's decisions: which strategy orders it got acknowledged, or gave up on."""

    def __init__(self, sock: zmq.Socket):
        self.sock = sock
        self.acked: set[str] = set()
        self.not_placed: set[str] = set()
        self.unknown: set[str] = set()
        self.decisions = 0

    def drain(self) -> None:
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                _, d = P.decode_pub(frame, expect=P.SignalDecision)
            except P.ProtocolError:
                continue
            self.decisions += 1
            cid = d.client_order_id
            if not cid:
                continue
            reason = d.reason
            # "order outcome unknown; reconciling" also starts with "order ": look for it first
            if d.accepted and "unknown" in reason:
                self.unknown.add(cid)
            elif d.accepted and (reason.startswith("order ") or reason.startswith("reconciled: order ")):
                self.acked.add(cid)
            elif reason.startswith("order never reached"):
                self.not_placed.add(cid)


class Probe:
    """Pings the gateway, one attempt per ping, until one is answered ok."""

    def __init__(self, ctx: zmq.Context, endpoint: str, timeout: float = 0.2):
        self.lane = Lane(ctx, endpoint)
        self.timeout = timeout
        self.answered = False

    def step(self, now: float) -> None:
        lane = self.lane
        if self.answered:
            return
        if lane.call is None:
            # a fresh ping each time, not a resend: the question is "is it serving now?"
            lane.call = LazyPirate(P.Ping(ts=P.now_ns()).pack(), RetryPolicy(self.timeout, 1))
            lane.begin(now)
            return
        what, reply = lane.poll(now)
        if what != "waiting":
            lane.call = None
            self.answered = reply is not None and reply.get("ok") is True

    def close(self) -> None:
        self.lane.close()


# ----------------------------------------------------------------------------- the fleet


@dataclass
class Incarnation:
    """Memory of one worker process, from its heartbeats."""

    name: str
    pid: int
    first_rss: int = 0
    first_uptime: float = 0.0
    last_rss: int = 0
    last_uptime: float = 0.0


@dataclass
class Verdict:
    """What the journal and the gateway say after the run."""

    sent: int = 0
    acked: int = 0
    rejected: int = 0
    filled: int = 0
    reconciled: int = 0  # unknown after every retry, then found with get_order
    not_placed: int = 0  # unknown, and the gateway never got it
    resends: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    phantom: list[str] = field(default_factory=list)  # declared not placed, yet journaled
    unjournaled_fills: list[str] = field(default_factory=list)  # published, not in the journal
    position_mismatch: dict = field(default_factory=dict)
    executor_mismatch: dict = field(default_factory=dict)
    strategy_orders: int = 0  # executor orders acked (seen on the events stream)
    journal_orders: int = 0
    journal_fills: int = 0
    counters: dict = field(default_factory=dict)
    reject_reasons: dict = field(default_factory=dict)  # journal: reason -> orders

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.phantom or self.unjournaled_fills or self.position_mismatch or self.executor_mismatch)

    def problems(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in {
                "lost": self.lost[:10],
                "duplicated": self.duplicated[:10],
                "phantom": self.phantom[:10],
                "unjournaled_fills": self.unjournaled_fills[:10],
                "position_mismatch": self.position_mismatch,
                "executor_mismatch": self.executor_mismatch,
            }.items()
            if v
        }


class ChaosFleet:
    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        seed: int = 1,
        order_rate: float = 150.0,
        fleet_toml: str = FLEET_TOML,
        endpoints: Endpoints | None = None,
        supervisor_config: SupervisorConfig | None = None,
        client_timeout: float = 0.15,
        client_attempts: int = 3,
    ):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        cfg = self.dir / "fleet.toml"
        cfg.write_text(fleet_toml)
        # ipc paths must stay short (108 bytes on Linux); tmp dirs of pytest can be long
        self._ipc_dir = tempfile.mkdtemp(prefix="td-chaos-")
        self.eps = endpoints or Endpoints.ephemeral_ipc(self._ipc_dir)
        # fresh_journal: exactly what `main.py --headless --fresh` does; a restart must not wipe it
        specs = default_fleet(data=self.dir, config_path=str(cfg), fresh_journal=True)
        self.journal_path = self.dir / "exchange-journal.sqlite"
        self.sup = Supervisor(
            self.eps,
            specs,
            supervisor_config
            or SupervisorConfig(log_dir=str(self.dir / "logs"), backoff_initial=0.05, backoff_max=0.2, heartbeat_timeout=5.0),
        )
        self.ctx = zmq.Context()
        self.client = LazyPirateClient(self.ctx, self.eps.orders, timeout=client_timeout)
        self.load = OrderLoad(self.client, self.rng, rate=order_rate, attempts=client_attempts)
        self.ticks = TickObserver(self._sub(self.eps.ticks, b"tick."))
        self.execs = ExecObserver(self._sub(self.eps.execution, b"exec."))
        self.decisions = DecisionObserver(self._sub(self.eps.events, b"signal."))
        self.recoveries: dict[str, list[float]] = {k: [] for k in KINDS}
        self.incarnations: dict[tuple[str, int], Incarnation] = {}
        self.kills = 0
        self._stopped = False

    def _sub(self, endpoint: str, topic: bytes) -> zmq.Socket:
        s = self.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 1_000_000)
        s.setsockopt(zmq.SUBSCRIBE, topic)
        s.connect(endpoint)
        return s

    # ------------------------------------------------------------------ driving
    def start(self, timeout: float = 60.0) -> None:
        self.sup.start()
        self.wait(lambda: all(w.state == "running" for w in self.sup.workers.values()), timeout, "every worker running")
        self.wait(lambda: self.gauge("executor", "synced") is True, timeout, "executor loaded its positions")
        self.wait(lambda: all(s in self.ticks.seq for s in CLIENT_SYMBOLS), timeout, "ticks of the client's symbols")
        self.load.start(time.monotonic())
        self.wait(lambda: self.load.count("acked") >= 10, timeout, "first orders acked")

    def pump(self, max_wait: float = 0.005) -> None:
        """One round: supervisor, order lanes, observers."""
        self.sup.poll(0)
        socks = self.client.sockets() + [self.ticks.sock, self.execs.sock, self.decisions.sock]
        poller = zmq.Poller()
        for s in socks:
            poller.register(s, zmq.POLLIN)
        poller.poll(int(max_wait * 1000))
        now = time.monotonic()
        self.load.step(now)
        self.client.step(now)
        self.ticks.drain()
        self.execs.drain()
        self.decisions.drain()
        self._note_memory()

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump()

    def wait(self, pred: Callable[[], Any], timeout: float, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                states = {w.name: (w.state, w.pid, w.restarts) for w in self.sup.workers.values()}
                raise AssertionError(f"not within {timeout}s: {what}; workers {states}")

    # ------------------------------------------------------------------ fleet facts
    def worker(self, kind: str):
        return next(w for w in self.sup.workers.values() if w.spec.kind == kind)

    def gauge(self, kind: str, key: str) -> Any:
        return self.worker(kind).stats.get("gauges", {}).get(key)

    def counter(self, kind: str, key: str) -> int:
        return sum(w.counter(key) for w in self.sup.workers.values() if w.spec.kind == kind)

    def _note_memory(self) -> None:
        for w in self.sup.workers.values():
            g = w.stats.get("gauges") or {}
            rss, up = g.get("rss"), g.get("uptime")
            if not w.pid or not isinstance(rss, int) or not isinstance(up, (int, float)):
                continue
            inc = self.incarnations.get((w.name, w.pid))
            if inc is None:
                inc = self.incarnations[(w.name, w.pid)] = Incarnation(w.name, w.pid)
            if not inc.first_rss and up >= 1.0:  # past start-up imports
                inc.first_rss, inc.first_uptime = rss, up
            inc.last_rss, inc.last_uptime = rss, up

    # ------------------------------------------------------------------ faults
    def kill(self, kind: str, timeout: float = 30.0) -> float:
        """SIGKILL the worker of ``kind``; return seconds until its successor serves."""
        w = self.worker(kind)
        self.wait(lambda: w.state == "running" and w.proc is not None, timeout, f"{w.name} running before the kill")
        old = w.pid
        restarts_seen = self.ticks.restarts
        probe = Probe(self.ctx, self.eps.orders) if kind == "exchange" else None
        t0 = time.monotonic()
        os.kill(old, signal.SIGKILL)
        self.kills += 1

        asked = {"cid": "", "at": 0.0}

        def fresh_stats() -> dict:
            """The new incarnation's stats: from a `stats` command (asked every 50 ms, so the
            answer does not wait for the next heartbeat), else from its last heartbeat."""
            r = self.sup.reply_for(asked["cid"]) if asked["cid"] else None
            now = time.monotonic()
            if r is not None or now - asked["at"] >= 0.05:
                asked["cid"], asked["at"] = self.sup.command(w.name, "stats"), now
            if r is not None and r.ok and isinstance(r.result, dict):
                return r.result
            return w.stats

        def serving() -> bool:
            if w.pid == old or w.state != "running":
                return False
            if kind == "exchange":
                probe.step(time.monotonic())
                return probe.answered
            if kind == "marketdata":
                return self.ticks.restarts > restarts_seen  # a tick from the new incarnation
            stats = fresh_stats()
            if kind == "executor":
                return stats.get("gauges", {}).get("synced") is True
            return stats.get("counters", {}).get("ticks", 0) > 0

        try:
            self.wait(serving, timeout, f"{w.name} back and serving after SIGKILL")
        finally:
            if probe is not None:
                probe.close()
        took = time.monotonic() - t0
        self.recoveries[kind].append(took)
        return took

    # ------------------------------------------------------------------ the books
    def request(self, msg: P.Message, timeout: float = 10.0) -> dict:
        """One query through the Lazy Pirate lanes, pumping the fleet while it waits."""
        box: dict[str, Any] = {}
        self.client.submit(Job(msg.pack(), 40, lambda r: box.setdefault("r", r), lambda: box.setdefault("r", None)), urgent=True)
        self.wait(lambda: "r" in box, timeout, f"reply to {msg.TYPE.value}")
        if box["r"] is None or is_unreadable(box["r"]):
            raise AssertionError(f"no (readable) reply to {msg.TYPE.value}: {box['r']}")
        return box["r"]

    def finish(self, settle_timeout: float = 30.0) -> Verdict:
        """Stop the load, settle every order, compare positions, stop the fleet, read the journal."""
        self.load.stop()
        # No new strategy orders either, so the books can come to rest: the positions read
        # from the gateway below are then the ones the journal holds when the fleet stops.
        self.quiesce()
        self.wait(self.load.settled, settle_timeout, "every order answered or reconciled")
        settled_at = time.monotonic()
        gw = self.worker("exchange")
        # a heartbeat sent after the last answer: its gauge counts every order there is
        self.wait(lambda: gw.last_heartbeat > settled_at and self.gauge("exchange", "working_orders") == 0, settle_timeout, "no working orders left")
        # the gateway's positions, and the executor's once it has caught up (resync after gaps)
        exch = self._exchange_positions()

        def executor_agrees() -> bool:
            nonlocal exch
            exch = self._exchange_positions()
            return self._executor_positions() == exch

        v = Verdict()
        try:
            self.wait(executor_agrees, 15.0, "executor positions equal the gateway's")
        except AssertionError:
            v.executor_mismatch = {"executor": self._executor_positions(), "exchange": exch}
        self.run_for(0.6)  # last heartbeats with the final counters
        v.counters = {
            "strategy": {k: self.counter("strategy", k) for k in ("ticks", "signals", "tick_gaps", "ticks_missed", "feed_restarts", "ticks_stale", "decode_errors")},
            "executor": {k: self.counter("executor", k) for k in ("signals", "orders", "acks", "fills", "unknown", "reconciled", "not_placed", "exec_gaps", "exec_restarts", "syncs")},
            "exchange": {k: self.counter("exchange", k) for k in ("orders", "duplicates", "fills", "rejects", "dropped", "decode_errors")},
            "marketdata": {k: self.counter("marketdata", k) for k in ("ticks", "dropped")},
            "observer": {"ticks": self.ticks.ticks, "gaps": self.ticks.gaps, "missed": self.ticks.missed, "feed_restarts": self.ticks.restarts},
            "client": {"resends": self.client.resends, "timeouts": self.client.timeouts},
        }
        self.stop()
        self._judge(v, exch)
        return v

    def quiesce(self, timeout: float = 15.0) -> None:
        """Pause the executor (it refuses signals) and wait until it has no order in flight."""
        for kind in ("strategy", "executor"):
            for cid in self.sup.broadcast(kind, "pause"):
                self.wait(lambda cid=cid: self.sup.reply_for(cid) is not None, timeout, f"{kind} paused")
        self.wait(lambda: not self.gauge("executor", "working_orders") and not self.gauge("executor", "unknown_orders"), timeout, "executor orders done")

    def _exchange_positions(self) -> dict[str, int]:
        r = self.request(P.GetPositions())
        return {p["symbol"]: p["qty"] for p in r.get("positions", []) if p.get("qty")}

    def _executor_positions(self) -> dict[str, int] | None:
        g = self.gauge("executor", "positions")
        return dict(g) if isinstance(g, dict) else None

    def _judge(self, v: Verdict, exch_positions: dict[str, int]) -> None:
        orders, fills = read_journal(self.journal_path)
        load = self.load
        v.journal_orders, v.journal_fills = len(orders), len(fills)
        v.sent = len(load.orders)
        v.acked = load.count("acked")
        v.rejected = load.count("rejected")
        v.not_placed = load.count("not_placed")
        v.reconciled = sum(1 for r in load.orders.values() if r.was_unknown and r.state in ("acked", "rejected"))
        v.resends = self.client.resends
        v.filled = sum(1 for o in orders.values() if o["status"] == "filled" and o["source"] == "chaos-client")
        v.strategy_orders = len(self.decisions.acked)
        v.reject_reasons = dict(collections.Counter(_reason_kind(o["reason"]) for o in orders.values() if o["status"] == "rejected"))
        for rec in load.orders.values():
            if rec.state in ("acked", "rejected"):
                if rec.cid not in orders:
                    v.lost.append(rec.cid)  # acknowledged, yet the journal does not have it
            elif rec.state == "not_placed":
                if rec.cid in orders:
                    v.phantom.append(rec.cid)
            else:
                v.lost.append(rec.cid)  # never resolved, even after reconciliation
        for cid in self.decisions.acked:
            if cid not in orders:
                v.lost.append(cid)
        for cid in self.decisions.not_placed:
            if cid in orders:
                v.phantom.append(cid)
        # doubled: more filled than ordered, a filled order short of its quantity, a fill id
        # published twice with different contents, or a journal row that disagrees with its fills
        per_order: dict[str, int] = collections.Counter()
        for f in fills.values():
            per_order[f["client_order_id"]] += f["qty"]
            if f["client_order_id"] not in orders:
                v.duplicated.append(f"orphan fill {f['fill_id']}")
        for cid, o in orders.items():
            got = per_order.get(cid, 0)
            if got > o["qty"] or got != o["filled_qty"] or (o["status"] == "filled" and got != o["qty"]):
                v.duplicated.append(f"{cid}: qty {o['qty']} filled_qty {o['filled_qty']} fills {got} ({o['status']})")
        v.duplicated += [f"fill {fid} published twice, differently" for fid in self.execs.fill_conflicts]
        for fid, (cid, symbol, side, qty, price) in self.execs.fills.items():
            f = fills.get(fid)
            if f is None or (f["client_order_id"], f["qty"], f["price"]) != (cid, qty, price):
                v.unjournaled_fills.append(fid)
        journal_pos: dict[str, int] = collections.Counter()
        for f in fills.values():
            journal_pos[f["symbol"]] += f["qty"] if f["side"] == "buy" else -f["qty"]
        journal_pos = {s: q for s, q in journal_pos.items() if q}
        if journal_pos != exch_positions:
            v.position_mismatch = {"journal": journal_pos, "get_positions": exch_positions}

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self.sup.stop()
        finally:
            self.client.close()
            self.ctx.destroy(linger=0)
            shutil.rmtree(self._ipc_dir, ignore_errors=True)

    # ------------------------------------------------------------------ reporting
    def memory(self) -> dict[str, dict[str, float]]:
        """Per worker: RSS growth of its longest-lived incarnation (MiB), and over how long."""
        out: dict[str, dict[str, float]] = {}
        for inc in self.incarnations.values():
            if not inc.first_rss:
                continue
            life = inc.last_uptime - inc.first_uptime
            best = out.get(inc.name)
            if best is None or life > best["seconds"]:
                out[inc.name] = {
                    "start_mib": inc.first_rss / 2**20,
                    "end_mib": inc.last_rss / 2**20,
                    "growth_mib": (inc.last_rss - inc.first_rss) / 2**20,
                    "seconds": life,
                }
        return out


def read_journal(path: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """Orders and fills of a journal (after the gateway stopped), read by the journal itself:
    its tables plus any log rows a last crash left (docs/exchange.md, *The journal*)."""
    from workers.exchange.journal import Journal

    j = Journal(path)
    try:
        rec = j.load()
        counts = j.db.execute("SELECT client_order_id, COUNT(*) c FROM orders GROUP BY client_order_id HAVING c > 1").fetchall()
    finally:
        j.close()
    assert not counts, f"journal holds an order twice: {counts}"
    cids = [o.client_order_id for o in rec.orders]
    assert len(cids) == len(set(cids)), "journal holds an order twice"
    orders = {o.client_order_id: {"client_order_id": o.client_order_id, "qty": o.qty, "status": o.status.value,
                                  "filled_qty": o.filled_qty, "source": o.source, "reason": o.reason} for o in rec.orders}
    fills = {f.fill_id: {"fill_id": f.fill_id, "client_order_id": f.client_order_id, "symbol": f.symbol, "side": f.side.value,
                         "qty": f.qty, "price": f.price} for f in rec.fills}
    return orders, fills


def _reason_kind(reason: str) -> str:
    """'no market data for GOOG' -> 'no market data for ...' (group reasons that name a symbol)."""
    words = reason.split()
    return " ".join(words[:-1] + ["..."]) if len(words) > 3 and words[-1].isupper() else reason


def summarize(times: list[float]) -> str:
    if not times:
        return "-"
    return f"n={len(times)} median {statistics.median(times):.2f}s max {max(times):.2f}s"
