"""Journal schema v5 / log format 4 (issue 13's order kinds): a v4 journal and its format-3 log
are upgraded and read with the new columns at their defaults; the new terms, a replace's
changes and the answered replace_order requests survive a crash and a fold."""

from __future__ import annotations

import os
import sqlite3
import struct
import zlib
from pathlib import Path

import msgpack
import pytest

from workers.exchange.client import Order
from workers.exchange.journal import _LOG_FORMAT, SCHEMA_VERSION, Account, Journal
from workers.protocol import OrderStatus, OrderType, Side, TimeInForce

#: the order columns of schema v4 / log format 3, in order (written out: this is the old layout)
V4_COLUMNS = ("client_order_id", "order_id", "symbol", "side", "qty", "filled_qty", "avg_price", "status", "ts", "reason",
              "order_type", "limit_price", "source", "cause_ts", "origin_ts", "created_ts")
V4_SCHEMA = """
CREATE TABLE orders (client_order_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
    qty INTEGER NOT NULL, filled_qty INTEGER NOT NULL, avg_price REAL NOT NULL, status TEXT NOT NULL, ts INTEGER NOT NULL,
    reason TEXT NOT NULL, order_type TEXT NOT NULL, limit_price REAL, source TEXT NOT NULL, cause_ts INTEGER NOT NULL,
    origin_ts INTEGER NOT NULL, created_ts INTEGER NOT NULL, reply BLOB);
CREATE INDEX orders_by_status ON orders(status);
CREATE TABLE fills (n INTEGER PRIMARY KEY, fill_id TEXT NOT NULL UNIQUE, client_order_id TEXT NOT NULL, order_id TEXT NOT NULL,
    symbol TEXT NOT NULL, side TEXT NOT NULL, qty INTEGER NOT NULL, price REAL NOT NULL, ts INTEGER NOT NULL,
    source TEXT NOT NULL, cause_ts INTEGER NOT NULL, origin_ts INTEGER NOT NULL);
CREATE INDEX fills_by_order ON fills(client_order_id);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE account (key TEXT PRIMARY KEY, value);
CREATE TABLE log_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO log_state VALUES ('gen', 1), ('folded', 16);
PRAGMA user_version=4;
"""


def v4_row(cid, status, reply=None, **values) -> list:
    row = dict(client_order_id=cid, order_id="O" + cid, symbol="AAA", side="buy", qty=5, filled_qty=0, avg_price=0.0,
               status=status, ts=2, reason="", order_type="limit", limit_price=95.0, source="t", cause_ts=3, origin_ts=4,
               created_ts=1)
    row.update(values)
    return [row[c] for c in V4_COLUMNS] + [reply]


def make_v4(path: Path, table_rows: list, log_records: list) -> None:
    """What the previous version (schema v4, log format 3) leaves after a SIGKILL: rows in its
    tables, and records in its log (five items each) that were never folded."""
    db = sqlite3.connect(path)
    db.executescript(V4_SCHEMA)
    db.executemany(f"INSERT INTO orders VALUES ({', '.join('?' * 17)})", table_rows)
    db.execute("INSERT INTO meta VALUES ('next_order_n', 9)")
    db.commit()
    db.close()
    body = b""
    for rec in log_records:
        payload = msgpack.packb(rec)
        body += struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    Path(f"{path}-log").write_bytes(struct.pack("<4sIQ", b"TDJL", 3, 1) + body)


def crash(j: Journal) -> None:
    """What a SIGKILL leaves: the log as written, nothing folded or checkpointed."""
    os.close(j._fd)
    j._fd = -1
    j.db.close()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "j.sqlite"


def test_a_v4_journal_with_a_format_3_log_is_upgraded_and_reads_the_new_columns_at_their_defaults(path):
    make_v4(path, [v4_row("rest", "new", b"\xa1"), v4_row("done", "filled", b"\xa2", filled_qty=5, avg_price=94.0)],
            [[[v4_row("logged", "new", b"\xa3", side="sell", limit_price=105.0)], [], [], {"next_order_n": 10},
              {"kill_switch": True, "kill_reason": "old", "kill_ts": 7}]])
    j = Journal(path)
    assert j.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    columns = {r[1] for r in j.db.execute("PRAGMA table_info(orders)")}
    assert {"tif", "stop_price", "trail_amount", "trail_pct", "take_profit_price", "stop_loss_price", "take_profit_tif",
            "stop_loss_tif", "triggered", "emulated", "parent_id", "oco_group"} <= columns
    rec = j.load()
    orders = {o.client_order_id: o for o in rec.orders}
    assert list(orders) == ["rest", "done", "logged"]
    for o in orders.values():
        # read as what it was: an order that lived until filled or cancelled (gtc); a resend
        # without a tif still matches it (the gateway asks legacy_before)
        assert o.tif is TimeInForce.GTC
        assert (o.stop_price, o.trail_amount, o.trail_pct, o.take_profit_price, o.stop_loss_price) == (None,) * 5
        assert (o.take_profit_tif, o.stop_loss_tif) == (TimeInForce.GTC, TimeInForce.GTC)
        assert (o.triggered, o.emulated, o.parent_id, o.oco_group) == (False, False, "", "")
    assert (orders["logged"].side, orders["logged"].limit_price, orders["done"].avg_price) == (Side.SELL, 105.0, 94.0)
    assert [j.reply_for(c) for c in orders] == [b"\xa1", b"\xa2", b"\xa3"]
    since = j.legacy_before
    assert since > max(o.created_ts for o in orders.values())
    assert rec.state["next_order_n"] == 10 and rec.account == Account(kill_reason="old", kill_ts=7, kill_switch=True)
    # the old log is never appended to: the next generation, in today's format
    magic, fmt, gen = struct.unpack_from("<4sIQ", Path(f"{path}-log").read_bytes())
    assert (fmt, gen) == (_LOG_FORMAT, 2)
    j.close()
    # and a second open of the upgraded journal changes nothing
    j = Journal(path)
    assert [(o.client_order_id, o.tif) for o in j.load().orders] == [(c, TimeInForce.GTC) for c in orders]
    assert j.legacy_before == since
    j.close()


def held_stop(cid="stop", **kw) -> Order:
    values = dict(client_order_id=cid, order_id="O5", symbol="AAA", side=Side.SELL, qty=10, status=OrderStatus.NEW,
                  order_type=OrderType.STOP_LIMIT, stop_price=90.0, limit_price=89.5, tif=TimeInForce.GTC, ts=5, created_ts=5,
                  emulated=True, oco_group="g1")
    values.update(kw)
    return Order(**values)


def test_the_order_kinds_terms_and_a_replace_survive_a_crash_and_a_fold(path):
    j = Journal(path)
    parent = Order(client_order_id="P", order_id="O1", symbol="AAA", side=Side.BUY, qty=10, filled_qty=10, avg_price=100.0,
                   status=OrderStatus.FILLED, take_profit_price=110.0, stop_loss_price=90.0, stop_loss_tif=TimeInForce.DAY,
                   created_ts=1, ts=2)
    child = held_stop("P.sl", order_type=OrderType.STOP, limit_price=None, parent_id="P", oco_group="P", tif=TimeInForce.DAY)
    trail = held_stop("T", order_type=OrderType.TRAILING_STOP, stop_price=None, limit_price=None, trail_pct=1.5, oco_group="")
    stop = held_stop()
    j.write([parent, child, trail, stop], [], {"P": b"\xb1", "T": b"\xb2", "stop": b"\xb3"}, {})
    crash(j)
    j = Journal(path)
    got = {o.client_order_id: o for o in j.load().orders}
    assert got == {"P": parent, "P.sl": child, "T": trail, "stop": stop}
    # a replace changes terms (qty, prices), not only the state; the row is updated once folded
    stop.qty, stop.stop_price, stop.limit_price, stop.triggered, stop.ts = 12, 91.0, 90.5, True, 9
    j.write([stop])
    j.fold()
    crash(j)
    j = Journal(path)
    (again,) = [o for o in j.load().orders if o.client_order_id == "stop"]
    assert again == stop and j.reply_for("stop") == b"\xb3"
    assert again.created_ts == 5  # the creation time is the first row's
    j.close()


def test_answered_requests_keep_their_terms_and_first_reply_across_a_crash_and_a_fold(path):
    j = Journal(path)
    j.write(requests={"R1": (b"terms-1", b"reply-1")})
    j.write(requests={"R1": (b"terms-x", b"reply-x"), "R2": (b"terms-2", b"reply-2")})  # the first one stays
    assert j.request_for("R1") == (b"terms-1", b"reply-1")
    crash(j)
    j = Journal(path)  # replayed from the log, and folded
    assert j.request_for("R1") == (b"terms-1", b"reply-1") and j.request_for("R2") == (b"terms-2", b"reply-2")
    assert j.load().requests == {"R1": b"terms-1", "R2": b"terms-2"}
    j.write(requests={"R2": (b"terms-y", b"reply-y"), "R3": (b"terms-3", b"reply-3")})
    assert j.request_for("R2") == (b"terms-2", b"reply-2")
    assert j.load(fold=False).requests == {"R1": b"terms-1", "R2": b"terms-2", "R3": b"terms-3"}
    j.close()
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT client_order_id, terms, reply FROM requests ORDER BY client_order_id").fetchall() == [
        ("R1", b"terms-1", b"reply-1"), ("R2", b"terms-2", b"reply-2"), ("R3", b"terms-3", b"reply-3")]
    raw.close()
    assert Journal(path).request_for("nope") is None


def test_a_gateway_on_an_upgraded_v4_journal_works_its_resting_orders(tmp_path):
    """The upgrade end to end: the gateway opens a v4 journal, its resting limit is in the
    book (gtc: orders before v5 did not expire) and fills on the next crossing tick;
    a resend of the old request (no tif) gets the old reply byte for byte."""
    from tests.unit.test_gateway_order_kinds import InProc, lim

    make_v4(tmp_path / "g.sqlite", [v4_row("rest", "new", b"\xa5")], [])
    g = InProc(tmp_path)
    try:
        assert g.order("rest")["tif"] == "gtc" and g.order("rest")["status"] == "new"
        g.tick(last=94.0, bid=93.0, ask=94.0)
        o = g.order("rest")
        assert (o["status"], o["filled_qty"], o["avg_price"]) == ("filled", 5, 94.0)
        assert g.raw(lim("rest", Side.BUY, 5, 95.0)) == b"\xa5"
    finally:
        g.close()


def test_orders_of_a_v4_journal_never_expire_as_day_orders_and_their_resends_still_match(tmp_path):
    """Before v5 an order lived until it filled or was cancelled: the upgrade must not turn a
    resting order of last week into a DAY order that expires at the gateway's first timer
    tick.  Such orders read as gtc (what they were); a resend of the old request (no tif:
    day today) is still that order and gets its stored reply.  An order sent after the
    upgrade without a tif is a DAY order as ever."""
    import time

    from tests.unit.test_gateway_order_kinds import InProc, lim
    from workers import protocol as P

    make_v4(tmp_path / "g.sqlite", [v4_row("rest", "new", b"\xa5")],
            [[[v4_row("logged", "new", b"\xa6", side="sell", limit_price=105.0)], [], [], {"next_order_n": 10}, {}]])
    g = InProc(tmp_path)
    try:
        g.tick(last=100.0, bid=99.0, ask=101.0)
        g.gw.on_timer(time.monotonic())  # the first timer tick: a DAY order created in 1970 would expire here
        for cid in ("rest", "logged"):
            o = g.order(cid)
            assert (o["status"], o["tif"]) == ("new", "gtc"), o
        assert g.raw(lim("rest", Side.BUY, 5, 95.0)) == b"\xa5"
        assert g.raw(lim("logged", Side.SELL, 5, 105.0)) == b"\xa6"
        assert "different order" in P.unpack_map(g.raw(lim("rest", Side.BUY, 5, 95.0, tif=TimeInForce.IOC)))["reason"]
        assert g.call(lim("new-day", Side.BUY, 1, 90.0))["ok"] and g.order("new-day")["tif"] == "day"
        g.close()
        g = InProc(tmp_path)  # the marker of what came before the upgrade is kept
        assert g.raw(lim("rest", Side.BUY, 5, 95.0)) == b"\xa5"
        assert "different order" in P.unpack_map(g.raw(lim("new-day", Side.BUY, 1, 90.0, tif=TimeInForce.GTC)))["reason"]
    finally:
        g.close()
