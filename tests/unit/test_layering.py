"""The layers hold: import-linter's contracts (pyproject.toml), plus what it cannot see.

``lint-imports`` reads the import graph statically, function-level imports included; the
contracts are listed and explained in docs/architecture.md ("Layers and contracts").  Two
rules are checked here besides: pyqtgraph is imported after ``app.qt`` (the order of
imports, which a graph does not record), and nothing under workers/ imports Qt or app/
when it actually runs (importlib-driven imports that no static graph can follow).
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.procs import REPO

LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def test_import_contracts_are_kept():
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra: pip install -e '.[dev]'")
    # --no-cache: the cache lives in the work tree and would be shared with other checkouts' runs
    out = subprocess.run([sys.executable, "-c", LINT, "--no-cache"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, f"lint-imports failed (exit {out.returncode}):\n{out.stdout}\n{out.stderr}"
    assert "0 broken" in out.stdout, out.stdout


def _top_level_imports(path) -> list[str]:
    """Modules imported at module level of ``path``, in order (``from a.b import c`` -> a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_pyqtgraph_is_imported_after_app_qt():
    """app.qt sets PYQTGRAPH_QT_LIB; a module that imported pyqtgraph first would let
    pyqtgraph choose its own binding."""
    checked = 0
    for path in sorted((REPO / "app").rglob("*.py")):
        names = _top_level_imports(path)
        pg = [i for i, n in enumerate(names) if n == "pyqtgraph" or n.startswith("pyqtgraph.")]
        if not pg:
            continue
        checked += 1
        qt = [i for i, n in enumerate(names) if n == "app.qt"]
        assert qt and qt[0] < pg[0], f"{path.relative_to(REPO)} imports pyqtgraph before app.qt"
    assert checked >= 3  # the chart's modules were found


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


def test_the_fleet_side_of_main_py_loads_no_qt():
    """main.py is the composition root: importing it, the launcher (headless runner) and the
    worker registry loads nothing of the window."""
    code = ("import sys, main, workers.launcher, workers.registry; "
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('PySide6', 'shiboken6', 'pyqtgraph', 'qasync', 'app'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"loaded with main.py and the launcher: {out.stdout}"


def test_every_worker_kind_documents_its_options():
    from workers.registry import WORKER_MODULES

    for kind in WORKER_MODULES:
        out = subprocess.run([sys.executable, "main.py", "worker", kind, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"main.py worker {kind}" in out.stdout
        assert "--orphan-timeout" in out.stdout and "--ticks" in out.stdout
