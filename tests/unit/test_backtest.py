"""The backtest engine: the live strategy's signals, the venue's fills, a ledger that adds up."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workers import protocol as P
from workers.backtest.engine import BacktestConfig, CostModel, run_backtest
from workers.backtest.report import write_csv, write_html
from workers.recording import Recording, RecordingError, open_recording, write_ticks
from workers.strategy.levels import SRStrategy, StrategyParams

ROOT = Path(__file__).resolve().parents[2]
PARAMS = {"window": 30, "min_fill": 10, "cooldown": 0.5, "qty": 100, "max_position": 300}


def walk(n: int, seed: int, start: float = 100.0, size: int = 500, t0: int = 1_700_000_000 * 10**9) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    last = np.round(start + np.cumsum(rng.normal(0, 0.05, n)), 2)
    last = np.maximum(last, 1.0)
    return {
        "seq": np.arange(1, n + 1), "ts": t0 + np.arange(n) * 100_000_000 + seed,  # 10 ticks/s
        "last": last, "bid": np.round(last - 0.01, 2), "ask": np.round(last + 0.01, 2),
        "bid_size": np.full(n, size), "ask_size": np.full(n, size), "volume": np.arange(n) * 10,
    }


def recording(**symbols) -> Recording:
    return Recording(Path("mem"), {s: cols for s, cols in symbols.items()})


def ledger(fills, cash0: float, marks: dict[str, float]) -> float:
    """Cash and positions from the fills alone, written apart from the engine."""
    cash, pos = cash0, {}
    for lf in fills:
        f = lf.fill
        q = f.qty if f.side is P.Side.BUY else -f.qty
        cash -= q * lf.price + lf.fee
        pos[f.symbol] = pos.get(f.symbol, 0) + q
    return cash + sum(q * marks[s] for s, q in pos.items())


def test_signals_are_the_live_strategys_signals_tick_by_tick():
    cols = walk(3000, 1)
    res = run_backtest(recording(AAPL=cols), BacktestConfig(params=PARAMS, limits=_loose()))
    live = SRStrategy("sr", StrategyParams.from_mapping(PARAMS), session="x")
    rows = list(zip(*(cols[c].tolist() for c in P.TICK_ROW_FIELDS)))
    expected = [(s.side, s.qty, s.price, s.cause_ts, s.reason) for s in live.on_rows("AAPL", rows)]
    got = [(s.side, s.qty, s.price, s.cause_ts, s.reason) for s in res.signals]
    assert len(expected) > 10
    assert got == expected
    # every signal accepted under loose limits, each filled at the touch of its own tick
    assert len(res.fills) == len(res.signals)
    by_ts = {int(t): (b, a) for t, b, a in zip(cols["ts"], cols["bid"], cols["ask"])}
    for s, lf in zip(res.signals, res.fills):
        bid, ask = by_ts[s.cause_ts]
        assert lf.fill.price == (ask if s.side is P.Side.BUY else bid)


def _loose():
    from workers.executor.risk import RiskLimits

    return RiskLimits(max_orders_per_sec=1000)


def test_net_pnl_equals_a_ledger_recomputed_from_the_fills_with_costs():
    a, g = walk(4000, 2), walk(4000, 3, start=50.0)
    costs = CostModel(fee_per_share=0.005, fee_bps=1.0, slippage_bps=2.0)
    res = run_backtest(recording(AAPL=a, GOOG=g), BacktestConfig(params=PARAMS, costs=costs, initial_cash=50_000.0))
    assert res.stats["n_fills"] > 20
    final = ledger(res.fills, 50_000.0, {"AAPL": float(a["last"][-1]), "GOOG": float(g["last"][-1])})
    assert res.stats["net_pnl"] == pytest.approx(final - 50_000.0, abs=1e-6)
    assert res.equity[-1] == pytest.approx(final, abs=1e-6)
    fees = sum(0.005 * lf.fill.qty + 1e-4 * lf.fill.price * lf.fill.qty for lf in res.fills)
    assert res.stats["fees"] == pytest.approx(fees)
    for lf in res.fills:  # slippage against the trader
        worse = lf.price > lf.fill.price if lf.fill.side is P.Side.BUY else lf.price < lf.fill.price
        assert worse
    # the trades' P&L adds up to the realized part: every closed round trip, fees included
    assert res.trades and all(t.exit_ts >= t.entry_ts for t in res.trades)
    assert 0 <= res.stats["win_rate"] <= 1 and 0 <= res.stats["exposure"] <= 1
    assert res.stats["max_drawdown"] == pytest.approx(float(np.max(np.maximum.accumulate(res.equity) - res.equity)))


def test_risk_limits_refuse_and_the_strategy_gives_the_position_back():
    cols = walk(3000, 4)
    from workers.executor.risk import RiskLimits

    res = run_backtest(recording(AAPL=cols), BacktestConfig(params={**PARAMS, "max_position": 1000},
                                                            limits=RiskLimits(max_position=100, max_orders_per_sec=1000)))
    refused = [d for d in res.decisions if not d[1]]
    assert refused and all("beyond max" in why for _, _, why in refused)
    pos = 0
    for lf in res.fills:
        pos += lf.fill.qty if lf.fill.side is P.Side.BUY else -lf.fill.qty
        assert abs(pos) <= 100


def test_a_market_order_larger_than_the_touch_fills_on_later_ticks():
    cols = walk(2000, 5, size=30)  # 30 shares at the touch, orders of 100
    res = run_backtest(recording(AAPL=cols), BacktestConfig(params=PARAMS, limits=_loose()))
    per_order: dict[str, list] = {}
    for lf in res.fills:
        per_order.setdefault(lf.fill.client_order_id, []).append(lf.fill)
    assert per_order and all(sum(f.qty for f in fs) == 100 for fs in list(per_order.values())[:-1])
    assert any(len(fs) > 1 and len({f.ts for f in fs}) > 1 for fs in per_order.values())


def test_progress_and_reports(tmp_path):
    seen = []
    res = run_backtest(recording(AAPL=walk(3000, 6)), BacktestConfig(params=PARAMS), progress=seen.append)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    html = write_html(res, tmp_path / "r.html").read_text()
    assert "<svg" in html and f"{res.stats['net_pnl']:,.2f}" in html
    files = write_csv(res, tmp_path / "csv")
    assert len((tmp_path / "csv" / "fills.csv").read_text().splitlines()) == len(res.fills) + 1
    assert all(f.exists() for f in files)


def test_parquet_round_trip_and_time_order(tmp_path):
    a, g = walk(1000, 7), walk(1000, 8)
    root = tmp_path / "rec" / "parquet" / "ticks"
    write_ticks(root, "AAPL", a)
    write_ticks(root, "GOOG", g)
    rec = open_recording(tmp_path / "rec")
    assert rec.symbols == ("AAPL", "GOOG") and rec.n_ticks == 2000
    assert np.array_equal(rec.tick_columns("AAPL")["last"], a["last"])
    ts = [r[1] for _, _, rows in rec.events() for r in rows]
    assert ts == sorted(ts) and len(ts) == 2000


def test_untrustworthy_data_is_refused(tmp_path):
    bad = walk(100, 9)
    bad["bid"][40] = bad["ask"][40] + 1
    with pytest.raises(RecordingError, match="bid above ask"):
        write_ticks(tmp_path / "t", "AAPL", bad)
    good = walk(100, 9)
    files = write_ticks(tmp_path / "t", "AAPL", good)
    raw = files[0].read_bytes()
    files[0].write_bytes(raw[: len(raw) // 2])  # a torn file
    with pytest.raises(RecordingError, match="Parquet"):
        open_recording(tmp_path / "t")
    csv = tmp_path / "x.csv"
    csv.write_text("time,px\n1700000000,10.5\n1700000001,nan\n")
    with pytest.raises(RecordingError, match="positive finite"):
        open_recording(csv, mapping={"ts": "time", "last": "px"})


def test_data_cli_imports_a_mapped_tick_csv_and_backtests_it(tmp_path):
    csv = tmp_path / "ticks.csv"
    cols = walk(2000, 10)
    lines = ["when,price,sym"] + [f"{t / 1e9:.3f},{p},AAPL" for t, p in zip(cols["ts"].tolist(), cols["last"].tolist())]
    csv.write_text("\n".join(lines) + "\n")
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "main.py"), *a], capture_output=True, text=True, timeout=120)
    r = run("data", "--data-dir", str(tmp_path), "import", str(csv), "--out", "imp", "--map", "ts=when", "--map", "last=price", "--map", "symbol=sym")
    assert r.returncode == 0, r.stderr
    r = run("data", "--data-dir", str(tmp_path), "list")
    assert "imp" in r.stdout and "2000" in r.stdout
    r = run("backtest", "--data", str(tmp_path / "recordings" / "imp"), "--param", "window=30", "--param", "min_fill=10",
            "--report", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    assert "Net P&L" in r.stdout and (tmp_path / "r.html").exists()
    r = run("backtest", "--data", str(tmp_path / "nope"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = run("backtest", "--data", str(csv), "--param", "window=-3")
    assert r.returncode == 2 and "window" in r.stderr


def test_with_depth_a_market_order_walks_the_levels_behind_the_touch_at_once():
    cols = walk(2000, 5, size=30)  # 30 shares at the touch, orders of 100
    snaps = [
        P.Depth("AAPL", k + 1, ts, [(b, 30), (round(b - 0.01, 2), 40), (round(b - 0.02, 2), 500)],
                [(a, 30), (round(a + 0.01, 2), 40), (round(a + 0.02, 2), 500)])
        for k, (ts, b, a) in enumerate(zip(cols["ts"].tolist(), cols["bid"].tolist(), cols["ask"].tolist()))
    ]
    res = run_backtest(recording(AAPL=cols), BacktestConfig(params=PARAMS, limits=_loose()), depth={"AAPL": snaps})
    per_order: dict[str, list] = {}
    for lf in res.fills:
        per_order.setdefault(lf.fill.client_order_id, []).append(lf.fill)
    assert per_order
    for fs in per_order.values():
        assert sum(f.qty for f in fs) == 100 and len({f.ts for f in fs}) == 1  # no waiting for later ticks
        # 30 at the touch, 40 one cent behind, 30 two cents behind
        px = sorted({f.price for f in fs}, reverse=fs[0].side is P.Side.SELL)
        assert len(px) == 3 and [sum(f.qty for f in fs if f.price == p) for p in px] == [30, 40, 30]


def test_a_recordings_own_depth_table_is_what_the_venue_fills_against(tmp_path):
    from workers.recording import message_row, write_table

    cols = walk(1500, 6, size=30)
    root = tmp_path / "rec"
    write_ticks(root / "parquet" / "ticks", "AAPL", cols)
    rows = [message_row(P.Depth("AAPL", k + 1, ts, [(b, 30), (round(b - 0.01, 2), 500)], [(a, 30), (round(a + 0.01, 2), 500)]))[2]
            for k, (ts, b, a) in enumerate(zip(cols["ts"].tolist(), cols["bid"].tolist(), cols["ask"].tolist()))]
    write_table(root / "parquet" / "depth", "depth", "AAPL", rows)
    cfg = BacktestConfig(params=PARAMS, limits=_loose())
    walked = run_backtest(root, cfg)
    touch_only = run_backtest(root, cfg, depth={})
    assert walked.fills and touch_only.fills
    # with the recorded book every order of 100 fills at once, 30 at the touch and 70 behind it
    per_order: dict[str, list] = {}
    for lf in walked.fills:
        per_order.setdefault(lf.fill.client_order_id, []).append(lf.fill)
    assert all(sum(f.qty for f in fs) == 100 and len({f.ts for f in fs}) == 1 and len({f.price for f in fs}) == 2
               for fs in per_order.values())
    # without it (depth={}) the rest waits for later ticks' touches
    assert any(len({lf.fill.ts for lf in touch_only.fills if lf.fill.client_order_id == c}) > 1
               for c in {lf.fill.client_order_id for lf in touch_only.fills})
