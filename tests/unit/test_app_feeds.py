"""The window's stream decoders and a drained subscription on a real ipc socket."""

from __future__ import annotations

import asyncio

import msgpack
import msgspec
import zmq
import zmq.asyncio

from workers import protocol as P
from workers.config import Endpoints
from workers.protocol import OrderStatus, Side
from app.feeds import EventsDecoder, ExecDecoder, Subscription, TickDecoder
from app.state import AppState


class NoBars:
    def add_tick(self, *a):
        pass


def state():
    return AppState(bars_factory=NoBars)


def tick(sym="AAPL", seq=1, last=100.0, **kw):
    d = dict(symbol=sym, seq=seq, ts=P.now_ns(), last=last, bid=last - 0.01, ask=last + 0.01, bid_size=1, ask_size=2, volume=10)
    d.update(kw)
    return P.Tick(**d)


def test_fast_path_decodes_valid_ticks():
    st = state()
    dec = TickDecoder(st)
    dec([P.pub(tick(seq=1)), P.pub(tick(seq=2, last=101.5)), P.pub(tick("MSFT", 1, 300.0))])
    assert st.market.quotes["AAPL"].last == 101.5 and st.market.quotes["MSFT"].last == 300.0
    assert st.streams["ticks"].received == 3 and st.streams["ticks"].decode_errors == 0


def test_bad_tick_frames_are_counted_and_logged_once_per_interval():
    st = state()
    dec = TickDecoder(st)
    good = tick(seq=1).to_dict()
    nan = dict(good, last=float("nan"))
    crossed = dict(good, bid=101.0, ask=100.0)
    frames = [
        b"garbage",
        b"tick.AAPL\x00" + b"\xc1",  # not msgpack
        b"tick.AAPL\x00" + msgpack.packb(nan),
        b"tick.AAPL\x00" + msgpack.packb(crossed),
        b"tick.MSFT\x00" + msgpack.packb(good),  # topic does not match the symbol
        b"tick.AAPL\x00" + msgpack.packb(dict(good, v=99)),
        b"tick.AAPL\x00" + msgpack.packb([1, 2, 3]),
    ]
    dec(frames)
    assert st.streams["ticks"].decode_errors == len(frames)
    assert "AAPL" not in st.market.quotes
    warnings = [ln for ln in st.log.items if ln.source == "ticks"]
    assert len(warnings) == 1 and "bad tick" in warnings[0].text


def test_batched_ticks_frames():
    st = state()
    rows = [[i, P.now_ns(), 100.0 + i, 99.0 + i, 101.0 + i, 1, 2, 10 * i] for i in range(1, 6)]
    TickDecoder(st)([P.encode_ticks("AAPL", rows), P.encode_ticks("AAPL", [[6, P.now_ns(), 50.0, 49.0, 51.0, 1, 1, 70]])])
    q = st.market.quotes["AAPL"]
    assert (q.seq, q.ticks, q.last, q.missed) == (6, 6, 50.0, 0) and st.streams["ticks"].decode_errors == 0
    crossed = [[1, 1, 100.0, 101.0, 99.0, 1, 1, 1], [2, 1, 100.0, 99.0, 101.0, 1, 1, 1]]  # the protocol refuses to build it
    bad = b"tick.AAPL\x00" + msgpack.packb({"v": 1, "type": "ticks", "symbol": "AAPL", "ticks": crossed})
    TickDecoder(st)([bad])
    assert st.streams["ticks"].decode_errors == 1 and q.ticks == 6  # a bad frame is dropped whole


def test_valid_but_unusual_encoding_takes_the_slow_path():
    st = state()
    d = tick(seq=1).to_dict()
    d["last"], d["bid"], d["ask"] = 100, 99, 101  # integers are valid prices
    TickDecoder(st)([b"tick.AAPL\x00" + msgpack.packb(d)])
    assert st.market.quotes["AAPL"].last == 100.0 and st.streams["ticks"].decode_errors == 0


def test_exec_and_events_decoders():
    st = state()
    up = P.OrderUpdate(client_order_id="c1", order_id="O1", symbol="MSFT", side=Side.BUY, qty=10, filled_qty=10,
                       avg_price=100.0, status=OrderStatus.FILLED, ts=1, seq=1)
    f = P.Fill(fill_id="F1", client_order_id="c1", order_id="O1", symbol="MSFT", side=Side.BUY, qty=10, price=100.0, ts=1, seq=2)
    dec = ExecDecoder(st)
    dec([P.pub(up), P.pub(f), P.pub(f), b"exec.x\x00junk"])
    assert st.orders.get("c1").status is OrderStatus.FILLED
    assert st.position("MSFT").qty == 10 and st.duplicate_fills == 1
    assert st.streams["execution"].decode_errors == 1
    assert dec.seq.duplicates == 1 and not st.resync_wanted  # a repeat is not a restart
    # a step back (no epochs on the wire yet) is a gateway restart: resync
    older = P.OrderUpdate(client_order_id="c1", order_id="O1", symbol="MSFT", side=Side.BUY, qty=10, filled_qty=0,
                          avg_price=0.0, status=OrderStatus.NEW, ts=1, seq=1)
    dec([P.pub(older)])
    assert st.orders.get("c1").status is OrderStatus.FILLED and dec.seq.restarts == 1 and st.resync_wanted
    sig = P.Signal(id="s", strategy="sr", symbol="MSFT", side=Side.BUY, qty=1, price=1.0, ts=1, cause_ts=1)
    EventsDecoder(st)([P.pub(P.SignalDecision(signal=sig.to_dict(), accepted=True, ts=2, client_order_id="x")),
                       P.pub(P.Levels(strategy="sr", symbol="MSFT", ts=3, support=1.0, resistance=2.0)),
                       P.pub(P.Position(symbol="MSFT", qty=1, avg_price=1.0, realized_pnl=0.0, unrealized_pnl=0.0, ts=4))])
    ch = st.collect()
    assert len(ch.new_signals) == 1 and ("MSFT", "sr") in ch.levels


def test_subscription_drains_in_batches(tmp_path):
    eps = Endpoints.ephemeral_ipc(tmp_path)
    st = state()
    n = 20_000

    async def main():
        ctx = zmq.asyncio.Context()
        pub = zmq.Context.instance().socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.setsockopt(zmq.LINGER, 0)
        pub.bind(eps.ticks)
        sub = Subscription(ctx, eps.ticks, [b"tick."], TickDecoder(st), st.streams["ticks"], rcvhwm=0)
        sub.start()
        try:
            for _ in range(200):  # slow joiner: wait until the subscription is live
                pub.send(P.pub(tick("ZZZ", 1)))
                await asyncio.sleep(0.01)
                if "ZZZ" in st.market.quotes:
                    break
            for i in range(1, n + 1):
                pub.send(P.pub(tick(seq=i, last=100.0 + (i % 7))))
            for _ in range(500):
                if st.market.quotes.get("AAPL") and st.market.quotes["AAPL"].seq == n:
                    break
                await asyncio.sleep(0.01)
        finally:
            await sub.aclose()
            pub.close(0)
            ctx.destroy(0)

    asyncio.run(main())
    q = st.market.quotes["AAPL"]
    assert q.ticks == n and q.missed == 0
    stats = st.streams["ticks"]
    assert stats.max_batch > 1  # it drained, not one message per wake-up
    assert stats.batches < stats.received


def test_a_publisher_with_50000_symbols_cannot_grow_the_window(tmp_path):
    """What the outside check did: a rogue publisher in front of the window with 50,000
    distinct valid symbols.  The state holds at most the cap plus the watched symbols, keeps
    every watched one, tells the trader, and its memory grows with the cap, not the universe
    (before the cap each symbol cost ~78 KB: ~150 KB of numpy buffers allocated, ~4 GB here)."""
    import tracemalloc

    from app.chart.bars import MultiIntervalBars  # the real bars: they were most of the cost
    from app.state import AppState
    from tests.procs import scaled

    eps = Endpoints.ephemeral_ipc(tmp_path)
    cap, universe = 300, 50_000
    st = AppState(max_symbols=cap)
    assert st.market._bars_factory is not None and isinstance(st.market._bars_factory(), MultiIntervalBars)
    watched = ["WL1", "WL2", "WL3"]
    st.market.configure(watchlist=watched)
    bound = 24 * 2**20  # the cap's symbols take ~2 MB; 300 symbols of the old code took ~45 MB
    peak = 0

    async def main():
        nonlocal peak
        ctx = zmq.asyncio.Context()
        pub = zmq.Context.instance().socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.setsockopt(zmq.LINGER, 0)
        pub.bind(eps.ticks)
        sub = Subscription(ctx, eps.ticks, [b"tick."], TickDecoder(st), st.streams["ticks"], rcvhwm=0)
        sub.start()
        tracemalloc.start()
        try:
            for _ in range(int(scaled(200))):  # slow joiner: the first watched symbol gets through
                pub.send(P.encode_ticks("WL1", [[1, P.now_ns(), 10.0, 9.9, 10.1, 1, 1, 1]]))
                await asyncio.sleep(0.01)
                if "WL1" in st.market.quotes:
                    break
            base = tracemalloc.get_traced_memory()[0]
            seq = 2
            for i in range(universe):
                pub.send(P.encode_ticks(f"U{i:05d}", [[1, P.now_ns(), 100.0, 99.9, 100.1, 1, 1, 10]]))
                if i % 997 == 0:  # the watched symbols tick among the flood, and always get through
                    for w in watched:
                        pub.send(P.encode_ticks(w, [[seq, P.now_ns(), 10.0, 9.9, 10.1, 1, 1, seq]]))
                    seq += 1
                if i % 2000 == 0:
                    await asyncio.sleep(0)  # let the window drain while the publisher goes on
                    peak = max(peak, tracemalloc.get_traced_memory()[0] - base)
                    assert peak < bound, f"{len(st.market.quotes)} symbols held: {peak / 2**20:.0f} MB"
            last = P.now_ns()
            for w in watched:
                pub.send(P.encode_ticks(w, [[seq, last, 11.0, 10.9, 11.1, 1, 1, seq]]))
            deadline = asyncio.get_running_loop().time() + scaled(20)
            while asyncio.get_running_loop().time() < deadline:
                if st.market.refused_ticks >= universe - cap and all(st.market.quotes[w].seq == seq for w in watched):
                    break
                peak = max(peak, tracemalloc.get_traced_memory()[0] - base)
                await asyncio.sleep(0.01)
            peak = max(peak, tracemalloc.get_traced_memory()[0] - base)
        finally:
            tracemalloc.stop()
            await sub.aclose()
            pub.close(0)
            ctx.destroy(0)

    asyncio.run(main())
    m = st.market
    assert m.refused_ticks == universe - cap and st.streams["ticks"].decode_errors == 0
    assert len(m.quotes) == cap + len(watched) and m.held_unwatched() == cap
    assert all(m.quotes[w].seq == m.quotes["WL1"].seq and m.quotes[w].missed == 0 for w in watched)
    assert peak < bound, f"{peak / 2**20:.1f} MB"
    ch = st.collect()
    told = [ln for ln in ch.new_log if "universe cap" in ln.text]
    assert len(told) == 1 and f"symbols ignored: universe cap {cap} reached" in told[0].text
    assert f"{universe - cap:,} ticks dropped" in told[0].text


def test_a_late_joiner_of_the_execution_stream_asks_for_a_resync():
    # found by a flaky real-fleet test: the window's first sync ran, then a fill went out
    # before its execution SUB took hold; the first report it saw (seq 3) said nothing of it
    st = state()
    st.resync_wanted = False
    dec = ExecDecoder(st)
    up = P.OrderUpdate(client_order_id="c1", order_id="O1", symbol="MSFT", side=Side.BUY, qty=10, filled_qty=0,
                       avg_price=0.0, status=OrderStatus.NEW, ts=1, seq=3, epoch=7)
    dec([P.pub(up)])
    assert st.resync_wanted  # reports 1 and 2 went out before we listened: ask get_fills again
    fresh = state()
    fresh.resync_wanted = False
    ExecDecoder(fresh)([P.pub(msgspec.structs.replace(up, seq=1))])
    assert not fresh.resync_wanted  # the first report of the stream: nothing was missed
