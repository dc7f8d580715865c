"""Depth from the simulated market: the simulator's book against its ticks, and the market-data
gateway's depth messages (in process, its PUB read by a SUB on the same context over inproc)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import zmq

from tests.procs import scaled_ms
from workers import protocol as P
from workers.clock import ManualClock
from workers.config import add_common_args
from workers.marketdata.gateway import MarketDataGateway, build_parser
from workers.marketdata.sim_feed import BLOCK, SimFeed, SymbolBook, SymbolParams, params_for
from workers.marketdata.snapshot import MAX_SNAPSHOT_BYTES, LastValueCache


def check_book(sym: str, p: SymbolParams, bids: list, asks: list, tick) -> None:
    """What every book must be: the tick on top, best first, one tick apart, sizes in lots > 0."""
    assert bids[0] == [tick.bid, tick.bid_size] and asks[0] == [tick.ask, tick.ask_size], sym
    assert 1 <= len(bids) <= P.MAX_DEPTH_LEVELS and len(asks) == P.MAX_DEPTH_LEVELS
    for side, sign in ((bids, -1), (asks, 1)):
        for j, (price, size) in enumerate(side):
            assert size > 0 and size % p.lot == 0
            assert math.isclose(price, side[0][0] + sign * j * p.tick_size, abs_tol=p.tick_size / 1000)
            assert price > 0
        assert [px for px, _ in side] == sorted((px for px, _ in side), reverse=sign < 0)
    # what the gateway publishes is valid by the one declaration
    d = P.Depth(sym, 1, tick.ts, bids, asks, epoch=1)
    back = P.decode(d.pack(), expect=P.Depth)
    assert [list(lv) for lv in back.bids] == bids and [list(lv) for lv in back.asks] == asks


def test_every_tick_is_the_top_of_the_book_for_many_steps():
    feed = SimFeed(seed=3)
    for _ in range(3 * BLOCK):  # across block refills, every symbol, every tick
        t = feed.next()
        bids, asks = feed.sims[t.symbol].book()
        check_book(t.symbol, feed.sims[t.symbol].p, bids, asks, t)


def test_rows_leave_the_book_at_their_last_row():
    """The gateway makes ticks with rows(k), k of them at a time: the book is at the last one."""
    sim = SimFeed(["AAPL"], seed=5).sims["AAPL"]
    for k in (1, 7, 300, 1000, 1, 2048, 13):
        rows = sim.rows(k)
        seq, ts, last, bid, ask, bsz, asz, vol = rows[-1]
        bids, asks = sim.book()
        check_book("AAPL", sim.p, bids, asks, P.Tick("AAPL", seq, ts, last, bid, ask, bsz, asz, vol))


@pytest.mark.parametrize("tick_size", [0.05, 0.25, 1.0])
def test_books_on_other_tick_grids(tick_size):
    p = SymbolParams(base=100.0, tick_size=tick_size, volatility=0.001)
    feed = SimFeed(["X"], seed=2, params={"X": p})
    for _ in range(2000):
        t = feed.next()
        bids, asks = feed.sims["X"].book()
        check_book("X", p, bids, asks, t)
        # deeper prices are the very floats the simulator's quotes carry on that grid (it rounds
        # them with numpy): a level that becomes the touch later shows the same price
        bi, ai = round(t.bid / tick_size), round(t.ask / tick_size)
        grid = np.round(np.array([bi - j for j in range(len(bids))] + [ai + j for j in range(len(asks))]) * tick_size, 2)
        assert [px for px, _ in bids + asks] == grid.tolist()


def test_book_prices_round_as_the_quotes_do_over_a_wide_grid():
    p = SymbolParams(base=100.0, tick_size=0.01)
    book = SymbolBook(p, random.Random(2))
    for bid_i in range(10, 2_000_000, 9973):
        bids, asks = book.read(bid_i, bid_i + 1, 0.0, 0.0, 100, 100, 2)
        want = np.round(np.array([bid_i - j for j in range(1, 10)] + [bid_i + 1 + j for j in range(1, 10)]) * 0.01, 2)
        assert [px for px, _ in bids[1:] + asks[1:]] == want.tolist()


def test_no_book_before_the_first_tick():
    assert SimFeed(["AAPL"], seed=1).sims["AAPL"].book() == ([], [])


def test_reading_the_book_does_not_change_the_ticks():
    """The book draws from its own generator: a seed gives the same ticks however often (and
    whenever) the gateway reads the book."""
    plain, read = SimFeed(seed=9, clock=lambda: 1), SimFeed(seed=9, clock=lambda: 1)
    a = [plain.next().row for _ in range(5000)]
    b = []
    for i in range(5000):
        t = read.next()
        if i % 7 == 0:
            read.sims[t.symbol].book()
        b.append(t.row)
    assert a == b


def test_levels_behind_the_touch_keep_their_size_as_the_quote_moves():
    p = params_for("AAPL")
    book = SymbolBook(p, random.Random(1))
    bids1, asks1 = book.read(19000, 19001, 190.0, 190.01, 500, 700, 2)
    # the bid moves up a tick: the old best bid is now the second level, with about its size
    bids2, asks2 = book.read(19001, 19002, 190.01, 190.02, 300, 900, 2)
    assert bids2[0] == [190.01, 300] and bids2[1][0] == 190.0
    # (a change: up to 4 lots, and a pull of a tenth of the way to the level's mean, ~12 lots)
    assert abs(bids2[1][1] - 500) <= 5 * p.lot
    # the old best ask was crossed: gone; the levels behind it moved up one place
    assert asks2[0] == [190.02, 900]
    assert all(abs(s2 - s1) <= 8 * p.lot for (_, s1), (_, s2) in zip(asks1[2:], asks2[1:]))
    # sizes do vary: not every level kept its size over many reads
    sizes = {tuple(s for _, s in book.read(19001, 19002, 190.01, 190.02, 300, 900, 2)[0][1:]) for _ in range(20)}
    assert len(sizes) > 1


def test_resting_sizes_wander_around_a_mean_and_deeper_levels_hold_more():
    sim = SimFeed(["AAPL"], seed=2).sims["AAPL"]
    per_level: list[list[int]] = [[] for _ in range(P.MAX_DEPTH_LEVELS)]
    for i in range(20_000):
        sim.next_tick()
        if i % 5 == 0:
            for j, (_, size) in enumerate(sim.book()[0]):
                per_level[j].append(size // sim.p.lot)
    means = [sum(v) / len(v) for v in per_level]
    assert means[-1] > means[1] > means[0]
    assert max(max(v) for v in per_level) < 80  # no drift off to huge sizes


def test_a_quote_near_zero_has_only_the_bid_levels_above_zero():
    p = SymbolParams(base=1.0, tick_size=0.01)
    bids, asks = SymbolBook(p, random.Random(1)).read(3, 4, 0.03, 0.04, 100, 100, 2)
    assert [px for px, _ in bids] == [0.03, 0.02, 0.01]
    assert len(asks) == P.MAX_DEPTH_LEVELS


def test_book_levels_option_is_checked():
    with pytest.raises(ValueError):
        SymbolBook(params_for("AAPL"), None, levels=P.MAX_DEPTH_LEVELS + 1)


# ---------------------------------------------------------------------------- the gateway, in process


class Rig:
    """The gateway set up (not run) on inproc endpoints with a manual clock for its depth
    schedule, and a SUB on everything it publishes."""

    def __init__(self, *args: str, clock: ManualClock | None = None):
        parser = build_parser()
        add_common_args(parser)
        eps = [f"--{n}=inproc://{n}" for n in ("ticks", "snapshot", "control")]
        self.clock = clock or ManualClock()
        self.gw = MarketDataGateway(parser.parse_args([*eps, "--no-control", "--seed", "1", *args]), clock=self.clock)
        self.gw.setup()
        self.sub = self.gw.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect("inproc://ticks")
        self.frames: list[tuple[bytes, P.Message]] = []

    def publish(self, n: int) -> None:
        self.gw._publish(n)

    def read(self) -> list[tuple[bytes, P.Message]]:
        out = []
        while self.sub.poll(0):
            frame = self.sub.recv()
            topic, payload = P.split_pub(frame)
            if topic.startswith(b"depth."):
                msg = P.decode(payload, expect=P.Depth)  # every depth validates
                assert topic == P.depth_topic(msg.symbol)
            else:
                msg = P.decode(payload, expect=(P.Tick, P.Ticks))
            out.append((topic, msg))
        self.frames += out
        return out

    def subscribed(self) -> None:
        """Publish until the SUB gets frames (a subscription takes a moment even on inproc)."""
        for _ in range(200):
            self.publish(4)
            if self.sub.poll(scaled_ms(10)):
                self.read()
                self.frames.clear()
                return
        raise AssertionError("the SUB never received anything")

    def close(self) -> None:
        self.sub.close(0)
        self.gw._close()


@pytest.fixture
def rig():
    made: list[Rig] = []

    def make(*args: str, **kw) -> Rig:
        r = Rig(*args, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def check_stream(frames: list[tuple[bytes, P.Message]]) -> dict[str, list[P.Depth]]:
    """Every depth's best levels are the latest tick of its symbol before it, with that tick's
    ts; depth seq is 1, 2, ... per symbol; every depth carries the gateway's epoch."""
    latest: dict[str, tuple] = {}
    depths: dict[str, list[P.Depth]] = {}
    epochs = set()
    for topic, msg in frames:
        epochs.add(msg.epoch)
        if isinstance(msg, P.Depth):
            seq, ts, last, bid, ask, bsz, asz, vol = latest[msg.symbol]
            assert tuple(msg.bids[0]) == (bid, bsz) and tuple(msg.asks[0]) == (ask, asz), msg
            assert msg.ts == ts
            assert 1 <= len(msg.bids) <= P.MAX_DEPTH_LEVELS and len(msg.asks) <= P.MAX_DEPTH_LEVELS
            assert all(size > 0 for _, size in (*msg.bids, *msg.asks))
            depths.setdefault(msg.symbol, []).append(msg)
        else:
            latest[msg.symbol] = tuple(msg.ticks[-1]) if isinstance(msg, P.Ticks) else msg.row
    for sym, ds in depths.items():
        seqs = [d.seq for d in ds]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), sym
    assert len(epochs) == 1
    return depths


@pytest.mark.parametrize("batch", ["256", "1"])
def test_the_gateway_publishes_depth_after_the_tick_it_is_the_book_of(rig, batch):
    r = rig("--batch-ticks", batch)
    r.subscribed()
    before = r.gw.stats.counters["depth_frames"]
    frames_before = r.gw.stats.counters["frames"]
    depths_seen = 0
    for step in range(60):
        r.publish(37 if step % 3 else 1)  # batched bursts, and single ticks (the classic form)
        r.clock.advance(0.05)  # every other step a depth is due again at 10 Hz
        depths_seen += sum(isinstance(m, P.Depth) for _, m in r.read())
    depths = check_stream(r.frames)
    assert set(depths) == {"AAPL", "MSFT", "GOOG", "AMZN"}
    assert r.gw.stats.counters["depth_frames"] - before == depths_seen > 0
    # "frames" is every frame of the PUB, depth included (what its socket counts out)
    assert r.gw.stats.counters["frames"] - frames_before == len(r.frames)
    assert all(d.epoch == r.gw.epoch for ds in depths.values() for d in ds)


def test_depth_hz_bounds_the_rate_per_symbol(rig):
    r = rig("--depth-hz", "4")
    r.subscribed()
    r.clock.advance(1.0)
    for _ in range(100):  # 1 s in 10 ms steps: at most 4 depths per symbol (one at the start)
        r.publish(40)
        r.clock.advance(0.01)
    r.read()
    per = {}
    for _, m in r.frames:
        if isinstance(m, P.Depth):
            per[m.symbol] = per.get(m.symbol, 0) + 1
    assert per == {s: 4 for s in ("AAPL", "MSFT", "GOOG", "AMZN")}
    check_stream(r.frames)


def test_depth_hz_zero_publishes_no_depth(rig):
    r = rig("--depth-hz", "0")
    r.subscribed()
    for _ in range(20):
        r.publish(50)
        r.clock.advance(0.5)
    r.read()
    assert r.frames and not any(isinstance(m, P.Depth) for _, m in r.frames)
    assert r.gw.stats.counters["depth_frames"] == 0
    assert r.gw.lvc.snapshot(r.gw.epoch).depth == []


def test_replay_publishes_no_depth(rig):
    r = rig("--feed", "replay", "--speed", "0")
    r.subscribed()
    for _ in range(10):
        r.publish(100)
        r.clock.advance(0.5)
    r.read()
    assert r.frames and not any(isinstance(m, P.Depth) for _, m in r.frames)
    assert r.gw.stats.counters["depth_frames"] == 0


def test_the_snapshot_carries_the_last_depth_of_each_symbol(rig):
    r = rig()
    r.subscribed()
    for _ in range(5):
        r.publish(200)
        r.clock.advance(0.2)
    r.read()
    last = {m.symbol: m for _, m in r.frames if isinstance(m, P.Depth)}
    reply = P.decode(r.gw._snapshot_bytes(P.GetSnapshot()), expect=P.GetSnapshotReply)
    assert {d.symbol: d for d in reply.depth} == last
    ticks = {t.symbol: t for t in reply.ticks}
    for d in reply.depth:  # the last depth is the book of the snapshot's tick when it came after it
        if d.ts == ticks[d.symbol].ts:
            assert tuple(d.bids[0]) == (ticks[d.symbol].bid, ticks[d.symbol].bid_size)
    only = P.decode(r.gw._snapshot_bytes(P.GetSnapshot(symbols=["MSFT"])), expect=P.GetSnapshotReply)
    assert [d.symbol for d in only.depth] == ["MSFT"]


def test_a_depth_refused_by_the_socket_is_counted_and_not_cached(rig):
    r = rig()
    r.subscribed()

    class Full:
        def send(self, frame, flags=0):
            if frame.startswith(b"depth."):
                raise zmq.Again()
            return real.send(frame, flags)

    real = r.gw.sock
    before = r.gw.stats.counters["depth_frames"]
    cached = {s: r.gw.lvc.last_depth(s) for s in r.gw.feed.symbols}
    r.gw.sock = Full()
    try:
        r.clock.advance(1.0)
        r.publish(8)
    finally:
        r.gw.sock = real
    assert r.gw.stats.counters["depth_dropped"] == 4
    assert r.gw.stats.counters["depth_frames"] == before
    assert {s: r.gw.lvc.last_depth(s) for s in r.gw.feed.symbols} == cached
    # the next one takes the next seq: the refused ones are a gap, as for ticks
    r.clock.advance(1.0)
    r.publish(8)
    assert {s: r.gw.lvc.last_depth(s).seq for s in r.gw.feed.symbols} == {s: d.seq + 2 for s, d in cached.items()}


def test_depth_in_the_snapshot_stays_within_its_size_and_bars_give_way():
    lvc = LastValueCache()
    syms = [f"S{i:03d}" for i in range(60)]
    ts0 = 1_700_000_000_000_000_000
    for s in syms:
        for k in range(600):  # 600 one-second bars each: more than fits beside the depth
            lvc.update(s, [[k + 1, ts0 + k * 1_000_000_000, 100.0 + k / 100, 99.99, 100.01, 100, 100, k * 100]])
        bids = [[round(99.99 - j / 100, 2), 100 * (j + 1)] for j in range(P.MAX_DEPTH_LEVELS)]
        asks = [[round(100.01 + j / 100, 2), 100 * (j + 1)] for j in range(P.MAX_DEPTH_LEVELS)]
        lvc.update_depth(P.Depth(s, 1, ts0, bids, asks, epoch=7))
    small = 200_000
    reply = lvc.snapshot(7, max_bytes=small)
    assert len(reply.pack()) <= small
    assert reply.truncated and len(reply.depth) == len(syms)
    full = lvc.snapshot(7)
    assert len(full.pack()) <= MAX_SNAPSHOT_BYTES and len(full.depth) == len(syms)
    back = P.decode(reply.pack(), expect=P.GetSnapshotReply)
    assert back.depth[0].bids[0] == (99.99, 100)


def test_set_depth_hz_turns_depth_on_and_off(rig):
    from workers.errors import CommandError

    r = rig("--depth-hz", "0")
    r.subscribed()
    assert r.gw.on_command("set_depth_hz", {"hz": 5}) == {"hz": 5.0}
    assert r.gw.stats.gauges["depth_hz"] == 5.0
    r.publish(4)  # the next tick of each symbol carries a depth
    r.read()
    assert {m.symbol for _, m in r.frames if isinstance(m, P.Depth)} == {"AAPL", "MSFT", "GOOG", "AMZN"}
    assert r.gw.on_command("set_depth_hz", {"hz": 0}) == {"hz": 0.0}
    r.frames.clear()
    r.clock.advance(10)
    r.publish(40)
    r.read()
    assert r.frames and not any(isinstance(m, P.Depth) for _, m in r.frames)
    for bad in (-1, 1001, "x", True):
        with pytest.raises(CommandError):
            r.gw.on_command("set_depth_hz", {"hz": bad})


def test_set_depth_hz_is_refused_for_the_replay(rig):
    from workers.errors import CommandError

    r = rig("--feed", "replay")
    with pytest.raises(CommandError, match="no order book"):
        r.gw.on_command("set_depth_hz", {"hz": 10})
    assert r.gw.on_command("set_depth_hz", {"hz": 0}) == {"hz": 0.0}


def test_depth_hz_option_is_checked():
    for bad in ("-1", "1001", "x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--depth-hz", bad])
    assert build_parser().parse_args([]).depth_hz == 10.0


def test_the_depth_benchmark_runs_at_a_tiny_size():
    """bench/depth.py stays runnable (its numbers are never asserted)."""
    from bench import depth

    loop = depth.feed_loop(10_000, loops=1, sim_seconds=0.3)
    assert set(loop) == {"on", "off"} and all(v > 0 for v in loop.values())
    assert depth.one_depth(n=50, repeats=1) > 0


def test_a_book_that_fails_costs_its_depth_not_the_ticks(rig):
    r = rig()
    r.subscribed()

    def broken():
        raise RuntimeError("boom")

    r.gw._books["MSFT"] = broken
    r.clock.advance(1.0)
    ticks0 = r.gw.stats.counters["ticks"]
    r.publish(400)
    r.read()
    assert r.gw.stats.counters["ticks"] - ticks0 == 400
    assert r.gw.stats.counters["depth_errors"] == 1
    assert {m.symbol for _, m in r.frames if isinstance(m, P.Depth)} == {"AAPL", "GOOG", "AMZN"}
    check_stream(r.frames)
