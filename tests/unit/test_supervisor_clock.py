"""The supervisor's timing decisions on a manual clock with fake processes: restart backoff
(doubling, capped, reset after a stable run), silent workers killed after the timeout, and
stop escalation (stop command, SIGTERM, SIGKILL) -- each hit exactly at its limit, no sleeps.

The control socket is real (a ROUTER on ipc://, a DEALER here playing the worker), so the
heartbeats take the same path as in production; only time and the processes are fakes.
"""

from __future__ import annotations

import itertools
import shutil
import signal
import subprocess
import tempfile

import pytest
import zmq

from workers import protocol as P
from workers.clock import ManualClock
from workers.config import Endpoints
from workers.supervisor import Supervisor, SupervisorConfig, WorkerSpec

_pids = itertools.count(900_001)


class FakeProcess:
    """Just enough of subprocess.Popen; ``wait`` with a timeout lets the manual clock run."""

    def __init__(self, clock: ManualClock, cmd: list[str], ignores_sigterm: bool = False):
        self.clock = clock
        self.cmd = cmd
        self.pid = next(_pids)
        self.returncode: int | None = None
        self.signals: list[int] = []
        self.ignores_sigterm = ignores_sigterm

    def exit(self, code: int) -> None:
        self.returncode = code

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if self.returncode is None and (sig == signal.SIGKILL or not self.ignores_sigterm):
            self.returncode = -sig

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if timeout is None:
                raise AssertionError("the supervisor would wait forever for a live process")
            self.clock.advance(timeout)
            raise subprocess.TimeoutExpired(self.cmd, timeout)
        return self.returncode


class Rig:
    def __init__(self, config: SupervisorConfig, ignores_sigterm: bool = False):
        self.dir = tempfile.mkdtemp(prefix="tds", dir="/tmp")  # ipc paths must stay short
        self.eps = Endpoints.ephemeral_ipc(self.dir)
        self.clock = ManualClock()
        self.procs: list[FakeProcess] = []
        self.ignores_sigterm = ignores_sigterm
        self.sup = Supervisor(self.eps, [WorkerSpec("w1", "strategy")], config, ctx=zmq.Context.instance(),
                              clock=self.clock, popen=self._popen)
        self.dealer = zmq.Context.instance().socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.IDENTITY, b"w1")
        self.dealer.connect(self.eps.control)

    def _popen(self, cmd, **_kw) -> FakeProcess:
        p = FakeProcess(self.clock, cmd, self.ignores_sigterm)
        self.procs.append(p)
        return p

    @property
    def w(self):
        return self.sup.workers["w1"]

    @property
    def proc(self) -> FakeProcess:
        return self.procs[-1]

    def say(self, msg: P.Message) -> None:
        """The worker speaks; poll until the supervisor has heard it (at this very time)."""
        self.dealer.send(msg.pack())
        for _ in range(100):
            self.sup.poll(50)
            if self.w.last_heartbeat == self.clock.monotonic():
                return
        raise AssertionError("the supervisor never heard the worker")

    def hello(self) -> None:
        self.say(P.Hello(name="w1", role="strategy", pid=self.proc.pid, ts=self.clock.time_ns()))

    def beat(self) -> None:
        self.say(P.Heartbeat(ts=self.clock.time_ns(), name="w1", role="strategy", pid=self.proc.pid))

    def at(self, seconds: float) -> None:
        """Advance the clock and poll once (nothing waits on the socket)."""
        self.clock.advance(seconds)
        self.sup.poll(0)

    def commands(self) -> list[str]:
        out = []
        while self.dealer.poll(200, zmq.POLLIN):
            msg = P.decode(self.dealer.recv())
            if isinstance(msg, P.Command):
                out.append(msg.cmd)
        return out

    def close(self) -> None:
        if self.sup._router is not None:
            self.sup.stop()
        self.dealer.close(0)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def make_rig():
    rigs: list[Rig] = []

    def make(**kw) -> Rig:
        ignores = kw.pop("ignores_sigterm", False)
        # these tests jump the clock between polls to hit limits; only the stall test means a stall
        kw.setdefault("stall_grace", 1e9)
        r = Rig(SupervisorConfig(**kw), ignores_sigterm=ignores)
        r.sup.start()
        rigs.append(r)
        return r

    yield make
    for r in rigs:
        r.close()


# ----------------------------------------------------------------------------- backoff


def test_a_crash_loop_at_start_up_backs_off_doubling_to_the_cap(make_rig):
    rig = make_rig(backoff_initial=0.5, backoff_max=4.0, heartbeat_timeout=1e6, startup_timeout=1e6)
    assert len(rig.procs) == 1 and rig.w.state == "starting"
    waits = []
    for _ in range(7):
        started = len(rig.procs)
        rig.proc.exit(1)  # dies before its hello (1: not a configuration error)
        rig.at(0)
        if len(rig.procs) == started + 1:  # restarted in the same poll: no wait at all
            waits.append(0.0)
            continue
        assert rig.w.state == "backoff" and "crash loop at start-up" in rig.w.reason
        waits.append(rig.w.next_start - rig.clock.monotonic())
        rig.at(rig.w.backoff - 0.001)
        assert len(rig.procs) == started, "restarted before its backoff was over"
        rig.clock.advance_to(rig.w.next_start)
        rig.sup.poll(0)
        assert len(rig.procs) == started + 1 and rig.w.state == "starting"
    # the first retry is immediate (a start can fail for a passing reason), then the loop backs off
    assert waits == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert rig.w.restarts == 7 and len({p.pid for p in rig.procs}) == 8
    assert any("crash loop at start-up" in text for _, _, text in rig.sup.events)


def test_a_worker_that_was_serving_is_restarted_at_once_every_time(make_rig):
    """The order gateway's case: crashes seconds apart, each one restarted in the very poll
    that sees it dead (no backoff however many), and a crash loop before ready still backs off."""
    rig = make_rig(backoff_initial=0.5, backoff_max=10.0, startup_crash_window=1.0, heartbeat_timeout=1e6)
    for i in range(10):
        rig.hello()
        rig.at(1.5)  # served past the start-up window
        before = len(rig.procs)
        rig.proc.exit(-9)
        rig.at(0)
        assert len(rig.procs) == before + 1, f"crash {i + 1}: not restarted at once"
        assert rig.w.state == "starting" and rig.w.backoff == 0.0 and rig.w.quick_deaths == 0
    assert rig.w.restarts == 10
    # ready, then dead within the window, twice in a row: a crash loop at start-up
    rig.hello()
    rig.at(0.2)
    rig.proc.exit(1)
    rig.at(0)
    assert rig.w.state == "starting"  # the first such death: once more at once
    rig.hello()
    rig.at(0.2)
    rig.proc.exit(1)
    rig.at(0)
    assert rig.w.state == "backoff" and rig.w.backoff == 0.5 and "crash loop" in rig.w.reason
    # and a run that serves again clears it: the next crash restarts at once
    rig.clock.advance_to(rig.w.next_start)
    rig.sup.poll(0)
    rig.hello()
    rig.at(5.0)
    rig.proc.exit(1)
    rig.at(0)
    assert rig.w.state == "starting" and rig.w.quick_deaths == 0


def test_the_supervisors_own_stall_is_not_a_workers_silence(make_rig):
    rig = make_rig(heartbeat_timeout=3.0, stall_grace=1.0)
    rig.hello()
    first = rig.proc
    rig.at(10.0)  # no poll for 10 s (a GIL held by a C++ call, a suspended VM): a stall
    assert first.signals == [] and rig.sup.stalls == 1
    rig.at(0.5)
    rig.at(0.5)
    rig.at(0.5)
    rig.at(0.5)
    rig.at(0.5)
    rig.at(0.5)
    assert first.signals == []  # silent 3.0 s since the stall ended: at the limit, still alive
    rig.at(0.5)
    assert first.signals == [signal.SIGKILL]  # a really silent worker is still found


def test_a_first_start_that_fails_on_its_configuration_is_not_restarted(make_rig):
    rig = make_rig()
    rig.proc.exit(2)  # EXIT_CONFIG_ERROR before hello
    rig.at(0)
    assert rig.w.state == "failed" and rig.sup.failed() == [rig.w]
    rig.at(60)
    assert len(rig.procs) == 1


def test_a_worker_that_refuses_damaged_state_is_never_restarted(make_rig):
    # a gateway that served for a while, was restarted, and found its journal damaged
    rig = make_rig()
    rig.hello()
    rig.at(60)
    rig.proc.exit(-9)
    rig.at(0)
    assert len(rig.procs) == 2  # a crash after serving: restarted at once
    rig.proc.exit(4)  # EXIT_CORRUPT_STATE: refused its journal
    rig.at(0)
    assert rig.w.state == "failed" and rig.sup.failed() == [rig.w]
    rig.at(60)
    assert len(rig.procs) == 2


# ----------------------------------------------------------------------------- silence


def test_a_silent_worker_is_killed_after_the_timeout_and_restarted(make_rig):
    rig = make_rig(heartbeat_timeout=3.0, backoff_initial=0.5)
    first = rig.proc
    rig.hello()
    assert rig.w.state == "running"
    rig.at(3.0)  # silent for exactly the limit: still alive
    assert first.signals == []
    rig.beat()
    rig.at(2.999)
    assert first.signals == [] and rig.w.heartbeat_age == pytest.approx(2.999)
    rig.at(0.002)  # 3.001 s since the last heartbeat
    assert first.signals == [signal.SIGKILL]
    assert any("silent for 3.0s" in text for _, _, text in rig.sup.events)
    rig.at(0)  # the next poll sees it dead and, as it had been serving, starts it again at once
    assert rig.proc is not first and rig.w.state == "starting" and rig.w.pid == rig.proc.pid
    assert rig.w.restarts == 1


def test_a_starting_worker_gets_the_startup_timeout(make_rig):
    rig = make_rig(heartbeat_timeout=3.0, startup_timeout=20.0)
    rig.at(19.999)
    assert rig.proc.signals == []  # no hello yet, but still within its startup time
    rig.at(0.002)
    assert rig.proc.signals == [signal.SIGKILL]


def test_a_heartbeat_from_another_pid_does_not_keep_a_worker_alive(make_rig):
    rig = make_rig(heartbeat_timeout=3.0)
    rig.hello()
    rig.dealer.send(P.Heartbeat(ts=rig.clock.time_ns(), pid=rig.proc.pid + 1).pack())
    for _ in range(100):
        rig.sup.poll(50)
        if rig.sup.impostors:
            break
    assert rig.sup.impostors == 1
    rig.at(3.001)
    assert rig.proc.signals == [signal.SIGKILL]


# ----------------------------------------------------------------------------- stopping


def test_a_requested_stop_escalates_sigterm_then_sigkill(make_rig):
    rig = make_rig(stop_timeout=5.0, ignores_sigterm=True)
    rig.hello()
    proc = rig.proc
    rig.sup.stop_worker("w1")
    assert rig.w.state == "stopping" and rig.commands() == ["stop"]
    rig.at(5.0)
    assert proc.signals == []  # the stop command's grace is not over
    rig.at(0.001)
    assert proc.signals == [signal.SIGTERM]
    rig.at(0.998)
    assert proc.signals == [signal.SIGTERM]  # one more second for SIGTERM
    rig.at(0.002)
    assert proc.signals == [signal.SIGTERM, signal.SIGKILL]
    rig.at(0)
    assert rig.w.state == "stopped" and rig.w.proc is None
    rig.at(60)
    assert len(rig.procs) == 1  # stopped on request: not restarted


def test_a_restart_request_starts_it_again_once_gone(make_rig):
    rig = make_rig(stop_timeout=5.0)
    rig.hello()
    first = rig.proc
    rig.sup.restart_worker("w1")
    first.exit(0)  # it obeyed the stop command
    rig.at(0)
    assert rig.proc is not first and rig.w.state == "starting" and first.signals == []


def test_fleet_stop_waits_then_sigterm_then_sigkill(make_rig):
    rig = make_rig(stop_timeout=5.0, ignores_sigterm=True)
    rig.hello()
    proc = rig.proc
    t0 = rig.clock.monotonic()
    rig.sup.stop()
    # the stop command's full grace, SIGTERM and 2 s more, then SIGKILL
    assert proc.signals == [signal.SIGTERM, signal.SIGKILL]
    assert rig.clock.monotonic() - t0 == pytest.approx(7.0)
    assert rig.w.state == "stopped" and rig.w.exit_code == -signal.SIGKILL


def test_fleet_stop_needs_no_sigkill_for_a_worker_that_obeys_sigterm(make_rig):
    rig = make_rig(stop_timeout=5.0)
    rig.hello()
    proc = rig.proc
    rig.sup.stop()
    assert proc.signals == [signal.SIGTERM] and rig.w.exit_code == -signal.SIGTERM
