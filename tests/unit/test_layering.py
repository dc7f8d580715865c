"""Nothing under workers/ imports Qt or app/: the fleet runs where Qt is absent."""

from __future__ import annotations

import subprocess
import sys

from tests.procs import REPO

PROBE = r"""
import importlib, pkgutil, sys

BANNED = ("PySide6", "shiboken6", "pyqtgraph", "qasync", "app")

class Ban:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BANNED:
            raise ImportError(f"workers must not import {name}")
        return None

sys.meta_path.insert(0, Ban())
import workers
names = [m.name for m in pkgutil.walk_packages(workers.__path__, "workers.")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_every_worker_module_imports_without_qt_or_app():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 15  # the walk really found the worker modules


def test_every_worker_kind_documents_its_options():
    from workers.registry import WORKER_MODULES

    for kind in WORKER_MODULES:
        out = subprocess.run([sys.executable, "main.py", "worker", kind, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"main.py worker {kind}" in out.stdout
        assert "--orphan-timeout" in out.stdout and "--ticks" in out.stdout
