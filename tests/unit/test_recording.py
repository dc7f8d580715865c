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
    n, bad, torn = roll_log(log, part=0)
    assert (n, bad, torn) == (5, 0, True) and not log.exists()
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
