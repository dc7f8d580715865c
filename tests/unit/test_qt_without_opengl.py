"""The window without Qt's OpenGL bindings, as the frozen bundle ships it (build.spec leaves
PySide6.QtOpenGL and QtOpenGLWidgets out): app.qt puts stand-ins in, pyqtgraph imports, and
the chart's curves and the backtest plots paint; the stand-ins refuse any real use."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.procs import scaled

CHILD = textwrap.dedent(
    """
    import sys

    class NoGL:  # what the bundle is like: the modules cannot be found
        def find_spec(self, name, path=None, target=None):
            if name in ("PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets"):
                raise ImportError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoGL())
    from app.qt import OPENGL_STAND_INS, QtWidgets, QtGui
    assert OPENGL_STAND_INS
    import numpy as np
    import pyqtgraph as pg
    from app.chart.backtest_plots import EquityPlots

    app = QtWidgets.QApplication([])
    plot = pg.PlotWidget()
    plot.resize(300, 200)
    plot.setBackground("k")
    plot.plot(np.arange(50.0), np.sin(np.arange(50.0) / 5), pen=pg.mkPen("w", width=3))
    plot.show()
    app.processEvents()
    img = plot.grab().toImage()
    lit = sum(1 for x in range(0, img.width(), 3) for y in range(0, img.height(), 3)
              if QtGui.QColor(img.pixel(x, y)).lightness() > 200)
    assert lit > 20, lit
    EquityPlots()
    import PySide6.QtOpenGL as gl
    try:
        gl.QOpenGLBuffer
    except AttributeError as e:
        assert "not in this build" in str(e)
    else:
        raise SystemExit("the stand-in served a class")
    print("ok", lit)
    """
)


def test_the_chart_paints_without_qt_opengl():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env,
                       timeout=scaled(60), cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stdout + r.stderr


def test_with_opengl_installed_nothing_is_replaced():
    import PySide6.QtOpenGL

    from app.qt import OPENGL_STAND_INS

    assert not OPENGL_STAND_INS and hasattr(PySide6.QtOpenGL, "QOpenGLBuffer")
