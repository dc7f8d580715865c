"""Recordings of market data: the Parquet layout, its writer, and one reader for every source.

A recording is a folder (docs/backtest.md, "Recordings")::

    <name>/parquet/ticks/date=YYYY-MM-DD/symbol=SYM/part-<n>.parquet

hive-partitioned by date (UTC, of the tick's ``ts``) and symbol, zstd-compressed, with int64
nanosecond timestamps, so pandas, polars, DuckDB and NautilusTrader read it as it is.  Columns
of ``ticks``: ``ts`` (the tick's time as it was on the wire), ``seq``, ``last``, ``bid``,
``ask`` (float64), ``bid_size``, ``ask_size``, ``volume`` (int64).

:func:`open_recording` reads such a folder, a ticks dataset or a single Parquet file, a tick CSV
(columns mapped with ``mapping``) or a daily OHLCV CSV (turned into ticks by the replay's own
rules, workers/marketdata/replay_feed.py, stamped in market time).  Whatever it reads is checked
first: a file that cannot be read, or rows that cannot be trusted (a price that is not positive
and finite, a bid above its ask, time going backwards within a symbol), raise
:class:`RecordingError` naming the file and the first bad row -- never half the data.
"""

from __future__ import annotations

import csv
import datetime as dt
import gc
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.protocol import TICK_ROW_FIELDS

#: the columns of the ``ticks`` table, in the order of a ticks frame's rows
TICK_COLUMNS = TICK_ROW_FIELDS  # seq, ts, last, bid, ask, bid_size, ask_size, volume
_INT = ("seq", "ts", "bid_size", "ask_size", "volume")
_FLOAT = ("last", "bid", "ask")
#: rows of one symbol per ``ticks`` event (a ticks frame's size on the wire)
EVENT_ROWS = 256
_NS_PER_DAY = 86_400 * 10**9
#: a daily bar's ticks are spread over the regular US session (09:30 to 16:00 UTC-naive)
_SESSION_OPEN_NS = (9 * 3600 + 30 * 60) * 10**9
_SESSION_NS = int(6.5 * 3600) * 10**9


class RecordingError(Exception):
    """A recording (or an imported file) that cannot be read or trusted."""


Event = tuple[str, str, list]


@dataclass
class Recording:
    """Ticks per symbol as numpy columns (market time), checked when loaded."""

    path: Path
    columns: dict[str, dict[str, np.ndarray]]

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self.columns))

    @property
    def n_ticks(self) -> int:
        return sum(len(c["ts"]) for c in self.columns.values())

    @property
    def first_ts(self) -> int:
        return min((int(c["ts"][0]) for c in self.columns.values() if len(c["ts"])), default=0)

    @property
    def last_ts(self) -> int:
        return max((int(c["ts"][-1]) for c in self.columns.values() if len(c["ts"])), default=0)

    def tick_columns(self, symbol: str) -> dict[str, np.ndarray]:
        return self.columns[symbol]

    def only(self, symbols) -> Recording:
        missing = [s for s in symbols if s not in self.columns]
        if missing:
            raise RecordingError(f"{self.path}: no ticks of {', '.join(missing)} (it has {', '.join(self.symbols)})")
        return Recording(self.path, {s: self.columns[s] for s in symbols})

    def events(self, kinds=("ticks",), start_ts: int | None = None) -> Iterator[Event]:
        """``("ticks", symbol, rows)`` in time order across symbols (ties: symbol order), rows
        being ticks-frame rows (:data:`TICK_COLUMNS`) of one symbol, at most EVENT_ROWS."""
        if "ticks" not in kinds or not self.columns:
            return
        syms = self.symbols
        ts = np.concatenate([self.columns[s]["ts"] for s in syms])
        who = np.concatenate([np.full(len(self.columns[s]["ts"]), i, dtype=np.int32) for i, s in enumerate(syms)])
        order = np.argsort(ts, kind="stable")  # stable: a symbol's rows keep their order
        if start_ts is not None:
            order = order[ts[order] >= start_ts]
        # millions of fresh tuples of scalars would trigger the cyclic collector again and again
        # (about a third of the cost), and such tuples cannot form cycles: pause it meanwhile
        was = gc.isenabled()
        gc.disable()
        try:
            rows_of = [list(zip(*(self.columns[s][c].tolist() for c in TICK_COLUMNS))) for s in syms]
        finally:
            if was:
                gc.enable()
        offset = np.concatenate([[0], np.cumsum([len(r) for r in rows_of])[:-1]]).astype(np.int64)
        who_o = who[order]
        local = (order - offset[who_o]).tolist()
        # runs of one symbol: where the symbol changes, or every EVENT_ROWS rows
        cuts = np.flatnonzero(np.diff(who_o)) + 1
        bounds = np.concatenate([[0], cuts, [len(who_o)]]).tolist()
        who_l = who_o.tolist()
        for a, b in zip(bounds[:-1], bounds[1:]):
            i = who_l[a]
            rows, sym = rows_of[i], syms[i]
            first = local[a]
            # a run of one symbol is consecutive rows of it (stable sort)
            for s in range(a, b, EVENT_ROWS):
                e = min(b, s + EVENT_ROWS)
                yield ("ticks", sym, rows[first + (s - a): first + (e - a)])


# ----------------------------------------------------------------------------- checks


def _check(path, symbol: str, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = len(cols["ts"])
    for c in TICK_COLUMNS:
        if len(cols[c]) != n:
            raise RecordingError(f"{path}: {symbol}: column {c} has {len(cols[c])} rows, ts {n}")
    bad = np.zeros(n, dtype=bool)
    why = []
    for c in _FLOAT:
        b = ~(np.isfinite(cols[c]) & (cols[c] > 0))
        if b.any():
            why.append((int(np.argmax(b)), f"{c} not a positive finite price"))
        bad |= b
    b = cols["bid"] > cols["ask"]
    if b.any():
        why.append((int(np.argmax(b)), "bid above ask"))
    bad |= b
    if n > 1:
        b = np.concatenate([[False], np.diff(cols["ts"]) < 0])
        if b.any():
            why.append((int(np.argmax(b)), "ts going backwards"))
        bad |= b
    for c in ("bid_size", "ask_size", "volume"):
        b = cols[c] < 0
        if b.any():
            why.append((int(np.argmax(b)), f"negative {c}"))
        bad |= b
    if bad.any():
        row, what = min(why)
        raise RecordingError(f"{path}: {symbol}: {int(bad.sum())} rows cannot be trusted (first: row {row}, {what})")
    return cols


def _columns(table_like: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for c in TICK_COLUMNS:
        a = np.asarray(table_like[c])
        out[c] = a.astype(np.int64 if c in _INT else np.float64, copy=False)
    return out


# ----------------------------------------------------------------------------- Parquet


def write_ticks(root: str | Path, symbol: str, cols: Mapping[str, np.ndarray], part: int = 0) -> list[Path]:
    """Write one symbol's ticks into ``root`` (a ``ticks`` table folder), a file per UTC date:
    ``date=YYYY-MM-DD/symbol=SYM/part-<part>.parquet``.  Returns the files written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = _check(root, symbol, _columns(cols))
    root = Path(root)
    day = cols["ts"] // _NS_PER_DAY
    written = []
    for d in np.unique(day).tolist():
        sel = day == d
        date = (dt.datetime(1970, 1, 1) + dt.timedelta(days=d)).date().isoformat()
        folder = root / f"date={date}" / f"symbol={symbol}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.table({c: cols[c][sel] for c in TICK_COLUMNS})
        out = folder / f"part-{part}.parquet"
        tmp = out.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp, compression="zstd")
        tmp.replace(out)  # a reader never sees half a file
        written.append(out)
    return written


def _read_parquet(path: Path) -> dict[str, dict[str, np.ndarray]]:
    import pyarrow as pa
    import pyarrow.dataset as ds

    target = path
    if path.is_dir() and (path / "parquet" / "ticks").is_dir():
        target = path / "parquet" / "ticks"
    try:
        dataset = ds.dataset(str(target), format="parquet", partitioning="hive", exclude_invalid_files=False)
        table = dataset.to_table()
    except (pa.ArrowException, OSError) as e:
        raise RecordingError(f"{target}: not a readable Parquet recording: {type(e).__name__}: {e}") from None
    names = set(table.column_names)
    missing = [c for c in TICK_COLUMNS if c not in names]
    if missing or "symbol" not in names:
        raise RecordingError(f"{target}: not a ticks table (missing {', '.join(missing + ([] if 'symbol' in names else ['symbol']))})")
    sym_col = np.asarray(table.column("symbol").cast(pa.string()).to_numpy(zero_copy_only=False))
    cols = {c: table.column(c).to_numpy() for c in TICK_COLUMNS}
    out = {}
    for s in np.unique(sym_col).tolist():
        sel = sym_col == s
        part = {c: cols[c][sel] for c in TICK_COLUMNS}
        # files of a day come back in path order, not time order: sort by (ts, seq)
        o = np.lexsort((part["seq"], part["ts"]))
        out[str(s)] = _check(target, str(s), _columns({c: v[o] for c, v in part.items()}))
    return out


# ----------------------------------------------------------------------------- CSV


def _read_csv(path: Path, mapping: Mapping[str, str] | None, symbol: str | None) -> dict[str, dict[str, np.ndarray]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError) as e:
        raise RecordingError(f"{path}: cannot read: {e}") from None
    lower = {h.strip().lower(): h for h in header}
    mapping = {k: v for k, v in (mapping or {}).items()}
    is_ohlcv = not mapping and {"open", "high", "low", "close"} <= set(lower) and "date" in lower
    if is_ohlcv:
        return _read_ohlcv(path, symbol)
    return _read_tick_csv(path, header, lower, mapping, symbol)


def _read_tick_csv(path, header, lower, mapping, symbol) -> dict[str, dict[str, np.ndarray]]:
    def col(ours: str) -> str | None:
        theirs = mapping.get(ours)
        if theirs is not None:
            if theirs not in header and theirs.lower() not in lower:
                raise RecordingError(f"{path}: --map {ours}={theirs}: no column {theirs!r} (columns: {', '.join(header)})")
            return theirs if theirs in header else lower[theirs.lower()]
        return lower.get(ours)

    ts_c, last_c = col("ts"), col("last") or col("price")
    if ts_c is None or last_c is None:
        raise RecordingError(f"{path}: a tick CSV needs a time and a price column (ts, last; map others with --map ts=COL --map last=COL)")
    bid_c, ask_c, sym_c = col("bid"), col("ask"), col("symbol")
    sizes = {c: col(c) for c in ("bid_size", "ask_size", "volume")}
    data: dict[str, dict[str, list]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                sym = (row[sym_c].strip().upper() if sym_c else None) or symbol or path.stem.upper()
                ts = _parse_ts(row[ts_c])
                last = float(row[last_c])
                bid = float(row[bid_c]) if bid_c and row[bid_c] else last
                ask = float(row[ask_c]) if ask_c and row[ask_c] else last
                vals = {c: int(float(row[k])) if k and row[k] else 0 for c, k in sizes.items()}
            except (KeyError, ValueError, TypeError) as e:
                raise RecordingError(f"{path}: line {n}: {type(e).__name__}: {e}") from None
            d = data.setdefault(sym, {c: [] for c in TICK_COLUMNS})
            d["seq"].append(len(d["seq"]) + 1)
            d["ts"].append(ts)
            d["last"].append(last)
            d["bid"].append(bid)
            d["ask"].append(ask)
            for c, v in vals.items():
                d[c].append(v)
    if not data:
        raise RecordingError(f"{path}: no rows")
    return {s: _check(path, s, _columns({c: np.array(v) for c, v in d.items()})) for s, d in data.items()}


def _parse_ts(text: str) -> int:
    """Nanoseconds since the epoch from an integer (ns, us, ms or s by magnitude), a float of
    seconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    t = text.strip()
    try:
        v = int(t)
    except ValueError:
        try:
            f = float(t)
        except ValueError:
            d = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
            if d.tzinfo is None:
                d = d.replace(tzinfo=dt.timezone.utc)
            return int(d.timestamp()) * 10**9 + d.microsecond * 1000
        if not math.isfinite(f):
            raise ValueError(f"time {t!r}")
        return int(round(f * 1e9))
    if abs(v) < 10**11:  # seconds (until the year 5138)
        return v * 10**9
    if abs(v) < 10**14:
        return v * 10**6
    if abs(v) < 10**17:
        return v * 10**3
    return v


def _read_ohlcv(path: Path, symbol: str | None) -> dict[str, dict[str, np.ndarray]]:
    from workers.marketdata.replay_feed import ReplayFeed

    try:
        feed = ReplayFeed(path, symbols=[symbol] if symbol else None, seed=0, clock=lambda: 0)
    except (ValueError, OSError) as e:
        raise RecordingError(f"{path}: {e}") from None
    data: dict[str, dict[str, list]] = {}
    per_day = feed.ticks_per_bar * max(1, len(feed.symbols))
    step = _SESSION_NS // per_day
    k, day = 0, None
    for t in feed:
        d = feed.current_date
        if d != day:
            day, k = d, 0
        ts = (d - dt.date(1970, 1, 1)).days * _NS_PER_DAY + _SESSION_OPEN_NS + k * step
        k += 1
        c = data.setdefault(t.symbol, {c: [] for c in TICK_COLUMNS})
        for name, v in zip(TICK_COLUMNS, (t.seq, ts, t.last, t.bid, t.ask, t.bid_size, t.ask_size, t.volume)):
            c[name].append(v)
    return {s: _check(path, s, _columns({c: np.array(v) for c, v in d.items()})) for s, d in data.items()}


# ----------------------------------------------------------------------------- entry


def open_recording(path: str | Path, *, mapping: Mapping[str, str] | None = None, symbol: str | None = None) -> Recording:
    """The ticks of ``path`` (see the module docstring for what it may be); RecordingError
    when it cannot be read or trusted."""
    p = Path(path)
    symbol = symbol.strip().upper() if symbol else None  # as the symbol column's values
    if not p.exists():
        raise RecordingError(f"{p}: no such file or folder")
    if p.is_dir() or p.suffix.lower() == ".parquet":
        cols = _read_parquet(p)
    elif p.suffix.lower() in (".csv", ".txt"):
        cols = _read_csv(p, mapping, symbol)
    else:
        raise RecordingError(f"{p}: unknown kind of file (a recording folder, .parquet or .csv)")
    if not cols:
        raise RecordingError(f"{p}: no ticks")
    return Recording(p, cols)
