"""A bug in a worker's loop hook costs a count, not the worker."""

from __future__ import annotations

import argparse

from workers.config import add_common_args
from workers.runtime import Worker


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
