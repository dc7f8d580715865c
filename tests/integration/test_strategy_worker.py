"""The strategy worker as a real process on ipc endpoints; the test plays the market-data
gateway (PUB ticks), the executor (PULL signals, PUB decisions) and, in one test, the
supervisor (ROUTER control)."""

from __future__ import annotations

import itertools
import time

import pytest
import zmq

from tests.procs import log_text, start_worker, stop, wait_until
from workers import protocol as P
from workers.config import Endpoints

# a range between support 100.00 and resistance 101.50
RANGE = [100.0, 100.5, 101.0, 101.5, 101.0, 100.5, 100.0, 100.5, 101.0, 101.5, 101.0, 100.5]
FAST = ["--symbols", "AAPL", "--mode", "breakout", "--window", "12", "--min-fill", "6", "--cooldown", "0",
        "--breakout-bps", "0", "--qty", "10", "--max-position", "20", "--levels-interval", "0.05",
        "--levels-refresh", "0.2"]


class FakeFleet:
    """The sockets around a strategy: ticks PUB, signals PULL, events PUB, control ROUTER."""

    def __init__(self, eps: Endpoints, control: bool = False):
        self.ctx = zmq.Context()
        self.ticks = self._sock(zmq.PUB, eps.ticks, sndhwm=100_000)
        self.signals = self._sock(zmq.PULL, eps.signals)
        self.events = self._sock(zmq.PUB, eps.events)
        self.control = self._sock(zmq.ROUTER, eps.control) if control else None
        self.seq: dict[str, int] = {}
        self.received: list[P.Message] = []
        self.control_msgs: list[P.Message] = []
        self.worker_id: bytes | None = None
        self._ids = itertools.count(1)

    def _sock(self, kind: int, endpoint: str, sndhwm: int | None = None) -> zmq.Socket:
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if sndhwm is not None:  # before bind: accepted connections copy the options of bind time
            s.setsockopt(zmq.SNDHWM, sndhwm)
        s.bind(endpoint)
        return s

    def close(self) -> None:
        self.ctx.destroy(linger=0)

    # -- ticks
    def tick(self, price: float, symbol: str = "AAPL", seq: int | None = None) -> None:
        if seq is None:
            seq = self.seq.get(symbol, 0) + 1
        self.seq[symbol] = seq
        t = P.Tick(symbol=symbol, seq=seq, ts=P.now_ns(), last=price, bid=price - 0.01, ask=price + 0.01,
                   bid_size=100, ask_size=100, volume=seq * 100)
        self.ticks.send(P.pub(t))

    def ticks_until(self, prices, predicate, timeout: float = 10.0, message: str = ""):
        """Publish ``prices`` round and round (a slow joiner misses the first ones) until
        ``predicate(received)`` holds."""
        cycle = itertools.cycle(prices)

        def step():
            self.tick(next(cycle))
            self.drain(0.02)
            return predicate(self.received)

        return wait_until(step, timeout, interval=0, message=message)

    # -- what the strategy sent
    def drain(self, wait: float = 0.0) -> None:
        if self.signals.closed:
            time.sleep(wait)
        elif self.signals.poll(int(wait * 1000)):
            while True:
                try:
                    frame = self.signals.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.received.append(P.decode(frame, expect=(P.Signal, P.Levels)))
        if self.control is not None:
            while self.control.poll(0):
                ident, frame = self.control.recv_multipart()
                self.worker_id = ident
                self.control_msgs.append(P.decode(frame))

    def signals_seen(self) -> list[P.Signal]:
        return [m for m in self.received if isinstance(m, P.Signal)]

    def levels_seen(self) -> list[P.Levels]:
        return [m for m in self.received if isinstance(m, P.Levels)]

    def wait(self, predicate, timeout: float = 10.0, message: str = ""):
        def step():
            self.drain(0.02)
            return predicate()

        return wait_until(step, timeout, interval=0, message=message)

    # -- control channel
    def counters(self) -> dict:
        beats = [m for m in self.control_msgs if isinstance(m, P.Heartbeat)]
        return beats[-1].stats.get("counters", {}) if beats else {}

    def wait_counters(self, predicate, timeout: float = 10.0, message: str = "") -> dict:
        n = len(self.control_msgs)

        def fresh():  # a heartbeat sent after the call, so it reflects what came before
            beats = [m for m in self.control_msgs[n:] if isinstance(m, P.Heartbeat)]
            return beats and predicate(beats[-1].stats["counters"]) and beats[-1].stats

        return self.wait(fresh, timeout, message)

    def command(self, cmd: str, **args) -> P.CommandReply:
        self.wait(lambda: self.worker_id is not None, message="worker said hello")
        cid = f"c{next(self._ids)}"
        self.control.send_multipart([self.worker_id, P.Command(id=cid, cmd=cmd, args=args).pack()])
        return self.wait(
            lambda: next((m for m in self.control_msgs if isinstance(m, P.CommandReply) and m.id == cid), None),
            message=f"reply to {cmd}",
        )


@pytest.fixture
def fleet(tmp_path):
    made: list = []

    def make(*args: str, control: bool = False, name: str | None = None):
        eps = Endpoints.ephemeral_ipc(tmp_path)
        ff = FakeFleet(eps, control=control)
        made.append(ff)
        extra = ["--orphan-timeout", "0", "--heartbeat", "0.1"] if control else []
        if name:
            extra += ["--name", name]
        proc = start_worker("strategy", eps, *args, *extra, tmp_path=tmp_path, control=control)
        made.append(proc)
        return ff, proc

    yield make
    for thing in reversed(made):
        if isinstance(thing, FakeFleet):
            thing.close()
        else:
            stop(thing)


def warm_up(ff: FakeFleet) -> None:
    """Publish the range until the strategy's first Levels shows it is connected and has
    filled its window with the whole range."""
    ff.ticks_until(
        RANGE,
        lambda got: any(isinstance(m, P.Levels) and m.active and m.support == 100.0 and m.resistance == 101.5 for m in got),
        message="levels of a filled window",
    )


def test_range_then_breakout_gives_signal_and_levels(fleet):
    ff, proc = fleet(*FAST)
    warm_up(ff)
    lv = ff.levels_seen()[-1]
    assert (lv.strategy, lv.symbol, lv.position) == ("strategy", "AAPL", 0)
    assert ff.signals_seen() == []

    ff.tick(101.6)
    sig = ff.wait(lambda: next(iter(ff.signals_seen()), None), message="breakout signal")
    assert sig.side is P.Side.BUY and sig.symbol == "AAPL" and sig.qty == 10
    assert sig.reason == "breakout above resistance 101.50"
    assert sig.price == 101.6 and sig.strategy == "strategy"
    assert sig.ts >= sig.cause_ts > 0
    # the levels follow: the breakout tick is the new resistance, the position is booked
    ff.wait(lambda: any(m.resistance == 101.6 and m.position == 10 for m in ff.levels_seen()), message="levels after breakout")
    assert proc.poll() is None


def test_symbols_typed_in_lower_case_match_the_feeds_ticks(fleet):
    # the feed publishes AAPL; a strategy configured with "aapl" must trade it, not wait forever
    args = list(FAST)
    args[args.index("AAPL")] = "aapl"
    ff, proc = fleet(*args)
    warm_up(ff)
    assert ff.levels_seen()[-1].symbol == "AAPL"
    ff.tick(101.6)
    sig = ff.wait(lambda: next(iter(ff.signals_seen()), None), message="breakout signal on AAPL")
    assert sig.symbol == "AAPL" and sig.side is P.Side.BUY
    assert proc.poll() is None


def test_garbage_on_tick_stream_is_dropped_and_process_survives(fleet):
    ff, proc = fleet(*FAST)
    warm_up(ff)
    garbage = [
        b"tick.AAPL\x00not msgpack at all",
        b"tick.AAPL\x00" + P.packb({"v": 1, "type": "tick", "symbol": "AAPL"}),  # fields missing
        b"tick.AAPL\x00" + P.packb([1, 2, 3]),
        b"tick.AAPL\x00" + P.packb({"v": 99, "type": "tick"}),
        b"tick.AAPL\x00",
        b"tick.AAPL\x00" + P.Signal(id="x", strategy="y", symbol="AAPL", side=P.Side.BUY, qty=1, price=1.0, ts=1, cause_ts=1).pack(),
        b"tick.AAPL\x00" + P.Tick(symbol="MSFT", seq=1, ts=1, last=1.0, bid=1.0, ask=1.0, bid_size=0, ask_size=0, volume=0).pack(),
    ]
    for frame in garbage:
        ff.ticks.send(frame)
    # still alive and still trading on good ticks
    ff.tick(101.6)
    sig = ff.wait(lambda: next(iter(ff.signals_seen()), None), message="signal after garbage")
    assert sig.reason == "breakout above resistance 101.50"
    assert proc.poll() is None
    wait_until(lambda: "dropped a bad tick frame" in log_text(proc), 5, message="decode error logged")


def test_counters_commands_pause_and_rejection(fleet):
    ff, proc = fleet(*FAST, control=True, name="sr-test")
    warm_up(ff)

    # garbage is counted
    for frame in (b"tick.AAPL\x00\xc1", b"tick.AAPL\x00" + P.packb({"v": 1})):
        ff.ticks.send(frame)
    ff.wait_counters(lambda c: c["decode_errors"] == 2, message="decode errors counted")

    # params: read, change live, refuse bad ones; the heartbeat carries them
    rep = ff.command("get_params")
    assert rep.ok and rep.result["params"]["window"] == 12 and rep.result["params"]["mode"] == "breakout"
    rep = ff.command("set_params", qty="5", cooldown=0)
    assert rep.ok and rep.result["params"]["qty"] == 5
    rep = ff.command("set_params", mode="scalping")
    assert not rep.ok and "mode" in rep.reason
    rep = ff.command("set_params", widow=3)
    assert not rep.ok and "unknown parameter" in rep.reason
    stats = ff.wait_counters(lambda c: True)
    assert stats["gauges"]["params"]["qty"] == 5

    # breakout with the new qty
    ff.tick(101.6)
    sig = ff.wait(lambda: next(iter(ff.signals_seen()), None), message="signal")
    assert sig.qty == 5 and sig.strategy == "sr-test"

    # the executor rejects it: the virtual position goes back to 0, once, however often it is told
    dec = P.SignalDecision(signal=sig.to_dict(), accepted=False, reason="max position", ts=P.now_ns())
    other = P.SignalDecision(signal={**sig.to_dict(), "id": "x-1", "strategy": "someone-else"}, accepted=False, ts=P.now_ns())

    def rejected():
        ff.events.send(P.pub(other))
        ff.events.send(P.pub(dec))
        return any(m.position == 0 and m.resistance == 101.6 for m in ff.levels_seen())

    ff.wait(rejected, message="levels show the reverted position")
    c = ff.wait_counters(lambda c: c["rejected"] >= 1)["counters"]
    assert c["rejected"] == 1 and c["signals"] == 1

    # pause: levels go inactive and a breakout gives no signal; resume trades again
    assert ff.command("pause").ok
    ff.wait(lambda: any(not m.active for m in ff.levels_seen()), message="inactive levels while paused")
    seen = ff.wait_counters(lambda c: True)["counters"]["ticks"]
    ff.tick(102.0)
    ff.tick(102.5)
    ff.wait_counters(lambda c: c["ticks"] >= seen + 2, message="ticks seen while paused")
    assert len(ff.signals_seen()) == 1
    assert ff.command("resume").ok
    ff.tick(103.0)
    ff.wait(lambda: len(ff.signals_seen()) == 2, message="signal after resume")

    # sequence gaps and a feed restart
    ff.tick(103.1, seq=ff.seq["AAPL"] + 5)
    ff.tick(100.0, seq=1)
    c = ff.wait_counters(lambda c: c["feed_restarts"] == 1, message="restart counted")["counters"]
    assert c["tick_gaps"] == 1 and c["ticks_missed"] == 4
    beats = [m for m in ff.control_msgs if isinstance(m, P.Heartbeat)]
    assert any("tick_to_strategy" in b.stats.get("latency", {}) for b in beats)
    assert proc.poll() is None


def test_signals_without_executor_are_dropped_and_not_booked(fleet, tmp_path):
    ff, proc = fleet(*FAST, "--max-position", "1000000", control=True)
    warm_up(ff)
    ff.signals.close(0)  # the executor goes away
    deadline = time.monotonic() + 10
    price = 101.6
    while True:  # once the disconnect is seen, a signal cannot be sent and is dropped
        ff.tick(price)
        price += 0.1
        ff.drain(0.02)
        c = ff.counters()
        if c.get("signals_dropped", 0) >= 3:
            break
        assert time.monotonic() < deadline, f"no drops counted: {c}"
    # dropped signals never count towards the position, so it never hit the limit
    rep = ff.command("get_params")
    sent = ff.wait_counters(lambda c: True)["counters"]["signals"]
    assert rep.result["positions"]["AAPL"] == 10 * sent
    assert proc.poll() is None


def test_bad_params_exit_with_status_2(fleet, tmp_path):
    _, proc = fleet("--window", "1")
    assert proc.wait(10) == 2
    assert "window" in log_text(proc)


def test_toml_section_for_the_named_instance(fleet, tmp_path):
    cfg = tmp_path / "fleet.toml"
    cfg.write_text('[worker.strategy]\nqty = 7\nwindow = 50\nmax_position = 40\n\n[worker.sr-a]\nsymbols = ["AAPL"]\nwindow = 12\n'
                   'min_fill = 6\nmode = "breakout"\ncooldown = 0\nbreakout_bps = 0\nlevels_interval = 0.05\n')
    ff, proc = fleet("--config", str(cfg), "--max-position", "50", control=True, name="sr-a")
    rep = ff.command("get_params")
    p = rep.result["params"]
    assert (p["qty"], p["window"], p["mode"], p["max_position"]) == (7, 12, "breakout", 50)
    warm_up(ff)
    ff.tick(101.6)
    sig = ff.wait(lambda: next(iter(ff.signals_seen()), None), message="signal")
    assert sig.qty == 7 and sig.strategy == "sr-a"
