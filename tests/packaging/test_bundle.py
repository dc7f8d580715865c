"""Smoke tests of the frozen (PyInstaller) bundle built from build.spec.

Skipped unless ``TICKDESK_BUNDLE`` points at a built onedir bundle, so the normal suite stays
fast; ``.ci/build_bundle.sh`` builds ``dist/TickDesk`` and runs this module against it:

    TICKDESK_BUNDLE=dist/TickDesk python -m pytest tests/packaging -q

What it shows:
* the bundled executable runs the headless fleet, every worker is a process of that same
  frozen executable (``TickDesk worker KIND``), ticks flow end to end, it exits 0 and no
  process is left behind;
* the bundled window starts offscreen, runs the fleet and saves a real screenshot;
* every module the window imports when run from source is in the bundle, so an exclusion in
  build.spec cannot silently disable a part of the window (the chart panel, for one, shows a
  placeholder instead of failing when its imports break).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from tests.procs import REPO, scaled, wait_until
from workers.config import Endpoints

BUNDLE = os.environ.get("TICKDESK_BUNDLE", "")
IS_WIN = sys.platform == "win32"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not BUNDLE, reason="set TICKDESK_BUNDLE to a built bundle (dist/TickDesk; see .ci/build_bundle.sh)"),
]

FLEET_SIZE = 6  # workers.fleet.default_fleet: exchange, marketdata, executor, recorder, two strategies

# Signs of a broken bundle in any output or worker log.
BROKEN = re.compile(r"Traceback \(most recent call last\)|ModuleNotFoundError|ImportError|Failed to execute script|Fatal Python error")

# Modules the window imports from source that build.spec leaves out on purpose; each one is
# imported inside try/except by its importer and the window works without it.
OPTIONAL_IN_BUNDLE = {
    "ssl", "_ssl", "_hashlib",  # asyncio, http.client, hashlib/hmac: optional TLS/OpenSSL
    "bz2", "_bz2", "lzma", "_lzma",  # shutil/tarfile/zipfile: optional compressors
    "PySide6.QtSvg", "PySide6.QtTest",  # pyqtgraph.Qt: try-imports
    "PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets",  # app/qt.py's stand-ins where absent
    "readline",
}
# Top-level names present only because the source run comes from a venv / editable install.
SOURCE_ONLY = ("__editable__", "_distutils_hack", "sitecustomize", "usercustomize", "site", "_sitebuiltins", "_virtualenv", "__main__")
# Modules that live inside a bundled binary rather than as files: shiboken6 carries its
# signature support (signature_bootstrap, shibokensupport.*) embedded in libshiboken.
EMBEDDED = ("shibokensupport", "signature_bootstrap")


# --------------------------------------------------------------------------- helpers
def bundle_dir() -> Path:
    path = Path(BUNDLE)
    if not path.is_absolute():
        path = REPO / path
    return path


def bundle_exe(console: bool = False) -> Path:
    """The bundle's executable.  On Windows the windowed TickDesk.exe has no stdout, so the
    headless run uses the console twin tickdesk-cli.exe (build.spec builds both there)."""
    d = bundle_dir()
    if IS_WIN:
        return d / ("tickdesk-cli.exe" if console else "TickDesk.exe")
    return d / "TickDesk"


@pytest.fixture
def short_dir():
    """A short temp dir: ipc:// paths must fit a unix socket address (about 100 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="tdb-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def endpoints_in(d: Path) -> Endpoints:
    # No ipc:// on Windows (docs/packaging.md); loopback tcp on free ports there.
    return Endpoints.ephemeral_tcp() if IS_WIN else Endpoints.ephemeral_ipc(d)


def processes() -> list[tuple[int, int, str, list[str]]]:
    """(pid, parent pid, executable path, argv) of every process we can see."""
    out = []
    if IS_WIN:
        ps = "Get-CimInstance Win32_Process | ForEach-Object { \"$($_.ProcessId)`t$($_.ParentProcessId)`t$($_.ExecutablePath)`t$($_.CommandLine)\" }"
        text = subprocess.run(["powershell", "-NoProfile", "-Command", ps], capture_output=True, text=True, timeout=scaled(60)).stdout
        for line in text.splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and parts[0].isdigit():
                out.append((int(parts[0]), int(parts[1] or 0), parts[2], split_windows_cmdline(parts[3])))
        return out
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue  # a zombie is gone in all but name
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            exe = os.readlink(entry / "exe")
        except OSError:
            continue  # exited meanwhile, or not ours to read
        out.append((int(entry.name), int(fields[1]), exe, [a for a in argv if a]))
    return out


def split_windows_cmdline(line: str) -> list[str]:
    """Good enough for our own argv: a possibly quoted program path, then plain arguments."""
    line = line.strip()
    if line.startswith('"'):
        end = line.find('"', 1)
        return [line[1:end], *line[end + 1 :].split()]
    return line.split()


def ours(marker: str) -> list[tuple[int, int, str, list[str]]]:
    """Processes whose command line carries ``marker`` (a path or port unique to one test)."""
    return [p for p in processes() if any(marker in a for a in p[3])]


def kill_leftovers(marker: str) -> None:
    for pid, _ppid, _exe, _argv in ours(marker):
        try:
            os.kill(pid, signal.SIGKILL if not IS_WIN else signal.SIGTERM)
        except OSError:
            pass


def same_file(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def run_bundle(args: list[str], log_dir: Path, timeout: float, *, console: bool, marker: str, env=None) -> tuple[subprocess.Popen, str, str]:
    """Run the bundled executable to completion; stdout/stderr go to files (no pipe can fill)."""
    out_path, err_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([str(bundle_exe(console)), *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=log_dir)
        try:
            proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(scaled(10))
            kill_leftovers(marker)
            pytest.fail(f"the bundle did not exit within {scaled(timeout):g}s; stderr:\n{err_path.read_text(errors='replace')[-3000:]}")
    return proc, out_path.read_text(errors="replace"), err_path.read_text(errors="replace")


def worker_logs(data: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted((data / "logs").glob("*.log")))


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


# --------------------------------------------------------------------------- the tests
def test_bundle_layout():
    exe = bundle_exe()
    assert exe.is_file(), f"no executable at {exe}"
    internal = bundle_dir() / "_internal"
    assert (internal / "resources" / "themes").is_dir(), "resources/ is not bundled (workers.config.resources_dir)"
    assert (internal / "resources" / "icons" / "tickdesk.png").is_file()
    assert not list(internal.rglob("translations/qt*.qm")), "Qt translations should be excluded"
    assert not list(internal.rglob("*QtWebEngine*")) and not list(internal.rglob("*Qt6Qml*")), "unused Qt modules in the bundle"


def test_headless_fleet_runs_from_the_frozen_executable(short_dir):
    eps = endpoints_in(short_dir)
    marker = eps.control  # in every worker's argv, unique to this run
    data = short_dir / "data"
    args = ["--headless", "--duration", "10", "--data-dir", str(data), "--fresh", "--status-every", "2", *eps.as_args()]
    exe = bundle_exe(console=True)
    out_path, err_path = short_dir / "stdout.txt", short_dir / "stderr.txt"
    seen: dict[int, tuple[str, list[str]]] = {}
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen([str(exe), *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=short_dir)

            def workers_up():
                for pid, ppid, path, argv in processes():
                    if ppid == proc.pid:
                        seen[pid] = (path, argv)
                return len(seen) >= FLEET_SIZE or proc.poll() is not None

            wait_until(workers_up, timeout=30, interval=0.1, message="the frozen supervisor to start its workers")
            try:
                code = proc.wait(scaled(60))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(scaled(10))
                pytest.fail("the headless bundle did not stop after --duration 10")
        stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
        logs = worker_logs(data)

        assert code == 0, f"exit code {code}\nstderr:\n{stderr[-3000:]}\n{logs[-3000:]}"
        assert len(seen) >= FLEET_SIZE, f"only {len(seen)} worker processes seen: {seen}"
        for pid, (path, argv) in seen.items():
            # each worker is the frozen executable itself, dispatched by main.py's "worker KIND"
            assert same_file(path, exe) or same_file(path, bundle_exe()), f"worker {pid} runs {path}, not the bundle"
            assert len(argv) >= 3 and argv[1] == "worker", f"worker {pid} argv {argv}"
        kinds = sorted(argv[2] for _path, argv in seen.values())
        assert kinds == sorted(["exchange", "marketdata", "executor", "recorder", "strategy", "strategy"]), kinds
        # the frozen recorder (pyarrow in the bundle) rolled what it heard into Parquet at its stop
        parts = list((data / "recordings").glob("*/parquet/ticks/date=*/symbol=*/part-*.parquet"))
        assert parts, f"no Parquet written by the frozen recorder:\n{logs[-3000:]}"

        status = [line for line in stdout.splitlines() if line.startswith("ticks ")]
        assert status, f"no status line in the summary:\n{stdout}"
        ticks = int(re.match(r"ticks (\d+)", status[-1]).group(1))
        assert ticks > 0, f"no ticks flowed through the frozen fleet:\n{stdout}\n{logs[-3000:]}"
        assert f"workers {FLEET_SIZE}/{FLEET_SIZE} up" in status[-1], status[-1]
        table = stdout.split("counters", 1)[1].strip().splitlines()
        exits = {row.split()[0]: row.split()[3] for row in table if len(row.split()) >= 4}
        assert len(exits) == FLEET_SIZE and set(exits.values()) == {"0"}, f"worker exit codes: {exits}"
        assert not BROKEN.search(stderr + logs), f"errors in the run:\n{stderr[-3000:]}\n{logs[-3000:]}"

        # nothing left: every worker (and the supervisor) is gone, none orphaned
        wait_until(lambda: not ours(marker), timeout=10, interval=0.1, message="no process of this run left")
    finally:
        kill_leftovers(marker)


@pytest.mark.skipif(not (REPO / "app" / "main.py").is_file(), reason="app/ (the window) is not in this checkout yet: no window to smoke-test")
def test_window_starts_offscreen_and_saves_a_screenshot(short_dir):
    eps = endpoints_in(short_dir)
    marker = eps.control
    data = short_dir / "data"
    shot = short_dir / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    try:
        proc, stdout, stderr = run_bundle(
            ["--screenshot", str(shot), "--duration", "5", "--data-dir", str(data), "--fresh", *eps.as_args()],
            short_dir, 90, console=False, marker=marker, env=env,
        )
        logs = worker_logs(data) if (data / "logs").is_dir() else ""
        assert proc.returncode == 0, f"exit code {proc.returncode}\nstderr:\n{stderr[-3000:]}"
        assert shot.is_file(), f"no screenshot saved\nstderr:\n{stderr[-3000:]}"
        width, height = png_size(shot)
        assert width >= 640 and height >= 480, (width, height)
        assert distinct_colors(shot) > 16, "the screenshot is blank"
        assert not BROKEN.search(stderr + logs), f"errors in the window run:\n{stderr[-3000:]}\n{logs[-3000:]}"
        wait_until(lambda: not ours(marker), timeout=10, interval=0.1, message="no process of the window run left")
    finally:
        kill_leftovers(marker)


# Runs main.py from source and writes the names of the modules it loaded (with a real file
# behind them: built-in and frozen modules are part of the interpreter) when it exits.
MODULE_DUMP = """
import atexit, runpy, sys
out, argv = sys.argv[1], sys.argv[2:]
def dump():
    names = sorted(n for n, m in list(sys.modules.items()) if getattr(getattr(m, "__spec__", None), "origin", None) not in (None, "built-in", "frozen"))
    open(out, "w").write("\\n".join(names))
atexit.register(dump)
sys.argv = argv
runpy.run_path(argv[0], run_name="__main__")
"""


@pytest.mark.skipif(not (REPO / "app" / "main.py").is_file(), reason="app/ (the window) is not in this checkout yet")
def test_bundle_has_every_module_the_window_imports(short_dir):
    pytest.importorskip("PyInstaller", reason="reading the bundle's archive needs PyInstaller (pip install -e '.[build]')")
    eps = endpoints_in(short_dir)
    data = short_dir / "data"
    dump = short_dir / "modules.txt"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    # The window process only: workers run elsewhere and are covered by the headless test
    # (a module missing there is a dead worker).
    cmd = [sys.executable, "-c", MODULE_DUMP, str(dump), str(REPO / "main.py"), "--screenshot", str(short_dir / "src.png"),
           "--duration", "3", "--data-dir", str(data), "--fresh", *eps.as_args()]
    try:
        run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=scaled(90))
    finally:
        kill_leftovers(eps.control)
    assert run.returncode == 0, run.stderr[-3000:]
    imported = set(dump.read_text().split())
    assert len(imported) > 100, f"too few modules recorded: {sorted(imported)}"
    have = bundle_modules()
    missing = sorted(
        m for m in imported
        if m not in have and m not in OPTIONAL_IN_BUNDLE and not m.startswith(SOURCE_ONLY) and not m.startswith(EMBEDDED)
    )
    assert not missing, f"imported by the window from source but not in the bundle (excluded by build.spec?): {missing}"


# --------------------------------------------------------------------------- bundle inventory
def bundle_modules() -> set[str]:
    """Every module the frozen app can import: the PYZ archive, base_library.zip, and the
    extension modules on disk."""
    from PyInstaller.archive.readers import CArchiveReader

    names: set[str] = set()
    pkg = CArchiveReader(str(bundle_exe()))
    for name, entry in pkg.toc.items():
        if entry[-1] == "m":  # bootstrap modules stored in the executable itself (struct, ...)
            names.add(name)
        if entry[-1] in ("z", "Z"):
            names |= set(pkg.open_embedded_archive(name).toc)
    internal = bundle_dir() / "_internal"
    base = internal / "base_library.zip"
    if base.is_file():
        with zipfile.ZipFile(base) as z:
            for n in z.namelist():
                if n.endswith(".pyc"):
                    mod = n[: -len(".pyc")].replace("/", ".")
                    names.add(mod.removesuffix(".__init__"))
    for path in internal.rglob("*"):
        if path.suffix in (".so", ".pyd") and (".cpython-" in path.name or ".abi3." in path.name or path.suffix == ".pyd"):
            rel = path.relative_to(internal)
            parts = list(rel.parts[:-1])
            if parts[:2] == ["python3.11", "lib-dynload"] or (parts and parts[0] in ("lib-dynload",)) or re.match(r"python3\.\d+", parts[0] if parts else ""):
                parts = []
            names.add(".".join([*parts, path.name.split(".")[0]]))
    return names


def distinct_colors(path: Path) -> int:
    """Colours on a coarse grid of the image; a blank window gives one or two."""
    try:
        from PySide6.QtGui import QImage
    except ImportError:  # no Qt in this interpreter: trust the size check
        return 999
    img = QImage(str(path))
    assert not img.isNull(), f"{path} does not load as an image"
    colors = {img.pixel(x, y) for x in range(0, img.width(), 23) for y in range(0, img.height(), 19)}
    return len(colors)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_backtest_and_data_commands_run_from_the_frozen_executable(short_dir):
    """The research stack in the bundle: import a CSV as a recording, backtest it, sweep it on
    two spawned worker processes of the frozen executable."""
    exe = bundle_exe(console=True)
    csv = REPO / "resources" / "data" / "daily_ohlcv.csv"

    def run(*args):
        return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=scaled(120), cwd=short_dir)

    r = run("data", "--data-dir", str(short_dir), "import", str(csv), "--out", "daily")
    assert r.returncode == 0, r.stderr[-3000:]
    rec = short_dir / "recordings" / "daily"
    r = run("backtest", "--data", str(rec), "--param", "window=50", "--report", str(short_dir / "r.html"))
    assert r.returncode == 0 and "Net P&L" in r.stdout, r.stderr[-3000:]
    assert "<svg" in (short_dir / "r.html").read_text()
    r = run("sweep", "--data", str(rec), "--grid", "window=30,60", "--workers", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert len([ln for ln in r.stdout.splitlines() if ln.strip().startswith(("30", "60"))]) == 2, r.stdout
