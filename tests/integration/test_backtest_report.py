"""A live session recorded by the fleet's own recorder, backtested from the command line: the
HTML report's statistics and the CSV files agree with a ledger recomputed here from the fills
(fees, slippage, round trips), written apart from the engine."""

from __future__ import annotations

import csv
import html
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.procs import scaled, wait_until
from workers.config import Endpoints
from workers.fleet import default_fleet
from workers.supervisor import Supervisor, SupervisorConfig

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

FLEET = """
[fleet.marketdata]
rate = 400
seed = 5
depth_hz = 5

[fleet.recorder]
roll_seconds = 2

[[fleet.strategies]]
name = "sr-live"
symbols = "AAPL,MSFT"
"""
CASH = 50_000.0
FEE_SHARE, FEE_BPS, SLIP_BPS = 0.005, 1.0, 2.0
PARAMS = {"window": 30, "min_fill": 10, "cooldown": 0.5, "qty": 100, "max_position": 300}


def record_session(tmp_path: Path, ticks: int) -> Path:
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(FLEET)
    eps = Endpoints.ephemeral_ipc(tmp_path)
    specs = default_fleet(data=tmp_path / "data", config_path=str(cfg), fresh_journal=True)
    sup = Supervisor(eps, specs, SupervisorConfig(log_dir=str(tmp_path / "logs"), heartbeat_timeout=5.0))
    sup.start()
    try:
        wait_until(lambda: sup.poll(10) or sup.workers["recorder"].counter("ticks") >= ticks, timeout=60,
                   interval=0.0, message=f"the recorder kept {ticks} ticks")
        assert sup.workers["recorder"].counter("lost") == 0
    finally:
        sup.stop()  # a clean stop rolls the last raw log into Parquet
    (folder,) = [p for p in (tmp_path / "data" / "recordings").iterdir() if p.is_dir()]
    return folder


def report_stats(page: str) -> dict[str, str]:
    table = re.search(r'<table id="stats">(.*?)</table>', page, re.S).group(1)
    return {html.unescape(k): html.unescape(v) for k, v in re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", table)}


def test_a_recorded_session_backtested_from_the_cli_reports_what_its_fills_add_up_to(tmp_path):
    folder = record_session(tmp_path, 6000)
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "backtest", "--data", str(folder),
         *[a for k, v in PARAMS.items() for a in ("--param", f"{k}={v}")],
         "--fee-per-share", str(FEE_SHARE), "--fee-bps", str(FEE_BPS), "--slippage-bps", str(SLIP_BPS),
         "--cash", str(CASH), "--report", str(out / "report.html"), "--csv", str(out)],
        capture_output=True, text=True, timeout=scaled(120), cwd=ROOT)
    assert r.returncode == 0, r.stderr
    shown = report_stats((out / "report.html").read_text())
    with open(out / "fills.csv") as f:
        fills = list(csv.DictReader(f))
    with open(out / "trades.csv") as f:
        trades = list(csv.DictReader(f))
    assert len(fills) >= 10 and len(trades) >= 3, "too few fills to check anything"

    # the last trade of each symbol, read straight from the recording's Parquet files
    marks = {}
    for sym in {f["symbol"] for f in fills}:
        t = pq.read_table(folder / "parquet" / "ticks", filters=[("symbol", "=", sym)]).sort_by("ts")
        marks[sym] = t.column("last")[-1].as_py()

    cash, pos, fees, slip, notional = CASH, {}, 0.0, 0.0, 0.0
    trips: dict[str, dict] = {}
    mine = []  # round trips: symbol, side, P&L
    for f in sorted(fills, key=lambda f: int(f["ts"])):
        q, px = int(f["qty"]), float(f["price"])
        sign = 1 if f["side"] == "buy" else -1
        paid = px * (1 + sign * SLIP_BPS * 1e-4)  # slippage against the trader
        fee = FEE_SHARE * q + FEE_BPS * 1e-4 * px * q
        assert float(f["ledger_price"]) == pytest.approx(paid) and float(f["fee"]) == pytest.approx(fee)
        cash -= sign * q * paid + fee
        fees, slip, notional = fees + fee, slip + abs(paid - px) * q, notional + px * q
        # a round trip runs from flat to flat; a fill through zero closes one and opens the next
        left = q
        while left:
            p = pos.get(f["symbol"], 0)
            trip = trips.setdefault(f["symbol"], {"flow": 0.0, "side": sign})
            step = left if p == 0 or (p > 0) == (sign > 0) else min(left, abs(p))
            trip["flow"] += -sign * step * paid - fee * step / q
            pos[f["symbol"]] = p + sign * step
            left -= step
            if pos[f["symbol"]] == 0:
                mine.append((f["symbol"], "long" if trip["side"] > 0 else "short", trip["flow"]))
                del trips[f["symbol"]]
    net = cash + sum(q * marks[s] for s, q in pos.items()) - CASH
    wins = [p for _, _, p in mine if p > 0]
    losses = [p for _, _, p in mine if p <= 0]

    assert shown["Net P&L"] == f"{net:,.2f}"
    assert shown["Return %"] == f"{net / CASH * 100:.2f}"
    assert shown["Fees"] == f"{fees:,.2f}" and shown["Slippage"] == f"{slip:,.2f}"
    assert shown["Turnover (x capital)"] == f"{notional / CASH:.2f}"
    assert shown["Fills"] == str(len(fills))
    assert shown["Trades"] == str(len(mine)) == str(len(trades))
    assert shown["Win rate"] == f"{len(wins) / len(mine):.1%}"
    assert shown["Profit factor"] == (f"{sum(wins) / -sum(losses):.2f}" if sum(losses) < 0 else "inf")
    assert sorted((t["symbol"], t["side"], round(float(t["pnl"]), 4)) for t in trades) == \
        sorted((sym, side, round(p, 4)) for sym, side, p in mine)
    # the equity curve ends at the net P&L, and its drawdown is the curve's own
    with open(out / "equity.csv") as f:
        eq = [(float(row["equity"]), float(row["drawdown"])) for row in csv.DictReader(f)]
    assert eq[-1][0] == pytest.approx(CASH + net, abs=1e-6)
    peak, worst = -1e300, 0.0
    for e, dd in eq:
        peak = max(peak, e)
        assert dd == pytest.approx(peak - e, abs=1e-6)
        worst = max(worst, peak - e)
    assert shown["Max drawdown"] == f"{worst:,.2f}"
