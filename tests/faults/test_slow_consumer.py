"""Slow consumers: a subscriber that stops reading slows nobody, and its loss shows as seq gaps.

The market-data worker runs under a real Supervisor (its heartbeats carry the published
counts) with an explicit, small SNDHWM.  Beside it: a subscriber that reads everything, and
one that connects and then never reads.  ZeroMQ gives each subscriber its own queue, bounded
by the publisher's SNDHWM and the subscriber's RCVHWM; a full queue drops for that subscriber
only and the PUB never blocks.  Timings are printed, never asserted.

What the tests wait for is what they mean, whatever the machine's speed:

* the stalled subscriber stays stalled until the publisher has sent more *frames* than its
  queue can hold (:data:`STALL_FRAMES`, from the gateway's ``frames`` counter) -- not for a
  number of seconds, which on a busy machine (fewer, fuller frames) may not overflow it;
* the reader that must see every seq gets a paced publisher (4,000 ticks/s) and a queue of
  :data:`READER_RCVHWM` frames: it would have to stop for most of a minute to lose a tick;
* every read is a slice of at most :data:`READ_SLICE_S`, and the supervisor is polled between
  slices: a test that reads for seconds without answering heartbeats makes the worker reconnect
  its control channel (a command sent meanwhile is lost) and finally exit as orphaned;
* the worker is the same process throughout (a restart would start seq over and hide a gap).

Also: every stream socket of every worker sets its high-water mark on purpose, before it
binds or connects.
"""

from __future__ import annotations

import shutil
import tempfile
import time

import pytest
import zmq

from tests.procs import scaled, wait_until
from workers import protocol as P
from workers.config import Endpoints
from workers.supervisor import Supervisor, SupervisorConfig, WorkerSpec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PUB_HWM = 1000  # frames per subscriber queued at the publisher
STALLED_RCVHWM = 100
READER_RCVHWM = 200_000
#: frames the ipc connection's kernel buffers may hold beyond the two HWMs (~200 KB each way;
#: measured: ~700 one-tick frames); a generous bound
KERNEL_FRAMES = 2000
#: frames the publisher sends while the stalled subscriber does not read: twice what its
#: queue can hold, so it has overflowed whatever the frame size, the rate and the machine
STALL_FRAMES = 2 * (PUB_HWM + STALLED_RCVHWM + KERNEL_FRAMES)
#: longest a reader reads before the test answers the supervisor again
READ_SLICE_S = 0.02
#: the paced rate of the keep-up test, per symbol (4 symbols)
PACED_RATE = 1000


class SeqReader:
    """Reads a tick SUB and checks the per-symbol seq: counts ticks, gaps, missed ticks and
    seqs that go back (a publisher restart)."""

    def __init__(self, sock: zmq.Socket):
        self.sock = sock
        self.last: dict[str, int] = {}
        self.ticks = 0
        self.gaps = 0
        self.missed = 0
        self.backwards = 0

    def reset(self) -> None:
        self.gaps = self.missed = self.backwards = 0

    def read(self, seconds: float = READ_SLICE_S) -> int:
        """Read what is queued, for at most ``seconds``; returns the frames read."""
        n = 0
        end = time.monotonic() + seconds
        rows_of = getattr(P, "tick_rows", None)
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            n += 1
            if rows_of is not None:
                sym, rows = rows_of(frame)
                seqs = [r[0] for r in rows]
            else:
                _, t = P.decode_pub(frame, expect=P.Tick)
                sym, seqs = t.symbol, [t.seq]
            last = self.last.get(sym)
            for seq in seqs:
                if last is not None:
                    if seq > last + 1:
                        self.gaps += 1
                        self.missed += seq - last - 1
                    elif seq <= last:
                        self.backwards += 1
                last = seq
            self.ticks += len(seqs)
            self.last[sym] = last
            if not n % 64 and time.monotonic() >= end:
                break
        return n


@pytest.fixture(scope="module")
def feed():
    tmp = tempfile.mkdtemp(prefix="td-slow-")
    eps = Endpoints.ephemeral_ipc(tmp)
    spec = WorkerSpec("marketdata", "marketdata", ["--rate", "0", "--hwm", str(PUB_HWM), "--seed", "3", "--heartbeat", "0.1"])
    # a worker silent for 3 s (the default) is replaced; on a busy machine give it the suite's factor
    sup = Supervisor(eps, [spec], SupervisorConfig(log_dir=f"{tmp}/logs", heartbeat_timeout=scaled(3.0)))
    ctx = zmq.Context()
    sup.start()
    try:
        wait_until(lambda: (sup.poll(10), sup.workers["marketdata"].state == "running")[1], 30, message="market data running")
        yield sup, eps, ctx
    finally:
        sup.stop()
        ctx.destroy(linger=0)
        shutil.rmtree(tmp, ignore_errors=True)


def sub(ctx, endpoint: str, rcvhwm: int) -> zmq.Socket:
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, rcvhwm)  # before connect: options apply to new connections
    s.setsockopt(zmq.SUBSCRIBE, b"tick.")
    s.connect(endpoint)
    return s


def published(sup) -> int:
    return sup.workers["marketdata"].counter("ticks")


def frames(sup) -> int:
    w = sup.workers["marketdata"]
    return w.counter("frames") or w.counter("ticks")  # one tick per frame if it counts no frames


def pump(sup, *readers: SeqReader, wait_ms: int = 5) -> None:
    """One round: answer the worker's heartbeats, read a slice of each reader."""
    sup.poll(0)
    busy = False
    for r in readers:
        busy = bool(r.read()) or busy
        sup.poll(0)
    if not busy and readers:
        readers[0].sock.poll(wait_ms)


def fresh_heartbeat(sup, *readers: SeqReader) -> None:
    """Until a heartbeat sent after now has arrived (its counters are current)."""
    w = sup.workers["marketdata"]
    beat = w.last_heartbeat
    wait_until(lambda: (pump(sup, *readers), w.last_heartbeat > beat)[1], 5, interval=0, message="a heartbeat")


def window(sup, reader: SeqReader, seconds: float) -> tuple[int, int, float]:
    """Read for ``seconds``; return (published, read by the reader, elapsed) over the window,
    the published count from heartbeats sent inside it."""
    fresh_heartbeat(sup, reader)
    p0, r0, t0 = published(sup), reader.ticks, time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        pump(sup, reader)
    fresh_heartbeat(sup, reader)
    return published(sup) - p0, reader.ticks - r0, time.monotonic() - t0


def stall_until_overflowed(sup, *readers: SeqReader) -> int:
    """Keep the others reading until the publisher has sent :data:`STALL_FRAMES` frames since
    now (heartbeat counters); returns the frames sent meanwhile."""
    fresh_heartbeat(sup, *readers)
    f0 = frames(sup)
    wait_until(lambda: (pump(sup, *readers), frames(sup) - f0 >= STALL_FRAMES)[1], 30, interval=0,
               message=f"{STALL_FRAMES} frames published while a subscriber stalls")
    return frames(sup) - f0


def read_until_gap(sup, stalled: zmq.Socket) -> SeqReader:
    """The stalled subscriber reads again: first what was queued for it, then a jump in seq."""
    late = SeqReader(stalled)
    wait_until(lambda: (sup.poll(0), late.read(), late.gaps > 0)[2], 15, interval=0, message="the stalled subscriber sees a gap")
    return late


def test_a_stalled_subscriber_slows_neither_the_publisher_nor_a_reader(feed):
    sup, eps, ctx = feed
    pid = sup.workers["marketdata"].pid
    reader = SeqReader(sub(ctx, eps.ticks, READER_RCVHWM))
    stalled = None
    try:
        wait_until(lambda: (pump(sup, reader), reader.ticks)[1], 10, interval=0.01, message="the reader gets ticks")
        pub_a, read_a, dt_a = window(sup, reader, 1.0)

        stalled = sub(ctx, eps.ticks, STALLED_RCVHWM)
        # it is connected once something waits in it; from then on it does not read
        wait_until(lambda: (pump(sup, reader), stalled.poll(0))[1], 10, interval=0.01, message="stalled SUB connected")
        pub_b, read_b, dt_b = window(sup, reader, 1.0)
        sent = stall_until_overflowed(sup, reader)

        assert pub_a > 0 and pub_b > 0, "the publisher keeps publishing"
        assert read_b > 0, "the reading subscriber keeps receiving"
        dropped = sup.workers["marketdata"].counter("dropped")
        print(
            f"\npublisher: {pub_a / dt_a:,.0f} ticks/s alone, {pub_b / dt_b:,.0f} ticks/s with a stalled subscriber "
            f"(ratio {pub_b / dt_b / max(pub_a / dt_a, 1):.2f}); EAGAIN drops counted by the PUB: {dropped}\n"
            f"reader: {read_a / dt_a:,.0f} then {read_b / dt_b:,.0f} ticks/s; gaps {reader.gaps} ({reader.missed} ticks missed: "
            f"at --rate 0 a Python reader may fall behind its RCVHWM {READER_RCVHWM} + SNDHWM {PUB_HWM})"
        )

        late = read_until_gap(sup, stalled)
        print(f"stalled subscriber ({sent} frames sent while stalled), reading again: {late.ticks} ticks, {late.gaps} gaps, "
              f"{late.missed} ticks missed")
        assert late.missed > 0
        assert sup.workers["marketdata"].pid == pid and not late.backwards and not reader.backwards, "the publisher was not restarted"
    finally:
        reader.sock.close(0)
        if stalled is not None:
            stalled.close(0)


def test_a_reader_that_keeps_up_sees_every_seq_while_another_stalls(feed):
    sup, eps, ctx = feed
    pid = sup.workers["marketdata"].pid
    cid = sup.command("marketdata", "set_rate", {"rate": PACED_RATE})
    wait_until(lambda: (sup.poll(5), sup.reply_for(cid))[1], 10, interval=0, message="rate set")
    assert sup.reply_for(cid).ok
    stalled = sub(ctx, eps.ticks, STALLED_RCVHWM)
    reader = SeqReader(sub(ctx, eps.ticks, READER_RCVHWM))
    try:
        # both connected (subscribed after the rate changed: everything they get is paced)
        wait_until(lambda: (pump(sup, reader), reader.ticks and stalled.poll(0))[1], 10, interval=0.01, message="both SUBs get ticks")
        reader.reset()
        start = reader.ticks
        t0 = time.monotonic()
        sent = stall_until_overflowed(sup, reader)
        fresh_heartbeat(sup, reader)
        elapsed = time.monotonic() - t0
        got = reader.ticks - start
        late = read_until_gap(sup, stalled)
        print(f"\nat {4 * PACED_RATE:,} ticks/s: reader {got} ticks in {elapsed:.1f} s, {reader.gaps} gaps; "
              f"stalled ({sent} frames sent meanwhile): {late.ticks} ticks read late, {late.missed} missed")
        assert got > 0
        assert reader.gaps == 0, f"a reader that keeps up loses nothing ({reader.missed} missed)"
        assert late.missed > 0
        assert sup.workers["marketdata"].pid == pid and not reader.backwards and not late.backwards, "the publisher was not restarted"
    finally:
        reader.sock.close(0)
        stalled.close(0)
        sup.command("marketdata", "set_rate", {"rate": 0})


# ----------------------------------------------------------------------------- HWMs on purpose


def _worker_setups(tmp) -> list[tuple[str, object]]:
    from workers.config import add_common_args
    from workers.exchange.gateway import ExchangeGateway
    from workers.exchange.gateway import build_parser as ex_parser
    from workers.executor.worker import OrderExecutor
    from workers.executor.worker import build_parser as exe_parser
    from workers.marketdata.gateway import MarketDataGateway
    from workers.marketdata.gateway import build_parser as md_parser
    from workers.strategy.worker import StrategyWorker
    from workers.strategy.worker import build_parser as st_parser

    eps = Endpoints.ephemeral_ipc(tmp).as_args()
    out = []
    for cls, parser, extra in (
        (ExchangeGateway, ex_parser, ["--journal", f"{tmp}/j.sqlite"]),
        (OrderExecutor, exe_parser, ["--order-timeout", "0.05"]),
        (StrategyWorker, st_parser, []),
        (MarketDataGateway, md_parser, []),
    ):
        p = parser()
        add_common_args(p)
        out.append((cls.kind, cls(p.parse_args([*eps, "--no-control", *extra]))))
    return out


def test_every_stream_socket_sets_its_hwm_on_purpose(tmp_path, monkeypatch):
    """Every PUB/PUSH sets SNDHWM and every SUB/PULL sets RCVHWM explicitly (ZeroMQ's default
    of 1000 is nobody's decision), before bind/connect (options apply to new connections)."""
    tmp = tempfile.mkdtemp(prefix="td-hwm-")
    real_set, real_bind, real_connect = zmq.Socket.setsockopt, zmq.Socket.bind, zmq.Socket.connect

    def log_of(sock) -> list:
        # kept on the socket itself: ids of closed sockets are reused
        if "_hwm_test_log" not in sock.__dict__:
            sock.__dict__["_hwm_test_log"] = []
        return sock.__dict__["_hwm_test_log"]

    def setsockopt(self, opt, value):
        log_of(self).append(("opt", opt))
        return real_set(self, opt, value)

    def bind(self, addr):
        log_of(self).append(("bind", addr))
        return real_bind(self, addr)

    def connect(self, addr):
        log_of(self).append(("connect", addr))
        return real_connect(self, addr)

    monkeypatch.setattr(zmq.Socket, "setsockopt", setsockopt)
    monkeypatch.setattr(zmq.Socket, "bind", bind)
    monkeypatch.setattr(zmq.Socket, "connect", connect)
    need = {zmq.PUB: zmq.SNDHWM, zmq.PUSH: zmq.SNDHWM, zmq.SUB: zmq.RCVHWM, zmq.PULL: zmq.RCVHWM}
    names = {zmq.PUB: "PUB", zmq.PUSH: "PUSH", zmq.SUB: "SUB", zmq.PULL: "PULL"}
    problems, checked = [], []
    try:
        for kind, worker in _worker_setups(tmp):
            try:
                worker.setup()
                for sock in worker._sockets:
                    t = sock.getsockopt(zmq.TYPE)
                    if t not in need:
                        continue
                    log = log_of(sock)
                    hwm_at = [i for i, (what, arg) in enumerate(log) if what == "opt" and arg == need[t]]
                    wired_at = [i for i, (what, _) in enumerate(log) if what in ("bind", "connect")]
                    where = [arg for what, arg in log if what in ("bind", "connect")]
                    checked.append(f"{kind} {names[t]} {where}")
                    if not hwm_at:
                        problems.append(f"{kind}: {names[t]} {where} has no explicit {'SNDHWM' if need[t] == zmq.SNDHWM else 'RCVHWM'}")
                    elif wired_at and hwm_at[0] > wired_at[0]:
                        problems.append(f"{kind}: {names[t]} {where} sets its HWM after bind/connect")
            finally:
                worker._close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nstream sockets checked:\n  " + "\n  ".join(checked))
    assert len(checked) >= 9, checked  # 2 exchange, 4 executor, 3 strategy, 1 market data
    assert not problems, problems
