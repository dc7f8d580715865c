"""Parity: one recording replayed through the live fleet and backtested in process give the
same signals (id and emission time aside) and the same fills (issue 14, docs/backtest.md
"Parity").

The fleet is the real one under the supervisor: the market-data gateway replays the recording
(``[fleet.marketdata] feed = "recording"``, opened paused until every consumer is connected),
a support/resistance strategy, the executor with its default limits, the exchange gateway with
the simulated venue, and the recorder.  The backtest is ``run_backtest`` on the same files.

What cannot be the same is WHEN a live order reaches the venue: after the strategy, the
executor and two socket hops, while the replay goes on.  A market order fills at the touch the
venue has then, so the recording leaves a quiet gap (no tick of any symbol) after every tick
that makes a signal: the order arrives in it, as the backtest's order meets the venue at the
signal's tick.  Which ticks make signals depends on the gaps (the cooldown runs on the ticks'
time), so the gaps are found by backtesting until they stop changing; one symbol's touch is
thinner than the order, so some fills are partial and the rest fills on the ticks after the
gap, in both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zmq

from tests.procs import scaled, wait_until
from workers import protocol as P
from workers.backtest.engine import BacktestConfig, run_backtest
from workers.config import Endpoints
from workers.fleet import default_fleet
from workers.recording import open_recording, write_ticks
from workers.supervisor import Supervisor, SupervisorConfig

pytestmark = pytest.mark.slow

NS = 10**9
T0 = 1_796_400_000 * NS  # 2026-12-04 15:20 UTC
SPEED = 2.0
#: market time between two ticks of a symbol; the two symbols alternate, half of it apart
STEP = 20_000_000
#: the strategy's parameters, the same in the fleet file and the backtest
PARAMS = {"window": 30, "min_fill": 30, "mode": "both", "breakout_bps": 2.0, "bounce_bps": 4.0, "turn_bps": 3.0,
          "min_range_bps": 10.0, "qty": 100, "max_position": 300}
#: thin touch of MSFT: a 100 order fills 60 at once, the rest on the next ticks
SIZES = {"AAPL": 500, "MSFT": 60}


def _prices(rng: np.random.Generator, n: int, start: float) -> np.ndarray:
    """Ranges broken by drifts and jumps (steps in bps of the price, so both symbols move
    alike): what makes both breakouts and bounces."""
    out, px = [], start
    while len(out) < n:
        drift = rng.choice([0.0, 0.0, 1.5, -1.5])
        for _ in range(int(rng.integers(30, 70))):
            step = drift + rng.choice([-2.0, -1.0, 0.0, 1.0, 2.0]) + (rng.choice([-8.0, 8.0]) if rng.random() < 0.03 else 0.0)
            px = round(px * (1 + step * 1e-4), 2)
            out.append(px)
    return np.array(out[:n])


def _base(n: int = 400, seed: int = 11) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    data = {}
    for k, (sym, start) in enumerate((("AAPL", 180.0), ("MSFT", 420.0))):
        last = _prices(rng, n, start)
        size = np.full(n, SIZES[sym])
        data[sym] = {"seq": np.arange(1, n + 1), "ts": T0 + k * STEP // 2 + np.arange(n, dtype=np.int64) * STEP,
                     "last": last, "bid": np.round(last - 0.01, 2), "ask": np.round(last + 0.01, 2),
                     "bid_size": size, "ask_size": size, "volume": np.arange(n) * 100}
    return data


def _with_gaps(base, after: set[tuple[str, int]], gap: int):
    """``base`` with every tick of a symbol later than one of its times in ``after`` moved
    ``gap`` later per such time.  Only the symbol's own ticks wait: a venue's market of one
    symbol is its ticks, and the other symbol's strategy state does not read the clock of this
    one."""
    out = {}
    for sym, cols in base.items():
        marks = np.array(sorted(t for s, t in after if s == sym), dtype=np.int64)
        ts = cols["ts"]
        out[sym] = {**cols, "ts": ts + np.searchsorted(marks, ts, side="left").astype(np.int64) * gap}
    return out


def _write(root: Path, data) -> Path:
    for sym, cols in data.items():
        write_ticks(root / "parquet" / "ticks", sym, cols)
    return root


def _gapped_recording(root: Path, gap: int, cooldown: float):
    """The recording with a quiet gap after every signal's tick, and its backtest."""
    base = _base()
    after: set[tuple[str, int]] = set()  # (symbol, base time) of the ticks followed by a gap
    for attempt in range(20):
        data = _with_gaps(base, after, gap)
        d = root / f"try-{attempt}"
        _write(d, data)
        res = run_backtest(d, BacktestConfig(params={**PARAMS, "cooldown": cooldown}))
        # map each signal's tick back to its base time
        base_of = {(sym, int(t)): int(b) for sym in data for t, b in zip(data[sym]["ts"], base[sym]["ts"])}
        need = {(s.symbol, base_of[s.symbol, s.cause_ts]) for s in res.signals}
        if need <= after:
            return d, res
        after |= need
    raise AssertionError("the gaps did not settle")


def _ticks_sub_connected(w) -> bool:
    return any(s.get("name") == "ticks" and s.get("state") == "connected" and s.get("peers") == 1
               for s in w.stats.get("sockets", []))


def test_a_replay_through_the_live_fleet_and_a_backtest_give_the_same_signals_and_fills(tmp_path):
    # the quiet time an order has to reach the venue: far beyond the few ms it takes
    gap = int(scaled(0.4) * SPEED * NS)
    # longer than a gap: the setups of the 1.5 s of market time after one are held back
    cooldown = round(gap / NS + 1.5, 3)
    rec, bt = _gapped_recording(tmp_path / "data", gap, cooldown)
    assert len(bt.signals) >= 6 and {s.symbol for s in bt.signals} == {"AAPL", "MSFT"}
    assert {s.side for s in bt.signals} == {P.Side.BUY, P.Side.SELL}
    assert any(lf.fill.qty < PARAMS["qty"] for lf in bt.fills), "no partial fill to compare"

    params = "\n".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in PARAMS.items())
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(f"""
[fleet.marketdata]
feed = "recording"
replay_file = "{rec}"
speed = {SPEED}
start_paused = true

[fleet.recorder]
roll_seconds = 5

[[fleet.strategies]]
name = "sr-parity"
symbols = "AAPL,MSFT"
cooldown = {cooldown}
{params.replace("'", '"')}
""")
    eps = Endpoints.ephemeral_ipc(tmp_path)
    ctx = zmq.Context()
    events = ctx.socket(zmq.SUB)
    events.setsockopt(zmq.SUBSCRIBE, b"signal.")
    events.connect(eps.events)
    execs = ctx.socket(zmq.SUB)
    execs.setsockopt(zmq.SUBSCRIBE, b"exec.fill.")
    execs.connect(eps.execution)
    decisions: list[P.SignalDecision] = []
    fills: list[P.Fill] = []

    def drain():
        for s, into in ((events, decisions), (execs, fills)):
            while s.poll(0):
                into.append(P.decode_pub(s.recv())[1])

    specs = default_fleet(data=tmp_path / "fleet", config_path=str(cfg), fresh_journal=True)
    sup = Supervisor(eps, specs, SupervisorConfig(log_dir=str(tmp_path / "logs"), heartbeat_timeout=5.0))
    sup.start()

    def pump(pred, timeout, message):
        def check():
            sup.poll(10)
            drain()
            return pred()

        return wait_until(check, timeout, interval=0.0, message=message)

    want_fill_qty = sum(lf.fill.qty for lf in bt.fills)
    try:
        w = sup.workers
        pump(lambda: all(x.state == "running" for x in w.values()), scaled(30), "the fleet running")
        pump(lambda: w["executor"].stats.get("gauges", {}).get("synced") is True, scaled(20), "the executor synced")
        consumers = ("sr-parity", "executor", "exchange", "recorder")
        pump(lambda: all(_ticks_sub_connected(w[n]) for n in consumers), scaled(20), "every tick consumer connected")
        # the test's own SUBs take a moment too: they are not part of what is compared, but
        # a decision they miss is a false failure
        pump(lambda: w["marketdata"].stats.get("gauges", {}).get("replay_paused") is True, scaled(10), "the replay paused")
        # paused at the first tick: nothing has gone out yet, so no consumer missed any
        assert w["marketdata"].stats.get("counters", {}).get("ticks", 0) == 0
        cid = sup.command("marketdata", "resume")
        pump(lambda: sup.reply_for(cid) is not None, scaled(10), "resume answered")
        replay_s = (rec_span := (max(int(c["ts"][-1]) for c in _read(rec).values()) - T0) / NS) / SPEED
        pump(lambda: w["marketdata"].stats.get("gauges", {}).get("replay_status") == "finished",
             scaled(30) + replay_s * 2, f"the replay of {rec_span:.0f} s of market time finished")
        pump(lambda: sum(f.qty for f in fills) >= want_fill_qty and w["exchange"].stats.get("gauges", {}).get("working_orders") == 0
             and len(decisions) >= len(bt.signals), scaled(20), "the fleet's fills")
        sup.poll(10)
        drain()
    finally:
        sup.stop()
        drain()
        events.close(0)
        execs.close(0)
        ctx.destroy(linger=0)

    # signals: the same ticks, sides, quantities, prices and reasons, and the same decisions
    def sig_key(s: P.Signal):
        return (s.cause_ts, s.symbol, s.side, s.qty, s.price, s.reason)

    live = [(sig_key(d.signal), d.accepted) for d in decisions]
    back = [(sig_key(s), ok) for s, (_, ok, _) in zip(bt.signals, bt.decisions)]
    assert sorted(live) == sorted(back)

    # fills: each at the same price and quantity, for the signal of the same tick
    cause = {d.client_order_id: d.signal.cause_ts for d in decisions if d.accepted}
    bt_cause, n = {}, 0
    for s, (_, ok, _) in zip(bt.signals, bt.decisions):
        if ok:
            n += 1
            bt_cause[f"bt-{n}"] = s.cause_ts
    live_fills = sorted((cause[f.client_order_id], f.symbol, f.side, f.qty, f.price) for f in fills)
    back_fills = sorted((bt_cause[lf.fill.client_order_id], lf.fill.symbol, lf.fill.side, lf.fill.qty, lf.fill.price) for lf in bt.fills)
    assert live_fills == back_fills

    # and the fleet's own recording of the replayed session backtests to the same signals
    (folder,) = [p for p in (tmp_path / "fleet" / "recordings").iterdir() if p.is_dir()]
    again = run_backtest(folder, BacktestConfig(params={**PARAMS, "cooldown": cooldown}))
    assert [sig_key(s) for s in again.signals] == [sig_key(s) for s in bt.signals]


def _read(root: Path) -> dict[str, dict[str, np.ndarray]]:
    r = open_recording(root)
    return {s: r.tick_columns(s) for s in r.symbols}
