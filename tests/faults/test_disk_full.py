"""A full disk under the journal: new orders refused ``journal: disk full``, queries answered,
no exit, and orders taken again by themselves once there is room.

What the outside check did: fill the journal's disk under a serving gateway.  It exited on
the failed write and crash-looped while the disk stayed full, so get_order and get_positions
went unanswered.  Here the journal lives on a real, small tmpfs filled by a filler file.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import zmq

from tests.procs import log_text, scaled_ms, start_worker, stop, wait_until
from workers import protocol as P
from workers.config import Endpoints
from workers.exchange.gateway import DISK_FULL
from workers.exchange.journal import Journal

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MiB file system (tmpfs) for the journal; skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not shutil.which("mount"):
        pytest.skip("no mount command: cannot make a small file system to fill")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {r.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.fixture
def rig(tmp_path, small_disk):
    ctx = zmq.Context()
    eps = Endpoints.ephemeral_ipc(tmp_path)
    ticks = ctx.socket(zmq.PUB)
    ticks.setsockopt(zmq.LINGER, 0)
    ticks.bind(eps.ticks)
    journal = small_disk / "j.sqlite"
    procs = []

    def start():
        proc = start_worker("exchange", eps, "--journal", str(journal), tmp_path=tmp_path)
        procs.append(proc)
        return proc

    yield ctx, eps, ticks, journal, start
    for proc in procs:
        stop(proc)
    ctx.destroy(linger=0)


_seq = itertools.count(1)


def client(ctx, eps):
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, scaled_ms(5000))
    s.connect(eps.orders)
    return s


def call(sock, msg: P.Message) -> dict:
    sock.send(msg.pack())
    return P.unpack_map(sock.recv())


def limit(cid: str) -> P.SendOrder:
    return P.SendOrder(client_order_id=cid, symbol="AAA", side=P.Side.BUY, qty=1, order_type=P.OrderType.LIMIT, limit_price=95.0)  # rests, within the price band


def fill_disk(directory: Path) -> Path:
    """Write a filler file until the file system says no."""
    filler = directory / "filler"
    chunk = b"\xff" * 65536
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                if os.write(fd, chunk) < len(chunk):
                    break
            except OSError:
                break
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_refuses_orders_answers_queries_and_resumes_by_itself(rig):
    ctx, eps, ticks, journal, start = rig
    proc = start()
    sock = client(ctx, eps)
    assert call(sock, P.Ping())["ok"], log_text(proc)

    # a position to ask about: a market order filled against a tick
    def market_fill():
        ticks.send(P.pub(P.Tick(symbol="AAA", seq=next(_seq), ts=P.now_ns(), last=100.0, bid=99.0, ask=101.0,
                                bid_size=10_000, ask_size=10_000, volume=1)))
        r = call(sock, P.SendOrder(client_order_id=f"mkt-{next(_seq)}", symbol="AAA", side=P.Side.BUY, qty=5))
        return r["status"] == "filled"

    wait_until(market_fill, timeout=10, interval=0.05, message="a market order filled")
    qty_before = {p["symbol"]: p["qty"] for p in call(sock, P.GetPositions())["positions"]}["AAA"]
    acked = {}
    for i in range(50):
        r = call(sock, limit(f"before-{i}"))
        assert r["ok"] and r["status"] == "new", r
        acked[f"before-{i}"] = r

    filler = fill_disk(journal.parent)
    # The log's last page may still take a few records; the first order that does not fit
    # is refused (its batch rolled back), and from then on every new one is.
    refused = []
    for i in range(2000):
        cid = f"full-{i}"
        r = call(sock, limit(cid))
        if r["ok"]:
            acked[cid] = r  # stored in the page's slack: a true acknowledgement
            continue
        assert (r["status"], r["reason"], r["order_id"]) == ("rejected", DISK_FULL, "-"), r
        refused.append(cid)
        break
    assert refused, "the disk never filled up"
    for i in range(20):
        cid = f"refused-{i}"
        r = call(sock, limit(cid))
        assert (r["ok"], r["reason"]) == (False, DISK_FULL), r
        refused.append(cid)

    # Queries are answered, from what is stored; refused orders are not orders.
    assert call(sock, P.Ping())["ok"]
    for cid in ("before-0", "before-49", *list(acked)[-3:]):
        r = call(sock, P.GetOrder(client_order_id=cid))
        assert r["ok"] and r["status"] == "new", r
    for cid in refused[:3]:
        r = call(sock, P.GetOrder(client_order_id=cid))
        assert r["ok"] is False and "unknown" in r["reason"], r
    positions = call(sock, P.GetPositions())
    assert positions["ok"] and {p["symbol"]: p["qty"] for p in positions["positions"]}["AAA"] == qty_before
    assert len(call(sock, P.GetOrders(working_only=True))["orders"]) == len(acked)
    r = call(sock, P.CancelOrder(client_order_id="before-0"))
    assert (r["ok"], r["reason"], r["status"]) == (False, DISK_FULL, "new"), r
    # a resend of an order acknowledged before the disk filled still gets its stored reply
    assert call(sock, limit("before-7")) == acked["before-7"]
    assert proc.poll() is None, log_text(proc)
    assert "journal: disk full" in log_text(proc)

    # Room again: orders are taken without a restart, the refused ids included (they were
    # never orders).
    filler.unlink()

    def accepted_again():
        r = call(sock, limit(f"after-{next(_seq)}"))
        if r["ok"]:
            acked[r["client_order_id"]] = r
        return r["ok"]

    wait_until(accepted_again, timeout=10, interval=0.1, message="orders taken again once the disk has room")
    r = call(sock, limit(refused[0]))
    assert r["ok"] and r["status"] == "new", r
    acked[refused[0]] = r
    assert call(sock, P.CancelOrder(client_order_id="before-0"))["ok"]
    assert proc.poll() is None and "journal takes writes again" in log_text(proc)
    assert "Traceback" not in log_text(proc)
    sock.close(0)
    stop(proc)
    assert proc.returncode == 0, log_text(proc)

    # Nothing acknowledged was lost, nothing refused was stored, and the journal opens clean.
    j = Journal(journal)
    try:
        assert j.truncated_bytes == 0
        stored = {o.client_order_id: o for o in j.load().orders}
    finally:
        j.close()
    assert set(acked) <= set(stored)
    assert not set(refused[1:]) & set(stored)
