"""The CI check of the window on a real X server (.ci/xcb_smoke.py): what it calls "drawn",
and that an Xvfb that cannot start fails it with its reason and leaves nothing running."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.procs import REPO, scaled, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Xvfb / xcb: Linux only")


def load_smoke():
    spec = importlib.util.spec_from_file_location("xcb_smoke", REPO / ".ci" / "xcb_smoke.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


smoke = load_smoke()


def qimage(px: np.ndarray):
    from PySide6.QtGui import QImage

    px = np.ascontiguousarray(px, dtype=np.uint32)
    h, w = px.shape
    return QImage(px.tobytes(), w, h, w * 4, QImage.Format.Format_RGB32).copy()


def test_an_empty_x_root_is_not_drawn():
    st = smoke.image_stats(qimage(np.full((1080, 1920), 0xFF000000)))
    assert (st.colours, st.drawn_fraction) == (1, 0.0)
    assert not smoke.looks_drawn(st)


def test_a_small_blotch_on_a_blank_screen_is_not_a_drawn_window():
    # the failure a colour count alone would pass: a cursor or a tiny dialog on the root
    rng = np.random.default_rng(1)
    px = np.full((1080, 1920), 0xFF000000, dtype=np.uint32)
    px[:100, :100] = rng.integers(0, 1 << 24, (100, 100)) | 0xFF000000
    st = smoke.image_stats(qimage(px))
    assert st.colours > smoke.MIN_COLOURS
    assert not smoke.looks_drawn(st)


def test_a_window_over_most_of_the_screen_is_drawn_and_alpha_is_not_a_colour():
    rng = np.random.default_rng(2)
    px = np.full((1080, 1920), 0xFF000000, dtype=np.uint32)
    window = rng.integers(0, 256, (960, 1600)).astype(np.uint32) * 0x010101  # 256 greys
    px[:960, :1600] = window | 0xFF000000
    st = smoke.image_stats(qimage(px))
    assert st.colours == len(np.unique(window)) + (0 if 0 in window else 1)
    assert smoke.looks_drawn(st)
    assert not smoke.looks_drawn(smoke.image_stats(qimage(px[:400, :600])))  # too small for the window


def test_a_missing_png_is_not_drawn(tmp_path: Path):
    assert not smoke.looks_drawn(smoke.png_stats(tmp_path / "none.png"))


@pytest.mark.parametrize("script", ["echo 'Fatal server error: no screens' >&2; exit 1",  # refuses
                                    "sleep 600 & wait"])  # hangs, with a child of its own
def test_an_xvfb_that_cannot_start_fails_the_check_clearly_and_is_gone(tmp_path: Path, script: str):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "Xvfb").write_text(f"#!/bin/sh\necho $$ > {tmp_path}/pid\n{script}\n")
    (fake / "Xvfb").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", TICKDESK_TEST_TIMEOUT_FACTOR="0.3")
    r = subprocess.run([sys.executable, str(REPO / ".ci" / "xcb_smoke.py")], env=env, capture_output=True,
                       text=True, timeout=scaled(30))
    assert r.returncode == 1
    assert "FAILED: Xvfb did not start" in r.stderr
    if "exit 1" in script:
        assert "no screens" in r.stderr
    else:
        assert "no display number" in r.stderr
    pgid = int((tmp_path / "pid").read_text())
    try:
        wait_until(lambda: not _group_alive(pgid), timeout=10, message="the fake Xvfb's process group outlived the check")
    finally:
        if _group_alive(pgid):
            os.killpg(pgid, 9)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_no_xvfb_names_the_setup_option(tmp_path: Path):
    env = dict(os.environ, PATH=str(tmp_path))
    r = subprocess.run([sys.executable, str(REPO / ".ci" / "xcb_smoke.py")], env=env, capture_output=True,
                       text=True, timeout=scaled(30))
    assert r.returncode == 1
    assert "setup.sh --with-xvfb" in r.stderr
