"""Helpers for tests that start real TickDesk processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from workers.config import Endpoints

REPO = Path(__file__).resolve().parent.parent


def start_worker(kind: str, endpoints: Endpoints, *args: str, tmp_path: Path | None = None, control: bool = False) -> subprocess.Popen:
    """Start ``main.py worker KIND`` as a real process; stderr goes to a log file in tmp_path."""
    cmd = [sys.executable, str(REPO / "main.py"), "worker", kind, *endpoints.as_args(), *args]
    if not control and "--no-control" not in args:
        cmd.append("--no-control")
    log = open(Path(tmp_path) / f"{kind}-{time.monotonic_ns()}.log", "wb") if tmp_path else subprocess.DEVNULL
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=log, env=env)
    proc.log_path = getattr(log, "name", None)  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> int:
    """SIGTERM, wait, then SIGKILL: the process is gone when this returns."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02, message: str = "") -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {message or predicate}")
        time.sleep(interval)


def log_text(proc: subprocess.Popen) -> str:
    path = getattr(proc, "log_path", None)
    return Path(path).read_text(errors="replace") if path else ""
