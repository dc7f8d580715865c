"""The exchange gateway in-process (inproc sockets, driven by hand): the account's kill switch
and its rule, get_fills paging, the tick stream's epoch -- each with what a full disk does."""

from __future__ import annotations

import time

import pytest
import zmq

from workers import protocol as P
from workers.config import add_common_args
from workers.exchange.gateway import DISK_FULL, MAX_FILLS_IN_REPLY, ExchangeGateway, build_parser
from workers.exchange.journal import JournalFull
from workers.protocol import OrderType, Side


class InProc:
    """A gateway with a ticks PUB and a DEALER client on inproc sockets."""

    def __init__(self, tmp_path):
        parser = build_parser()
        add_common_args(parser)
        eps = [f"--{n}=inproc://{n}" for n in ("ticks", "orders", "execution", "control")]
        self.gw = ExchangeGateway(parser.parse_args([*eps, "--no-control", "--market-wait", "0",
                                                     "--journal", str(tmp_path / "g.sqlite")]))
        self.ticks = self.gw.ctx.socket(zmq.PUB)
        self.ticks.bind("inproc://ticks")
        self.gw.setup()
        self.client = self.gw.ctx.socket(zmq.DEALER)
        self.client.connect("inproc://orders")
        self.execution = self.gw.ctx.socket(zmq.SUB)
        self.execution.setsockopt(zmq.SUBSCRIBE, b"")
        self.execution.connect("inproc://execution")

    def tick_frame(self, frame: bytes) -> None:
        for _ in range(100):
            self.ticks.send(frame)
            if self.gw.ticks.poll(20):
                break
        self.gw._on_ticks(self.gw.ticks.recv())

    def tick(self, symbol="AAA", seq=1, bid=99.0, ask=101.0, epoch=0) -> None:
        self.tick_frame(P.encode_ticks(symbol, [(seq, seq, (bid + ask) / 2, bid, ask, 1000, 1000, 0)], epoch=epoch))

    def batch(self, *msgs: P.Message) -> list[dict]:
        for m in msgs:
            self.client.send(m.pack())
        assert self.gw.router.poll(1000)
        self.gw._on_requests(self.gw.router.recv_multipart())
        return [P.unpack_map(self.client.recv()) for _ in msgs]

    def call(self, msg: P.Message) -> dict:
        return self.batch(msg)[0]

    def reports(self) -> list[P.Message]:
        got = []
        while self.execution.poll(0):
            got.append(P.decode_pub(self.execution.recv())[1])
        return got

    def close(self) -> None:
        for s in (self.client, self.ticks, self.execution):
            s.close(0)
        self.gw.teardown()
        self.gw._close()


@pytest.fixture
def gw(tmp_path):
    g = InProc(tmp_path)
    yield g
    g.close()


def market(cid, side, qty, symbol="AAA") -> P.SendOrder:
    return P.SendOrder(client_order_id=cid, symbol=symbol, side=side, qty=qty)


def limit(cid, side, qty, price, symbol="AAA") -> P.SendOrder:
    return P.SendOrder(client_order_id=cid, symbol=symbol, side=side, qty=qty, order_type=OrderType.LIMIT, limit_price=price)


def test_the_kill_switch_refuses_what_would_increase_a_position_and_passes_what_reduces(gw):
    gw.tick("AAA")
    gw.tick("BBB")
    assert gw.call(market("long", Side.BUY, 100))["status"] == "filled"
    assert gw.call(market("short", Side.SELL, 30, "BBB"))["status"] == "filled"
    r = gw.call(P.SetKillSwitch(on=True, reason="desk loss limit"))
    assert (r["type"], r["ok"], r["on"], r["kill_reason"]) == ("set_kill_switch_reply", True, True, "desk loss limit")
    p = gw.call(P.GetPositions())
    assert (p["kill_switch"], p["kill_reason"]) == (True, "desk loss limit")

    def refused(reply):
        return not reply["ok"] and reply["status"] == "rejected" and reply["reason"].startswith("kill switch")

    r = gw.call(market("add-long", Side.BUY, 1))
    assert refused(r) and "increase the AAA position" in r["reason"]
    assert refused(gw.call(market("flip-long", Side.SELL, 101)))  # closes 100, opens a short of 1
    assert refused(gw.call(market("add-short", Side.SELL, 1, "BBB")))
    assert refused(gw.call(market("flip-short", Side.BUY, 31, "BBB")))
    assert refused(gw.call(market("flat", Side.BUY, 1, "CCC")))  # flat: anything opens a position
    # working sells count as if they filled first: 100 long, 60 working to sell -> 40 may still go
    assert gw.call(limit("rest-sell", Side.SELL, 60, 105.0))["status"] == "new"
    assert refused(gw.call(market("too-much", Side.SELL, 41)))
    assert gw.call(market("close-40", Side.SELL, 40))["status"] == "filled"
    assert gw.call(market("close-30", Side.BUY, 30, "BBB"))["status"] == "filled"
    assert gw.gw.positions.qty("AAA") == 60 and gw.gw.positions.qty("BBB") == 0
    # a resend of an order answered before the switch gets its stored reply, not a refusal
    r = gw.call(market("long", Side.BUY, 100))
    assert (r["ok"], r["status"]) == (True, "filled")
    assert gw.gw.stats.counters["kill_switch_rejects"] == 6

    r = gw.call(P.SetKillSwitch(on=False))
    assert (r["on"], r["kill_reason"]) == (False, "")
    assert gw.call(market("after", Side.BUY, 5))["status"] == "filled"
    assert gw.call(P.GetPositions())["kill_switch"] is False


def test_the_kill_switch_is_journaled_and_a_full_disk_refuses_to_change_it(gw, tmp_path):
    gw.tick("AAA")
    assert gw.call(market("m1", Side.BUY, 10))["status"] == "filled"
    real_write = gw.gw.journal.write

    def full(*a, **k):
        raise JournalFull("journal: disk full (No space left on device)")

    gw.gw.journal.write = full
    # the batch that finds the disk full is rolled back: the switch is not on, nothing is promised
    on, order, fills, pos = gw.batch(P.SetKillSwitch(on=True, reason="x"), market("m2", Side.BUY, 1), P.GetFills(), P.GetPositions())
    assert (on["ok"], on["reason"], on["on"]) == (False, DISK_FULL, False)
    assert (order["ok"], order["reason"]) == (False, DISK_FULL)
    assert fills["ok"] and [f["fill_id"] for f in fills["fills"]] == ["F1"] and fills["last_fill"] == 1  # a query: answered
    assert pos["kill_switch"] is False
    assert gw.gw.account.kill_switch is False

    gw.gw.journal.write = real_write
    gw.gw.on_timer(time.monotonic() + 1.0)  # the probe writes: the journal takes writes again
    assert gw.call(P.SetKillSwitch(on=True, reason="after the disk"))["on"] is True
    gw.gw.journal.write = full
    r = gw.call(P.SetKillSwitch(on=False))
    assert (r["ok"], r["reason"], r["on"], r["kill_reason"]) == (False, DISK_FULL, True, "after the disk")
    gw.gw.journal.write = real_write
    gw.gw.on_timer(time.monotonic() + 2.0)
    # what the journal holds: on, with its reason
    rec = gw.gw.journal.load()
    assert rec.account.kill_switch and rec.account.kill_reason == "after the disk"


def test_get_fills_pages_oldest_first_from_the_tables_and_the_log(gw):
    gw.tick("AAA")
    for i in range(12):
        assert gw.call(market(f"o{i}", Side.BUY if i % 3 else Side.SELL, i + 1))["status"] == "filled"
        if i == 5:
            gw.gw.journal.fold()  # the first fills in the tables, the rest in the log
    assert gw.gw.journal.pending_records > 0
    published = [m for m in gw.reports() if m.TYPE == "fill"]
    assert len(published) == 12 and all(m.epoch == gw.gw.epoch > 0 for m in published)
    everything = gw.call(P.GetFills())
    assert everything["last_fill"] == 12
    want = [{**P.unpack_map(P.packb(m)), "seq": 0, "epoch": 0} for m in published]  # the reports, as snapshots
    assert everything["fills"] == want
    pages, since = [], 0
    while True:
        r = gw.call(P.GetFills(since_fill=since, limit=5))
        assert len(r["fills"]) <= 5 and r["last_fill"] == 12
        if not r["fills"]:
            break
        pages.append(len(r["fills"]))
        since = int(r["fills"][-1]["fill_id"][1:])
    assert pages == [5, 5, 2]
    assert gw.call(P.GetFills(since_fill=99))["fills"] == []
    # a limit above the cap is cut to the cap
    assert MAX_FILLS_IN_REPLY < 100_000 and len(gw.call(P.GetFills(limit=100_000))["fills"]) == 12


def test_a_new_market_data_epoch_is_a_restart_and_a_step_back_within_one_is_stale(gw):
    gw.tick("AAA", seq=1, epoch=111)
    assert gw.call(limit("rest", Side.BUY, 10, 95.0))["status"] == "new"
    # the restarted market-data gateway's seq 1 again: without epochs a duplicate, dropped
    gw.tick("AAA", seq=1, bid=93.0, ask=94.0, epoch=222)
    assert gw.gw.orders["rest"].status.value == "filled" and gw.gw.orders["rest"].avg_price == 94.0
    assert gw.gw.tick_seq.restarts >= 1
    assert gw.call(limit("rest2", Side.BUY, 10, 90.0))["status"] == "new"
    gw.tick("AAA", seq=5, epoch=222)
    stale = gw.gw.stats.counters["ticks_stale"]
    gw.tick("AAA", seq=3, bid=88.0, ask=89.0, epoch=222)  # late within one epoch: must not fill
    assert gw.gw.orders["rest2"].status.value == "new" and gw.gw.stats.counters["ticks_stale"] == stale + 1
    # a feed that gives no epoch (0) keeps the old rule: a step back is a restart
    gw.tick("AAA", seq=9, epoch=0)
    gw.tick("AAA", seq=2, bid=88.0, ask=89.0, epoch=0)
    assert gw.gw.orders["rest2"].status.value == "filled"
