"""Helpers for tests that start real TickDesk processes.

Every wait in the tests scales with ONE factor, ``TICKDESK_TEST_TIMEOUT_FACTOR`` (default
:data:`DEFAULT_TIMEOUT_FACTOR`): :func:`wait_until`, :func:`stop`, the subprocess and socket
timeouts the tests pass through :func:`scaled`, and pytest-timeout's per-test limits
(``tests/conftest.py``).  A timeout is a ceiling for a condition, never a measure of speed: a
test waits for what it means (a counter, a heartbeat, a seq), and only gives up after the
scaled ceiling.  The default is chosen so that the suite passes on a busy 2-core machine
(four busy loops beside it); raise it on a slower or busier one, e.g.
``TICKDESK_TEST_TIMEOUT_FACTOR=6 pytest``.
"""

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

#: the default factor: a busy 2-core machine (four busy loops, the fleet and pytest on two
#: cores) takes up to ~3x as long as a quiet one for start-up and recovery
DEFAULT_TIMEOUT_FACTOR = 3.0


def _timeout_factor() -> float:
    raw = os.environ.get("TICKDESK_TEST_TIMEOUT_FACTOR", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_FACTOR
    try:
        f = float(raw)
    except ValueError:
        raise RuntimeError(f"TICKDESK_TEST_TIMEOUT_FACTOR must be a number, got {raw!r}") from None
    if not f > 0 or f != f or f == float("inf"):
        raise RuntimeError(f"TICKDESK_TEST_TIMEOUT_FACTOR must be a positive number, got {raw!r}")
    return f


#: every wait of the tests is multiplied by this (``TICKDESK_TEST_TIMEOUT_FACTOR``)
TIMEOUT_FACTOR = _timeout_factor()


def scaled(seconds: float) -> float:
    """``seconds`` times the suite's timeout factor: for every timeout a test passes to a
    subprocess, a socket poll or a process wait."""
    return seconds * TIMEOUT_FACTOR


def scaled_ms(ms: int) -> int:
    """:func:`scaled` for millisecond timeouts (zmq polls, RCVTIMEO)."""
    return max(1, int(ms * TIMEOUT_FACTOR))


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
    """SIGTERM, wait (``timeout`` scaled), then SIGKILL: the process is gone when this returns."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(scaled(timeout))
    return proc.returncode


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02, message: str = "") -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``
    seconds times the suite's factor (:data:`TIMEOUT_FACTOR`).  ``timeout`` is what a quiet
    machine needs with a margin; the factor covers a busy one."""
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"condition not met within {limit:g}s ({timeout:g}s x timeout factor {TIMEOUT_FACTOR:g}): {message or predicate}")
        time.sleep(interval)


def log_text(proc: subprocess.Popen) -> str:
    path = getattr(proc, "log_path", None)
    return Path(path).read_text(errors="replace") if path else ""
