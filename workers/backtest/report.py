"""A backtest's results as files: a self-contained HTML report (inline SVG, no script) and CSV."""

from __future__ import annotations

import csv
import datetime as dt
import html
import math
from pathlib import Path

import numpy as np

from workers.backtest.engine import BacktestResult

STAT_LABELS = (
    ("net_pnl", "Net P&L", "{:,.2f}"),
    ("return_pct", "Return %", "{:.2f}"),
    ("sharpe", "Sharpe (annualised)", "{:.2f}"),
    ("max_drawdown", "Max drawdown", "{:,.2f}"),
    ("max_drawdown_pct", "Max drawdown %", "{:.2f}"),
    ("win_rate", "Win rate", "{:.1%}"),
    ("profit_factor", "Profit factor", "{:.2f}"),
    ("exposure", "Exposure", "{:.1%}"),
    ("turnover", "Turnover (x capital)", "{:.2f}"),
    ("fees", "Fees", "{:,.2f}"),
    ("slippage", "Slippage", "{:,.2f}"),
    ("n_trades", "Trades", "{:.0f}"),
    ("n_fills", "Fills", "{:.0f}"),
    ("signals", "Signals", "{:.0f}"),
    ("ticks", "Ticks", "{:,.0f}"),
    ("ticks_per_s", "Ticks/s", "{:,.0f}"),
)


def fmt_stat(key: str, value: float) -> str:
    for k, _, f in STAT_LABELS:
        if k == key:
            return "inf" if isinstance(value, float) and math.isinf(value) else f.format(value)
    return f"{value:g}"


def stats_table(result: BacktestResult) -> str:
    """The statistics as aligned text (the CLI prints it)."""
    rows = [(label, fmt_stat(k, result.stats[k])) for k, label, _ in STAT_LABELS if k in result.stats]
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{a.ljust(w)}  {b}" for a, b in rows)


def _ts(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _svg(ts: np.ndarray, ys: np.ndarray, colour: str, title: str, w: int = 900, h: int = 220) -> str:
    if len(ts) < 2:
        return f"<p>{html.escape(title)}: not enough points</p>"
    x0, x1 = float(ts[0]), float(ts[-1])
    lo, hi = float(np.min(ys)), float(np.max(ys))
    if hi == lo:
        hi = lo + 1.0
    xs = (ts - x0) / (x1 - x0 or 1.0) * (w - 60) + 50
    yv = h - 20 - (ys - lo) / (hi - lo) * (h - 40)
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), yv.tolist()))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">'
        f'<rect width="{w}" height="{h}" fill="#111"/>'
        f'<text x="50" y="14" fill="#ccc" font-size="12">{html.escape(title)}</text>'
        f'<text x="2" y="24" fill="#888" font-size="10">{hi:,.0f}</text>'
        f'<text x="2" y="{h - 20}" fill="#888" font-size="10">{lo:,.0f}</text>'
        f'<polyline fill="none" stroke="{colour}" stroke-width="1.2" points="{pts}"/></svg>'
    )


def write_html(result: BacktestResult, path: str | Path, title: str = "TickDesk backtest") -> Path:
    r = result
    params = ", ".join(f"{k}={v}" for k, v in sorted(dict(r.config.params).items())) or "defaults"
    c = r.config.costs
    stats = "".join(f"<tr><th>{html.escape(label)}</th><td>{html.escape(fmt_stat(k, r.stats[k]))}</td></tr>"
                    for k, label, _ in STAT_LABELS if k in r.stats)
    trades = "".join(
        f"<tr><td>{html.escape(t.symbol)}</td><td>{t.side}</td><td>{t.qty}</td><td>{_ts(t.entry_ts)}</td>"
        f"<td>{t.entry_price:.4f}</td><td>{_ts(t.exit_ts)}</td><td>{t.exit_price:.4f}</td><td>{t.pnl:,.2f}</td></tr>"
        for t in r.trades[:5000]
    )
    more = f"<p>{len(r.trades) - 5000} more trades in the CSV.</p>" if len(r.trades) > 5000 else ""
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{background:#1a1a1a;color:#ddd;font:13px sans-serif;margin:20px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #333;padding:2px 8px;text-align:right}}th{{text-align:left;color:#aaa}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Strategy <b>{html.escape(r.config.strategy)}</b> ({html.escape(params)}) on {html.escape(", ".join(sorted({f.fill.symbol for f in r.fills})) or "no fills")};
costs: {c.fee_per_share} per share, {c.fee_bps} bps fee, {c.slippage_bps} bps slippage; initial cash {r.config.initial_cash:,.2f}.
Data from {_ts(int(r.equity_ts[0])) if len(r.equity_ts) else "-"} to {_ts(int(r.equity_ts[-1])) if len(r.equity_ts) else "-"} (UTC).</p>
{_svg(r.equity_ts, r.equity, "#4caf50", "Equity")}<br>{_svg(r.equity_ts, -r.drawdown, "#e53935", "Drawdown")}
<h2>Statistics</h2><table id="stats">{stats}</table>
<h2>Trades ({len(r.trades)})</h2><table id="trades"><tr><th>Symbol</th><th>Side</th><th>Qty</th><th>Entry</th><th>Price</th><th>Exit</th><th>Price</th><th>P&amp;L</th></tr>{trades}</table>{more}
</body></html>"""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(body, encoding="utf-8")
    return p


def write_csv(result: BacktestResult, folder: str | Path) -> list[Path]:
    """trades.csv, fills.csv and equity.csv in ``folder``."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    with open(d / "trades.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["symbol", "side", "qty", "entry_ts", "entry_price", "exit_ts", "exit_price", "pnl"])
        for t in result.trades:
            w.writerow([t.symbol, t.side, t.qty, t.entry_ts, t.entry_price, t.exit_ts, t.exit_price, round(t.pnl, 6)])
    out.append(d / "trades.csv")
    with open(d / "fills.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fill_id", "client_order_id", "symbol", "side", "qty", "price", "ledger_price", "fee", "ts"])
        for lf in result.fills:
            x = lf.fill
            w.writerow([x.fill_id, x.client_order_id, x.symbol, x.side.value, x.qty, x.price, lf.price, lf.fee, x.ts])
    out.append(d / "fills.csv")
    with open(d / "equity.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts", "equity", "drawdown"])
        for row in zip(result.equity_ts.tolist(), result.equity.tolist(), result.drawdown.tolist()):
            w.writerow(row)
    out.append(d / "equity.csv")
    return out


def write_signals(result: BacktestResult, path: str | Path) -> Path:
    """Every signal with the risk decision, one JSON object per line."""
    import json

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    dec = {sid: (ok, why) for sid, ok, why in result.decisions}
    with open(p, "w") as f:
        for s in result.signals:
            ok, why = dec.get(s.id, (None, ""))
            f.write(json.dumps({"id": s.id, "strategy": s.strategy, "symbol": s.symbol, "side": s.side.value, "qty": s.qty,
                                "price": s.price, "ts": s.ts, "reason": s.reason, "accepted": ok, "refused": why}) + "\n")
    return p
