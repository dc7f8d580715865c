"""Recordings of market data: the Parquet layout, its writer, and one reader for every source.

A recording is a folder (docs/backtest.md, "Recordings"; docs/recording.md)::

    <name>/meta.json
    <name>/parquet/<table>/date=YYYY-MM-DD/symbol=SYM/part-<n>.parquet

with the tables ``ticks``, ``depth``, ``orders``, ``fills`` and ``signals`` (:data:`TABLES`),

hive-partitioned by date (UTC, of the row's ``ts``) and symbol, zstd-compressed, with int64
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

import bisect
import csv
import datetime as dt
import enum
import gc
import json
import math
import os
import time
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from workers import protocol as P
from workers.protocol import TICK_ROW_FIELDS

#: the columns of the ``ticks`` table, in the order of a ticks frame's rows
TICK_COLUMNS = TICK_ROW_FIELDS  # seq, ts, last, bid, ask, bid_size, ask_size, volume
_INT = ("seq", "ts", "bid_size", "ask_size", "volume")
_FLOAT = ("last", "bid", "ask")
#: rows of one symbol per ``ticks`` event (a ticks frame's size on the wire)
EVENT_ROWS = 256
_NS_PER_DAY = 86_400 * 10**9
#: every table of a recording: ticks (the ticks endpoint's ``tick``/``ticks``), depth (its
#: ``depth``), orders and fills (the execution endpoint's ``order_update`` and ``fill``), signals
#: (the events endpoint's ``signal_decision``: every signal the executor pulled, with its decision)
TABLES = ("ticks", "depth", "orders", "fills", "signals")
#: recording format of meta.json
META_FORMAT = 1
#: a daily bar's ticks are spread over the regular US session (09:30 to 16:00 UTC-naive)
_SESSION_OPEN_NS = (9 * 3600 + 30 * 60) * 10**9
_SESSION_NS = int(6.5 * 3600) * 10**9


def _row_ts(row) -> int:
    return row[1]


class RecordingError(Exception):
    """A recording (or an imported file) that cannot be read or trusted."""


#: ``("ticks", symbol, rows)`` or ``("depth", symbol, Depth)``
Event = tuple[str, str, object]


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

    def table(self, name: str, symbol: str | None = None):
        """Table ``name`` (one of :data:`TABLES`) as a pyarrow Table with a ``symbol`` column,
        sorted by time (``ts``, then ``seq`` where there is one), only ``symbol``'s rows if
        given.  A recording without that table gives an empty one with its columns (an
        imported CSV has ticks only); an unknown name or an unreadable file is a RecordingError."""
        import pyarrow as pa

        if name not in TABLES:
            raise RecordingError(f"{self.path}: no table {name!r} (tables: {', '.join(TABLES)})")
        if name == "ticks":
            syms = [symbol] if symbol is not None else list(self.symbols)
            parts = []
            for s in syms:
                c = self.columns.get(s)
                if c is not None:
                    parts.append(pa.table({"symbol": pa.array([s] * len(c["ts"]), pa.string()), **{k: c[k] for k in TICK_COLUMNS}}))
            return pa.concat_tables(parts) if parts else _empty_table("ticks")
        folder = table_folder(self.path, name)
        if folder is None:
            return _empty_table(name)
        return read_table(folder, name, symbol)

    def events(self, kinds=("ticks",), start_ts: int | None = None) -> Iterator[Event]:
        """``("ticks", symbol, rows)`` in time order across symbols (ties: symbol order), rows
        being ticks-frame rows (:data:`TICK_COLUMNS`) of one symbol, at most EVENT_ROWS; with
        ``"depth"`` in ``kinds`` also ``("depth", symbol, Depth)`` at their place in time (a
        depth comes after the ticks of its own ``ts``: its best levels are the tick of that
        moment), for the symbols of this recording."""
        depth = self._depth_events(start_ts) if "depth" in kinds else []
        if "ticks" not in kinds or not self.columns:
            yield from depth
            return
        if not depth:
            yield from self._tick_events(start_ts)
            return
        k, nd = 0, len(depth)
        ts_of = _row_ts
        for ev in self._tick_events(start_ts):
            rows = ev[2]
            i, n = 0, len(rows)
            while i < n:
                if k < nd:
                    j = bisect.bisect_right(rows, depth[k][2].ts, i, n, key=ts_of)
                else:
                    j = n
                if j > i:
                    yield (ev[0], ev[1], rows[i:j] if (i, j) != (0, n) else rows)
                    i = j
                if j < n:  # a tick later than this depth follows: the depth goes first
                    yield depth[k]
                    k += 1
        yield from depth[k:]

    def depth_by_symbol(self) -> dict[str, list[P.Depth]]:
        """Each symbol's recorded book snapshots in time order (empty: the recording has none)."""
        out: dict[str, list[P.Depth]] = {}
        for _, sym, d in self._depth_events(None):
            out.setdefault(sym, []).append(d)
        return out

    def _depth_events(self, start_ts: int | None) -> list[Event]:
        t = self.table("depth")
        if not t.num_rows:
            return []
        d = t.to_pydict()
        keep = set(self.symbols) if self.columns else None
        out = []
        for sym, seq, ts, ep, bp, bs, ap, az in zip(d["symbol"], d["seq"], d["ts"], d["epoch"], d["bid_px"], d["bid_sz"], d["ask_px"], d["ask_sz"]):
            if (keep is not None and sym not in keep) or (start_ts is not None and ts < start_ts):
                continue
            out.append(("depth", sym, P.Depth(sym, seq, ts, list(zip(bp, bs)), list(zip(ap, az)), epoch=ep)))
        out.sort(key=lambda e: e[2].ts)  # stable: a symbol's depth keeps its order
        return out

    def _tick_events(self, start_ts: int | None) -> Iterator[Event]:
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

    cols = _check(root, symbol, _columns(cols))
    return _write_by_date(Path(root), symbol, pa.table({c: cols[c] for c in TICK_COLUMNS}), cols["ts"], part)


# ----------------------------------------------------------------------------- the other tables
#
# Their columns derive from the wire declarations (workers/protocol.py): a field added to
# order_update is a column of ``orders`` without a change here.  ``symbol`` is the partition,
# not a column of the files (a reader's dataset gets it back from the path).


def _arrow_type(t):
    import pyarrow as pa

    t = P._plain(t)
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        t = next(a for a in typing.get_args(t) if a is not type(None))
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return pa.string()
    return {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}[t]


def _fields(cls) -> list[tuple[str, object]]:
    return [(f.name, f.type) for f in P.fields_of(cls) if f.name != "symbol"]


#: the columns a signal_decision adds to its signal's fields in ``signals``
SIGNAL_DECISION_COLUMNS = (("accepted", bool), ("decision_reason", str), ("client_order_id", str | None), ("decided_ts", int))


def table_columns(name: str) -> list[tuple[str, object]]:
    """(column, pyarrow type) of a table's files (``symbol`` is the partition)."""
    import pyarrow as pa

    if name == "ticks":
        return [(c, pa.int64() if c in _INT else pa.float64()) for c in TICK_COLUMNS]
    if name == "depth":
        return [("ts", pa.int64()), ("seq", pa.int64()), ("epoch", pa.int64()),
                ("bid_px", pa.list_(pa.float64())), ("bid_sz", pa.list_(pa.int64())),
                ("ask_px", pa.list_(pa.float64())), ("ask_sz", pa.list_(pa.int64()))]
    if name == "orders":
        return [(n, _arrow_type(t)) for n, t in _fields(P.OrderUpdate)]
    if name == "fills":
        return [(n, _arrow_type(t)) for n, t in _fields(P.Fill)]
    if name == "signals":
        return [(n, _arrow_type(t)) for n, t in (*_fields(P.Signal), *SIGNAL_DECISION_COLUMNS)]
    raise RecordingError(f"no table {name!r} (tables: {', '.join(TABLES)})")


def _schema(name: str, with_symbol: bool = False):
    import pyarrow as pa

    cols = table_columns(name)
    return pa.schema(([("symbol", pa.string())] if with_symbol else []) + cols)


def _empty_table(name: str):
    return _schema(name, with_symbol=True).empty_table()


#: wire message -> the table it goes to
MESSAGE_TABLE = {P.Depth: "depth", P.OrderUpdate: "orders", P.Fill: "fills", P.SignalDecision: "signals"}


def message_row(msg) -> tuple[str, str, dict]:
    """``(table, symbol, row)`` of a depth, order_update, fill or signal_decision message."""
    cls = msg.__class__
    if cls is P.Depth:
        return "depth", msg.symbol, {"ts": msg.ts, "seq": msg.seq, "epoch": msg.epoch,
                                     "bid_px": [lv[0] for lv in msg.bids], "bid_sz": [lv[1] for lv in msg.bids],
                                     "ask_px": [lv[0] for lv in msg.asks], "ask_sz": [lv[1] for lv in msg.asks]}
    if cls is P.SignalDecision:
        d = msgspec.to_builtins(msg.signal)
        d.update(accepted=msg.accepted, decision_reason=msg.reason, client_order_id=msg.client_order_id, decided_ts=msg.ts)
        return "signals", d.pop("symbol"), d
    name = MESSAGE_TABLE.get(cls)
    if name is None:
        raise RecordingError(f"a {cls.__name__} message has no table")
    d = msgspec.to_builtins(msg)
    return name, d.pop("symbol"), d


def write_table(root: str | Path, name: str, symbol: str, rows: list[dict], part: int = 0) -> list[Path]:
    """Write rows (:func:`message_row`) of one symbol into ``root`` (the folder of table
    ``name``), a file per UTC date of ``ts``, as :func:`write_ticks`.  Returns the files written."""
    import pyarrow as pa

    schema = _schema(name)
    try:
        table = pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowException, KeyError, TypeError) as e:
        raise RecordingError(f"{root}: {symbol}: rows do not fit table {name}: {e}") from None
    ts = table.column("ts").to_numpy()
    if (ts < 0).any():
        raise RecordingError(f"{root}: {symbol}: a negative ts in {name}")
    return _write_by_date(Path(root), symbol, table, ts, part)


def _write_by_date(root: Path, symbol: str, table, ts: np.ndarray, part: int) -> list[Path]:
    import pyarrow.parquet as pq

    day = ts // _NS_PER_DAY
    written = []
    for d in np.unique(day).tolist():
        sel = day == d
        date = (dt.datetime(1970, 1, 1) + dt.timedelta(days=d)).date().isoformat()
        folder = root / f"date={date}" / f"symbol={symbol}"
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"part-{part}.parquet"
        tmp = out.with_suffix(".parquet.tmp")
        pq.write_table(table.filter(sel) if not sel.all() else table, tmp, compression="zstd")
        tmp.replace(out)  # a reader never sees half a file; a second roll of one raw log overwrites
        written.append(out)
    return written


def table_folder(path: str | Path, name: str) -> Path | None:
    """The folder of table ``name`` in the recording at ``path``, None if it has none."""
    p = Path(path) / "parquet" / name
    return p if p.is_dir() else None


def read_table(folder: str | Path, name: str, symbol: str | None = None):
    """The files under ``folder`` (a table folder) as one pyarrow Table with ``symbol``,
    sorted by time; RecordingError when a file cannot be read."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(str(folder), format="parquet", exclude_invalid_files=False,
                             partitioning=ds.partitioning(pa.schema([("date", pa.string()), ("symbol", pa.string())]), flavor="hive"))
        filt = (pc.field("symbol") == symbol) if symbol is not None else None
        table = dataset.to_table(filter=filt)
    except (pa.ArrowException, OSError) as e:
        raise RecordingError(f"{folder}: not a readable Parquet table: {type(e).__name__}: {e}") from None
    want = _schema(name, with_symbol=True)
    missing = [f.name for f in want if f.name not in table.column_names]
    if missing:
        raise RecordingError(f"{folder}: not a {name} table (missing {', '.join(missing)})")
    table = table.select(want.names)
    keys = [("ts", "ascending")] + ([("seq", "ascending")] if "seq" in want.names else [])
    return table.sort_by(keys)


# ----------------------------------------------------------------------------- meta.json


def table_counts(path: str | Path) -> tuple[dict[str, int], list[str]]:
    """Rows per table (from the Parquet footers: nothing is decoded) and the symbols."""
    import pyarrow.parquet as pq

    counts, symbols = {}, set()
    for name in TABLES:
        n = 0
        folder = Path(path) / "parquet" / name
        for f in folder.glob("date=*/symbol=*/part-*.parquet") if folder.is_dir() else ():
            try:
                n += pq.ParquetFile(f).metadata.num_rows
            except (OSError, ValueError) as e:
                raise RecordingError(f"{f}: not a readable Parquet file: {e}") from None
            symbols.add(f.parent.name.split("=", 1)[1])
        counts[name] = n
    return counts, sorted(symbols)


def write_meta(path: str | Path, *, started: str, closed: str | None) -> dict:
    """Write ``meta.json`` of the recording at ``path`` from what its Parquet files hold:
    ``{"format", "started", "symbols", "counts", "closed"}`` (``closed``: None while a recorder
    still writes it).  Written to a temporary file and renamed: a reader sees the old or the new."""
    counts, symbols = table_counts(path)
    meta = {"format": META_FORMAT, "started": started, "symbols": symbols, "counts": counts, "closed": closed}
    out = Path(path) / "meta.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, out)
    return meta


def read_meta(path: str | Path) -> dict | None:
    """``meta.json`` of a recording, None when it has none or it does not parse."""
    try:
        meta = json.loads((Path(path) / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == META_FORMAT else None


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
    # the symbols as codes (Arrow's dictionary encoding, in C): comparing half a million
    # Python strings, as np.unique of them did, was most of the read
    sym = table.column("symbol").cast(pa.string()).combine_chunks()
    if sym.null_count:
        raise RecordingError(f"{target}: {sym.null_count} ticks without a symbol")
    enc = sym.dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    cols = {c: table.column(c).to_numpy() for c in TICK_COLUMNS}
    out = {}
    for k, s in sorted(enumerate(enc.dictionary.to_pylist()), key=lambda e: e[1]):
        sel = codes == k
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
