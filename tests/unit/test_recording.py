"""The recording reader/writer (workers/recording.py), the raw log of the recorder and the
`main.py data` CLI: what a backtest or a replay is fed must be every tick, in time order, or a
RecordingError -- never half-trusted data."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from workers import protocol as P
from workers.recorder import cli
from workers.recorder.worker import read_log, roll_log
from workers.recording import TICK_COLUMNS, RecordingError, open_recording, write_ticks

NS = 10**9
DAY = 86_400 * NS
T0 = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z


def _cols(n: int, t0: int, step: int, price: float = 100.0) -> dict[str, np.ndarray]:
    last = price + np.arange(n) * 0.01
    return {
        "seq": np.arange(1, n + 1), "ts": t0 + np.arange(n) * step, "last": last,
        "bid": last - 0.01, "ask": last + 0.01,
        "bid_size": np.full(n, 100), "ask_size": np.full(n, 200), "volume": np.arange(n) * 10,
    }


def _record(tmp_path, symbols=("AAA", "BBB"), n=1000, step=NS):
    root = tmp_path / "rec"
    for k, s in enumerate(symbols):
        # offset per symbol: the streams interleave, and the last ones cross midnight
        write_ticks(root / "parquet" / "ticks", s, _cols(n, T0 + DAY - n // 2 * step + k * 7, step, 100.0 + k))
    return root


def test_round_trip_keeps_every_tick_and_column(tmp_path):
    root = _record(tmp_path)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet")) == [
        f"parquet/ticks/date={d}/symbol={s}/part-0.parquet"
        for d in ("2026-01-01", "2026-01-02") for s in ("AAA", "BBB")
    ]
    rec = open_recording(root)
    assert rec.symbols == ("AAA", "BBB") and rec.n_ticks == 2000
    want = _cols(1000, T0 + DAY - 500 * NS + 7, NS, 101.0)
    got = rec.tick_columns("BBB")
    for c in TICK_COLUMNS:
        np.testing.assert_array_equal(got[c], want[c])
        assert got[c].dtype == (np.float64 if c in ("last", "bid", "ask") else np.int64)
    assert rec.first_ts == T0 + DAY - 500 * NS and rec.last_ts == int(want["ts"][-1])


def test_events_time_ordered_across_symbols_in_runs_of_one_symbol(tmp_path):
    rec = open_recording(_record(tmp_path, symbols=("AAA", "BBB", "CCC"), n=600))
    seen = {s: [] for s in rec.symbols}
    last_ts = None
    for kind, sym, rows in rec.events():
        assert kind == "ticks" and 0 < len(rows) <= 256
        for r in rows:
            assert last_ts is None or r[1] >= last_ts
            last_ts = r[1]
            seen[sym].append(r[0])
    assert all(v == list(range(1, 601)) for v in seen.values())
    start = T0 + DAY
    assert all(r[1] >= start for _, _, rows in rec.events(start_ts=start) for r in rows)


def test_a_truncated_parquet_file_is_an_error_naming_it(tmp_path):
    root = _record(tmp_path)
    victim = sorted(root.rglob("*.parquet"))[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordingError, match="not a readable Parquet recording"):
        open_recording(root)
    victim.write_bytes(b"\0" * 64)
    with pytest.raises(RecordingError):
        open_recording(root)


def test_rows_that_cannot_be_trusted_are_refused(tmp_path):
    bad = _cols(10, T0, NS)
    bad["bid"][3] = bad["ask"][3] + 1
    with pytest.raises(RecordingError, match="bid above ask"):
        write_ticks(tmp_path / "t", "AAA", bad)
    assert not list(tmp_path.rglob("*.parquet"))


def test_an_outside_parquet_file_is_split_by_symbol_and_rows_without_one_are_refused(tmp_path):
    """One file holding every symbol (as another tool writes it, no partitions): each symbol's
    ticks apart and in time order; a tick with no symbol is refused, not filed somewhere."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    a, b = _cols(5, T0, NS, 10.0), _cols(5, T0 + 1, NS, 20.0)
    order = np.argsort(np.concatenate([a["ts"], b["ts"]]))[::-1]  # newest first: the reader sorts
    both = {c: np.concatenate([a[c], b[c]])[order] for c in TICK_COLUMNS}
    syms = np.array(["MSFT"] * 5 + ["AAPL"] * 5, dtype=object)[order]
    f = tmp_path / "one.parquet"
    pq.write_table(pa.table({"symbol": syms.tolist(), **both}), f)
    rec = open_recording(f)
    assert rec.symbols == ("AAPL", "MSFT")
    np.testing.assert_array_equal(rec.tick_columns("AAPL")["last"], b["last"])
    np.testing.assert_array_equal(rec.tick_columns("MSFT")["ts"], a["ts"])
    syms[3] = None
    pq.write_table(pa.table({"symbol": syms.tolist(), **both}), f)
    with pytest.raises(RecordingError, match="1 ticks without a symbol"):
        open_recording(f)


def test_tick_csv_with_a_column_mapping(tmp_path):
    f = tmp_path / "their.csv"
    f.write_text("Time,Sym,Px,B,A\n"
                 "2026-01-02T14:30:00Z,xyz,10.5,10.4,10.6\n"
                 "2026-01-02T14:30:01Z,xyz,10.6,10.5,10.7\n"
                 "2026-01-02T14:30:01Z,abc,20.0,19.9,20.1\n")
    with pytest.raises(RecordingError, match="needs a time and a price"):
        open_recording(f)
    rec = open_recording(f, mapping={"ts": "Time", "symbol": "Sym", "last": "Px", "bid": "B", "ask": "A"})
    assert rec.symbols == ("ABC", "XYZ") and rec.n_ticks == 3
    x = rec.tick_columns("XYZ")
    assert x["ts"].tolist() == [T0 + DAY + 14 * 3600 * NS + 1800 * NS, T0 + DAY + 14 * 3600 * NS + 1801 * NS]
    assert x["bid"].tolist() == [10.4, 10.5] and x["seq"].tolist() == [1, 2]
    with pytest.raises(RecordingError, match="no column 'Nope'"):
        open_recording(f, mapping={"ts": "Nope", "last": "Px"})


def test_daily_ohlcv_csv_becomes_market_time_ticks(tmp_path):
    f = tmp_path / "bars.csv"
    f.write_text("date,symbol,open,high,low,close,volume\n"
                 "2026-01-02,AAA,10,11,9,10.5,1000\n2026-01-02,BBB,20,21,19,20.5,2000\n"
                 "2026-01-05,AAA,10.5,12,10,11,1500\n2026-01-05,BBB,20.5,22,20,21,2500\n")
    rec = open_recording(f)
    assert rec.symbols == ("AAA", "BBB") and rec.n_ticks > 4
    a = rec.tick_columns("AAA")
    days = sorted(set((a["ts"] // DAY).tolist()))
    assert days == [(T0 + DAY) // DAY, (T0 + 4 * DAY) // DAY]
    assert np.all(np.diff(a["ts"]) > 0) and np.all((a["last"] >= 9) & (a["last"] <= 12))


def test_raw_log_with_a_torn_last_record_rolls_what_is_whole(tmp_path):
    rows = [(i, T0 + i * NS, 10.0, 9.9, 10.1, 1, 1, i) for i in range(1, 6)]
    frame = P.encode_ticks("AAA", rows)
    log = tmp_path / "r" / "raw-0.log"
    log.parent.mkdir()
    whole = struct.pack("<I", len(frame)) + frame
    log.write_bytes(whole + whole[: len(whole) - 3])
    frames, torn = read_log(log)
    assert len(frames) == 1 and torn
    counts, bad, torn = roll_log(log, part=0)
    assert (counts["ticks"], bad, torn) == (5, 0, True) and not log.exists()
    assert open_recording(tmp_path / "r").tick_columns("AAA")["seq"].tolist() == [1, 2, 3, 4, 5]


def test_data_cli_import_list_export(tmp_path, capsys):
    f = tmp_path / "t.csv"
    f.write_text("ts,last\n1767366000,10\n1767366001,10.5\n")
    d = str(tmp_path / "data")
    assert cli.main(["--data-dir", d, "import", str(f), "--out", "mine", "--symbol", "q"]) == 0
    assert cli.main(["--data-dir", d, "list"]) == 0
    out = capsys.readouterr().out
    assert "mine" in out and "Q" in out
    csv_out = tmp_path / "o.csv"
    assert cli.main(["--data-dir", d, "export", "mine", "--format", "csv", "--out", str(csv_out)]) == 0
    assert csv_out.read_text().splitlines()[1].startswith("Q,1,1767366000000000000,10.0")
    pq_out = tmp_path / "o"
    assert cli.main(["--data-dir", d, "export", "mine", "--format", "parquet", "--out", str(pq_out)]) == 0
    assert open_recording(pq_out).n_ticks == 2


def test_events_cost_per_row_is_small():
    """Not a speed assertion (bench/ measures): the fast path stays vectorised, i.e. rows come
    out as plain tuples of Python scalars, not numpy or pyarrow objects."""
    from pathlib import Path

    from workers.recording import Recording

    rec = Recording(Path("mem"), {"AAA": _cols(300, T0, NS)})
    rows = next(iter(rec.events()))[2]
    assert type(rows[0]) is tuple and type(rows[0][1]) is int and type(rows[0][2]) is float


# ----------------------------------------------------------------------------- every table


def _order(seq: int, ts: int, status="new", **kw) -> P.OrderUpdate:
    return P.OrderUpdate(client_order_id="c1", order_id="O1", symbol="AAA", side="buy", qty=100, filled_qty=kw.pop("filled", 0),
                         avg_price=0.0, status=status, ts=ts, seq=seq, epoch=7, source="strategy.sr", cause_ts=ts - 5,
                         order_type="limit", limit_price=10.0, **kw)


def _mixed_log(folder):
    """A raw log as the recorder writes it: ticks, depth, order updates, a fill and a signal
    decision, all in one log (their topics tell them apart)."""
    t = T0 + 10 * NS
    frames = [
        P.encode_ticks("AAA", [(1, t, 10.0, 9.9, 10.1, 5, 6, 1), (2, t + 1 * NS, 10.1, 10.0, 10.2, 5, 6, 2)]),
        P.pub(P.Depth("AAA", 1, t + 1 * NS, [(10.0, 5), (9.9, 50)], [(10.2, 6), (10.3, 60)])),
        P.encode_ticks("AAA", [(3, t + 2 * NS, 10.2, 10.1, 10.3, 5, 6, 3), (4, t + 3 * NS, 10.3, 10.2, 10.4, 5, 6, 4)]),
        P.pub(P.Depth("AAA", 2, t + 2 * NS, [(10.1, 5)], [(10.3, 6)])),
        P.encode_ticks("BBB", [(1, t + 2 * NS, 20.0, 19.9, 20.1, 1, 1, 1)]),
        P.pub(P.SignalDecision(signal=P.Signal(id="s1", strategy="sr", symbol="AAA", side="buy", qty=100, price=10.1, ts=t + 2 * NS,
                                               cause_ts=t + 1 * NS, reason="breakout"),
                               accepted=True, ts=t + 2 * NS + 1, client_order_id="c1")),
        P.pub(_order(1, t + 2 * NS + 2)),
        P.pub(P.Fill(fill_id="F1", client_order_id="c1", order_id="O1", symbol="AAA", side="buy", qty=100, price=10.05,
                     ts=t + 2 * NS + 3, seq=2, epoch=7, source="strategy.sr")),
        P.pub(_order(3, t + 2 * NS + 3, status="filled", filled=100, stop_price=None)),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "raw-0.log"
    log.write_bytes(b"".join(struct.pack("<I", len(f)) + f for f in frames))
    return log, frames


def test_a_raw_log_of_every_stream_rolls_into_its_tables(tmp_path):
    log, frames = _mixed_log(tmp_path / "rec")
    counts, bad, torn = roll_log(log, part=0)
    assert counts == {"ticks": 5, "depth": 2, "orders": 2, "fills": 1, "signals": 1} and (bad, torn) == (0, False)
    rec = open_recording(tmp_path / "rec")
    d = rec.table("depth", "AAA").to_pylist()
    assert [r["seq"] for r in d] == [1, 2]
    assert d[0]["bid_px"] == [10.0, 9.9] and d[0]["bid_sz"] == [5, 50] and d[0]["ask_px"] == [10.2, 10.3] and d[0]["ask_sz"] == [6, 60]
    o = rec.table("orders").to_pylist()
    assert [(r["seq"], r["status"], r["filled_qty"]) for r in o] == [(1, "new", 0), (3, "filled", 100)]
    # every wire field of order_update is a column, with its value
    assert o[0]["limit_price"] == 10.0 and o[0]["stop_price"] is None and o[0]["order_type"] == "limit" and o[0]["epoch"] == 7
    assert {f.name for f in P.fields_of(P.OrderUpdate)} <= set(rec.table("orders").column_names)
    f = rec.table("fills").to_pylist()
    assert [(r["fill_id"], r["symbol"], r["qty"], r["price"], r["seq"]) for r in f] == [("F1", "AAA", 100, 10.05, 2)]
    s = rec.table("signals").to_pylist()
    assert [(r["id"], r["symbol"], r["side"], r["accepted"], r["client_order_id"], r["reason"]) for r in s] == [("s1", "AAA", "buy", True, "c1", "breakout")]
    assert rec.table("fills", "BBB").num_rows == 0 and rec.table("ticks", "BBB").num_rows == 1
    with pytest.raises(RecordingError, match="no table"):
        rec.table("nope")


def test_events_interleave_depth_with_ticks_in_time_order(tmp_path):
    log, _ = _mixed_log(tmp_path / "rec")
    roll_log(log, part=0)
    rec = open_recording(tmp_path / "rec")
    seq = []
    for kind, sym, payload in rec.events(kinds=("ticks", "depth")):
        if kind == "depth":
            assert isinstance(payload, P.Depth)
            seq.append(("depth", sym, payload.seq))
        else:
            seq.extend(("tick", sym, r[0]) for r in payload)
    # a depth after the ticks of its own ts (its best levels are that tick), before later ones
    assert seq == [("tick", "AAA", 1), ("tick", "AAA", 2), ("depth", "AAA", 1), ("tick", "AAA", 3), ("tick", "BBB", 1),
                   ("depth", "AAA", 2), ("tick", "AAA", 4)]
    d1 = next(p for k, _, p in rec.events(kinds=("ticks", "depth")) if k == "depth")
    assert d1.bids == [(10.0, 5), (9.9, 50)] and d1.asks == [(10.2, 6), (10.3, 60)]
    # the default is ticks only, as before; depth alone; start_ts applies to both
    assert all(k == "ticks" for k, _, _ in rec.events())
    assert [p.seq for _, _, p in rec.events(kinds=("depth",))] == [1, 2]
    late = list(rec.events(kinds=("ticks", "depth"), start_ts=T0 + 12 * NS))
    assert [k for k, _, _ in late] == ["ticks", "ticks", "depth", "ticks"]
    # only() keeps the depth of its symbols only
    assert [k for k, _, _ in rec.only(["BBB"]).events(kinds=("ticks", "depth"))] == ["ticks"]


def test_a_log_rolled_twice_is_not_doubled_and_meta_counts_what_is_there(tmp_path):
    from workers.recording import read_meta, write_meta

    log, _ = _mixed_log(tmp_path / "rec")
    data = log.read_bytes()
    roll_log(log, part=0)
    log.write_bytes(data)  # a kill after its Parquet files, before its deletion
    roll_log(log, part=0)
    rec = open_recording(tmp_path / "rec")
    assert rec.n_ticks == 5 and rec.table("orders").num_rows == 2
    meta = write_meta(tmp_path / "rec", started="2026-01-01T00:00:00Z", closed=None)
    assert meta == read_meta(tmp_path / "rec")
    assert meta["format"] == 1 and meta["symbols"] == ["AAA", "BBB"] and meta["closed"] is None
    assert meta["counts"] == {"ticks": 5, "depth": 2, "orders": 2, "fills": 1, "signals": 1}


def test_a_recording_without_depth_gives_ticks_and_empty_tables(tmp_path):
    rec = open_recording(_record(tmp_path, n=10))
    assert rec.table("depth").num_rows == 0 and "bid_px" in rec.table("depth").column_names
    assert [k for k, _, _ in rec.events(kinds=("ticks", "depth"))] == ["ticks"] * len(list(rec.events()))


def test_data_cli_counts_per_table_and_exports_any_table(tmp_path, capsys):
    from workers.recording import write_meta

    d = tmp_path / "data"
    folder = d / "recordings" / "20260101T000000-1"
    log, _ = _mixed_log(folder)
    roll_log(log, part=0)
    write_meta(folder, started="2026-01-01T00:00:00Z", closed="2026-01-01T00:01:00Z")
    assert cli.main(["--data-dir", str(d), "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    head, row = out[0].split(), out[1].split()
    assert [row[head.index(t)] for t in ("ticks", "depth", "orders", "fills", "signals")] == ["5", "2", "2", "1", "1"]
    c = tmp_path / "depth.csv"
    assert cli.main(["--data-dir", str(d), "export", folder.name, "--table", "depth", "--out", str(c)]) == 0
    lines = c.read_text().splitlines()
    assert lines[0].split(",")[:3] == ["symbol", "ts", "seq"] and len(lines) == 3 and "10.0;9.9" in lines[1]
    o = tmp_path / "orders"
    assert cli.main(["--data-dir", str(d), "export", folder.name, "--table", "orders", "--format", "parquet", "--out", str(o)]) == 0
    from workers.recording import read_table
    assert [r["status"] for r in read_table(o, "orders").to_pylist()] == ["new", "filled"]
    assert cli.main(["--data-dir", str(d), "export", folder.name, "--table", "fills", "--symbol", "BBB", "--out", str(tmp_path / "f.csv")]) == 0
    assert len((tmp_path / "f.csv").read_text().splitlines()) == 1
