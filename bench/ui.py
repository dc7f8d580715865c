"""The window's UI-thread lag: runs ``bench/ui_lag.py`` (written with the window) when it exists.

Its table is printed as it comes, below the main table; the main table gets one row saying
where it is (or that the script is not there).
"""

from __future__ import annotations

import os
import subprocess
import sys

from bench.common import Sizes
from bench.procs import REPO

TIMEOUT_S = 300


def run(sizes: Sizes, log=print) -> dict:
    if not (REPO / "bench" / "ui_lag.py").exists():
        return {"available": False}
    log("ui: bench/ui_lag.py")
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    cmd = [sys.executable, "-m", "bench.ui_lag"]
    try:
        helptext = subprocess.run([*cmd, "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60).stdout
        if sizes.name.startswith("quick"):
            if "--quick" in helptext:
                cmd.append("--quick")
            else:  # one short rate: the smoke run must stay under a minute
                for opt, val in (("--rates", "10000"), ("--seconds", "2"), ("--warmup", "1")):
                    if opt in helptext:
                        cmd += [opt, val]
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"available": True, "text": "", "error": f"timed out after {TIMEOUT_S}s"}
    if p.returncode != 0:
        return {"available": True, "text": p.stdout, "error": (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]}
    return {"available": True, "text": p.stdout.rstrip(), "command": " ".join(cmd[1:])}
