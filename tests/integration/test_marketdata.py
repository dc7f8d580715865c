"""The market-data gateway as a real process on ipc endpoints; the test subscribes with zmq SUB
sockets (and, in one test, plays the supervisor on the control endpoint)."""

from __future__ import annotations

import collections
import itertools
import time

import pytest
import zmq

from tests.procs import log_text, scaled, scaled_ms, start_worker, stop, wait_until
from workers import protocol as P
from workers.config import Endpoints


class Sub:
    """A SUB socket on the ticks endpoint that decodes what it receives."""

    def __init__(self, ctx: zmq.Context, endpoint: str, *topics: bytes):
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 1_000_000)
        for t in topics or (b"tick.",):
            self.sock.setsockopt(zmq.SUBSCRIBE, t)
        self.sock.connect(endpoint)
        self.ticks: list[P.Tick] = []
        self.topics: list[bytes] = []

    def drain(self, wait_ms: int = 20, limit: int = 5000) -> int:
        """Take what is queued, frames until ``limit`` ticks (waiting up to ``wait_ms`` for the
        first); returns the number of frames.  (A limit in ticks, not frames: at rate 0 a batched
        frame holds up to 250 ticks, and a drain of 5000 of them took seconds, during which the
        test's fake supervisor went unanswered.)"""
        n = ticks = 0
        if not self.sock.poll(wait_ms):
            return 0
        while ticks < limit:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return n
            # either form: a 'tick', or a batched 'ticks' frame (the gateway's default)
            topic = P.split_pub(frame)[0]
            for tick in P.iter_ticks(frame):
                self.topics.append(topic)
                self.ticks.append(tick)
                ticks += 1
            n += 1
        return n

    def until(self, predicate, timeout: float = 15.0, message: str = ""):
        """Keep receiving until ``predicate(self)`` holds."""
        return wait_until(lambda: (self.drain(), predicate(self))[1], timeout=timeout, message=message)

    def by_symbol(self) -> dict[str, list[P.Tick]]:
        out = collections.defaultdict(list)
        for t in self.ticks:
            out[t.symbol].append(t)
        return out


@pytest.fixture
def env(tmp_path):
    """Endpoints in tmp_path, a zmq context, and every started process stopped afterwards."""
    eps = Endpoints.ephemeral_ipc(tmp_path)
    ctx = zmq.Context()
    procs = []

    def start(*args: str, control: bool = False):
        proc = start_worker("marketdata", eps, *args, tmp_path=tmp_path, control=control)
        procs.append(proc)
        return proc

    yield eps, ctx, start
    for p in procs:
        stop(p)
    ctx.destroy(linger=0)


def test_sim_ticks_for_every_symbol_with_seq_step_one(env):
    eps, ctx, start = env
    sub = Sub(ctx, eps.ticks)
    proc = start("--rate", "50", "--seed", "1")

    def enough():
        sub.drain()
        per = sub.by_symbol()
        return len(per) == 4 and all(len(v) >= 15 for v in per.values())

    wait_until(enough, timeout=15, message="15 ticks of each of the 4 default symbols")
    per = sub.by_symbol()
    assert set(per) == {"AAPL", "MSFT", "GOOG", "AMZN"}
    for sym, ts in per.items():
        seqs = [t.seq for t in ts]
        # a slow joiner may miss the first ticks, never one in the middle
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), sym
        assert all(t.bid < t.ask and t.bid <= t.last <= t.ask for t in ts)
    assert all(topic == b"tick." + t.symbol.encode() for topic, t in zip(sub.topics, sub.ticks))
    assert proc.poll() is None, log_text(proc)
    assert stop(proc) == 0, log_text(proc)


def test_same_seed_same_prices_across_processes(env):
    eps, ctx, start = env
    sub = Sub(ctx, eps.ticks, b"tick.MSFT\x00")
    proc = start("--rate", "200", "--seed", "42", "--symbols", "MSFT")
    sub.until(lambda s: len(s.ticks) >= 20, message="20 MSFT ticks")
    assert stop(proc) == 0
    from workers.marketdata.sim_feed import SimFeed

    expected = {t.seq: (t.last, t.bid, t.ask, t.volume) for t in SimFeed(["MSFT"], seed=42).ticks(len(sub.ticks) + 50)}
    assert all((t.last, t.bid, t.ask, t.volume) == expected[t.seq] for t in sub.ticks)


def test_max_ticks_stops_publishing_but_not_the_process(env):
    eps, ctx, start = env
    sub = Sub(ctx, eps.ticks)
    proc = start("--rate", "100", "--max-ticks", "40", "--start-delay", "0.3", "--seed", "3")
    # 40 ticks over 4 symbols: each symbol ends at seq 10
    sub.until(lambda s: {t.symbol for t in s.ticks if t.seq == 10} == {"AAPL", "MSFT", "GOOG", "AMZN"}, message="every symbol reached seq 10")
    # Quiet period: nothing beyond the limit turns up, and the gateway is still alive.
    deadline = time.monotonic() + 0.4
    while time.monotonic() < deadline:
        sub.drain(50)
    assert max(t.seq for t in sub.ticks) == 10
    assert len(sub.ticks) <= 40
    assert proc.poll() is None
    assert "--max-ticks 40 reached" in log_text(proc)
    assert stop(proc) == 0


def test_rate_zero_delivers_a_lot_quickly(env):
    eps, ctx, start = env
    sub = Sub(ctx, eps.ticks)
    proc = start("--rate", "0", "--seed", "1")
    sub.until(lambda s: len(s.ticks) >= 50_000, timeout=20, message="50k ticks at rate 0")
    assert stop(proc) == 0


def test_per_symbol_subscription_gets_only_that_symbol(env):
    eps, ctx, start = env
    # AAPLX shares the prefix "tick.AAPL": the NUL after the topic keeps it out
    only = Sub(ctx, eps.ticks, b"tick.AAPL\x00")
    every = Sub(ctx, eps.ticks)
    proc = start("--rate", "100", "--symbols", "AAPL,AAPLX,MSFT", "--seed", "1")

    def enough():
        only.drain()
        every.drain()
        return len(only.ticks) >= 30 and {"AAPLX", "MSFT"} <= {t.symbol for t in every.ticks}

    wait_until(enough, timeout=15, message="30 AAPL ticks and ticks of the other symbols")
    assert {t.symbol for t in only.ticks} == {"AAPL"}
    assert stop(proc) == 0


def test_replay_publishes_the_bundled_bars(env):
    eps, ctx, start = env
    sub = Sub(ctx, eps.ticks, b"tick.IBM\x00")
    proc = start("--feed", "replay", "--speed", "0", "--symbols", "IBM,MSFT", "--loop", "--seed", "1")
    sub.until(lambda s: len(s.ticks) >= 200, message="200 IBM replay ticks")
    seqs = [t.seq for t in sub.ticks]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # IBM traded between 151.71 and 211.79 in the bundled window
    assert all(151.71 <= t.last <= 211.79 for t in sub.ticks)
    assert stop(proc) == 0


def test_replay_of_a_file_to_its_end(env, tmp_path):
    eps, ctx, start = env
    path = tmp_path / "two_days.csv"
    path.write_text("symbol,date,open,high,low,close,volume\nAAA,2020-01-02,10,10.5,9.8,10.4,12345\nAAA,2020-01-03,10.4,10.45,9.9,9.95,999\n")
    sub = Sub(ctx, eps.ticks)
    # two bars at two bars per second, after a pause for the subscriber to connect
    proc = start("--feed", "replay", "--file", str(path), "--speed", "172800", "--ticks-per-bar", "10", "--start-delay", "0.3")
    sub.until(lambda s: any(t.seq == 20 for t in s.ticks), message="last replay tick")
    assert sub.ticks[-1].last == 9.95 and sub.ticks[-1].volume == 999
    wait_until(lambda: "replay reached the end of the file" in log_text(proc), timeout=5)
    assert proc.poll() is None
    assert stop(proc) == 0


def test_bad_options_are_refused(env, tmp_path):
    eps, ctx, start = env
    proc = start("--feed", "replay", "--file", str(tmp_path / "missing.csv"))
    assert proc.wait(scaled(15)) == 2
    proc = start("--rate", "-1")
    assert proc.wait(scaled(15)) == 2
    assert "--rate" in log_text(proc)


def test_sigterm_exits_cleanly(env):
    eps, ctx, start = env
    sub = Sub(ctx, eps.ticks)
    proc = start("--rate", "20")
    sub.until(lambda s: s.ticks, message="a first tick")
    assert stop(proc) == 0
    assert "stopping: signal" in log_text(proc)


class FakeSupervisor:
    def __init__(self, ctx: zmq.Context, endpoint: str):
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.worker: bytes | None = None
        self.heartbeats: list[P.Heartbeat] = []
        self.replies: dict[str, P.CommandReply] = {}
        self._ids = itertools.count(1)

    def drain(self) -> None:
        while self.sock.poll(10):
            ident, frame = self.sock.recv_multipart()
            self.worker = ident
            msg = P.decode(frame)
            if isinstance(msg, (P.Hello, P.Heartbeat)):
                if isinstance(msg, P.Heartbeat):
                    self.heartbeats.append(msg)
                # answered like the real supervisor: a worker that hears nothing for 1.5 s
                # reconnects its control channel (and a command sent meanwhile is lost)
                self.sock.send_multipart([ident, P.Heartbeat(ts=P.now_ns()).pack()])
            elif isinstance(msg, P.CommandReply):
                self.replies[msg.id] = msg

    def command(self, cmd: str, **args) -> P.CommandReply:
        cid = f"c{next(self._ids)}"
        self.sock.send_multipart([self.worker, P.Command(id=cid, cmd=cmd, args=args).pack()])
        wait_until(lambda: self.drain() or cid in self.replies, timeout=10, message=f"reply to {cmd}")
        return self.replies[cid]


def test_control_commands_and_stats(env):
    eps, ctx, start = env
    sup = FakeSupervisor(ctx, eps.control)
    sub = Sub(ctx, eps.ticks)
    proc = start("--rate", "20", "--seed", "1", "--orphan-timeout", "0", "--heartbeat", "0.1", control=True)
    wait_until(lambda: sup.drain() or sup.heartbeats, timeout=15, message="a heartbeat")
    sub.until(lambda s: len(s.ticks) >= 10, message="ticks")

    def stats():
        sup.drain()
        return sup.heartbeats[-1].stats

    wait_until(lambda: stats()["counters"].get("ticks", 0) >= 10, timeout=10, message="ticks counter")
    g = stats()["gauges"]
    assert g["symbols"] == 4 and g["feed"] == "sim" and g["rate"] == 20
    assert "ticks_per_s" in g

    bad = sup.command("set_rate", rate=-5)
    assert not bad.ok and "rate" in bad.reason
    assert not sup.command("set_speed", speed=1000).ok  # sim feed
    ok = sup.command("set_rate", rate=0)
    assert ok.ok and ok.result == {"rate": 0.0}
    n = len(sub.ticks)
    sub.until(lambda s: sup.drain() or len(s.ticks) >= n + 20_000, message="fast ticks after set_rate 0")

    assert sup.command("pause").ok
    # after the pause reply nothing new is published: the stream goes quiet
    # (answering heartbeats meanwhile: draining the rate-0 backlog can take a while)
    wait_until(lambda: (sup.drain(), sub.drain(100) == 0)[1], timeout=10, message="no ticks while paused")
    assert sub.drain(300) == 0
    assert sup.command("set_rate", rate=50).ok
    assert sup.command("resume").ok
    n = len(sub.ticks)
    sub.until(lambda s: len(s.ticks) > n, message="ticks after resume")

    assert sup.command("stop").ok
    assert proc.wait(scaled(10)) == 0


# ---------------------------------------------------------------------------- epoch and snapshot


class Joiner:
    """A late joiner doing the zguide's Clone join against the real gateway: subscribe first,
    hold live ticks until the subscription is seen working, ask for the snapshot on a DEALER,
    then keep the live ticks that come after the snapshot's."""

    def __init__(self, ctx: zmq.Context, eps: Endpoints):
        self.sub = Sub(ctx, eps.ticks)
        self.dealer = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(eps.snapshot)
        self._tags = itertools.count(1)

    def ask(self, payload: bytes | list[bytes], timeout: float = 10.0) -> P.Reply:
        tag = b"q%d" % next(self._tags)
        body = payload if isinstance(payload, list) else [payload]
        self.dealer.send_multipart([tag, b"", *body])
        assert self.dealer.poll(int(scaled(timeout) * 1000)), "no snapshot reply"
        frames = self.dealer.recv_multipart()
        assert frames[:2] == [tag, b""]  # the envelope comes back as it was sent
        return P.decode_reply(frames[-1], P.GetSnapshot)

    def join(self) -> P.GetSnapshotReply:
        self.sub.until(lambda s: s.ticks, message="live ticks (the subscription is in place)")
        reply = self.ask(P.GetSnapshot().pack())
        assert isinstance(reply, P.GetSnapshotReply) and reply.ok, reply
        return reply


def test_a_late_joiner_gets_the_snapshot_then_the_live_stream_without_gap_or_duplicate(env):
    eps, ctx, start = env
    start("--rate", "200", "--seed", "3")
    early = Sub(ctx, eps.ticks)  # was there from the start: the stream the joiner must reproduce
    early.until(lambda s: len(s.ticks) >= 400, message="ticks before the joiner comes")
    joiner = Joiner(ctx, eps)
    snap = joiner.join()
    assert snap.epoch > 0 and {t.symbol for t in snap.ticks} == {"AAPL", "MSFT", "GOOG", "AMZN"}
    joiner.sub.until(lambda s: all(len(v) >= 100 for v in s.by_symbol().values()), message="live ticks after the join")
    early.until(lambda s: len(s.ticks) >= len(joiner.sub.ticks) + 400, message="the early subscriber past the joiner")
    history = {sym: {x.seq: x for x in ticks} for sym, ticks in early.by_symbol().items()}
    bars = {(b.symbol, b.interval): b for b in snap.bars}
    assert {iv for _, iv in bars} == {1, 5}  # the chart's 1 s and 5 s (and coarser) intervals
    for t in snap.ticks:
        assert t.epoch == snap.epoch
        # the snapshot's tick is the one every subscriber was sent with that seq
        assert history[t.symbol][t.seq] == t
        live = [x for x in joiner.sub.by_symbol()[t.symbol] if x.epoch == snap.epoch and x.seq > t.seq]
        assert [x.seq for x in live] == list(range(t.seq + 1, t.seq + 1 + len(live))), f"{t.symbol}: gap or duplicate"
        assert live and live == [history[t.symbol][x.seq] for x in live]
        for iv in (1, 5):
            # the session's bars: on their grid, the last one closing at the last tick
            b, ns = bars[(t.symbol, iv)], iv * 1_000_000_000
            assert b.bars
            assert all(row[0] % ns == 0 for row in b.bars)
            assert b.bars[-1][4] == t.last and b.bars[-1][0] <= t.ts < b.bars[-1][0] + ns
            by_start = {row[0]: row for row in b.bars}
            for x in history[t.symbol].values():
                if x.seq <= t.seq:  # every tick before the snapshot is inside its bar
                    row = by_start[x.ts - x.ts % ns]
                    assert row[3] <= x.last <= row[2]
            assert sum(r[5] for r in b.bars) == t.volume  # the sim's volume counts from the start
    assert not snap.truncated
    # every frame of the stream carries the same epoch
    assert {x.epoch for x in early.ticks} == {snap.epoch}

    one = joiner.ask(P.GetSnapshot(symbols=["MSFT", "NOPE"]).pack())
    assert [t.symbol for t in one.ticks] == ["MSFT"] and {b.symbol for b in one.bars} == {"MSFT"}


def test_malformed_snapshot_requests_are_answered_with_errors_and_the_gateway_keeps_publishing(env):
    eps, ctx, start = env
    sup = FakeSupervisor(ctx, eps.control)
    proc = start("--rate", "100", "--seed", "4", "--orphan-timeout", "0", "--heartbeat", "0.1", control=True)
    joiner = Joiner(ctx, eps)
    joiner.join()
    bad = {
        b"\xc1": "msgpack",
        P.packb({"v": 1, "type": "send_order"}): "",
        P.packb({"v": 1, "type": "get_snapshot", "symbols": "AAPL"}): "symbols",
        P.packb({"v": 1, "type": "get_snapshot", "symbols": ["no spaces"]}): "symbol",
        P.packb({"v": 9, "type": "get_snapshot"}): "version",
        P.packb([1, 2, 3]): "map",
    }
    for payload, word in bad.items():
        r = joiner.ask(payload)
        assert r.ok is False and word in r.reason, (payload, r.reason)
    r = joiner.ask([P.GetSnapshot().pack(), b"extra"])
    assert r.ok is False and "one frame" in r.reason

    def counters():
        sup.drain()
        return sup.heartbeats[-1].stats["counters"] if sup.heartbeats else {}

    # a flood from a client that does not read meanwhile: the gateway neither blocks nor grows,
    # it answers what the client's queue takes and counts the rest as replies dropped
    wait_until(lambda: counters().get("snapshot_requests", 0) >= len(bad) + 2, timeout=10, message="requests counted")
    base = counters()
    n0 = len(joiner.sub.ticks)
    for i in range(2000):
        joiner.dealer.send_multipart([b"f%d" % i, b"", b"\x93garbage"])
    wait_until(lambda: (joiner.sub.drain(0), counters()["snapshot_requests"] >= base["snapshot_requests"] + 2000)[1],
               timeout=20, message="the flood read")
    answered = 0
    while joiner.dealer.poll(scaled_ms(200)):
        frames = joiner.dealer.recv_multipart()
        r = P.decode_reply(frames[-1], P.GetSnapshot)
        assert r.ok is False and "msgpack" in r.reason
        answered += 1
    c = counters()
    assert answered > 0 and answered + c["snapshot_replies_dropped"] - base["snapshot_replies_dropped"] == 2000
    assert c["snapshot_errors"] - base["snapshot_errors"] == 2000
    joiner.sub.until(lambda s: len(s.ticks) >= n0 + 100, message="ticks after the flood")
    for sym, ticks in joiner.sub.by_symbol().items():
        assert [t.seq for t in ticks] == list(range(ticks[0].seq, ticks[0].seq + len(ticks))), f"{sym}: ticks lost"
    good = joiner.ask(P.GetSnapshot().pack())
    assert good.ok and len(good.ticks) == 4

    wait_until(lambda: counters()["snapshots"] >= 2, timeout=10, message="snapshots counted")
    c = counters()
    assert c["snapshots"] >= 2 and c.get("handler_errors", 0) == 0
    # 2000 bad requests cost a few log lines, not 2000
    assert log_text(proc).count("bad snapshot request") < 10
