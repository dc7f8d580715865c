"""RecordTableModel: changed rows only, inserts, bounded blotters, CSV (offscreen Qt)."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import pytest

from workers.protocol import Side
from app.models import columns as F
from app.models.columns import Column, attr
from app.models.table import RawRole, RecordTableModel
from app.models.tables import FILL_COLUMNS, MARKET_COLUMNS, WORKER_COLUMNS
from app.state import FillRow, Quote

COLS = (Column("k", "Key", attr("k")), Column("v", "Value", attr("v"), F.price, "r"))


@dataclass
class Row:
    k: str
    v: float


@pytest.fixture
def model(qapp):
    return RecordTableModel(COLS, key=lambda r: r.k)


def spy(model):
    events = []
    model.dataChanged.connect(lambda a, b, *_: events.append(("changed", a.row(), b.row())))
    model.rowsInserted.connect(lambda _p, a, b: events.append(("inserted", a, b)))
    model.rowsRemoved.connect(lambda _p, a, b: events.append(("removed", a, b)))
    return events


def test_changed_rows_only_and_adjacent_rows_merged(model):
    model.upsert([Row(c, 1.0) for c in "abcdef"])
    ev = spy(model)
    model.upsert([Row("b", 2.0), Row("c", 3.0), Row("f", 4.0)])
    assert ev == [("changed", 1, 2), ("changed", 5, 5)]
    assert model.index(2, 1).data() == "3.00" and model.index(5, 1).data(RawRole) == 4.0


def test_new_rows_are_inserted_not_reset(model):
    ev = spy(model)
    model.upsert([Row("a", 1.0)])
    model.upsert([Row("b", 1.0), Row("a", 5.0), Row("c", 1.0)])
    assert ev == [("inserted", 0, 0), ("changed", 0, 0), ("inserted", 1, 2)]
    assert model.keys() == ["a", "b", "c"]


def test_newest_first_and_bounded(qapp):
    m = RecordTableModel(COLS, key=lambda r: r.k, newest_first=True, max_rows=3)
    ev = spy(m)
    m.upsert([Row("a", 1), Row("b", 2)])
    m.upsert([Row("c", 3), Row("d", 4)])
    assert m.keys() == ["d", "c", "b"]
    assert ev == [("inserted", 0, 1), ("inserted", 0, 1), ("removed", 3, 3)]
    ev.clear()
    m.upsert([Row("c", 30)])
    assert ev == [("changed", 1, 1)] and m.row_for("c") == 1 and m.row_at(1).v == 30


def test_remove_keeps_keys_consistent(model):
    model.upsert([Row(c, 1.0) for c in "abcd"])
    assert model.remove(["b", "zz"]) == 1
    assert model.keys() == ["a", "c", "d"] and model.row_for("d") == 2
    model.upsert([Row("d", 9.0)])
    assert model.row_at(2).v == 9.0


@pytest.mark.parametrize("newest_first", [False, True])
def test_remove_many_in_runs_after_trimming(qapp, newest_first):
    """Many rows at once (a market watch dropping replaced symbols): one remove per run of
    adjacent rows, the numbering right afterwards, also with a running base from trimming."""
    m = RecordTableModel(COLS, key=lambda r: r.k, newest_first=newest_first, max_rows=8)
    m.upsert([Row(c, 1.0) for c in "abcdefghij"])  # a and b trimmed: base 2
    ev = spy(m)
    assert m.remove(["d", "e", "f", "i", "zz", "d"]) == 4
    want = ["c", "g", "h", "j"]
    assert m.keys() == (want[::-1] if newest_first else want)
    assert len(ev) == 2 and all(kind == "removed" for kind, *_ in ev)
    assert sorted(b - a + 1 for _, a, b in ev) == [1, 3]
    for k in want:
        assert m.row_at(m.row_for(k)).k == k
    m.upsert([Row("k", 2.0), Row("g", 7.0)])
    assert m.row_at(m.row_for("g")).v == 7.0 and m.row_at(m.row_for("k")).k == "k"


def test_csv_has_raw_values(model, tmp_path):
    model.upsert([Row("a", 1234.5), Row("b", 2.0)])
    p = tmp_path / "t.csv"
    assert model.write_csv(str(p)) == 2
    rows = list(csv.reader(p.open()))
    assert rows == [["k", "v"], ["a", "1234.5"], ["b", "2.0"]]


def test_declared_columns_render():
    q = Quote("AAPL")
    q.last, q.ref, q.bid, q.ask, q.volume, q.ts = 101.0, 100.0, 100.99, 101.01, 12345, 1_700_000_000_000_000_000
    texts = {c.key: c.text(q) for c in MARKET_COLUMNS}
    assert texts["last"] == "101.00" and texts["change"] == "+1.00" and texts["change_pct"] == "+1.00%"
    assert texts["volume"] == "12,345" and len(texts["ts"]) == 12
    tones = {c.key: c.tone(q) for c in MARKET_COLUMNS if c.tone}
    assert tones["last"] == "up"
    f = FillRow("F1", "c", "O", "MSFT", Side.SELL, 10, 99.5, 1_700_000_000_000_000_000, "manual", latency_us=1500.0)
    exported = {c.key: c.export(f) for c in FILL_COLUMNS}
    assert exported["side"] == "sell" and exported["value"] == 995.0 and exported["ts"].startswith("2023-11-14T22:13:20")
    assert F.micros(1500.0) == "1,500 µs" and F.micros(25_000) == "25.0 ms"


def test_worker_columns_read_supervisor_state():
    from workers.supervisor import WorkerSpec, WorkerState

    w = WorkerState(spec=WorkerSpec("sr", "strategy"), pid=42, state="running", restarts=2)
    w.stats = {"counters": {"ticks": 100, "signals_dropped": 3, "decode_errors": 1},
               "latency": {"tick_to_strategy": {"n": 5, "p50_us": 1200.0, "p99_us": 4000.0, "p999_us": 5000.0, "max_us": 6000.0}},
               "gauges": {"rss": 50 * 2**20}}
    w.rates = {"ticks": 40.0, "signals": 1.0, "levels": 0.5}
    texts = {c.key: c.text(w) for c in WORKER_COLUMNS}
    assert texts["pid"] == "42" and texts["state"] == "RUNNING" and texts["restarts"] == "2"
    assert texts["in"] == "40.0" and texts["out"] == "1.5" and texts["drops"] == "3" and texts["errors"] == "1"
    assert texts["latency"] == "tick_to_strategy 1.20/4.00 ms" and texts["rss"] == "50 MB"
    # the recorder's In/s is the frames it took (it was 0 while it recorded 80 ticks/s)
    rec = WorkerState(spec=WorkerSpec("recorder", "recorder"), pid=43, state="running")
    rec.rates = {"frames": 21.0, "ticks": 80.0, "bytes": 9000.0}
    texts = {c.key: c.text(rec) for c in WORKER_COLUMNS}
    assert texts["in"] == "21.0" and texts["out"] == "0"


def test_tick_to_fill_is_one_unit_for_every_row():
    """The Tick->Fill column showed "1,500 µs" in one row and "25.0 ms" in the next: every
    row is now in the one unit its header names, so the column reads down and compares."""
    col = next(c for c in FILL_COLUMNS if c.key == "latency_us")
    assert "ms" in col.title
    rows = [FillRow(f"F{i}", "c", "O", "MSFT", Side.BUY, 1, 99.5, 1_700_000_000_000_000_000, "manual", latency_us=us)
            for i, us in enumerate((850.0, 1500.0, 9_999.0, 25_000.0, 1_234_567.0))]
    texts = [col.text(r) for r in rows]
    assert texts == ["0.85", "1.50", "10.00", "25.00", "1,234.57"]
    assert all("µs" not in t and "ms" not in t for t in texts)  # the unit is in the header, once
    # a fill from the exchange's history has no latency measured here: empty, not "0.00"
    assert col.text(FillRow("H", "c", "O", "MSFT", Side.BUY, 1, 99.5, 1, "manual")) == ""
    # sorting and CSV stay on the raw microseconds (the key says the unit)
    assert col.get(rows[3]) == 25_000.0 and col.export(rows[3]) == 25_000.0


def test_drops_leave_out_levels_pushed_again_later():
    """A strategy's Levels push before the executor's PULL is up fails and is sent again later:
    it is not a lost message, so a clean start shows Drops 0 (muted), not amber. Messages lost
    for good still count: a dropped signal, ticks missed in gaps, an exchange's dropped replies
    once (it counts them in ``dropped`` and again in ``reply_dropped``)."""
    from workers.supervisor import WorkerSpec, WorkerState

    drops = next(c for c in WORKER_COLUMNS if c.key == "drops")
    w = WorkerState(spec=WorkerSpec("sr", "strategy"), pid=42, state="running")
    w.stats = {"counters": {"ticks": 100, "levels": 4, "levels_dropped": 3}}
    assert drops.text(w) == "0" and drops.tone(w) == "muted"
    w.stats = {"counters": {"levels_dropped": 3, "signals_dropped": 1, "ticks_missed": 2}}
    w.carried = {"signals_dropped": 1}  # an earlier incarnation's losses still count
    assert drops.text(w) == "4" and drops.tone(w) == "warn"
    assert "levels_dropped" not in drops.tip(w) and "signals_dropped: 2" in drops.tip(w)
    ex = WorkerState(spec=WorkerSpec("exchange", "exchange"), pid=43, state="running")
    ex.stats = {"counters": {"dropped": 5, "reply_dropped": 2, "requests": 50}}
    assert drops.text(ex) == "5"
