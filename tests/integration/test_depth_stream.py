"""Depth on the wire: the market-data gateway as a real process on ipc endpoints, read by a SUB
on ``tick.`` and ``depth.`` (one socket, so the order of the two streams is the gateway's) and a
DEALER on the snapshot endpoint."""

from __future__ import annotations

import pytest
import zmq

from tests.procs import log_text, scaled_ms, start_worker, stop, wait_until
from workers import protocol as P
from workers.config import Endpoints

SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")


class Stream:
    """Ticks and depth of one SUB, in the order they arrived."""

    def __init__(self, ctx: zmq.Context, endpoint: str):
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 1_000_000)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"tick.")
        self.sock.setsockopt(zmq.SUBSCRIBE, b"depth.")
        self.sock.connect(endpoint)
        #: ("tick", symbol, row) or ("depth", symbol, Depth), as received
        self.events: list[tuple[str, str, object]] = []
        self.epochs: set[int] = set()

    def drain(self, limit: int = 2000) -> None:
        if not self.sock.poll(20):
            return
        for _ in range(limit):
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            topic, payload = P.split_pub(frame)
            if topic.startswith(b"depth."):
                d = P.decode(payload, expect=P.Depth)  # every depth message validates
                assert topic == P.depth_topic(d.symbol)
                self.events.append(("depth", d.symbol, d))
                self.epochs.add(d.epoch)
            else:
                sym, rows, epoch = P.tick_frame(frame)
                self.epochs.add(epoch)
                self.events.extend(("tick", sym, r) for r in rows)

    def depths(self, symbol: str | None = None) -> list[P.Depth]:
        return [m for kind, s, m in self.events if kind == "depth" and (symbol is None or s == symbol)]

    def ticks(self) -> int:
        return sum(kind == "tick" for kind, _, _ in self.events)

    def until(self, predicate, timeout: float = 15.0, message: str = ""):
        return wait_until(lambda: (self.drain(), predicate(self))[1], timeout=timeout, message=message)


def ask_snapshot(ctx: zmq.Context, eps: Endpoints, **kw) -> P.GetSnapshotReply:
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(eps.snapshot)
    try:
        dealer.send_multipart([b"", P.GetSnapshot(**kw).pack()])
        assert dealer.poll(scaled_ms(10_000)), "no snapshot reply"
        reply = P.decode_reply(dealer.recv_multipart()[-1], P.GetSnapshot)
    finally:
        dealer.close(0)
    assert isinstance(reply, P.GetSnapshotReply) and reply.ok, reply
    return reply


@pytest.fixture
def env(tmp_path):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    ctx = zmq.Context()
    procs = []

    def start(*args: str):
        proc = start_worker("marketdata", eps, *args, tmp_path=tmp_path)
        procs.append(proc)
        return proc

    yield eps, ctx, start
    for p in procs:
        stop(p)
    ctx.destroy(linger=0)


def test_each_depth_is_the_book_of_the_latest_tick_received_before_it(env):
    eps, ctx, start = env
    hz = 20
    stream = Stream(ctx, eps.ticks)
    proc = start("--rate", "2000", "--seed", "4", "--depth-hz", str(hz))
    stream.until(lambda s: all(len(s.depths(sym)) >= 12 for sym in SYMBOLS), timeout=20, message="12 depth messages per symbol")
    latest: dict[str, tuple] = {}
    checked = 0
    for kind, sym, m in stream.events:
        if kind == "tick":
            latest[sym] = m
            continue
        if sym not in latest:  # a slow joiner's first depth may come before it saw a tick of that symbol
            continue
        seq, ts, last, bid, ask, bid_size, ask_size, volume = latest[sym]
        assert (tuple(m.bids[0]), tuple(m.asks[0])) == ((bid, bid_size), (ask, ask_size)), (sym, m.seq)
        assert m.ts == ts  # the depth carries the ts of the tick it is the book of
        assert 1 <= len(m.bids) <= P.MAX_DEPTH_LEVELS and 1 <= len(m.asks) <= P.MAX_DEPTH_LEVELS
        assert all(size > 0 for _, size in (*m.bids, *m.asks))
        checked += 1
    assert checked >= 4 * 10
    for sym in SYMBOLS:
        ds = stream.depths(sym)
        seqs = [d.seq for d in ds]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), sym  # +1 per message, no gap
        # at most --depth-hz a second: on average no closer than the interval (ts is the wall
        # time a frame was stamped, up to a burst later than when the depth was found due: 20 %
        # for that jitter on a busy machine)
        span = (ds[-1].ts - ds[0].ts) / 1e9
        assert span >= (len(ds) - 1) / hz * 0.8, (sym, span, len(ds))
    assert len(stream.epochs) == 1  # ticks and depth: the gateway's one epoch
    assert proc.poll() is None, log_text(proc)


def test_the_snapshot_carries_the_last_depth_of_every_symbol(env):
    eps, ctx, start = env
    stream = Stream(ctx, eps.ticks)
    start("--rate", "500", "--seed", "6")
    stream.until(lambda s: all(s.depths(sym) for sym in SYMBOLS), message="a depth of every symbol")
    snap = ask_snapshot(ctx, eps)
    assert {d.symbol for d in snap.depth} == set(SYMBOLS)
    assert all(d.epoch == snap.epoch for d in snap.depth) and stream.epochs == {snap.epoch}
    # each is a depth the stream carried (the same message, seq and all)
    want = {d.symbol: d.seq for d in snap.depth}
    stream.until(lambda s: all(any(d.seq >= want[sym] for d in s.depths(sym)) for sym in SYMBOLS),
                 message="the stream past the snapshot's depth")
    for d in snap.depth:
        assert d in stream.depths(d.symbol)
    one = ask_snapshot(ctx, eps, symbols=["GOOG"])
    assert [d.symbol for d in one.depth] == ["GOOG"]


def test_depth_hz_zero_publishes_none(env):
    eps, ctx, start = env
    stream = Stream(ctx, eps.ticks)
    start("--rate", "500", "--seed", "6", "--depth-hz", "0")
    stream.until(lambda s: s.ticks() >= 1000, message="1000 ticks")
    assert stream.depths() == []
    assert ask_snapshot(ctx, eps).depth == []
