"""The window's depth state (app/depth.py) and its feed (app/feeds.py): books from ``depth``
messages, epoch and seq like ticks, the snapshot's books, bad frames counted, and the
subscription narrowed to the symbols a ladder shows (over a real PUB/SUB on ipc)."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
import zmq
import zmq.asyncio

from tests.procs import scaled
from workers import protocol as P
from app.depth import DepthState
from app.feeds import Subscription, TickDecoder
from app.state import AppState

EPOCH = 1_700_000_000_000_000_000


def depth(sym="MSFT", seq=1, bid=100.0, ask=100.01, epoch=EPOCH, sizes=(100, 200, 300)) -> P.Depth:
    bids = [(round(bid - i * 0.01, 2), s) for i, s in enumerate(sizes)]
    asks = [(round(ask + i * 0.01, 2), s + 1) for i, s in enumerate(sizes)]
    return P.Depth(sym, seq, P.now_ns(), bids, asks, epoch=epoch)


def tick(sym="MSFT", seq=1, last=100.0, epoch=EPOCH) -> bytes:
    return P.encode_ticks(sym, [(seq, P.now_ns(), last, last - 0.01, last + 0.01, 100, 200, 1000)], epoch=epoch)


@pytest.fixture
def state() -> AppState:
    st = AppState(bars_factory=lambda: None)
    st.market.on_tick("MSFT", 1, P.now_ns(), 100.0, 99.99, 100.01, 100, 200, 1000, EPOCH)
    return st


def test_book_is_the_last_depth_of_its_symbol(state):
    d = state.depth
    assert d.on_depth(depth(seq=1, bid=100.0))
    assert d.on_depth(depth(seq=2, bid=100.05, ask=100.06))
    b = d.get("MSFT")
    assert b.seq == 2 and b.bids[0] == (100.05, 100) and b.asks[0] == (100.06, 101) and b.version == 2
    assert [p for p, _ in b.bids] == [100.05, 100.04, 100.03]


def test_older_seq_of_the_same_epoch_is_dropped_and_counted(state):
    d = state.depth
    d.on_depth(depth(seq=5, bid=101.0, ask=101.01))
    assert not d.on_depth(depth(seq=4, bid=99.0, ask=99.01))
    assert not d.on_depth(depth(seq=5, bid=99.0, ask=99.01))  # the same one again
    assert d.get("MSFT").bids[0][0] == 101.0 and d.late == 2


def test_a_new_epoch_replaces_whatever_its_seq(state):
    d = state.depth
    d.on_depth(depth(seq=500, bid=101.0, ask=101.01))
    assert d.on_depth(depth(seq=1, bid=90.0, ask=90.01, epoch=EPOCH + 1))
    b = d.get("MSFT")
    assert (b.seq, b.epoch, b.bids[0][0]) == (1, EPOCH + 1, 90.0) and d.restarts == 1
    # and the new epoch's own order holds from there
    assert not d.on_depth(depth(seq=1, bid=80.0, epoch=EPOCH + 1))


def test_without_epochs_a_step_back_to_one_is_a_restart_anything_else_late(state):
    d = state.depth
    d.on_depth(depth(seq=7, epoch=0))
    assert not d.on_depth(depth(seq=3, epoch=0))
    assert d.on_depth(depth(seq=1, bid=95.0, ask=95.01, epoch=0))
    assert d.get("MSFT").bids[0][0] == 95.0 and d.restarts == 1 and d.late == 1


def test_depth_of_a_symbol_not_held_is_refused(state):
    assert not state.depth.on_depth(depth(sym="ZZZ"))
    assert state.depth.get("ZZZ") is None and state.depth.refused == 1


def test_snapshot_books_unless_the_stream_is_past_them(state):
    d = state.depth
    d.on_depth(depth(seq=10, bid=102.0, ask=102.01))
    state.market.on_tick("AAPL", 1, P.now_ns(), 200.0, 199.99, 200.01, 1, 1, 1, EPOCH)
    n = d.apply_snapshot([depth(seq=8, bid=99.0), depth(sym="AAPL", seq=3, bid=200.0, ask=200.01, epoch=0)], EPOCH)
    assert n == 1 and d.get("MSFT").bids[0][0] == 102.0  # live seq 10 is past the snapshot's 8
    a = d.get("AAPL")
    assert a.seq == 3 and a.epoch == EPOCH  # the reply's epoch for a message without one
    # live depth the snapshot already holds is a duplicate; the next one is used
    assert not d.on_depth(depth(sym="AAPL", seq=3, bid=1.0, ask=1.01))
    assert d.on_depth(depth(sym="AAPL", seq=4, bid=201.0, ask=201.01))


def test_want_tells_the_feed_once_per_change():
    d = DepthState()
    seen = []
    d.on_want = seen.append
    d.want("ladder", ["MSFT"])
    d.want("ladder", ["MSFT"])
    d.want("other", ["MSFT"])
    d.want("ladder", ["AAPL", ""])
    assert seen == [frozenset({"MSFT"}), frozenset({"MSFT", "AAPL"})]


def test_decoder_routes_depth_frames_and_counts_bad_ones(state):
    dec = TickDecoder(state)
    good = P.pub(depth(seq=2, bid=100.5, ask=100.51))
    bad_order = P.encode_pub(b"depth.MSFT", {"type": "depth", "symbol": "MSFT", "seq": 3, "ts": 1,
                                              "bids": [[100.0, 1], [100.5, 1]], "asks": [], "epoch": EPOCH})
    not_msgpack = b"depth.MSFT\0\xc1\xc1"
    wrong_type = P.encode_pub(b"depth.MSFT", msgspec.structs.asdict(P.Levels("MSFT", "s", [1.0], [2.0], P.now_ns()))
                              | {"type": "levels"})
    dec([tick(seq=2), good, bad_order, not_msgpack, wrong_type, tick(seq=3, last=100.02)])
    assert state.depth.get("MSFT").bids[0] == (100.5, 100)
    assert state.depth.decode_errors == 3 and state.streams["ticks"].decode_errors == 3
    assert state.market.quotes["MSFT"].seq == 3  # the ticks around them went through
    assert "bad depth frame" in state.log.items[-1].text


def test_subscription_narrowed_to_the_wanted_symbols(tmp_path):
    """A real PUB and the window's SUB: depth of the wanted symbols arrives, others' do not;
    changing what is wanted re-subscribes the running socket."""
    async def run() -> None:
        ctx = zmq.asyncio.Context()
        ep = f"ipc://{tmp_path}/ticks"
        pub = ctx.socket(zmq.PUB)
        pub.bind(ep)
        st = AppState(bars_factory=lambda: None)
        for s in ("MSFT", "AAPL"):
            st.market.on_tick(s, 1, P.now_ns(), 100.0, 99.99, 100.01, 1, 1, 1, EPOCH)
        sub = Subscription(ctx, ep, [b"tick."], TickDecoder(st), st.streams["ticks"])
        st.depth.on_want = lambda syms: sub.set_extra_topics(P.depth_topic(s) for s in syms)
        st.depth.want("ladder", ["MSFT"])
        sub.start()
        deadline = time.monotonic() + scaled(5)
        seq = 0
        try:
            while st.depth.get("MSFT") is None and time.monotonic() < deadline:  # the slow joiner
                seq += 1
                pub.send(P.pub(depth("MSFT", seq)))
                pub.send(P.pub(depth("AAPL", seq)))
                await asyncio.sleep(0.01)
            assert st.depth.get("MSFT") is not None and st.depth.get("AAPL") is None
            st.depth.want("ladder", ["AAPL"])
            while st.depth.get("AAPL") is None and time.monotonic() < deadline:
                seq += 1
                pub.send(P.pub(depth("MSFT", seq)))
                pub.send(P.pub(depth("AAPL", seq)))
                await asyncio.sleep(0.01)
            assert st.depth.get("AAPL") is not None
            msft = st.depth.get("MSFT").seq
            for _ in range(20):
                seq += 1
                pub.send(P.pub(depth("MSFT", seq)))
                pub.send(P.pub(depth("AAPL", seq)))
                await asyncio.sleep(0.005)
            until = time.monotonic() + scaled(2)
            while st.depth.get("AAPL").seq < seq and time.monotonic() < until:
                await asyncio.sleep(0.01)
            assert st.depth.get("AAPL").seq == seq and st.depth.get("MSFT").seq <= msft + 1  # unsubscribed
        finally:
            await sub.aclose()
            pub.close(0)
            ctx.destroy(0)

    asyncio.run(run())
