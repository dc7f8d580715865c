"""A bug in a worker's loop hook costs a count, not the worker."""

from __future__ import annotations

import argparse

from workers.config import add_common_args
from workers.runtime import CommandError, Worker


class Flaky(Worker):
    kind = "flaky"
    timer_interval = 0.01

    def __init__(self, args: argparse.Namespace):
        super().__init__(args)
        self.timers = 0
        self.wakeups = 0

    def next_wakeup(self, now: float) -> float | None:
        self.wakeups += 1
        if self.wakeups % 2:
            raise RuntimeError("a bug in next_wakeup")
        return now + 0.005

    def on_timer(self, now: float) -> None:
        self.timers += 1
        if self.timers >= 5:
            self.request_stop("enough")
        raise ValueError("a bug in on_timer")


def test_hook_exceptions_are_counted_and_the_loop_goes_on(tmp_path):
    p = argparse.ArgumentParser()
    add_common_args(p)
    eps = [f"--{n}=ipc://{tmp_path}/{n}" for n in ("ticks", "signals", "orders", "execution", "events", "control")]
    w = Flaky(p.parse_args([*eps, "--no-control"]))
    assert w.run() == 0
    assert w.timers == 5  # the loop outlived five failing timers
    assert w.stats.counters["handler_errors"] >= 5 + w.wakeups // 2 - 1


class OnClock(Worker):
    """Moves its manual clock a little in every next_wakeup and writes down what it is told."""

    kind = "onclock"
    timer_interval = 0.01

    def __init__(self, args, clock):
        super().__init__(args, clock)
        self.wakeups: list[float] = []
        self.timers: list[float] = []

    def next_wakeup(self, now: float) -> float | None:
        self.wakeups.append(now)
        self.clock.advance(0.01)
        return None

    def on_timer(self, now: float) -> None:
        self.timers.append(now)
        if len(self.timers) >= 3:
            self.request_stop("enough")


def test_the_loop_runs_on_the_workers_clock(tmp_path):
    from workers.clock import ManualClock

    p = argparse.ArgumentParser()
    add_common_args(p)
    eps = [f"--{n}=ipc://{tmp_path}/{n}" for n in ("ticks", "signals", "orders", "execution", "events", "control")]
    clock = ManualClock(monotonic=5_000.0)
    w = OnClock(p.parse_args([*eps, "--no-control"]), clock)
    assert w.clock is clock
    assert w.run() == 0
    # the hooks see the manual clock's readings, not the system's: one clock for the loop and the worker
    assert w.wakeups[0] == 5_000.0
    assert len(w.timers) == 3 and w.timers == [t + 0.01 for t in w.wakeups]
    assert w.heartbeat_stats()["gauges"]["uptime"] == clock.monotonic() - 5_000.0


class Echo(Worker):
    kind = "echo"

    def on_command(self, cmd, args):
        if cmd == "echo":
            return {"echo": args}
        if cmd == "refuse":
            raise CommandError("not today")
        return super().on_command(cmd, args)


def _control_worker(tmp_path):
    import zmq

    p = argparse.ArgumentParser()
    add_common_args(p)
    eps = [f"--{n}=ipc://{tmp_path}/{n}" for n in ("ticks", "signals", "orders", "execution", "events", "control")]
    w = Echo(p.parse_args([*eps, "--name", "echo-1"]))
    router = w.ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # as the supervisor's: a reconnect takes the name over
    router.bind(f"ipc://{tmp_path}/control")
    return w, router


def test_control_channel_hello_commands_and_heartbeat_on_the_wire(tmp_path):
    from workers import protocol as P

    w, router = _control_worker(tmp_path)
    try:
        w.control.open()
        assert router.poll(2000)
        ident, frame = router.recv_multipart()
        hello = P.decode(frame)
        assert ident == b"echo-1" and isinstance(hello, P.Hello) and hello.role == "echo"

        def ask(cmd, **args):
            router.send_multipart([ident, P.Command(id=cmd, cmd=cmd, args=args).pack()])
            assert w.poller.poll(2000)
            w._drain(w.control.sock)
            got = []
            while len(got) < 2 and router.poll(500):
                got.append(P.decode(router.recv_multipart()[1]))
            return got

        reply, beat = ask("echo", x=1)
        assert isinstance(reply, P.CommandReply) and reply.ok and reply.result == {"echo": {"x": 1}}
        # the heartbeat after a command: the format the supervisor reads
        assert isinstance(beat, P.Heartbeat) and beat.name == "echo-1" and beat.state == "running"
        assert set(beat.stats) == {"counters", "latency", "gauges", "sockets"} and {"rss", "uptime"} <= set(beat.stats["gauges"])
        reply, _ = ask("refuse")
        assert not reply.ok and reply.reason == "not today"
        reply, _ = ask("nonsense")
        assert not reply.ok and "unknown command" in reply.reason
        reply, beat = ask("pause")
        assert reply.ok and w.state == "paused" and beat.state == "paused"
        assert not w.control.deaf(w.control.last_heard + 0.1, 0.5)
        assert w.control.deaf(w.control.last_heard + 10, 0.5)
        w.control.reopen()
        assert w.stats.counters["control_reconnects"] == 1
        assert router.poll(2000) and isinstance(P.decode(router.recv_multipart()[1]), P.Hello)
        ask("stop")
        assert w._stop
    finally:
        w._close()


def test_error_tree_says_retry_or_stop():
    from workers import errors as E

    assert E.is_retryable(E.PeerTimeout("x")) and E.is_retryable(E.PeerUnreachable("x"))
    for fatal in (E.ConfigError("x"), E.CorruptStateError("x")):
        assert isinstance(fatal, E.FatalError) and not E.is_retryable(fatal)
    # a peer's bad input is neither: counted and dropped
    assert not isinstance(E.ProtocolError("x"), (E.RetryableError, E.FatalError))
    assert not E.is_retryable(ValueError("a bug"))
    # parsing code that caught ValueError keeps working
    assert issubclass(E.ProtocolError, ValueError) and issubclass(E.ConfigError, ValueError)
    assert CommandError is E.CommandError
