"""The worker's end of the control channel: a command run once however often it is resent,
and when a worker takes its supervisor for gone (a local parent: its death only; a remote
one: its silence)."""

from __future__ import annotations

import argparse
import os

import pytest
import zmq

from workers import control_channel
from workers import protocol as P
from workers.config import add_common_args
from workers.control_channel import SUPERVISOR_PID_ENV
from workers.runtime import Worker


class Counting(Worker):
    kind = "counting"

    def __init__(self, args):
        super().__init__(args)
        self.runs = 0

    def on_command(self, cmd, args):
        if cmd == "bump":
            self.runs += 1
            return {"runs": self.runs}
        return super().on_command(cmd, args)


@pytest.fixture
def make_worker(tmp_path, monkeypatch):
    # the test process must not ask the kernel for a parent-death signal
    monkeypatch.setattr(control_channel, "die_with_parent", lambda: None)
    made = []

    def make(*extra: str, local_parent: bool = True):
        if local_parent:
            monkeypatch.setenv(SUPERVISOR_PID_ENV, str(os.getppid()))
        else:
            monkeypatch.delenv(SUPERVISOR_PID_ENV, raising=False)
        p = argparse.ArgumentParser()
        add_common_args(p)
        eps = [f"--{n}=ipc://{tmp_path}/{n}" for n in ("ticks", "signals", "orders", "execution", "events", "control")]
        w = Counting(p.parse_args([*eps, "--name", "count-1", *extra]))
        router = w.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        router.bind(f"ipc://{tmp_path}/control")
        w.control.open()
        assert router.poll(2000)
        ident, _hello = router.recv_multipart()
        made.append(w)
        return w, router, ident

    yield make
    for w in made:
        w._close()


def _ask(w, router, ident, cid: str, cmd: str) -> P.CommandReply:
    router.send_multipart([ident, P.Command(id=cid, cmd=cmd).pack()])
    assert w.poller.poll(2000)
    w._drain(w.control.sock)
    while router.poll(1000):
        msg = P.decode(router.recv_multipart()[1])
        if isinstance(msg, P.CommandReply):
            return msg
    raise AssertionError("no reply")


def test_a_resent_command_is_answered_again_and_run_once(make_worker):
    w, router, ident = make_worker()
    first = _ask(w, router, ident, "s1-7", "bump")
    again = _ask(w, router, ident, "s1-7", "bump")  # the supervisor's resend after a reconnect
    assert first.ok and first.result == {"runs": 1}
    assert again == first and w.runs == 1
    assert w.stats.counters["control_repeats"] == 1
    assert _ask(w, router, ident, "s1-8", "bump").result == {"runs": 2}  # a new id runs


def test_a_local_supervisor_is_gone_when_the_parent_is_not_when_it_is_silent(make_worker):
    w, _router, _ident = make_worker("--orphan-timeout", "5")
    heard = w.control.last_heard
    # a parent alive but silent for a minute (a stalled window process): the worker stays
    assert not w.control.supervisor_gone(heard + 60.0)
    # the parent changed (re-parented: the supervisor died): gone
    w.control.supervisor_pid = os.getppid() + 1_000_000
    assert w.control.supervisor_gone(heard + 0.1)


def test_a_remote_supervisor_is_gone_after_the_orphan_timeout_of_silence(make_worker):
    w, _router, _ident = make_worker("--orphan-timeout", "5", local_parent=False)
    heard = w.control.last_heard
    assert not w.control.supervisor_gone(heard + 4.9)
    assert w.control.supervisor_gone(heard + 5.1)
