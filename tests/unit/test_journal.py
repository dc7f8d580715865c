"""The exchange journal: what is written comes back after a restart."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from workers import protocol as P
from workers.exchange.client import FillEvent, Order
from workers.exchange.journal import (SCHEMA_VERSION, _LOG_FORMAT, Account, Journal, JournalCorrupt, JournalError, JournalFull,
                                      remove_journal)
from workers.exchange.simulated import SimulatedExchange
from workers.protocol import OrderStatus, OrderType, Side


def tick(symbol="AAA", bid=99.0, ask=101.0, size=100) -> P.Tick:
    return P.Tick(symbol=symbol, seq=1, ts=P.now_ns(), last=100.0, bid=bid, ask=ask, bid_size=size, ask_size=size, volume=0)


def new_order(cid, side=Side.BUY, qty=10, limit=None, symbol="AAA") -> Order:
    req = P.SendOrder(
        client_order_id=cid,
        symbol=symbol,
        side=side,
        qty=qty,
        order_type=OrderType.LIMIT if limit else OrderType.MARKET,
        limit_price=limit,
        source="test",
        ts=123,
        origin_ts=100,
    )
    return Order.from_request(req, P.now_ns())


def trade(journal: Journal, ex: SimulatedExchange, o: Order) -> list:
    """What the gateway does for one order: submit, journal order + fills + reply + counters."""
    events = ex.submit(o, P.now_ns())
    fs = [e.fill for e in events if isinstance(e, FillEvent)]
    reply = P.SendOrderReply(ok=o.status is not OrderStatus.REJECTED, reason=o.reason, client_order_id=o.client_order_id,
                             status=o.status).pack()
    journal.write([o], fs, {o.client_order_id: reply}, ex.state())
    return fs


@pytest.fixture
def path(tmp_path):
    return tmp_path / "j.sqlite"


def test_orders_fills_positions_counters_and_replies_survive_reopen(path):
    j = Journal(path)
    ex = SimulatedExchange()
    ex.on_tick(tick(size=30))
    trade(j, ex, new_order("buy-1", qty=50))  # 30 fill now, 20 left working
    trade(j, ex, new_order("rest-1", Side.SELL, 5, limit=200.0))  # rests
    trade(j, ex, new_order("rej-1", symbol="ZZZ"))  # no market data -> rejected, still journaled
    # A later tick completes buy-1: a state change and a fill with no new reply.
    events = ex.on_tick(tick(ask=102.0, size=100))
    j.write([e.order for e in events if not isinstance(e, FillEvent)], [e.fill for e in events if isinstance(e, FillEvent)], {}, ex.state())
    reply_before = j.reply_for("buy-1")
    state_before = ex.state()
    j.close()

    j2 = Journal(path)  # a restart
    rec = j2.load()
    by_id = {o.client_order_id: o for o in rec.orders}
    assert [o.client_order_id for o in rec.orders] == ["buy-1", "rest-1", "rej-1"]
    assert [o.client_order_id for o in rec.open_orders] == ["rest-1"]
    b = by_id["buy-1"]
    assert (b.status, b.filled_qty, b.order_id, b.source, b.origin_ts, b.cause_ts != 0) == (OrderStatus.FILLED, 50, "O1", "test", 100, True)
    assert b.avg_price == pytest.approx((30 * 101.0 + 20 * 102.0) / 50)
    r = by_id["rest-1"]
    assert (r.order_type, r.limit_price, r.side, r.status) == (OrderType.LIMIT, 200.0, Side.SELL, OrderStatus.NEW)
    assert (by_id["rej-1"].status, by_id["rej-1"].reason) == (OrderStatus.REJECTED, "no market data for ZZZ")

    assert [(f.fill_id, f.qty) for f in rec.fills] == [("F1", 30), ("F2", 20)]
    pos = rec.positions.get("AAA")
    assert pos.qty == 50 and rec.last_fill_seq == 2
    assert rec.state == state_before

    # Stored replies are the exact bytes, before and after the restart; a reply is never
    # overwritten by a later state change of the order.
    assert j2.reply_for("buy-1") == reply_before
    assert P.unpack_map(reply_before)["status"] == "partially_filled"
    assert P.unpack_map(j2.reply_for("rej-1"))["ok"] is False
    assert j2.reply_for("nope") is None

    # The recovered exchange continues its id sequences and works the resting order.
    ex2 = SimulatedExchange()
    ex2.recover(rec.open_orders, rec.state, P.now_ns())
    late = new_order("buy-2", qty=1)
    assert trade(j2, ex2, late) == []  # no quote yet after the restart: rejected, but numbered on
    assert (late.status, late.order_id) == (OrderStatus.REJECTED, "O4")
    events = ex2.on_tick(tick(bid=201.0, ask=202.0))
    [f] = [e.fill for e in events if isinstance(e, FillEvent)]
    assert (f.fill_id, f.client_order_id, f.order_id) == ("F3", "rest-1", "O2")
    j2.close()


def one_trade(path, cid: str) -> tuple[Journal, SimulatedExchange, Order, list]:
    """A journal holding one market order filled at the default quote."""
    j = Journal(path)
    ex = SimulatedExchange()
    ex.on_tick(tick())
    o = new_order(cid)
    return j, ex, o, trade(j, ex, o)


def test_idempotent_reply_survives_restart_and_is_not_duplicated(path):
    j, ex, o, _ = one_trade(path, "dup-1")
    stored = j.reply_for("dup-1")
    # Writing the same order again (a second state change) keeps the first reply.
    j.write([o], [], {"dup-1": b"something else"}, ex.state())
    assert j.reply_for("dup-1") == stored
    j.close()
    j2 = Journal(path)
    assert j2.reply_for("dup-1") == stored
    rec = j2.load()
    assert len(rec.orders) == 1 and len(rec.fills) == 1
    j2.close()


def test_a_failed_batch_writes_nothing(path):
    j, _, _, fs = one_trade(path, "a")
    with pytest.raises(JournalError):
        j.write([new_order("b")], fs, {}, {})  # same fill number again: the batch must roll back
    rec = j.load()
    assert [x.client_order_id for x in rec.orders] == ["a"]
    j.close()


def test_wal_mode_and_sync_setting(path):
    j = Journal(path, sync="full")
    assert j.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    j.close()
    j = Journal(path)
    assert j.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    j.close()
    with pytest.raises(ValueError):
        Journal(path, sync="sometimes")


def test_second_gateway_cannot_open_a_journal_in_use(path):
    j = Journal(path)
    with pytest.raises(JournalError, match="another exchange gateway"):
        Journal(path)
    j.close()
    Journal(path).close()


def test_remove_journal(path):
    j = Journal(path)
    j.write([new_order("x")], [], {}, {})
    j.close()
    remove_journal(path)
    assert not path.exists() and not Path(f"{path}-log").exists()
    assert Journal(path).load().orders == []


def test_rejects_journals_from_a_newer_schema(path):
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(JournalError, match="schema"):
        Journal(path)


# ----------------------------------------------------------------------------- group commit


def test_gateway_group_commit_journals_a_whole_batch_in_one_transaction(tmp_path):
    """Drive the gateway in-process over inproc sockets: a burst of requests is handled as
    one batch, written in one journal transaction, and answered only after it."""
    import zmq

    from workers.config import add_common_args
    from workers.exchange.gateway import ExchangeGateway, build_parser

    parser = build_parser()
    add_common_args(parser)
    eps = [f"--{n}=inproc://{n}" for n in ("ticks", "orders", "execution", "control")]
    # --market-wait 0: the order for NONE (no tick ever) is rejected at once, not held for a tick
    gw = ExchangeGateway(parser.parse_args([*eps, "--no-control", "--market-wait", "0", "--journal", str(tmp_path / "g.sqlite")]))
    ticks = gw.ctx.socket(zmq.PUB)
    ticks.bind("inproc://ticks")
    gw.setup()
    writes = []
    real_write = gw.journal.write
    gw.journal.write = lambda *a, **k: (writes.append(1), real_write(*a, **k))[1]
    client = gw.ctx.socket(zmq.DEALER)
    client.connect("inproc://orders")
    try:
        # Market data, delivered the way the runtime would (drain the SUB).
        t = P.Tick(symbol="AAA", seq=1, ts=1, last=100.0, bid=99.0, ask=101.0, bid_size=1000, ask_size=1000, volume=0)
        for _ in range(100):
            ticks.send(P.pub(t))
            if gw.ticks.poll(20):
                break
        gw._on_ticks(gw.ticks.recv())
        assert writes == []  # no working orders: nothing to journal

        orders = [P.SendOrder(client_order_id=f"c{i}", symbol="AAA", side=Side.BUY, qty=1) for i in range(50)]
        for o in orders:
            client.send(o.pack())
        client.send(orders[0].pack())  # a resend inside the same batch
        client.send(b"\x00garbage")
        client.send(P.SendOrder(client_order_id="r", symbol="NONE", side=Side.BUY, qty=1).pack())
        assert gw.router.poll(1000)
        gw._on_requests(gw.router.recv_multipart())
        assert len(writes) == 1
        replies = [P.unpack_map(client.recv()) for _ in range(53)]
        assert [r["status"] for r in replies[:50]] == ["filled"] * 50
        assert replies[50] == replies[0]
        assert replies[51]["ok"] is False and replies[51]["type"] == "error"
        assert replies[52]["status"] == "rejected"
        c = gw.stats.counters
        assert (c["requests"], c["orders"], c["duplicates"], c["decode_errors"], c["rejects"], c["fills"]) == (53, 52, 1, 1, 1, 50)
        assert gw.stats.latency["order_journal"].count == 51
        assert gw.exec_seq == 50 * 3 + 1  # ack, fill, filled per order; one reject
        # Nothing is folded while requests keep coming; once idle, the timer folds the log.
        import time

        pending = gw.journal.pending  # the batch (and the counters written at start)
        assert pending >= 1
        gw.on_timer(time.monotonic())
        assert gw.journal.pending == pending and c["journal_folds"] == 0
        gw.on_timer(time.monotonic() + 2.0)  # idle past FOLD_IDLE: folded, not yet checkpointed
        assert gw.journal.pending == 0 and c["journal_folds"] == 1 and c["journal_checkpoints"] == 0
        gw.on_timer(time.monotonic() + 10.0)  # idle past CHECKPOINT_IDLE
        assert c["journal_checkpoints"] == 1
        assert gw.journal.db.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 51
        rec = gw.journal.load()
        assert len(rec.orders) == 51 and len(rec.fills) == 50 and rec.positions.get("AAA").qty == 50
    finally:
        client.close(0)
        ticks.close(0)
        gw.teardown()
        gw._close()


def test_gateway_rolls_a_batch_back_when_the_disk_is_full_and_resumes(tmp_path):
    """The batch that finds the disk full is not answered as done: memory goes back to the
    journal's state (positions, the book, the order records), its requests are answered
    again -- orders and cancels refused "journal: disk full", queries from what is stored --
    nothing is published, and the gateway takes orders again once the journal writes."""
    import time

    import zmq

    from workers.config import add_common_args
    from workers.exchange.gateway import DISK_FULL, ExchangeGateway, build_parser

    parser = build_parser()
    add_common_args(parser)
    eps = [f"--{n}=inproc://{n}" for n in ("ticks", "orders", "execution", "control")]
    gw = ExchangeGateway(parser.parse_args([*eps, "--no-control", "--market-wait", "0", "--journal", str(tmp_path / "g.sqlite")]))
    ticks = gw.ctx.socket(zmq.PUB)
    ticks.bind("inproc://ticks")
    gw.setup()
    client = gw.ctx.socket(zmq.DEALER)
    client.connect("inproc://orders")

    def tick(seq, ask=101.0):
        t = P.Tick(symbol="AAA", seq=seq, ts=seq, last=100.0, bid=min(99.0, ask - 1), ask=ask, bid_size=1000, ask_size=1000, volume=0)
        for _ in range(100):
            ticks.send(P.pub(t))
            if gw.ticks.poll(20):
                break
        gw._on_ticks(gw.ticks.recv())

    def batch(*msgs):
        for m in msgs:
            client.send(m.pack())
        assert gw.router.poll(1000)
        gw._on_requests(gw.router.recv_multipart())
        return [P.unpack_map(client.recv()) for _ in msgs]

    try:
        tick(1)
        rest = P.SendOrder(client_order_id="rest", symbol="AAA", side=Side.BUY, qty=5, order_type=OrderType.LIMIT, limit_price=95.0)
        (r1, r2) = batch(P.SendOrder(client_order_id="m1", symbol="AAA", side=Side.BUY, qty=10), rest)
        assert (r1["status"], r2["status"]) == ("filled", "new")
        seq = gw.exec_seq
        real_write = gw.journal.write

        def full(*a, **k):
            raise JournalFull("journal: disk full (No space left on device)")

        gw.journal.write = full
        replies = batch(P.SendOrder(client_order_id="m2", symbol="AAA", side=Side.BUY, qty=7), P.CancelOrder(client_order_id="rest"),
                        P.GetPositions(), P.GetOrder(client_order_id="m2"), P.SendOrder(client_order_id="m1", symbol="AAA", side=Side.BUY, qty=10))
        assert (replies[0]["ok"], replies[0]["reason"], replies[0]["status"]) == (False, DISK_FULL, "rejected")
        assert (replies[1]["ok"], replies[1]["reason"], replies[1]["status"]) == (False, DISK_FULL, "new")
        assert [(p["symbol"], p["qty"]) for p in replies[2]["positions"]] == [("AAA", 10)]
        assert replies[3]["ok"] is False and "unknown" in replies[3]["reason"]
        assert replies[4] == r1  # the stored reply of an earlier order
        assert gw.exec_seq == seq, "nothing of the lost batch may be published"
        assert "m2" not in gw.orders and gw.positions.qty("AAA") == 10
        # the book is the journal's: the resting order is worked as the record the gateway holds
        assert list(gw.client.working_symbols()) == ["AAA"] and gw.client.working("AAA") == [gw.working["rest"]]
        tick(2, ask=90.0)  # would fill the resting order: paused while no fill can be journaled
        assert gw.stats.counters["ticks_paused"] == 1 and gw.working["rest"].status is OrderStatus.NEW

        gw.journal.write = real_write
        gw.on_timer(time.monotonic() + 1.0)  # the probe writes: orders again
        (r,) = batch(P.SendOrder(client_order_id="m2", symbol="AAA", side=Side.BUY, qty=7))
        assert (r["ok"], r["status"]) == (True, "filled")
        tick(3, ask=90.0)
        assert gw.working == {} and gw.positions.qty("AAA") == 22
        assert gw.exec_seq > seq
        rec = gw.journal.load()
        assert {o.client_order_id: o.status for o in rec.orders} == {
            "m1": OrderStatus.FILLED, "rest": OrderStatus.FILLED, "m2": OrderStatus.FILLED}
        assert rec.positions.get("AAA").qty == 22
    finally:
        client.close(0)
        ticks.close(0)
        gw.teardown()
        gw._close()


# ----------------------------------------------------------------------------- the log and the fold


def _crash_after_writes(path, n: int) -> None:
    """A child process writes ``n`` one-order batches and dies without closing or folding."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parents[2])!r})
        from workers import protocol as P
        from workers.exchange.client import Order
        from workers.exchange.journal import Journal
        from workers.protocol import OrderStatus, Side
        j = Journal({str(path)!r})
        for i in range({n}):
            o = Order(client_order_id=f"c{{i}}", symbol="AAA", side=Side.BUY, qty=1, order_id=f"O{{i}}", status=OrderStatus.NEW)
            j.write([o], [], {{o.client_order_id: b"reply-%d" % i}}, {{"next_order_n": i + 1}})
        os._exit(0)  # no close, no fold: what a SIGKILL leaves
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_batches_left_in_the_log_by_a_crash_are_recovered_and_folded(path):
    _crash_after_writes(path, 30)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 0  # all in the log, none folded
    raw.close()
    log_size = Path(f"{path}-log").stat().st_size
    assert log_size > 30 * 20
    j = Journal(path)
    assert j.pending == 0 and j.truncated_bytes == 0  # opening replayed and folded them
    rec = j.load()
    assert [o.client_order_id for o in rec.orders] == [f"c{i}" for i in range(30)]
    assert rec.state == {"next_order_n": 30}
    assert j.reply_for("c7") == b"reply-7"
    assert j.db.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 30
    j.close()
    assert Path(f"{path}-log").stat().st_size < log_size  # a clean close folds, checkpoints, resets the log
    assert [o.client_order_id for o in Journal(path).load().orders] == [f"c{i}" for i in range(30)]


def test_a_torn_last_record_is_cut_off_and_everything_before_it_stands(path):
    _crash_after_writes(path, 5)
    log = Path(f"{path}-log")
    whole = log.read_bytes()
    log.write_bytes(whole + b"\x40\x00\x00\x00\x12\x34")  # half a record header: a crash mid-write
    j = Journal(path)
    assert j.truncated_bytes == 6
    assert [o.client_order_id for o in j.load().orders] == [f"c{i}" for i in range(5)]
    j.write([new_order("after")], [], {}, {})  # appends after the cut, readable next time
    j.close()
    assert [o.client_order_id for o in Journal(path).load().orders][-1] == "after"


def test_a_changed_byte_in_the_last_record_is_damage_not_a_torn_tail(path):
    """A whole last record with a byte changed is no torn write: a pipelined burst is one
    record, so cutting it would drop every order of the burst (the outside check's 300)."""
    _crash_after_writes(path, 3)
    log = Path(f"{path}-log")
    data = bytearray(log.read_bytes())
    data[-3] ^= 0xFF  # the last record's payload: its CRC no longer matches
    log.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="changed after it was written"):
        Journal(path)


def test_a_last_record_ending_in_unwritten_zeros_is_a_torn_tail(path):
    """Power loss kept the file's length but not the last block of the last write."""
    _crash_after_writes(path, 3)
    log = Path(f"{path}-log")
    data = bytearray(log.read_bytes())
    data[-6:] = b"\0" * 6
    log.write_bytes(bytes(data))
    j = Journal(path)
    assert j.truncated_bytes > 6
    assert [o.client_order_id for o in j.load().orders] == ["c0", "c1"]
    j.close()


def test_a_damaged_length_of_the_last_record_is_damage(path):
    """A last record whose length field grew reads as cut short, but its payload is whole."""
    import struct

    _crash_after_writes(path, 3)
    log = Path(f"{path}-log")
    data = bytearray(log.read_bytes())
    at = len(data)
    j = 16
    while j < len(data):
        at = j
        j += 8 + struct.unpack_from("<I", data, j)[0]
    data[at + 2] ^= 0x01
    log.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="length field is damaged"):
        Journal(path)


def test_the_log_restarts_after_a_checkpoint_and_a_crash_right_after_loses_nothing(path):
    j = Journal(path)
    j.write([new_order("a")], [], {"a": b"ra"}, {"next_order_n": 2})
    gen = j.gen
    j.fold()
    j.checkpoint()  # every fold synced: an empty log of the next generation
    assert j.gen == gen + 1 and Path(f"{path}-log").stat().st_size == 16
    j.write([new_order("b")], [], {"b": b"rb"}, {"next_order_n": 3})  # in the new log, not folded
    os.close(j._fd)  # "crash": no fold, no close
    j.db.close()
    j2 = Journal(path)  # log_state still names the old generation: the new log is replayed whole
    rec = j2.load()
    assert [o.client_order_id for o in rec.orders] == ["a", "b"] and rec.state == {"next_order_n": 3}
    assert (j2.reply_for("a"), j2.reply_for("b")) == (b"ra", b"rb")
    j2.close()


def _stop_without_close(j: Journal) -> None:
    """What a SIGKILL leaves: no fold, no checkpoint."""
    os.close(j._fd)
    j._fd = -1
    j.db.close()


def test_a_log_shorter_than_its_folded_offset_is_refused(path):
    """No crash leaves a log shorter than the offset its tables folded: the log was cut, and
    whatever it held past the fold is gone.  Refused, so no resend becomes a new order."""
    j = Journal(path)
    for i in range(3):
        j.write([new_order(f"x{i}")], [], {}, {})
    j.fold()  # folded (in the tables), not checkpointed: the log keeps its records
    j.write([new_order("unfolded")], [], {}, {})
    _stop_without_close(j)
    log = Path(f"{path}-log")
    log.write_bytes(log.read_bytes()[:20])
    with pytest.raises(JournalCorrupt, match="shorter than the .* bytes .* records as folded"):
        Journal(path)
    log.write_bytes(b"")  # truncated to 0: too short even for its header
    with pytest.raises(JournalCorrupt, match="0 bytes long, but .* records folding generation 1"):
        Journal(path)
    log.unlink()
    with pytest.raises(JournalCorrupt, match="is missing"):
        Journal(path)
    # refusing changed nothing: the database still opens once the log is back
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 3


def _flip(path: Path, fraction: float) -> int:
    data = bytearray(path.read_bytes())
    at = int(len(data) * fraction)
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))
    return at


def test_a_bad_record_followed_by_valid_ones_is_damage_not_a_torn_tail(path):
    _crash_after_writes(path, 300)
    log = Path(f"{path}-log")
    before = log.read_bytes()
    _flip(log, 0.3)
    with pytest.raises(JournalCorrupt, match="damaged in the middle"):
        Journal(path)
    assert log.read_bytes()[:100] == before[:100] and len(log.read_bytes()) == len(before)  # nothing cut


def test_a_damaged_length_field_is_found_too(path):
    """A flipped high byte of a record's length reads as a record running past the end of
    the file (what a torn write looks like); the valid records after it give it away."""
    import struct

    _crash_after_writes(path, 50)
    log = Path(f"{path}-log")
    data = bytearray(log.read_bytes())
    data[16 + 3] ^= 0x01  # the first record's length, high byte: 16 MiB more
    assert struct.unpack_from("<I", data, 16)[0] > len(data)
    log.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="damaged in the middle"):
        Journal(path)


def test_an_emptied_database_beside_a_log_of_a_later_generation_is_refused(path):
    j = Journal(path)
    for i in range(5):
        j.write([new_order(f"c{i}")], [], {}, {})
    j.close()  # folded, checkpointed: the tables hold everything, the log is an empty gen 2
    path.write_bytes(b"")
    with pytest.raises(JournalCorrupt, match="generation 2, so generations 1..1 were folded"):
        Journal(path)
    path.unlink()
    with pytest.raises(JournalCorrupt, match="holds no record of them"):
        Journal(path)


def test_a_log_of_another_generation_than_the_tables_name_is_refused(path):
    import struct

    j = Journal(path)
    j.write([new_order("a")], [], {}, {})
    j.close()  # tables name gen 1 folded; log is gen 2
    log = Path(f"{path}-log")
    data = bytearray(log.read_bytes())
    struct.pack_into("<Q", data, 8, 7)
    log.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="generation 7, but .* last folded from generation 1"):
        Journal(path)


def test_an_unreadable_database_is_refused_as_damaged(path):
    j = Journal(path)
    j.write([new_order("a")], [], {}, {})
    j.close()
    data = bytearray(path.read_bytes())
    data[:16] = b"not a database!!"
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="unreadable"):
        Journal(path)


def test_a_fresh_database_beside_a_first_generation_log_loses_nothing(path):
    """The tables were never checkpointed out of generation 1, so the log still holds every
    record: replayed whole, which is not a loss and not refused."""
    _crash_after_writes(path, 10)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    j = Journal(path)
    assert [o.client_order_id for o in j.load().orders] == [f"c{i}" for i in range(10)]
    j.close()


def test_fold_moves_the_log_into_the_tables_and_keeps_the_first_reply(path):
    j = Journal(path)
    ex = SimulatedExchange()
    ex.on_tick(tick(size=30))
    o = new_order("p-1", qty=50)  # partially filled, then filled by a later tick
    trade(j, ex, o)
    first = j.reply_for("p-1")
    assert j.pending == 1
    assert j.fold() == 1 and j.pending == 0
    # after the fold a new state and a different reply for the same order: the first stays
    events = ex.on_tick(tick(ask=102.0, size=100))
    j.write([e.order for e in events if not isinstance(e, FillEvent)], [e.fill for e in events if isinstance(e, FillEvent)],
            {"p-1": b"a later reply"}, ex.state())
    assert j.reply_for("p-1") == first
    j.fold()
    row = j.db.execute("SELECT status, filled_qty, reply FROM orders WHERE client_order_id = 'p-1'").fetchone()
    assert (row[0], row[1], bytes(row[2])) == ("filled", 50, first)
    assert [r[0] for r in j.db.execute("SELECT fill_id FROM fills ORDER BY n")] == ["F1", "F2"]
    j.close()
    rec = Journal(path).load()
    assert rec.positions.get("AAA").qty == 50 and rec.last_fill_seq == 2


def test_values_the_tables_cannot_hold_are_refused_before_anything_is_stored(path):
    j = Journal(path)
    o = new_order("big")
    o.ts = 2**64  # beyond SQLite's 64-bit integers
    with pytest.raises(JournalError, match="out of range"):
        j.write([o], [], {}, {})
    o2 = new_order("nan")
    o2.avg_price = float("nan")
    with pytest.raises(JournalError, match="out of range"):
        j.write([o2], [], {}, {})
    assert j.pending == 0
    j.write([new_order("fine")], [], {}, {})
    assert [x.client_order_id for x in j.load().orders] == ["fine"]
    j.close()


def test_a_version_1_journal_is_upgraded_in_place(path):
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE orders (client_order_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,"
        " qty INTEGER NOT NULL, order_type TEXT NOT NULL, limit_price REAL, source TEXT NOT NULL, status TEXT NOT NULL,"
        " filled_qty INTEGER NOT NULL, avg_price REAL NOT NULL, reason TEXT NOT NULL, created_ts INTEGER NOT NULL,"
        " updated_ts INTEGER NOT NULL, cause_ts INTEGER NOT NULL, origin_ts INTEGER NOT NULL, reply BLOB);"
        "INSERT INTO orders VALUES ('old-1','O1','AAA','buy',5,'market',NULL,'t','filled',5,100.0,'',1,2,3,4,x'a1');"
        "PRAGMA user_version=1;"
    )
    db.close()
    j = Journal(path)
    rec = j.load()
    assert [o.client_order_id for o in rec.orders] == ["old-1"] and j.reply_for("old-1") == b"\xa1"
    old = rec.orders[0]
    assert (old.created_ts, old.ts, old.cause_ts, old.origin_ts, old.status) == (1, 2, 3, 4, OrderStatus.FILLED)
    assert j.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    j.close()


def test_a_format_1_log_left_by_the_previous_version_is_replayed(path):
    """A crash of the previous version (schema v2, log format 1: rows in its column order)
    leaves a log that this version replays, once."""
    import struct
    import zlib

    import msgpack

    db = sqlite3.connect(path)
    db.executescript("PRAGMA user_version=2;")
    db.close()
    row = ["old-2", "O2", "AAA", "sell", 7, "limit", 101.5, "t", "new", 0, 0.0, "", 10, 20, 30, 40, b"\xa2"]
    payload = msgpack.packb([[row], [], [], {"next_order_n": 3}])
    Path(f"{path}-log").write_bytes(struct.pack("<4sIQ", b"TDJL", 1, 1) + struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
    j = Journal(path)
    (o,) = j.load().orders
    assert (o.client_order_id, o.side, o.qty, o.limit_price, o.status, o.created_ts, o.ts, o.cause_ts, o.origin_ts) == (
        "old-2", Side.SELL, 7, 101.5, OrderStatus.NEW, 10, 20, 30, 40)
    assert j.reply_for("old-2") == b"\xa2"
    # the old log is never appended to: this version's rows go to a new log in its own format
    magic, fmt, gen = struct.unpack_from("<4sIQ", Path(f"{path}-log").read_bytes())
    assert fmt == _LOG_FORMAT and gen == 2
    o2 = Order(client_order_id="new-1", symbol="AAA", side=Side.BUY, qty=3, order_id="O3", status=OrderStatus.NEW,
               order_type=OrderType.LIMIT, limit_price=99.5, reason="", ts=50)
    j.write([o2], [], {"new-1": b"\xa3"}, {})
    os.close(j._fd)  # what a SIGKILL leaves: the row in the log, not folded
    j._fd = -1
    j.db.close()
    j = Journal(path)
    assert {o.client_order_id: (o.qty, o.limit_price, o.status) for o in j.load().orders} == {
        "old-2": (7, 101.5, OrderStatus.NEW), "new-1": (3, 99.5, OrderStatus.NEW)}
    assert j.reply_for("new-1") == b"\xa3"
    j.close()


def test_a_zeroed_tail_is_a_torn_tail(path):
    """Power loss can keep a file's length but not its last blocks: zeros, which read as a
    record of length 0 whose CRC (of nothing) matches."""
    _crash_after_writes(path, 4)
    log = Path(f"{path}-log")
    log.write_bytes(log.read_bytes() + b"\0" * 4096)
    j = Journal(path)
    assert j.truncated_bytes == 4096
    assert [o.client_order_id for o in j.load().orders] == [f"c{i}" for i in range(4)]
    j.close()


def test_a_failed_write_leaves_nothing_behind_it(path, monkeypatch):
    import workers.exchange.journal as J

    j = Journal(path)
    j.write([new_order("first")], [], {}, {})
    real_write = os.write

    def half(fd, data):  # the disk fills up in the middle of a record
        real_write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(J.os, "write", half)
    with pytest.raises(JournalError, match="No space"):
        j.write([new_order("lost")], [], {}, {})
    monkeypatch.setattr(J.os, "write", real_write)
    j.write([new_order("third")], [], {}, {})  # appended where the half record was cut off
    os.close(j._fd)  # a crash: replay from the log alone
    j.db.close()
    j2 = Journal(path)
    assert j2.truncated_bytes == 0
    assert [o.client_order_id for o in j2.load().orders] == ["first", "third"]
    j2.close()


def test_a_reply_stored_alone_stays_the_first_reply(path):
    j = Journal(path)
    o = new_order("x")
    j.write([o], [], {}, {})  # the order, without a reply yet
    j.fold()
    j.write([], [], {"x": b"FIRST"}, {})  # its reply, alone
    j.write([o], [], {"x": b"SECOND"}, {})  # a later state with another reply
    assert j.reply_for("x") == b"FIRST"
    j.fold()
    assert j.reply_for("x") == b"FIRST"
    j.close()


def test_load_without_fold_gives_the_tables_plus_the_unfolded_log(path):
    """What the gateway goes back to after a failed write: no SQLite write needed."""
    j = Journal(path)
    a = new_order("a")
    j.write([a], [], {"a": b"ra"}, {"next_order_n": 2})
    j.fold()
    a.status = OrderStatus.FILLED
    j.write([a, new_order("b")], [], {"b": b"rb"}, {"next_order_n": 3})
    before = j.db.total_changes
    rec = j.load(fold=False)
    assert j.db.total_changes == before and j.pending == 1
    assert {o.client_order_id: o.status for o in rec.orders} == {"a": OrderStatus.FILLED, "b": OrderStatus.PENDING_NEW}
    assert rec.state == {"next_order_n": 3}
    j.close()


def test_no_room_is_journal_full_and_the_journal_takes_writes_again_afterwards(path, monkeypatch):
    import workers.exchange.journal as J

    j = Journal(path)
    j.write([new_order("first")], [], {}, {})
    real_write = os.write
    monkeypatch.setattr(J.os, "write", lambda fd, data: real_write(fd, data[:3]))  # short write: the disk filled
    with pytest.raises(JournalFull, match="journal: disk full"):
        j.write([new_order("lost")], [], {}, {})
    with pytest.raises(JournalFull):
        j.probe()
    # a new log file cannot be made either, and the open one stays in use
    with pytest.raises(JournalFull):
        j._new_log_file(j.gen + 1)
    monkeypatch.setattr(J.os, "write", real_write)
    j.probe()
    j.write([new_order("third")], [], {}, {})
    _stop_without_close(j)
    j2 = Journal(path)
    assert j2.truncated_bytes == 0
    assert [o.client_order_id for o in j2.load().orders] == ["first", "third"]
    j2.close()


def test_a_log_emptied_or_removed_before_any_fold_is_refused_too(path):
    """The tables name the log from the journal's first open, so even orders that never
    reached the tables cannot vanish with their log unnoticed."""
    _crash_after_writes(path, 20)
    log = Path(f"{path}-log")
    log.write_bytes(b"")
    with pytest.raises(JournalCorrupt, match="0 bytes long"):
        Journal(path)
    log.unlink()
    with pytest.raises(JournalCorrupt, match="missing"):
        Journal(path)


# ---------------------------------------------------------------- the account (kill switch)
def _format_2_log(path, records: list) -> None:
    """What the previous version (schema v3, log format 2) leaves after a SIGKILL: tables it
    created, and records in its log that were never folded."""
    import struct
    import zlib

    import msgpack

    j = Journal(path)
    j.close()
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE account; PRAGMA user_version=3;")
    gen, = db.execute("SELECT value FROM log_state WHERE key = 'gen'").fetchone()
    db.close()
    body = b""
    for rec in records:
        payload = msgpack.packb(rec)
        body += struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    Path(f"{path}-log").write_bytes(struct.pack("<4sIQ", b"TDJL", 2, gen) + body)


#: the order columns of schema v3 / log format 2, in order (written out: this is the old layout)
_V3_ORDER_COLUMNS = ("client_order_id", "order_id", "symbol", "side", "qty", "filled_qty", "avg_price", "status", "ts", "reason",
                     "order_type", "limit_price", "source", "cause_ts", "origin_ts", "created_ts")


def _v3_order_row(cid, status, reply=None, **values) -> list:
    row = dict(client_order_id=cid, order_id="O" + cid, symbol="AAA", side="buy", qty=1, filled_qty=0, avg_price=0.0,
               status=status, ts=2, reason="", order_type="market", limit_price=None, source="t", cause_ts=3, origin_ts=4,
               created_ts=1)
    row.update(values)
    return [row[c] for c in _V3_ORDER_COLUMNS] + [reply]


def test_the_kill_switch_survives_a_crash_and_a_clean_close(path):
    j = Journal(path)
    assert j.load().account == Account()
    j.write(account=Account(kill_reason="desk limit", kill_ts=7, kill_switch=True))
    os.close(j._fd)  # a SIGKILL: in the log only
    j._fd = -1
    j.db.close()
    j = Journal(path)
    assert j.load().account == Account(kill_reason="desk limit", kill_ts=7, kill_switch=True)
    j.write([new_order("c1")], [], {}, {}, Account(kill_ts=9))  # turned off with an order in the batch
    assert j.load(fold=False).account == Account(kill_ts=9)
    j.close()  # folded into the account table
    raw = sqlite3.connect(path)
    assert dict(raw.execute("SELECT key, value FROM account")) == {"kill_switch": 0, "kill_reason": "", "kill_ts": 9}
    raw.close()
    j = Journal(path)
    rec = j.load()
    assert rec.account == Account(kill_ts=9) and [o.client_order_id for o in rec.orders] == ["c1"]
    j.close()


def test_an_unchanged_account_writes_no_record(path):
    j = Journal(path)
    j.write(account=Account())
    assert j.pending == 0
    j.write(account=Account(kill_switch=True, kill_ts=1))
    j.write(account=Account(kill_switch=True, kill_ts=1))
    assert j.pending == 1
    j.close()


def test_a_version_3_journal_with_a_format_2_log_is_upgraded_and_loses_nothing(path):
    """The previous version's journal, SIGKILLed with records in its log: every order, reply
    and counter is read, the kill switch starts off, and the log goes on in today's format."""
    import struct

    row = _v3_order_row("old-3", "filled", filled_qty=4, avg_price=100.0, qty=4, ts=20, reply=b"\xa4")
    fill = [1, "F1", "old-3", "O3", "AAA", "buy", 4, 100.0, 20, "t", 10, 10]  # the fill columns as v3 had them
    _format_2_log(path, [[[row], [fill], [], {"next_order_n": 4, "next_fill_n": 2}]])
    j = Journal(path)
    assert j.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rec = j.load()
    assert [(o.client_order_id, o.status, o.ts) for o in rec.orders] == [("old-3", OrderStatus.FILLED, 20)]
    assert [f.fill_id for f in rec.fills] == ["F1"] and rec.positions.qty("AAA") == 4
    assert rec.state["next_order_n"] == 4 and rec.account == Account()
    assert j.reply_for("old-3") == b"\xa4"
    magic, fmt, gen = struct.unpack_from("<4sIQ", Path(f"{path}-log").read_bytes())
    assert fmt == _LOG_FORMAT
    j.write(account=Account(kill_reason="upgraded", kill_ts=5, kill_switch=True))
    os.close(j._fd)
    j._fd = -1
    j.db.close()
    j = Journal(path)
    rec = j.load()
    assert rec.account.kill_switch and rec.account.kill_reason == "upgraded" and len(rec.orders) == 1
    j.close()


def test_a_format_2_log_damaged_in_the_middle_is_still_refused(path):
    """The damage check finds the valid records after a bad one by how a payload starts,
    which differs between formats: an old log's damage must not pass for a torn tail."""
    rows = [[[_v3_order_row(f"c{i}", "new")], [], [], {}] for i in range(50)]
    _format_2_log(path, rows)
    log = Path(f"{path}-log")
    before = log.read_bytes()
    _flip(log, 0.3)
    with pytest.raises(JournalCorrupt, match="damaged in the middle"):
        Journal(path)
    assert len(log.read_bytes()) == len(before)


def test_an_account_row_of_the_wrong_kind_is_refused(path):
    Journal(path).close()
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO account VALUES ('kill_switch', 'maybe')")
    raw.commit()
    raw.close()
    with pytest.raises(JournalCorrupt, match="account"):
        Journal(path)
