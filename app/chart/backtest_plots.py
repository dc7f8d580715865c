"""The backtest panel's plots: equity over drawdown on one time axis, and a sweep's heat map.

Here, not in app/panels/backtest.py, because pyqtgraph is imported only under app.chart
(pyproject.toml, import-linter).  The widgets only paint arrays the panel hands them on the UI
thread; what they show was computed by the engine or the sweep beforehand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# app.qt before pyqtgraph: it chooses pyqtgraph's binding (see app/qt.py).
from app.qt import QtCore, QtGui, QtWidgets

import pyqtgraph as pg  # noqa: E402,I001

from app.chart.style import DARK, LIGHT, Theme  # noqa: E402

__all__ = ["EquityPlots", "HeatMap"]

#: a heat map writes each cell's value in it up to this many cells (more would be unreadable)
CELL_LABELS_MAX = 225


def _theme(dark: bool) -> Theme:
    return DARK if dark else LIGHT


def _style_axes(plot: pg.PlotItem, th: Theme) -> None:
    for name in ("left", "bottom", "right", "top"):
        ax = plot.getAxis(name)
        ax.setPen(pg.mkPen(th.axis))
        ax.setTextPen(pg.mkPen(th.foreground))



#: viridis at nine evenly spaced stops (its published values, rounded to 8 bits): perceptually
#: even and readable by the colour-blind.  Built here, not read from pyqtgraph's colour-map
#: files, which the frozen bundle leaves out (build.spec, UNWANTED_FILES).
_VIRIDIS = ((68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
            (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37))


def heat_colormap() -> pg.ColorMap:
    """The heat map's colours, low to high."""
    n = len(_VIRIDIS)
    return pg.ColorMap([k / (n - 1) for k in range(n)], [(*c, 255) for c in _VIRIDIS], name="viridis")

class EquityPlots(pg.GraphicsLayoutWidget):
    """Equity (top, two thirds) and drawdown (below) of one run, their x axes linked.

    Attributes:
        equity_curve, drawdown_curve: the curves (their ``getData()`` are what is painted).
        equity_plot, drawdown_plot: the two plot items.
    """

    def __init__(self, dark: bool = True, parent=None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(160)
        self.equity_plot = self.addPlot(row=0, col=0, axisItems={"bottom": pg.DateAxisItem()})
        self.drawdown_plot = self.addPlot(row=1, col=0, axisItems={"bottom": pg.DateAxisItem()})
        self.ci.layout.setRowStretchFactor(0, 2)
        self.ci.layout.setRowStretchFactor(1, 1)
        self.ci.layout.setSpacing(0)
        self.drawdown_plot.setXLink(self.equity_plot)
        self.equity_plot.getAxis("bottom").setStyle(showValues=False)
        for p, label in ((self.equity_plot, "Equity"), (self.drawdown_plot, "Drawdown")):
            p.setLabel("left", label)
            p.showGrid(x=True, y=True)
            p.setMenuEnabled(False)
            p.getAxis("left").setWidth(72)  # the two y axes line up whatever their numbers
            p.hideButtons()
        self.equity_curve = self.equity_plot.plot([], [])
        self.cash_line = pg.InfiniteLine(angle=0, movable=False)
        self.equity_plot.addItem(self.cash_line, ignoreBounds=True)
        self.drawdown_curve = self.drawdown_plot.plot([], [], fillLevel=0.0)
        self.wins = pg.ScatterPlotItem(size=7, symbol="o", pxMode=True)
        self.losses = pg.ScatterPlotItem(size=7, symbol="o", pxMode=True)
        self.equity_plot.addItem(self.wins)
        self.equity_plot.addItem(self.losses)
        self.set_theme(dark)

    def set_theme(self, dark: bool) -> None:
        th = _theme(dark)
        self.setBackground(th.background)
        for p in (self.equity_plot, self.drawdown_plot):
            _style_axes(p, th)
            p.getAxis("left").setGrid(int(255 * th.grid_alpha))
            p.getAxis("bottom").setGrid(int(255 * th.grid_alpha))
        self.equity_curve.setPen(pg.mkPen(th.support, width=1.6))
        self.cash_line.setPen(pg.mkPen(th.axis, width=1, style=QtCore.Qt.PenStyle.DashLine))
        down = QtGui.QColor(th.down)
        self.drawdown_curve.setPen(pg.mkPen(down, width=1.2))
        fill = QtGui.QColor(down)
        fill.setAlpha(70)
        self.drawdown_curve.setBrush(pg.mkBrush(fill))
        self.wins.setBrush(pg.mkBrush(th.up))
        self.wins.setPen(pg.mkPen(th.background))
        self.losses.setBrush(pg.mkBrush(th.down))
        self.losses.setPen(pg.mkPen(th.background))

    def set_result(self, ts_ns: np.ndarray, equity: np.ndarray, drawdown: np.ndarray, initial_cash: float,
                   trade_exits: Sequence[tuple[int, float]] = ()) -> None:
        """Paint one run: times in ns, equity and drawdown (>= 0, shown below zero) at them;
        ``trade_exits`` (exit ns, P&L) mark each round trip on the curve, green won, red lost."""
        x = np.asarray(ts_ns, dtype=np.int64) / 1e9  # DateAxisItem reads seconds
        eq = np.asarray(equity, dtype=np.float64)
        self.equity_curve.setData(x, eq)
        self.drawdown_curve.setData(x, -np.asarray(drawdown, dtype=np.float64))
        self.cash_line.setPos(initial_cash)
        if len(x) and trade_exits:
            ex = np.array([t for t, _ in trade_exits], dtype=np.int64) / 1e9
            y = np.interp(ex, x, eq)
            won = np.array([p > 0 for _, p in trade_exits], dtype=bool)
            self.wins.setData(ex[won], y[won])
            self.losses.setData(ex[~won], y[~won])
        else:
            self.wins.setData([], [])
            self.losses.setData([], [])
        for p in (self.equity_plot, self.drawdown_plot):
            p.enableAutoRange()

    def clear_result(self) -> None:
        self.set_result(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), 0.0)


class HeatMap(pg.PlotWidget):
    """A metric over two parameters: one cell per (x value, y value), the values as the axes'
    tick labels, a colour bar, and each cell's value written in it while the grid is small.

    Attributes:
        image: the ImageItem; ``image.image`` is indexed [x, y] (pyqtgraph's column-major order).
    """

    def __init__(self, dark: bool = True, parent=None) -> None:
        super().__init__(parent)
        self.setMinimumSize(240, 180)
        self.plotItem.setMenuEnabled(False)
        self.plotItem.hideButtons()
        self.plotItem.setMouseEnabled(x=False, y=False)
        self.image = pg.ImageItem()
        self.addItem(self.image)
        self.cmap = heat_colormap()
        self.bar = pg.ColorBarItem(colorMap=self.cmap, interactive=False, width=14)
        self.bar.setImageItem(self.image, insert_in=self.plotItem)
        self._labels: list[pg.TextItem] = []
        self._dark = dark
        self.set_theme(dark)

    def set_theme(self, dark: bool) -> None:
        self._dark = dark
        th = _theme(dark)
        self.setBackground(th.background)
        _style_axes(self.plotItem, th)
        _style_axes(self.bar, th) if hasattr(self.bar, "getAxis") else None

    def set_grid(self, xs: Sequence, ys: Sequence, z: np.ndarray, x_name: str, y_name: str, metric: str) -> None:
        """``z[j, i]``: the metric at ``xs[i]``, ``ys[j]`` (NaN: no value, painted empty)."""
        z = np.asarray(z, dtype=np.float64)
        for t in self._labels:
            self.removeItem(t)
        self._labels = []
        finite = z[np.isfinite(z)]
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        self.image.setImage(z.T, autoLevels=False, levels=(lo, hi))
        self.image.setRect(QtCore.QRectF(-0.5, -0.5, len(xs), len(ys)))
        self.bar.setLevels((lo, hi))
        p = self.plotItem
        p.getAxis("bottom").setTicks([[(i, _short(v)) for i, v in enumerate(xs)]])
        p.getAxis("left").setTicks([[(j, _short(v)) for j, v in enumerate(ys)]])
        p.setLabel("bottom", x_name)
        p.setLabel("left", y_name)
        p.setTitle(metric, color=_theme(self._dark).foreground)
        p.setRange(xRange=(-0.5, len(xs) - 0.5), yRange=(-0.5, len(ys) - 0.5), padding=0)
        if z.size <= CELL_LABELS_MAX:
            for j in range(len(ys)):
                for i in range(len(xs)):
                    v = z[j, i]
                    if not math.isfinite(v):
                        continue
                    # dark text on the light end of viridis, light text on the dark end
                    light = (v - lo) / (hi - lo) > 0.6
                    t = pg.TextItem(_cell(v), color="#111111" if light else "#f0f0f0", anchor=(0.5, 0.5))
                    t.setPos(i, j)
                    self.addItem(t)
                    self._labels.append(t)


def _short(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _cell(v: float) -> str:
    a = abs(v)
    if a >= 10_000:
        return f"{v / 1000:,.0f}k"
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"
