"""What the chart draws over the candles: support/resistance levels, signal and fill markers,
the last-price line and the crosshair with its readout.

Each overlay owns its pyqtgraph items and the data they show, and knows nothing of the
widget: ``ChartWidget`` creates them on its plots and tells them what changed (symbol, theme,
decimals, the drawn window).  None holds a reference back to the widget, so the widget stays
out of reference cycles (see ``ChartWidget.__init__``).
"""

from __future__ import annotations

import math
import time

import numpy as np

# app.qt before pyqtgraph: it chooses pyqtgraph's binding (see app/qt.py).
from app.qt import QtCore

import pyqtgraph as pg  # noqa: E402,I001

from app.chart.bars import BarSeries  # noqa: E402
from app.chart.markers import MARKER_KINDS, MarkerStore  # noqa: E402
from app.chart.style import MARKER_STYLE, Theme  # noqa: E402
from app.chart.viewport import marker_positions  # noqa: E402

__all__ = ["Crosshair", "LastPriceLine", "LevelOverlay", "MarkerOverlay", "readout_text"]

#: (support, resistance, label) of one strategy's levels; None hides that line.
LevelSpec = tuple[float | None, float | None, str]


def style_label(line: pg.InfiniteLine, color: str, fill: str) -> None:
    line.label.setColor(pg.mkColor(color))
    line.label.fill = pg.mkBrush(fill)
    line.label.update()


def _value_format(decimals: int) -> str:
    return f"{{value:.{decimals}f}}"


def _finite_or_none(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _marker_tip(x: float, y: float, data: object) -> str:
    # A module function, not a bound method: items holding a method of the widget would make
    # the widget part of a reference cycle (see ChartWidget.__init__).
    return str(data)


class LevelOverlay:
    """Dashed support/resistance lines, one pair per key (one strategy per key), kept per
    symbol and drawn for the symbol shown."""

    def __init__(self, plot: pg.PlotItem, theme: Theme) -> None:
        self._plot = plot
        self._theme = theme
        self._decimals = 2
        self.symbol: str | None = None
        self._by_symbol: dict[str | None, dict[str, LevelSpec]] = {}
        self._lines: dict[str, tuple[pg.InfiniteLine, pg.InfiniteLine]] = {}

    def set(self, symbol: str | None, key: str, support: float | None, resistance: float | None,
            label: str = "") -> None:
        """Store one key's levels for ``symbol``; both None removes the key."""
        per = self._by_symbol.setdefault(symbol, {})
        if support is None and resistance is None:
            per.pop(key, None)
        else:
            per[key] = (_finite_or_none(support), _finite_or_none(resistance), str(label))
        if symbol == self.symbol:
            self._apply(key, per.get(key))

    def show(self, symbol: str | None) -> None:
        """Draw ``symbol``'s levels instead of the ones shown."""
        self.symbol = symbol
        wanted = self._by_symbol.get(symbol, {})
        for key in list(self._lines):
            if key not in wanted:
                self._apply(key, None)
        for key, spec in wanted.items():
            self._apply(key, spec)

    def lines(self, key: str = "") -> tuple[pg.InfiniteLine, pg.InfiniteLine] | None:
        return self._lines.get(key)

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        for sup, res in self._lines.values():
            self._style(sup, theme.support)
            self._style(res, theme.resistance)

    def set_decimals(self, decimals: int) -> None:
        self._decimals = decimals
        for key, spec in self._by_symbol.get(self.symbol, {}).items():
            self._apply(key, spec)

    def _apply(self, key: str, spec: LevelSpec | None) -> None:
        lines = self._lines.get(key)
        if spec is None:
            if lines is not None:
                for line in lines:
                    self._plot.removeItem(line)
                del self._lines[key]
            return
        if lines is None:
            # Labels of successive keys step to the right so that two strategies' labels on
            # nearby prices do not cover each other.
            slot = len(self._lines)
            lines = tuple(
                pg.InfiniteLine(angle=0, movable=False, label="",
                                labelOpts={"position": 0.02 + 0.13 * (slot % 6),
                                           "anchors": [(0, 1), (0, 1)]})
                for _ in range(2)
            )
            self._style(lines[0], self._theme.support)
            self._style(lines[1], self._theme.resistance)
            for line in lines:
                line.setZValue(10)
                self._plot.addItem(line, ignoreBounds=True)
            self._lines[key] = lines  # type: ignore[assignment]
        support, resistance, label = spec
        name = label or key
        esc = name.replace("{", "{{").replace("}", "}}")  # the label is a format string
        dec = self._decimals
        for line, value, tag in ((lines[0], support, "S"), (lines[1], resistance, "R")):
            if value is None:
                line.setVisible(False)
                continue
            line.label.format = f"{tag} {esc} {{value:.{dec}f}}" if esc else f"{tag} {{value:.{dec}f}}"
            line.setVisible(True)
            line.label.setVisible(True)
            line.setValue(value)
            line.label.valueChanged()

    @staticmethod
    def _style(line: pg.InfiniteLine, color: str) -> None:
        line.setPen(pg.mkPen(color, width=1, style=QtCore.Qt.PenStyle.DashLine))
        line.label.setColor(pg.mkColor(color))


class MarkerOverlay:
    """Signal, rejection and fill markers: a bounded store per symbol and one scatter item
    per kind, holding only the markers inside the drawn window."""

    def __init__(self, plot: pg.PlotItem, capacity: int, max_drawn: int) -> None:
        self.capacity = capacity
        self.max_drawn = max_drawn
        self.stores: dict[str | None, MarkerStore] = {}
        self.items: dict[str, pg.ScatterPlotItem] = {}
        #: True while some marker is newer than the forming bar (placed by guess).
        self.pending = False
        for kind in MARKER_KINDS:
            sym, fill, outline, size, _ = MARKER_STYLE[kind]
            item = pg.ScatterPlotItem(
                symbol=sym, size=size, pxMode=True,
                brush=pg.mkBrush(fill) if fill else pg.mkBrush(None),
                pen=pg.mkPen(outline, width=2 if fill is None else 1),
                hoverable=True, tip=_marker_tip, name=kind,
            )
            item.setZValue(20)
            plot.addItem(item, ignoreBounds=True)
            self.items[kind] = item

    def add(self, symbol: str | None, ts_ns: int, price: float, kind: str, text: str = "") -> bool:
        store = self.stores.get(symbol)
        if store is None:
            store = self.stores[symbol] = MarkerStore(self.capacity)
        return store.add(ts_ns, price, kind, text)

    def draw(self, s: BarSeries, store: MarkerStore, d0: int, d1: int, decimals: int) -> None:
        """Put ``store``'s markers that fall in bars [d0, d1) on the plot."""
        ts, px, kind = store.arrays()
        t = ts / 1e9
        x, self.pending = marker_positions(s, t)
        inwin = (x >= max(d0, s.first_index)) & (x < d1)
        fmt = "%H:%M:%S" if s.interval_s < 60 else "%Y-%m-%d %H:%M:%S"
        for code, kind_name in enumerate(MARKER_KINDS):
            item = self.items[kind_name]
            sel = np.flatnonzero(inwin & (kind == code))[-self.max_drawn:]
            if len(sel) == 0:
                item.clear()
                continue
            name = MARKER_STYLE[kind_name][4]
            texts = store.texts(sel)
            tips = np.empty(len(sel), dtype=object)
            for j, (i, extra) in enumerate(zip(sel.tolist(), texts)):
                stamp = time.strftime(fmt, time.localtime(t[i]))
                tip = f"{name} {px[i]:.{decimals}f} at {stamp}"
                tips[j] = f"{tip}\n{extra}" if extra else tip
            item.setData(x=x[sel], y=px[sel], data=tips)

    def clear(self) -> None:
        for item in self.items.values():
            item.clear()


class LastPriceLine:
    """The dotted line at the last price, coloured by the forming candle's direction."""

    def __init__(self, plot: pg.PlotItem) -> None:
        self.line = pg.InfiniteLine(
            angle=0, movable=False,
            label="{value:.2f}", labelOpts={"position": 0.985, "anchors": [(1, 0.5), (1, 0.5)]},
        )
        self.line.setZValue(15)
        self.line.setVisible(False)
        plot.addItem(self.line, ignoreBounds=True)
        self._price: float | None = None
        self._up: bool | None = None

    def update(self, close: float, opn: float, theme: Theme) -> None:
        if close != self._price:
            self._price = close
            if not self.line.isVisible():
                self.line.setVisible(True)  # the label only formats while visible
            self.line.setValue(close)
        up = close >= opn
        if up != self._up:
            self._up = up
            color = theme.up if up else theme.down
            self.line.setPen(pg.mkPen(color, style=QtCore.Qt.PenStyle.DotLine))
            style_label(self.line, "#ffffff", color)

    def hide(self) -> None:
        self.line.setVisible(False)
        self._price = None

    def forget(self) -> None:
        """Draw price and colour again at the next update (new series or theme)."""
        self._price = None
        self._up = None

    def forget_colour(self) -> None:
        self._up = None

    def set_decimals(self, decimals: int) -> None:
        self.line.label.format = _value_format(decimals)
        self.line.label.valueChanged()


class Crosshair:
    """A vertical line through both plots and a horizontal one with a price label in the
    price plot, following the mouse."""

    def __init__(self, price_plot: pg.PlotItem, volume_plot: pg.PlotItem) -> None:
        self.v = pg.InfiniteLine(angle=90, movable=False)
        self.v_volume = pg.InfiniteLine(angle=90, movable=False)
        self.h = pg.InfiniteLine(
            angle=0, movable=False,
            label="{value:.2f}", labelOpts={"position": 0.0, "anchors": [(0, 0.5), (0, 0.5)]},
        )
        for line, plot in ((self.v, price_plot), (self.h, price_plot), (self.v_volume, volume_plot)):
            line.setZValue(30)
            line.setVisible(False)
            plot.addItem(line, ignoreBounds=True)

    def show(self, x: float, price: float | None) -> None:
        """At bar ``x``; the horizontal line at ``price``, hidden when None (cursor on volume)."""
        self.v.setPos(x)
        self.v_volume.setPos(x)
        self.v.setVisible(True)
        self.v_volume.setVisible(True)
        if price is not None:
            self.h.setPos(price)
        self.h.setVisible(price is not None)

    def hide(self) -> None:
        for line in (self.v, self.h, self.v_volume):
            line.setVisible(False)

    def set_theme(self, theme: Theme) -> None:
        pen = pg.mkPen(theme.crosshair, style=QtCore.Qt.PenStyle.DashLine)
        for line in (self.v, self.h, self.v_volume):
            line.setPen(pen)
        style_label(self.h, theme.foreground, theme.label_fill)

    def set_decimals(self, decimals: int) -> None:
        self.h.label.format = _value_format(decimals)
        self.h.label.valueChanged()


def readout_text(s: BarSeries | None, index: int, price: float | None, decimals: int) -> str:
    """The crosshair readout: bar ``index``'s time and O H L C V, and the cursor price."""
    parts = []
    bar = s.bar(index) if s is not None else None
    if bar is not None:
        t, o, h, l, c, v = bar
        fmt = "%Y-%m-%d %H:%M:%S" if s.interval_s < 60 else "%Y-%m-%d %H:%M"
        parts.append(time.strftime(fmt, time.localtime(t)))
        parts.append(f"O {o:.{decimals}f}  H {h:.{decimals}f}  L {l:.{decimals}f}  C {c:.{decimals}f}  V {v:,.0f}")
    if price is not None:
        parts.append(f"▸ {price:.{decimals}f}")
    return "   ".join(parts)
