"""The executor under a real Supervisor while its order gateway is dead (issue 11, item 4).

What the outside check did: the executor's queries (``get_order`` for unknown orders,
``get_positions`` on a resync, ``cancel_all`` from the kill switch) each waited up to the
order timeout on the loop thread while the gateway was down, and a few in a row made the
supervisor take the executor for silent and kill it.  Here the order timeout is *longer*
than the supervisor's silence threshold, so one blocking query alone would be a restart; the
gateway is first a bound ROUTER that never answers, then nothing at all, for several order
timeouts; and the test asserts the same process, heartbeats that never paused as long as the
threshold, and, once a gateway is back, every unknown order settled from evidence (found, or
"not placed" after the gateway denied it) and none ever sent again.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import zmq

from tests.integration.test_executor import FakeExchange, Rig
from tests.procs import scaled, wait_until
from workers import protocol as P
from workers.config import Endpoints
from workers.supervisor import Supervisor, SupervisorConfig, WorkerSpec

#: the supervisor's silence threshold (a running worker silent this long is killed)
SILENCE = scaled(1.0)
#: the executor's order timeout: longer than SILENCE, so a single query that blocked the loop
#: for its whole timeout would already be taken for silence
ORDER_TIMEOUT = 1.2 * SILENCE
#: unknown orders to reconcile
N_ORDERS = 60
NAME = "executor"


class DyingGateway(FakeExchange):
    """The fake gateway that can go silent (bound, reads everything, answers nothing), die
    (nothing listening on the endpoint) and come back; it can lose every other order it is
    sent (never booked, never answered: as if it crashed before journaling it)."""

    def __init__(self, ctx: zmq.Context, endpoint: str):
        super().__init__(ctx, endpoint)
        self.ctx, self.endpoint = ctx, endpoint
        self.silent = False
        self.lose_every_other = False
        self.lost: set[str] = set()

    def handle(self, req: dict) -> P.Reply | None:
        if self.silent:
            return None
        if req.get("type") == "send_order" and self.lose_every_other and len(self.sent_orders()) % 2 == 0:
            self.lost.add(req["client_order_id"])
            return None
        return super().handle(req)

    def pump(self) -> None:
        if self.sock is not None:
            super().pump()

    def die(self) -> None:
        self.sock.close(0)
        self.sock = None

    def revive(self) -> None:
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(self.endpoint)
        self.silent = False


class Watch:
    """Pumps the supervisor, the fake gateway and the events stream from one place, and
    records the gaps between the executor's heartbeats as the supervisor received them."""

    def __init__(self, rig: Rig, sup: Supervisor):
        self.rig, self.sup = rig, sup
        self._rig_pump = rig.pump
        rig.pump = self.pump  # every wait of the rig also keeps the supervisor polled
        self.last_beat = 0.0
        self.max_gap = 0.0
        self.beats = 0
        #: most queries the executor had out at once, per heartbeat since reset_queries()
        self.max_queries = 0

    @property
    def worker(self):
        return self.sup.workers[NAME]

    def pump(self) -> None:
        self.sup.poll(0)
        if self.worker.starts > 1:  # say so at once, not as whatever wait it broke
            raise AssertionError(f"the executor was restarted; supervisor events: {list(self.sup.events)[-6:]}")
        self._rig_pump()
        beat = self.worker.last_heartbeat
        if beat and beat != self.last_beat:
            if self.last_beat:
                self.max_gap = max(self.max_gap, beat - self.last_beat)
            self.last_beat = beat
            self.beats += 1
            self.max_queries = max(self.max_queries, self.gauge("queries_pending") or 0)

    def wait(self, predicate, timeout: float, message: str):
        return wait_until(lambda: (self.pump(), predicate())[1], timeout, interval=0.01, message=message)

    def counter(self, key: str) -> int:
        return self.worker.counter(key)

    def gauge(self, key: str):
        return self.worker.stats.get("gauges", {}).get(key)

    def command(self, cmd: str, **args) -> P.CommandReply:
        cid = self.sup.command(NAME, cmd, args)
        return self.wait(lambda: self.sup.reply_for(cid), 5.0, cmd)


@pytest.fixture
def world():
    d = Path(tempfile.mkdtemp(prefix="tdd", dir="/tmp"))  # ipc:// paths must stay short
    eps = Endpoints.ephemeral_ipc(d)
    rig = Rig(eps)
    rig.exchange.sock.close(0)
    rig.exchange = DyingGateway(rig.ctx, eps.orders)
    sups: list[Supervisor] = []

    def start(*args: str) -> tuple[Supervisor, Watch]:
        spec = WorkerSpec(NAME, "executor", args=["--heartbeat", "0.1", "--order-timeout", f"{ORDER_TIMEOUT:g}", *args])
        sup = Supervisor(eps, [spec], SupervisorConfig(heartbeat_timeout=SILENCE, log_dir=str(d / "logs")), ctx=rig.ctx)
        sups.append(sup)
        sup.start()
        watch = Watch(rig, sup)
        watch.wait(lambda: watch.worker.state == "running" and watch.beats >= 2, 20.0, "executor running under the supervisor")
        return sup, watch

    yield rig, start
    for sup in sups:
        sup.stop()
    rig.close()
    shutil.rmtree(d, ignore_errors=True)


def _same_incarnation(watch: Watch, pid: int) -> None:
    w = watch.worker
    assert (w.pid, w.starts, w.restarts, w.proc.poll()) == (pid, 1, 0, None), (
        f"the executor was restarted: pid {pid} -> {w.pid}, starts {w.starts}; events: {list(watch.sup.events)[-5:]}")


def test_many_unknown_orders_against_a_dead_gateway_no_restart_then_settled(world):
    rig, start = world
    gw: DyingGateway = rig.exchange
    gw.answer_send_order = False  # orders are booked (or lost) but never answered
    gw.answer_get_order = False
    gw.lose_every_other = True
    sup, watch = start(
        "--order-retries", "1", "--reconcile-interval", "0.2", "--max-unknown-orders", "1000",
        "--max-in-flight", "64", "--max-orders-per-sec", "1000", "--max-position", "1000000",
    )
    pid = watch.worker.pid

    # N orders out, none answered: each becomes unknown after its one attempt
    first, d = rig.first_priced_decision(qty=1, timeout=20.0)
    assert d.reason == "order outcome unknown; reconciling", d.reason
    signals = [first] + [rig.signal(qty=1) for _ in range(N_ORDERS - 1)]
    watch.wait(lambda: len(gw.sent_orders()) >= N_ORDERS, 10.0, "every order reached the gateway")
    gw.silent = True  # bound, reads everything, answers nothing: get_order, get_positions, cancel_all
    decided = watch.wait(lambda: all(rig.decisions(s) for s in signals) and [rig.decisions(s)[0] for s in signals],
                         20.0, "every order declared unknown")
    assert {x.reason for x in decided} == {"order outcome unknown; reconciling"}
    coids = {x.client_order_id for x in decided}
    assert len(coids) == N_ORDERS and coids == {r["client_order_id"] for r in gw.sent_orders()}
    watch.wait(lambda: watch.gauge("unknown_orders") == N_ORDERS, 5.0, "unknown orders gauge")

    # the execution stream shows a gap: a positions resync is due against the dead gateway
    rig.fill("F1", 10, 100.0, coid="manual-1", seq=5)
    rig.fill("F2", 10, 100.0, coid="manual-1", seq=9)
    # commands are answered at once, whatever the gateway does
    assert watch.command("resync").ok
    rep = watch.command("kill_switch", on=True)
    assert rep.ok and rep.result == {"kill_switch": True, "gateway": "requested", "cancel_all": "requested"}

    # phase 1, silent gateway: several order timeouts of each kind of query go unanswered
    watch.wait(lambda: watch.counter("reconcile_timeouts") >= 3 and watch.counter("sync_timeouts") >= 1
               and watch.counter("cancel_all_timeouts") >= 1, 12 * ORDER_TIMEOUT / scaled(1.0), "queries timing out")
    _same_incarnation(watch, pid)

    # phase 2, nothing listening: more timeouts, still the same process
    gw.die()
    seen = watch.counter("reconcile_timeouts")
    watch.max_queries = 0
    watch.wait(lambda: watch.counter("reconcile_timeouts") >= seen + 2, 8 * ORDER_TIMEOUT / scaled(1.0), "timeouts while dead")
    _same_incarnation(watch, pid)
    assert watch.gauge("unknown_orders") == N_ORDERS and watch.gauge("cancel_all_pending") is True
    # a gateway that does not answer is asked one get_order at a time (plus the resync's one
    # query, the cancel_all and the set_kill_switch), not one per unknown order
    assert 1 <= watch.max_queries <= 4, watch.max_queries
    # heartbeats never paused anywhere near the supervisor's threshold
    assert watch.max_gap < SILENCE, f"heartbeat gap {watch.max_gap:.2f}s, threshold {SILENCE:.2f}s"
    sends_before = list(gw.sent_orders())

    # a gateway is back (as after a restart from its journal): every unknown order is settled
    gw.answer_get_order = True
    gw.revive()
    watch.wait(lambda: all(len(rig.decisions(s)) >= 2 for s in signals), 20.0, "every unknown order settled")
    booked = set(gw.orders)
    assert booked | gw.lost == coids and not booked & gw.lost and len(gw.lost) == N_ORDERS // 2
    for s in signals:
        first_d, final = rig.decisions(s)[:2]
        assert final.client_order_id == first_d.client_order_id
        if final.client_order_id in booked:
            assert final.accepted and final.reason == "reconciled: order new", final
        else:
            assert not final.accepted and final.reason == "order never reached the exchange (reconciled)", final
    # none was ever sent again, under its own id or a new one
    assert gw.sent_orders() == sends_before and len(sends_before) == N_ORDERS
    watch.wait(lambda: watch.gauge("unknown_orders") == 0 and watch.counter("not_placed") == N_ORDERS // 2
               and watch.counter("reconciled") == N_ORDERS // 2, 5.0, "counters settled")

    # the kill switch's cancel_all and the resync reached the gateway that came back
    watch.wait(lambda: watch.counter("cancel_all_done") == 1 and watch.gauge("cancel_all_pending") is False, 10.0, "cancel_all answered")
    watch.wait(lambda: watch.counter("syncs") >= 2, 15.0, "positions resynced")
    _same_incarnation(watch, pid)
    assert watch.max_gap < SILENCE, f"heartbeat gap {watch.max_gap:.2f}s, threshold {SILENCE:.2f}s"


def test_start_with_no_gateway_then_kill_switch_and_sync_when_it_comes(world):
    rig, start = world
    gw: DyingGateway = rig.exchange
    gw.die()  # nothing on the orders endpoint from the start
    sup, watch = start("--reconcile-interval", "0.2")
    pid = watch.worker.pid
    # unsynced: get_positions goes unanswered, round after round
    watch.wait(lambda: watch.counter("sync_timeouts") >= 2, 8 * ORDER_TIMEOUT / scaled(1.0), "sync timeouts")
    assert watch.gauge("synced") is False
    rep = watch.command("kill_switch", on=True)
    assert rep.ok and rep.result["cancel_all"] == "requested"
    watch.wait(lambda: watch.counter("cancel_all_timeouts") >= 1, 4 * ORDER_TIMEOUT / scaled(1.0), "cancel_all timing out")
    _same_incarnation(watch, pid)
    assert watch.max_gap < SILENCE, f"heartbeat gap {watch.max_gap:.2f}s, threshold {SILENCE:.2f}s"

    gw.revive()
    watch.wait(lambda: watch.gauge("synced") is True and watch.counter("cancel_all_done") == 1, 10.0, "synced and cancelled")
    assert [r["type"] for r in gw.requests].count("cancel_all") == 1
    # the kill switch turned off: nothing more is asked on its behalf
    assert watch.command("kill_switch", on=False).ok
    _same_incarnation(watch, pid)
