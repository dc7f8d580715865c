"""Slow consumers: a subscriber that stops reading slows nobody, and its loss shows as seq gaps.

The market-data worker runs under a real Supervisor (its heartbeats carry the published count)
with an explicit, small SNDHWM.  Beside it: a subscriber that reads everything, and one that
connects and then never reads.  ZeroMQ gives each subscriber its own queue, bounded by the
publisher's SNDHWM and the subscriber's RCVHWM; a full queue drops for that subscriber only
and the PUB never blocks.  Timings are printed, never asserted.

Also: every stream socket of every worker sets its high-water mark on purpose, before it
binds or connects.
"""

from __future__ import annotations

import shutil
import tempfile
import time

import pytest
import zmq

from tests.procs import wait_until
from workers import protocol as P
from workers.config import Endpoints
from workers.supervisor import Supervisor, SupervisorConfig, WorkerSpec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

PUB_HWM = 1000  # messages per subscriber queued at the publisher
STALLED_RCVHWM = 1000
READER_RCVHWM = 200_000


class SeqReader:
    """Reads a tick SUB and checks the per-symbol seq: counts ticks, gaps and missed ticks."""

    def __init__(self, sock: zmq.Socket):
        self.sock = sock
        self.last: dict[str, int] = {}
        self.ticks = 0
        self.gaps = 0
        self.missed = 0

    def read(self, budget: int = 1_000_000) -> int:
        n = 0
        while n < budget:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            n += 1
            rows_of = getattr(P, "tick_rows", None)
            if rows_of is not None:
                sym, rows = rows_of(frame)
                seqs = [r[0] for r in rows]
            else:
                _, t = P.decode_pub(frame, expect=P.Tick)
                sym, seqs = t.symbol, [t.seq]
            for seq in seqs:
                self.ticks += 1
                last = self.last.get(sym)
                if last is not None and seq > last + 1:
                    self.gaps += 1
                    self.missed += seq - last - 1
                self.last[sym] = seq
        return n


@pytest.fixture(scope="module")
def feed():
    tmp = tempfile.mkdtemp(prefix="td-slow-")
    eps = Endpoints.ephemeral_ipc(tmp)
    spec = WorkerSpec("marketdata", "marketdata", ["--rate", "0", "--hwm", str(PUB_HWM), "--seed", "3", "--heartbeat", "0.1"])
    sup = Supervisor(eps, [spec], SupervisorConfig(log_dir=f"{tmp}/logs"))
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


def window(sup, reader: SeqReader, seconds: float) -> tuple[int, int, float]:
    """Read for ``seconds``; return (published, read by the reader, elapsed) over the window,
    the published count from heartbeats sent inside it."""
    w = sup.workers["marketdata"]
    start_beat = w.last_heartbeat
    wait_until(lambda: (sup.poll(5), w.last_heartbeat > start_beat)[1], 5, interval=0, message="a heartbeat")
    p0, r0, t0 = published(sup), reader.ticks, time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        sup.poll(0)
        if not reader.read(5000):
            reader.sock.poll(5)
    beat = w.last_heartbeat
    wait_until(lambda: (sup.poll(5), reader.read(5000), w.last_heartbeat > beat)[2], 5, interval=0, message="a heartbeat")
    return published(sup) - p0, reader.ticks - r0, time.monotonic() - t0


def test_a_stalled_subscriber_slows_neither_the_publisher_nor_a_reader(feed):
    sup, eps, ctx = feed
    reader = SeqReader(sub(ctx, eps.ticks, READER_RCVHWM))
    stalled = None
    try:
        wait_until(lambda: (sup.poll(0), reader.read())[1], 10, interval=0.01, message="the reader gets ticks")
        pub_a, read_a, dt_a = window(sup, reader, 1.0)

        stalled = sub(ctx, eps.ticks, STALLED_RCVHWM)
        # it is connected once something waits in it; from then on it never reads
        wait_until(lambda: (sup.poll(0), reader.read(), stalled.poll(0))[2], 10, interval=0.01, message="stalled SUB connected")
        pub_b, read_b, dt_b = window(sup, reader, 1.0)

        assert pub_a > 0 and pub_b > 0, "the publisher keeps publishing"
        assert read_b > 0, "the reading subscriber keeps receiving"
        dropped = sup.workers["marketdata"].counter("dropped")
        print(
            f"\npublisher: {pub_a / dt_a:,.0f} ticks/s alone, {pub_b / dt_b:,.0f} ticks/s with a stalled subscriber "
            f"(ratio {pub_b / dt_b / max(pub_a / dt_a, 1):.2f}); EAGAIN drops counted by the PUB: {dropped}\n"
            f"reader: {read_a / dt_a:,.0f} then {read_b / dt_b:,.0f} ticks/s; gaps {reader.gaps} ({reader.missed} ticks missed: "
            f"at --rate 0 a Python reader falls behind its RCVHWM {READER_RCVHWM} + SNDHWM {PUB_HWM})"
        )

        # The stalled subscriber reads again: first what was queued for it, then a jump in seq.
        late = SeqReader(stalled)
        wait_until(lambda: (sup.poll(0), late.read(20_000), late.gaps > 0)[2], 15, interval=0, message="the stalled subscriber sees a gap")
        print(f"stalled subscriber, reading again: {late.ticks} ticks, {late.gaps} gaps, {late.missed} ticks missed")
        assert late.missed > 0
    finally:
        reader.sock.close(0)
        if stalled is not None:
            stalled.close(0)


def test_a_reader_that_keeps_up_sees_every_seq_while_another_stalls(feed):
    sup, eps, ctx = feed
    cid = sup.command("marketdata", "set_rate", {"rate": 500})  # 4 symbols: 2,000 ticks/s
    wait_until(lambda: (sup.poll(5), sup.reply_for(cid))[1], 10, interval=0, message="rate set")
    assert sup.reply_for(cid).ok
    stalled = sub(ctx, eps.ticks, STALLED_RCVHWM)
    reader = SeqReader(sub(ctx, eps.ticks, READER_RCVHWM))
    try:
        wait_until(lambda: (sup.poll(0), reader.read())[1], 10, interval=0.01, message="the reader gets ticks")
        # skip anything sent at rate 0 before the command took effect
        reader.read()
        reader.gaps = reader.missed = 0
        start = reader.ticks
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            sup.poll(0)
            reader.read()
            reader.sock.poll(10)
        got = reader.ticks - start
        # 2 s at 2,000/s: the stalled queue (SNDHWM + RCVHWM + socket buffers) overflowed long ago
        late = SeqReader(stalled)
        wait_until(lambda: (sup.poll(0), late.read(20_000), late.gaps > 0)[2], 15, interval=0, message="the stalled subscriber sees a gap")
        print(f"\nat 2,000 ticks/s: reader {got} ticks, {reader.gaps} gaps; stalled: {late.ticks} ticks read late, {late.missed} missed")
        assert got > 0
        assert reader.gaps == 0, f"a reader that keeps up loses nothing ({reader.missed} missed)"
        assert late.missed > 0
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
