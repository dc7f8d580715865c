"""bench/soak.py keeps working: a few seconds of it, as a user runs it (exit status and JSON)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.procs import REPO, scaled

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_soak_runs_kills_and_reports(tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "bench/soak.py", "--minutes", "0.1", "--kill-every", "2", "--seed", "5", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=scaled(110),
    )
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "LOST" in proc.stdout and "DUPLICATED" in proc.stdout
    r = json.loads(out.read_text())
    assert r["ok"] and r["orders"]["lost"] == 0 and r["orders"]["duplicated"] == 0
    assert r["orders"]["sent"] > 0 and len(r["kills"]) >= 1
    assert set(r["recovery"]) == {"marketdata", "strategy", "executor", "exchange"}
    assert r["memory"], "RSS from the heartbeats"
