"""``main.py data``: list, export and import recordings (docs/recording.md, docs/backtest.md "Recordings")."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from pathlib import Path

from workers.recording import TABLES, TICK_COLUMNS, RecordingError, open_recording, read_meta, read_table, table_counts, table_folder, write_ticks


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
    print(f"{'name':32} {'from (UTC)':19}  {'to (UTC)':19}  " + "  ".join(f"{t:>10}" for t in TABLES) + f"  {'MB':>8}  symbols")
    for p in names:
        try:
            r = open_recording(p)
            meta = read_meta(p)
            # meta.json when its recorder closed it; else what the files hold now
            counts = meta["counts"] if meta and meta.get("closed") else table_counts(p)[0]
        except (RecordingError, KeyError, TypeError) as e:
            print(f"{p.name:32} unreadable: {e}")
            continue
        f = dt.datetime.fromtimestamp(r.first_ts / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        t = dt.datetime.fromtimestamp(r.last_ts / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        n = "  ".join(f"{int(counts.get(k, 0)):>10}" for k in TABLES)
        print(f"{p.name:32} {f}  {t}  {n}  {_size(p) / 2**20:8.1f}  {','.join(r.symbols)}")
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
    path = _resolve(a.name, a.data_dir)
    symbols = [s.strip().upper() for s in a.symbol.split(",")] if a.symbol else None
    if a.table != "ticks":
        return _export_table(a, path, symbols)
    rec = open_recording(path)
    if symbols:
        rec = rec.only(symbols)
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


def _export_table(a, path: Path, symbols: list[str] | None) -> int:
    """Another table than ticks: CSV (a list column of depth as ``p1;p2;...``) or Parquet in
    the same layout (``<out>/date=.../symbol=.../part-0.parquet``)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder = table_folder(path, a.table)
    if folder is None:
        raise RecordingError(f"{path}: no {a.table} table")
    table = read_table(folder, a.table)
    if symbols:
        table = table.filter(pc.is_in(table.column("symbol"), value_set=pa.array(symbols)))
    out = Path(a.out)
    if a.format == "parquet":
        pq.write_to_dataset(table.append_column("date", _dates(table)), out, partition_cols=["date", "symbol"],
                            basename_template="part-{i}.parquet", existing_data_behavior="delete_matching")
        print(f"exported {table.num_rows} {a.table} rows to {out}")
        return 0
    cols = table.to_pydict()
    names = table.column_names
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        for row in zip(*(cols[c] for c in names)):
            w.writerow([";".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v) for v in row])
    print(f"exported {table.num_rows} {a.table} rows to {out}")
    return 0


def _dates(table):
    import pyarrow as pa

    days = (table.column("ts").to_numpy() // (86_400 * 10**9)).tolist()
    return pa.array([(dt.date(1970, 1, 1) + dt.timedelta(days=d)).isoformat() for d in days], pa.string())


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
    e.add_argument("--table", choices=TABLES, default="ticks", help="which table of the recording (default: ticks)")
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
