"""CI: the window on a real X server (Xvfb) through Qt's xcb platform plugin, not offscreen.

    .venv/bin/python .ci/xcb_smoke.py [--duration 8] [--keep DIR]

What a trader's first ``main.py`` on a desktop does, checked from outside:

1. start an Xvfb of our own (``-displayfd``: a free display number, so parallel runs and a
   desktop session are never touched); no Xvfb, or one that does not start, fails clearly;
2. run ``main.py --screenshot shot.png --duration S`` with ``QT_QPA_PLATFORM=xcb`` and that
   ``DISPLAY`` (Qt has no fallback when the platform is named: a missing xcb library aborts
   it, which is the failure this guards), its own fleet on ipc:// endpoints and a fresh data
   folder in a temp dir;
3. while it runs, a second Qt process on the same display grabs the X root window until it
   shows the window drawn (many colours over most of the screen): this proves the pixels
   reached the X server, which the window's own ``grab()`` would not;
4. the window must exit 0, its screenshot must not be blank, its log must hold no traceback.

Xvfb and the window are stopped in every case.  Exit status 0 = drew, 1 = failed (reason on
stderr).  Waits scale with ``TICKDESK_TEST_TIMEOUT_FACTOR`` (tests/procs.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.procs import scaled  # noqa: E402
from workers.config import Endpoints  # noqa: E402

#: Xvfb's screen: larger than the 1600x960 the window takes for --screenshot
SCREEN = (1920, 1080)
#: a drawn window has hundreds of colours (text antialiasing, the chart); an empty root, a
#: blank or a single-colour placeholder has a handful
MIN_COLOURS = 64
#: the window covers ~74% of the screen; an empty root is 100% one colour
MIN_DRAWN_FRACTION = 0.3


class SmokeError(Exception):
    pass


@dataclass(frozen=True)
class ImageStats:
    width: int
    height: int
    colours: int
    drawn_fraction: float  # share of pixels that differ from the most common colour

    def __str__(self) -> str:
        return f"{self.width}x{self.height}, {self.colours} colours, {self.drawn_fraction:.0%} drawn"


def image_stats(img) -> ImageStats:
    """Colour statistics of a QImage (no QGuiApplication needed)."""
    import numpy as np
    from PySide6.QtGui import QImage

    if img.isNull():
        return ImageStats(0, 0, 0, 0.0)
    img = img.convertToFormat(QImage.Format.Format_RGB32)
    w, h = img.width(), img.height()
    rows = np.frombuffer(img.constBits(), np.uint32, count=h * img.bytesPerLine() // 4)
    px = rows.reshape(h, img.bytesPerLine() // 4)[:, :w] & 0x00FFFFFF  # the padding byte is not a colour
    _, counts = np.unique(px, return_counts=True)
    return ImageStats(w, h, len(counts), 1.0 - counts.max() / px.size)


def png_stats(path: Path) -> ImageStats:
    from PySide6.QtGui import QImage

    return image_stats(QImage(str(path)))


def looks_drawn(stats: ImageStats, min_size: tuple[int, int] = (800, 500)) -> bool:
    return (stats.width >= min_size[0] and stats.height >= min_size[1]
            and stats.colours >= MIN_COLOURS and stats.drawn_fraction >= MIN_DRAWN_FRACTION)


# -- the grabber: a separate process, so that a Qt abort on xcb cannot leave Xvfb behind --

def grab_root(out: Path, timeout: float) -> int:
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication(["xcb-smoke-grab"])
    if app.platformName() != "xcb":
        print(f"grab: Qt platform is {app.platformName()!r}, not xcb", file=sys.stderr)
        return 1
    screen = app.primaryScreen()
    deadline = time.monotonic() + timeout
    stats = ImageStats(0, 0, 0, 0.0)
    while time.monotonic() < deadline:
        app.processEvents()
        img = screen.grabWindow(0).toImage()
        stats = image_stats(img)
        if looks_drawn(stats):
            img.save(str(out))
            print(f"grab: X root shows the window: {stats}")
            return 0
        time.sleep(0.25)
    print(f"grab: no window drawn on the X root after {timeout:.0f} s (last grab: {stats})", file=sys.stderr)
    return 1


# -- the driver --

def start_xvfb(work: Path) -> tuple[subprocess.Popen, str]:
    exe = shutil.which("Xvfb")
    if not exe:
        raise SmokeError("Xvfb is not installed: run 'bash .ci/setup.sh --with-xvfb' (Debian/Ubuntu package xvfb)")
    r, w = os.pipe()
    log = open(work / "xvfb.log", "wb")
    try:
        proc = subprocess.Popen([exe, "-displayfd", str(w), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
                                 "-nolisten", "tcp", "-noreset"], pass_fds=(w,), stdout=log, stderr=log,
                                start_new_session=True)
    finally:
        os.close(w)
        log.close()
    # Xvfb writes the display number once it accepts clients, or closes the pipe by exiting
    deadline = time.monotonic() + scaled(10)
    buf = b""
    os.set_blocking(r, False)
    try:
        while not buf.endswith(b"\n") and time.monotonic() < deadline:
            try:
                chunk = os.read(r, 16)
            except BlockingIOError:
                chunk = None
            if chunk == b"":
                break
            if chunk:
                buf += chunk
            elif proc.poll() is not None:
                break
            else:
                time.sleep(0.05)
    finally:
        os.close(r)
    if not buf.strip().isdigit():
        exited = proc.poll()
        stop_proc(proc, group=True)
        tail = (work / "xvfb.log").read_text(errors="replace")[-1500:]
        why = f"exit {exited}" if exited is not None else f"no display number within {scaled(10):.0f} s"
        raise SmokeError(f"Xvfb did not start ({why}):\n{tail}")
    return proc, f":{buf.strip().decode()}"


def missing_xcb_libs() -> list[str]:
    """What the dynamic linker cannot find for the xcb plugin (Qt's own message names the
    wrong library: it blames libxcb-cursor0 for any of them)."""
    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    files = [qt / "plugins/platforms/libqxcb.so", qt / "lib/libQt6XcbQpa.so.6",
             *sorted((qt / "plugins/xcbglintegrations").glob("*.so"))]
    out = subprocess.run(["ldd", *map(str, files)], capture_output=True, text=True).stdout
    return sorted({line.split()[0] for line in out.splitlines() if "not found" in line})


def stop_proc(proc: subprocess.Popen | None, timeout: float = 10.0, group: bool = False) -> None:
    """SIGTERM, then SIGKILL; ``group``: the whole process group (Xvfb runs in its own session,
    so a wrapper script's children go with it)."""
    if proc is None:
        return

    def send(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            pass

    if proc.poll() is None or group:
        send(signal.SIGTERM)
    try:
        proc.wait(scaled(timeout))
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(scaled(timeout))


def run(duration: float, work: Path) -> None:
    t0 = time.monotonic()
    xvfb, display = start_xvfb(work)
    app = grabber = None
    try:
        env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb", PYTHONUNBUFFERED="1")
        env.pop("WAYLAND_DISPLAY", None)
        ipc = work / "e"
        ipc.mkdir()
        shot = work / "shot.png"
        cmd = [sys.executable, str(REPO / "main.py"), "--screenshot", str(shot), "--duration", str(duration),
               "--fresh", "--data-dir", str(work / "data"), *Endpoints.ephemeral_ipc(ipc).as_args()]
        app_log = work / "window.log"
        with open(app_log, "wb") as log:
            app = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=log, env=env)
        grab_log = work / "grab.log"
        with open(grab_log, "wb") as log:
            grabber = subprocess.Popen([sys.executable, __file__, "--grab-root", str(work / "root.png"),
                                        "--grab-timeout", str(duration + scaled(20))],
                                       stdout=log, stderr=log, env=env)
        try:
            code = app.wait(duration + scaled(60))
        except subprocess.TimeoutExpired:
            raise SmokeError(f"the window did not exit within {duration + scaled(60):.0f} s "
                             f"(log: {app_log})") from None
        try:
            grab_code = grabber.wait(scaled(30))
        except subprocess.TimeoutExpired:
            grab_code = None
        text = app_log.read_text(errors="replace")
        grab_text = grab_log.read_text(errors="replace").strip()
        if code != 0:
            missing = missing_xcb_libs()
            hint = f"\nlibraries the xcb plugin links that are missing: {' '.join(missing)}" if missing else ""
            raise SmokeError(f"the window exited {code} on xcb ({display}):\n{text[-3000:]}{hint}")
        if grab_code != 0:
            raise SmokeError(f"the window never showed on the X server ({display}): {grab_text}\n"
                             f"window log:\n{text[-2000:]}")
        if "Traceback" in text:
            raise SmokeError(f"the window logged a traceback on xcb:\n{text[-3000:]}")
        stats = png_stats(shot) if shot.exists() else ImageStats(0, 0, 0, 0.0)
        if not looks_drawn(stats):
            raise SmokeError(f"the window's screenshot looks blank: {stats} ({shot})")
        print(f"ci: window on xcb ({display}) drew: {grab_text.removeprefix('grab: ')}; "
              f"screenshot {stats}; {time.monotonic() - t0:.1f} s")
    finally:
        stop_proc(grabber)
        stop_proc(app)
        stop_proc(xvfb, group=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=8.0, help="seconds the window stays open (default 8)")
    ap.add_argument("--keep", metavar="DIR", help="keep the logs and PNGs in DIR (default: a temp dir, removed)")
    ap.add_argument("--grab-root", metavar="PNG", help=argparse.SUPPRESS)
    ap.add_argument("--grab-timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.grab_root:
        return grab_root(Path(args.grab_root), args.grab_timeout)
    if not sys.platform.startswith("linux"):
        print("ci: the xcb check is Linux only", file=sys.stderr)
        return 1
    # short: ipc:// paths must fit a unix socket address (about 100 bytes)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tdx-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(args.duration, work)
        return 0
    except SmokeError as e:
        print(f"ci: the window on a real X display FAILED: {e}", file=sys.stderr)
        if not args.keep:
            print("ci: (re-run with --keep DIR to keep the logs and PNGs)", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
