"""SIGKILL each worker kind ten times while orders flow, then check nothing was lost or doubled.

One real fleet per worker kind, under the supervisor on ipc:// endpoints, with a fast restart
backoff.  A test client sends ~150 market orders/s through Lazy Pirate REQ lanes (timeout ->
new socket, the SAME client_order_id again; after 4 tries the order is "unknown" and is
reconciled with get_order, never resent under a new id) on GOOG/AMZN, while the strategy
trades AAPL/MSFT through the executor.  After each kill the test waits until the successor
serves (exchange: answers a ping; market data: its ticks arrive; executor: positions
re-loaded; strategy: counting ticks) and records how long that took.

After the last kill the load stops, every unknown order is reconciled, the strategies and the
executor are paused until nothing is working, the fleet is stopped and its SQLite journal is
opened read-only.  Checked (see bench/chaos.py, ``Verdict``):

* every order the client got an answer for, and every order the executor reported as
  acknowledged, is in the journal (once: client_order_id is its primary key, and a GROUP BY
  confirms it);
* every order is resolved: acked, rejected, or -- only after three get_order denials -- not
  placed, and then it is not in the journal either;
* no order has more fill quantity than it asked for, a filled one exactly its quantity, and
  every fill published on the execution stream is in the journal with the same contents;
* the gateway's get_positions equals the sum of the journal's fills, and the executor's
  positions equal the gateway's;
* gaps and restarts are reported: feed restarts by the strategy, execution-stream restarts
  by the executor, position re-syncs by each executor incarnation.

Timings are printed (``pytest -s``), never asserted.  Every wait of the fleet (start-up, each
recovery, settling the books) is bench/chaos.py's with its ceiling times the suite's timeout
factor (``TICKDESK_TEST_TIMEOUT_FACTOR``, tests/procs.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.chaos import KINDS, ChaosFleet, summarize
from workers.supervisor import SupervisorConfig
from tests.procs import scaled, scaled_ms

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


class Fleet(ChaosFleet):
    """bench/chaos.py's fleet, every wait's ceiling scaled by the suite's timeout factor, the
    supervisor's silence limit too: these tests count restarts, and on a starved machine a
    worker that merely waited for a core must not be taken for a silent one."""

    def __init__(self, *args, **kw):
        kw.setdefault("supervisor_config", SupervisorConfig(
            log_dir=str(Path(args[0]) / "logs"), backoff_initial=0.05, backoff_max=0.2, heartbeat_timeout=scaled(5.0)))
        super().__init__(*args, **kw)

    def wait(self, pred, timeout: float, what: str = ""):
        return super().wait(pred, scaled(timeout), what)

KILLS = 10
DWELL = 0.3  # seconds of load between a worker serving again and the next kill

RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module", autouse=True)
def recovery_table():
    yield
    if not RESULTS:
        return
    print("\n\nSIGKILL recovery (kill -> successor serving) and order books")
    print(f"{'kind':<11} {'kills':>5} {'median s':>9} {'max s':>7} {'sent':>6} {'orders/s':>8} {'acked':>6} {'rej':>4} {'recon':>5} {'n.p.':>4} {'resend':>6} {'lost':>4} {'dup':>4}")
    for kind, r in RESULTS.items():
        v = r["verdict"]
        times = r["times"]
        med = sorted(times)[len(times) // 2] if times else 0.0
        print(
            f"{kind:<11} {len(times):>5} {med:>9.2f} {max(times, default=0):>7.2f} {v.sent:>6} {r['rate']:>8.0f} {v.acked:>6} "
            f"{v.rejected:>4} {v.reconciled:>5} {v.not_placed:>4} {v.resends:>6} {len(v.lost):>4} {len(v.duplicated):>4}"
        )


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_under_load_loses_and_doubles_nothing(kind, tmp_path):
    fleet = Fleet(tmp_path, seed=KINDS.index(kind) + 1)
    try:
        fleet.start()
        t0 = time.monotonic()
        for _ in range(KILLS):
            fleet.kill(kind)
            fleet.run_for(DWELL)
        load_seconds = time.monotonic() - t0
        verdict = fleet.finish()
        restarts = {w.name: w.restarts for w in fleet.sup.workers.values()}
    finally:
        fleet.stop()

    times = fleet.recoveries[kind]
    rate = verdict.sent / max(load_seconds, 1e-9)
    RESULTS[kind] = {"verdict": verdict, "times": times, "rate": rate}
    c = verdict.counters
    print(f"\n{kind}: {KILLS} kills, recovery {summarize(times)}; client sent {verdict.sent} ({rate:.0f}/s), "
          f"acked {verdict.acked}, rejected {verdict.rejected}, reconciled {verdict.reconciled}, not placed {verdict.not_placed}, "
          f"resends {verdict.resends}; strategy orders acked {verdict.strategy_orders}; journal {verdict.journal_orders} orders, "
          f"{verdict.journal_fills} fills; rejections {verdict.reject_reasons}\n  counters {c}")

    assert len(times) == KILLS
    assert verdict.ok, verdict.problems()
    assert verdict.acked > 0 and verdict.strategy_orders > 0, "both the client and the strategy traded"
    # only the killed kind was restarted: a crash does not take its neighbours down
    killed = [w.name for w in fleet.sup.workers.values() if w.spec.kind == kind]
    assert all(n == (KILLS if name in killed else 0) for name, n in restarts.items()), restarts

    if kind == "marketdata":
        # Every restart starts the per-symbol seq at 1 again; subscribers see it go back.
        assert c["observer"]["feed_restarts"] >= KILLS
        s = c["strategy"]
        assert s["feed_restarts"] >= KILLS, s
    elif kind == "exchange":
        # The execution stream's seq restarts with the gateway; the executor notices and
        # re-bases its positions on get_positions.
        assert c["executor"]["exec_restarts"] >= 1, c["executor"]
        assert c["executor"]["syncs"] >= 2, c["executor"]
    elif kind == "executor":
        # Each incarnation loads its positions from the gateway before trading.
        assert c["executor"]["syncs"] >= KILLS + 1, c["executor"]
    elif kind == "strategy":
        assert c["strategy"]["ticks"] > 0


def test_fresh_journal_is_wiped_on_the_first_start_only():
    """`main.py --headless --fresh` must not wipe the journal again when the supervisor
    restarts a crashed gateway (found by the exchange run above: every restart forgot every
    order, and fill ids F1, F2, ... came back with other contents)."""
    from workers.fleet import default_fleet

    ex = next(s for s in default_fleet(data="/nonexistent", fresh_journal=True) if s.kind == "exchange")
    assert "--fresh" not in ex.args and ex.first_start_args == ["--fresh"]
    ex = next(s for s in default_fleet(data="/nonexistent") if s.kind == "exchange")
    assert "--fresh" not in ex.args and not ex.first_start_args


def test_orders_racing_the_first_tick_wait_for_it(tmp_path):
    """Right after a (re)start the gateway answers orders a few ms before the first ticks reach
    it; the exchange run above saw ~14 orders per restart rejected "no market data" that way.
    Now such a market order is journaled pending_new and answered once its market shows up (or
    rejected as before when --market-wait runs out); get_order finds it, cancel cancels it."""
    import zmq

    from tests.procs import start_worker, stop, wait_until
    from workers import protocol as P
    from workers.config import Endpoints

    eps = Endpoints.ephemeral_ipc(tmp_path)
    ctx = zmq.Context()
    ticks = ctx.socket(zmq.PUB)
    ticks.setsockopt(zmq.LINGER, 0)
    ticks.bind(eps.ticks)
    proc = start_worker("exchange", eps, "--journal", str(tmp_path / "j.sqlite"), "--market-wait", "30", tmp_path=tmp_path)

    def req():
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, scaled_ms(10_000))
        s.connect(eps.orders)
        return s

    def call(msg):
        s = req()
        try:
            s.send(msg.pack())
            return P.unpack_map(s.recv())
        finally:
            s.close(0)

    try:
        assert call(P.Ping())["ok"]
        early = req()
        early.send(P.SendOrder(client_order_id="early", symbol="AAA", side=P.Side.BUY, qty=5).pack())
        again = req()  # a Lazy Pirate resend of the same order while it waits
        again.send(P.SendOrder(client_order_id="early", symbol="AAA", side=P.Side.BUY, qty=5).pack())
        doomed = req()
        doomed.send(P.SendOrder(client_order_id="doomed", symbol="BBB", side=P.Side.SELL, qty=1).pack())
        wait_until(lambda: call(P.GetOrder(client_order_id="doomed")).get("status") == "pending_new", 10, message="held order is journaled")
        assert not early.poll(100), "no answer before the market"
        r = call(P.CancelOrder(client_order_id="doomed"))
        assert r["ok"] and r["status"] == "cancelled", r
        got = P.unpack_map(doomed.recv())
        assert (got["ok"], got["status"], got["order_id"]) == (True, "cancelled", "-"), got

        tick = P.Tick(symbol="AAA", seq=1, ts=P.now_ns(), last=100.0, bid=99.0, ask=101.0, bid_size=100, ask_size=100, volume=1)

        def answered():
            ticks.send(P.pub(tick))
            return early.poll(50)

        wait_until(answered, 10, interval=0, message="the held order is answered after the first tick")
        first, second = early.recv(), again.recv()
        assert first == second
        ack = P.unpack_map(first)
        assert (ack["ok"], ack["status"], ack["filled_qty"], ack["avg_price"]) == (True, "filled", 5, 101.0), ack
        pos = call(P.GetPositions())["positions"]
        assert [(p["symbol"], p["qty"]) for p in pos] == [("AAA", 5)]
    finally:
        stop(proc)
        ctx.destroy(linger=0)
