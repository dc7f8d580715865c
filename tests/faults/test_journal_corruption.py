"""A damaged journal is refused, never served; a torn tail is cut and reported.

What the outside check did: a gateway answers 300 orders, is stopped or killed, one file of
its journal is damaged (a byte flipped at 30% of the log, the log cut to 0 bytes, the SQLite
file cut to 0 bytes), and it is started again.  Served, it had forgotten up to all 300
orders, and a Lazy Pirate resend of a forgotten ``client_order_id`` became a new order.
Now the restart exits with EXIT_JOURNAL_CORRUPT and one line that says what is wrong and
what to do, it changes nothing on disk, and it answers nobody.
"""

from __future__ import annotations

import signal
import sqlite3
import struct
from pathlib import Path

import pytest
import zmq

from tests.procs import log_text, scaled, scaled_ms, start_worker, stop, wait_until
from workers import protocol as P
from workers.config import Endpoints
from workers.runtime import EXIT_CORRUPT_STATE as EXIT_JOURNAL_CORRUPT

pytestmark = pytest.mark.timeout(120)

N = 300


@pytest.fixture
def rig(tmp_path):
    ctx = zmq.Context()
    eps = Endpoints.ephemeral_ipc(tmp_path)
    journal = tmp_path / "j.sqlite"
    procs = []

    def start():
        proc = start_worker("exchange", eps, "--journal", str(journal), tmp_path=tmp_path)
        procs.append(proc)
        return proc

    yield ctx, eps, journal, start
    for proc in procs:
        stop(proc)
    ctx.destroy(linger=0)


def order(i: int) -> P.SendOrder:
    # resting limit orders: answered "new" without any market data, so every one is a
    # journaled, acknowledged order whose loss a resend would turn into a second one
    return P.SendOrder(client_order_id=f"c{i}", symbol="AAA", side=P.Side.BUY, qty=1, order_type=P.OrderType.LIMIT, limit_price=10.0)


def dealer(ctx, eps) -> zmq.Socket:
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    d.setsockopt(zmq.RCVTIMEO, scaled_ms(5000))
    d.connect(eps.orders)
    return d


def serving(ctx, eps, proc) -> None:
    d = dealer(ctx, eps)
    try:
        d.send(P.Ping().pack())
        assert P.unpack_map(d.recv())["ok"], log_text(proc)
    finally:
        d.close(0)


def place(ctx, eps, ids) -> dict[str, bytes]:
    """Pipeline the orders through one DEALER; every one answered ok."""
    d = dealer(ctx, eps)
    replies = {}
    try:
        for i in ids:
            d.send(order(i).pack())
        for _ in ids:
            data = d.recv()
            r = P.unpack_map(data)
            assert r["ok"] and r["status"] == "new", r
            replies[r["client_order_id"]] = data
    finally:
        d.close(0)
    return replies


def refuses(start, journal: Path) -> str:
    """Start a gateway on the damaged journal: it must exit EXIT_JOURNAL_CORRUPT with one
    line saying so, having changed nothing on disk.  Returns that line."""
    before = _contents(journal)
    proc = start()
    proc.wait(scaled(20))
    text = log_text(proc)
    assert proc.returncode == EXIT_JOURNAL_CORRUPT, text
    lines = [ln for ln in text.splitlines() if "REFUSING TO SERVE" in ln]
    assert len(lines) == 1, text
    assert "restore" in lines[0] and "backup" in lines[0], lines[0]
    assert "Traceback" not in text, text
    assert _contents(journal) == before, "a refused start must leave the journal as it found it"
    return lines[0]


def _contents(journal: Path) -> tuple:
    """The log's bytes, the database's size when it is empty, else its rows (SQLite may move
    its WAL into the database file on close, which changes its bytes but not its rows)."""
    log = Path(f"{journal}-log")
    size = journal.stat().st_size if journal.exists() else -1
    rows = ()
    if size > 0:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            rows = tuple(tuple(db.execute(f"SELECT * FROM {t} ORDER BY 1")) for t in ("orders", "fills", "meta", "log_state"))
        finally:
            db.close()
    return (log.read_bytes() if log.exists() else None, size if size <= 0 else "rows", rows)


def resend_is_never_a_new_order(ctx, eps, cid_index: int) -> None:
    """A Lazy Pirate client resends an order whose answer it lost: with the gateway refusing
    to serve, nobody answers (the client keeps it unknown), so no second order is made."""
    d = dealer(ctx, eps)
    try:
        d.send(order(cid_index).pack())
        assert not d.poll(scaled_ms(500)), "something answered an order on a damaged journal"
    finally:
        d.close(0)


def test_a_byte_flipped_at_30_percent_of_the_log_is_refused(rig):
    ctx, eps, journal, start = rig
    proc = start()
    wait_until(lambda: _pings(ctx, eps), timeout=20, message="gateway serving")
    place(ctx, eps, range(N))
    proc.send_signal(signal.SIGKILL)  # right after the last answer: nothing folded since
    proc.wait(scaled(5))
    log = Path(f"{journal}-log")
    data = bytearray(log.read_bytes())
    assert len(data) > N * 50, "the orders should be in the log, not yet folded"
    at = int(len(data) * 0.3)
    data[at] ^= 0x5A
    log.write_bytes(bytes(data))
    # a pipelined burst is one record: the flip is in the middle of the log or of its last record
    line = refuses(start, journal)
    assert "damaged in the middle" in line or "changed after it was written" in line, line
    resend_is_never_a_new_order(ctx, eps, N // 2)
    assert refuses(start, journal).split(" ERROR ", 1)[1] == line.split(" ERROR ", 1)[1]  # and again: it does not heal itself


def test_a_log_cut_to_zero_bytes_is_refused(rig):
    ctx, eps, journal, start = rig
    proc = start()
    wait_until(lambda: _pings(ctx, eps), timeout=20, message="gateway serving")
    wal = Path(f"{journal}-wal")
    place(ctx, eps, range(N // 2))
    size = wal.stat().st_size
    wait_until(lambda: wal.stat().st_size > size, timeout=10, message="the first half folded into the tables")
    place(ctx, eps, range(N // 2, N))
    proc.send_signal(signal.SIGKILL)
    proc.wait(scaled(5))
    Path(f"{journal}-log").write_bytes(b"")
    line = refuses(start, journal)
    assert "0 bytes long" in line, line
    resend_is_never_a_new_order(ctx, eps, N - 1)


def test_the_database_cut_to_zero_bytes_after_a_clean_stop_is_refused(rig):
    ctx, eps, journal, start = rig
    proc = start()
    wait_until(lambda: _pings(ctx, eps), timeout=20, message="gateway serving")
    place(ctx, eps, range(N))
    assert stop(proc) == 0, log_text(proc)  # folded and checkpointed: the tables hold all 300
    journal.write_bytes(b"")
    line = refuses(start, journal)
    assert "holds no record of them" in line, line
    resend_is_never_a_new_order(ctx, eps, 0)


def test_a_torn_last_record_is_cut_and_reported_and_everything_before_it_served(rig):
    ctx, eps, journal, start = rig
    proc = start()
    wait_until(lambda: _pings(ctx, eps), timeout=20, message="gateway serving")
    replies = place(ctx, eps, range(N))
    place(ctx, eps, [N])  # alone in the last record
    proc.send_signal(signal.SIGKILL)
    proc.wait(scaled(5))
    log = Path(f"{journal}-log")
    data = log.read_bytes()
    # what a power loss in the middle of the last write leaves: that record cut short
    (last_len,) = struct.unpack_from("<I", data, _last_record_offset(data))
    assert last_len > 10
    log.write_bytes(data[:-5])

    proc = start()
    wait_until(lambda: _pings(ctx, eps), timeout=20, message="gateway serving after the cut")
    assert proc.poll() is None
    text = log_text(proc)
    assert "cut a torn last record" in text and "REFUSING" not in text, text
    d = dealer(ctx, eps)
    try:
        for i in range(N):  # every earlier order: known, and its resend gets the stored reply
            d.send(order(i).pack())
            assert d.recv() == replies[f"c{i}"]
    finally:
        d.close(0)
    stop(proc)


def _pings(ctx, eps) -> bool:
    d = dealer(ctx, eps)
    try:
        d.send(P.Ping().pack())
        return bool(d.poll(scaled_ms(200)))
    finally:
        d.close(0)


def _last_record_offset(data: bytes) -> int:
    at, last = 16, -1
    while at + 8 <= len(data):
        (length,) = struct.unpack_from("<I", data, at)
        last, at = at, at + 8 + length
    assert at == len(data)
    return last
