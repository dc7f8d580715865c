"""``main.py data``: list, export and import recordings (docs/backtest.md, "Recordings")."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from pathlib import Path

from workers.recording import TICK_COLUMNS, RecordingError, open_recording, write_ticks


def recordings_dir(data_dir: str | None) -> Path:
    from workers.config import data_dir as default_data_dir

    return (Path(data_dir) if data_dir else default_data_dir()) / "recordings"


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _resolve(name: str, data_dir: str | None) -> Path:
    p = Path(name)
    if p.exists():
        return p
    q = recordings_dir(data_dir) / name
    if q.exists():
        return q
    raise RecordingError(f"{name}: neither a path nor a recording in {recordings_dir(data_dir)}")


def _list(a) -> int:
    root = recordings_dir(a.data_dir)
    names = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not names:
        print(f"no recordings in {root}")
        return 0
    print(f"{'name':32} {'from (UTC)':19}  {'to (UTC)':19}  {'ticks':>10}  {'MB':>8}  symbols")
    for p in names:
        try:
            r = open_recording(p)
        except RecordingError as e:
            print(f"{p.name:32} unreadable: {e}")
            continue
        f = dt.datetime.fromtimestamp(r.first_ts / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        t = dt.datetime.fromtimestamp(r.last_ts / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{p.name:32} {f}  {t}  {r.n_ticks:>10}  {_size(p) / 2**20:8.1f}  {','.join(r.symbols)}")
    return 0


def _import(a) -> int:
    mapping = dict(m.split("=", 1) for m in a.map) if a.map else None
    rec = open_recording(a.file, mapping=mapping, symbol=a.symbol)
    out = Path(a.out) if ("/" in a.out or a.out.startswith(".")) else recordings_dir(a.data_dir) / a.out
    if out.exists() and any(out.iterdir()):
        raise RecordingError(f"{out}: exists and is not empty")
    n = 0
    for s in rec.symbols:
        n += len(write_ticks(out / "parquet" / "ticks", s, rec.columns[s]))
    print(f"imported {rec.n_ticks} ticks of {', '.join(rec.symbols)} into {out} ({n} files)")
    return 0


def _export(a) -> int:
    rec = open_recording(_resolve(a.name, a.data_dir))
    if a.symbol:
        rec = rec.only([s.strip().upper() for s in a.symbol.split(",")])
    out = Path(a.out)
    if a.format == "parquet":
        n = sum(len(write_ticks(out, s, rec.columns[s])) for s in rec.symbols)
        print(f"exported {rec.n_ticks} ticks to {out} ({n} files)")
        return 0
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["symbol", *TICK_COLUMNS])
        for _, sym, rows in rec.events():
            for r in rows:
                w.writerow([sym, *r])
    print(f"exported {rec.n_ticks} ticks to {out}")
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="main.py data", description="Recordings: list, export, import.")
    p.add_argument("--data-dir", default=None, help="the data folder (default: the user's app-data folder)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the recordings in the data folder")
    e = sub.add_parser("export", help="a recording (or any readable file) as CSV or Parquet")
    e.add_argument("name", help="a recording's name or a path")
    e.add_argument("--format", choices=("csv", "parquet"), default="csv")
    e.add_argument("--out", required=True)
    e.add_argument("--symbol", default="", help="only these symbols (comma-separated)")
    i = sub.add_parser("import", help="a tick or daily OHLCV CSV (or Parquet) as a recording")
    i.add_argument("file")
    i.add_argument("--out", required=True, help="a recording name (in the data folder) or a path")
    i.add_argument("--map", action="append", default=[], metavar="OURS=THEIRS",
                   help="column mapping for a tick CSV: ts, last (or price), bid, ask, bid_size, ask_size, volume, symbol")
    i.add_argument("--symbol", default=None, help="the symbol when the file has no symbol column (default: the file name)")
    a = p.parse_args(argv)
    try:
        return {"list": _list, "import": _import, "export": _export}[a.cmd](a)
    except RecordingError as err:
        print(f"main.py data: error: {err}", file=sys.stderr)
        return 2
