"""ChartWidget: live candlesticks + volume for one symbol, driven by the app's ~30 Hz timer.

The widget never touches bars per tick. The feed writes into a
:class:`~app.chart.bars.MultiIntervalBars`; the app calls :meth:`ChartWidget.refresh` on its
timer, and ``refresh`` compares the shown series' ``version`` with what it drew last time. When
nothing changed it returns after two attribute compares.

Coordinates. x is the bar's absolute index (``BarSeries`` numbering, stable while the ring
buffer drops old bars), y is price. Quiet intervals have no bar, so they take no space.

Drawing. Only a window around the visible bars is drawn (visible range plus a 15 % margin each
side, so small pans reuse the picture). Completed bars of that window are recorded once into a
QPicture (:class:`~app.chart.candles.CandleItem`) and re-recorded only when the window, the
candle grouping or the completed bars change; the still-forming candle lives in its own small
item that is re-recorded on every refresh that saw a tick. More than ``max_visible_candles``
bars on screen (or more bars than pixels) are drawn as coarser candles that aggregate ``k``
bars each (``k`` a power of two, groups aligned on absolute indices so they do not shimmer
while panning). See docs/chart.md.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402

from app.chart.bars import BarSeries, MultiIntervalBars, aggregate_bars  # noqa: E402
from app.chart.candles import BODY_WIDTH, CandleItem, VolumeItem, mix_colors  # noqa: E402
from app.chart.markers import MARKER_KINDS, MarkerStore  # noqa: E402

__all__ = ["ChartWidget", "INTERVAL_CHOICES", "DARK", "LIGHT", "Theme"]

log = logging.getLogger(__name__)

#: (seconds, label) offered by the toolbar when the bar store holds or can derive them.
INTERVAL_CHOICES: tuple[tuple[float, str], ...] = (
    (1, "1s"), (5, "5s"), (15, "15s"), (30, "30s"),
    (60, "1m"), (300, "5m"), (900, "15m"), (3600, "1h"),
)


def interval_label(seconds: float) -> str:
    for iv, label in INTERVAL_CHOICES:
        if iv == seconds:
            return label
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Theme:
    background: str
    foreground: str
    axis: str
    grid_alpha: float
    up: str
    down: str
    crosshair: str
    support: str
    resistance: str
    label_fill: str


DARK = Theme(background="#0b0e13", foreground="#c9d1d9", axis="#6e7681", grid_alpha=0.18,
             up="#26a69a", down="#ef5350", crosshair="#8b949e", support="#42a5f5",
             resistance="#ffa726", label_fill="#161b22")
LIGHT = Theme(background="#ffffff", foreground="#24292f", axis="#8c959f", grid_alpha=0.25,
              up="#089981", down="#f23645", crosshair="#57606a", support="#1e88e5",
              resistance="#fb8c00", label_fill="#f6f8fa")

# symbol, fill (None = hollow), outline, size px, readable name
_MARKER_STYLE: dict[str, tuple[str, str | None, str, int, str]] = {
    "signal_buy": ("t1", "#00e676", "#00a152", 13, "Buy signal"),
    "signal_sell": ("t", "#ff1744", "#b2102f", 13, "Sell signal"),
    "signal_rejected": ("d", None, "#ffb300", 13, "Rejected signal"),
    "fill_buy": ("o", "#2979ff", "#e3f2fd", 9, "Buy fill"),
    "fill_sell": ("o", "#d500f9", "#f3e5f5", 9, "Sell fill"),
}


class TimeAxis(pg.AxisItem):
    """Bottom axis that labels absolute bar indices with the bars' local start times."""

    def __init__(self, orientation: str = "bottom", **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self.series: BarSeries | None = None

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (Qt naming)
        s = self.series
        if s is None or len(s) == 0:
            return ["" for _ in values]
        iv = s.interval_s
        if iv >= 86400:
            fmt = "%Y-%m-%d"
        elif spacing * iv >= 86400:
            fmt = "%m-%d %H:%M"
        elif iv >= 60 or spacing * iv >= 60:
            fmt = "%H:%M"
        else:
            fmt = "%H:%M:%S"
        out = []
        for v in values:
            if abs(v - round(v)) > 1e-6:
                out.append("")
            else:
                out.append(time.strftime(fmt, time.localtime(s.time_at_index(v))))
        return out


def _infer_decimals(prices: np.ndarray) -> int:
    """Fewest decimals that print every price exactly, capped by magnitude (a random walk with
    arbitrary floats would otherwise ask for 15)."""
    p = prices[np.isfinite(prices)]
    if len(p) == 0:
        return 2
    mag = float(np.max(np.abs(p)))
    cap = 2 if mag >= 1000 else min(8, max(2, 6 - int(math.floor(math.log10(mag))) if mag > 0 else 2))
    for d in range(cap + 1):
        scaled = p * 10.0 ** d
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-6 * max(1.0, 10.0 ** d * 1e-9) + 1e-7):
            return d
    return cap


class ChartWidget(QtWidgets.QWidget):
    """Candlestick + volume chart of one symbol with levels, markers, crosshair and live follow.

    Keys (when the chart has focus): Left/Right pan 10 % (Shift: 90 %), PageUp/PageDown pan
    90 %, +/- zoom (anchored on the live edge while following), End or Home = back to live
    (follow on), Shift+Home = oldest bar. Mouse: drag pans, wheel zooms; either turns follow off.
    """

    intervalChanged = QtCore.Signal(float)
    followChanged = QtCore.Signal(bool)

    #: Beyond this many bars on screen, candles aggregate k bars each.
    max_visible_candles = 1500
    #: ...or beyond one candle per this many pixels of plot width (thinner ones are unreadable
    #: and only cost paint time).
    min_candle_px = 2.0
    #: Extra bars drawn on each side of the visible range, as a fraction of it.
    window_margin = 0.15
    default_visible_bars = 150
    markers_per_symbol = 5000
    max_markers_drawn = 2000
    min_visible_bars = 5

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, dark: bool = True,
                 interval: float = 1.0, stats_window: int = 600) -> None:
        # Keep the widget out of Python reference cycles (no bound methods of self stored in
        # items, no lambdas capturing self kept as attributes): a parentless chart that only the
        # cycle collector can free gets its pyqtgraph wrappers torn down in arbitrary order and
        # crashes in ~QObject. Signal connections to methods are fine (not strong references).
        super().__init__(parent)
        self._symbol: str | None = None
        self._bars: MultiIntervalBars | None = None
        self._series: BarSeries | None = None
        self._interval = float(interval)
        self._follow = True
        self._theme = DARK if dark else LIGHT
        self._theme_rev = 0
        self._decimals: int | None = None  # None: inferred from prices
        self._auto_decimals = 2

        # What was drawn, to know what changed.
        self._dirty = True
        self._in_update = False
        self._seen_version = -1
        self._seen_last: int | None = None
        self._window: tuple[int, int, int] | None = None  # (d0, d1, k)
        self._candle_key: tuple | None = None
        self._live_key: tuple | None = None
        self._marker_key: tuple | None = None
        self._marker_pending = False
        self._y_range: tuple[float, float] | None = None
        self._vol_range: float | None = None
        self._last_price: float | None = None
        self._last_up: bool | None = None
        self._k = 1

        self._markers: dict[str | None, MarkerStore] = {}
        #: add_marker calls refused (unknown kind, non-finite price).
        self.ignored_markers = 0
        self._levels: dict[str | None, dict[str, tuple[float | None, float | None, str]]] = {}
        self._level_lines: dict[str, tuple[pg.InfiniteLine, pg.InfiniteLine]] = {}

        self._frame_times: deque[float] = deque(maxlen=stats_window)
        self._paint_times: deque[float] = deque(maxlen=stats_window)

        # Coalesces view changes from the mouse into one refresh on the next event-loop turn.
        self._deferred = QtCore.QTimer(self)
        self._deferred.setSingleShot(True)
        self._deferred.setInterval(0)
        self._deferred.timeout.connect(self.refresh)
        self._build_ui()
        self.set_theme(dark)

    # ================================================================== construction

    def _build_ui(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)

        bar = QtWidgets.QWidget(self)
        bar.setObjectName("chartToolbar")
        hb = QtWidgets.QHBoxLayout(bar)
        hb.setContentsMargins(6, 2, 6, 2)
        hb.setSpacing(6)
        self._symbol_label = QtWidgets.QLabel("—", bar)
        f = self._symbol_label.font()
        f.setBold(True)
        self._symbol_label.setFont(f)
        self._interval_combo = QtWidgets.QComboBox(bar)
        self._interval_combo.setToolTip("Bar interval")
        self._interval_combo.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self._fill_combo(None)
        self._interval_combo.activated.connect(self._on_combo_activated)
        self._live_button = QtWidgets.QToolButton(bar)
        self._live_button.setText("Live")
        self._live_button.setCheckable(True)
        self._live_button.setChecked(True)
        self._live_button.setToolTip("Follow the newest bar (End). Panning or zooming with the mouse stops it.")
        self._live_button.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self._live_button.toggled.connect(self.set_follow)
        self._readout = QtWidgets.QLabel("", bar)
        mono = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        self._readout.setFont(mono)
        self._readout.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        hb.addWidget(self._symbol_label)
        hb.addWidget(self._interval_combo)
        hb.addWidget(self._live_button)
        hb.addStretch(1)
        hb.addWidget(self._readout)
        layout.addWidget(bar)

        self._view = pg.GraphicsLayoutWidget(self)
        self._view.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        layout.addWidget(self._view, 1)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.setFocusProxy(self._view)

        self._price_axis_x = TimeAxis("bottom")
        self._time_axis = TimeAxis("bottom")
        self._price_plot = self._view.addPlot(row=0, col=0, axisItems={"bottom": self._price_axis_x})
        self._volume_plot = self._view.addPlot(row=1, col=0, axisItems={"bottom": self._time_axis})
        gl = self._view.ci.layout
        gl.setRowStretchFactor(0, 4)
        gl.setRowStretchFactor(1, 1)
        gl.setVerticalSpacing(0)
        for plot in (self._price_plot, self._volume_plot):
            plot.hideAxis("left")
            plot.showAxis("right")
            plot.getAxis("right").setWidth(74)
            plot.hideButtons()
            plot.setMenuEnabled(False)
            vb = plot.getViewBox()
            vb.setMouseEnabled(x=True, y=False)
            vb.disableAutoRange()
            vb.setLimits(minXRange=self.min_visible_bars, maxXRange=1_000_000)
            vb.sigRangeChangedManually.connect(self._on_user_range)
        # Axis text replays through a QPicture that re-resolves fonts on every paint (~2-3 ms per
        # axis); a pixmap cache makes every repaint that does not move the ticks nearly free.
        # Grid lines are drawn by the axes; the third (finest) tick level doubled the cost of
        # every axis repaint while panning (~14 -> ~7 ms per frame at 1280x800) for faint lines.
        for plot in (self._price_plot, self._volume_plot):
            for name in ("right", "bottom"):
                axis = plot.getAxis(name)
                axis.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
                axis.setStyle(maxTickLevel=1)
        # The price plot keeps its bottom axis for the vertical grid lines but shows no labels.
        self._price_axis_x.setStyle(showValues=False, tickLength=0)
        self._price_axis_x.setHeight(1)
        self._volume_plot.setXLink(self._price_plot)
        self._vb = self._price_plot.getViewBox()
        self._vol_vb = self._volume_plot.getViewBox()
        self._vb.sigXRangeChanged.connect(self._on_x_range_changed)
        # The candle cap depends on the plot width (min_candle_px): re-evaluate after a resize.
        self._vb.sigResized.connect(self._on_x_range_changed)

        self._candles = CandleItem(self._paint_times)
        self._live_candle = CandleItem(self._paint_times)
        self._volume = VolumeItem(self._paint_times)
        self._live_volume = VolumeItem(self._paint_times)
        self._live_candle.setZValue(1)
        self._live_volume.setZValue(1)
        self._price_plot.addItem(self._candles, ignoreBounds=True)
        self._price_plot.addItem(self._live_candle, ignoreBounds=True)
        self._volume_plot.addItem(self._volume, ignoreBounds=True)
        self._volume_plot.addItem(self._live_volume, ignoreBounds=True)

        self._marker_items: dict[str, pg.ScatterPlotItem] = {}
        for kind in MARKER_KINDS:
            sym, fill, outline, size, _ = _MARKER_STYLE[kind]
            item = pg.ScatterPlotItem(
                symbol=sym, size=size, pxMode=True,
                brush=pg.mkBrush(fill) if fill else pg.mkBrush(None),
                pen=pg.mkPen(outline, width=2 if fill is None else 1),
                hoverable=True, tip=_marker_tip, name=kind,
            )
            item.setZValue(20)
            self._price_plot.addItem(item, ignoreBounds=True)
            self._marker_items[kind] = item

        self._last_line = pg.InfiniteLine(
            angle=0, movable=False,
            label="{value:.2f}", labelOpts={"position": 0.985, "anchors": [(1, 0.5), (1, 0.5)]},
        )
        self._last_line.setZValue(15)
        self._last_line.setVisible(False)
        self._price_plot.addItem(self._last_line, ignoreBounds=True)

        self._cross_v = pg.InfiniteLine(angle=90, movable=False)
        self._cross_v_vol = pg.InfiniteLine(angle=90, movable=False)
        self._cross_h = pg.InfiniteLine(
            angle=0, movable=False,
            label="{value:.2f}", labelOpts={"position": 0.0, "anchors": [(0, 0.5), (0, 0.5)]},
        )
        for line, plot in ((self._cross_v, self._price_plot), (self._cross_h, self._price_plot),
                           (self._cross_v_vol, self._volume_plot)):
            line.setZValue(30)
            line.setVisible(False)
            plot.addItem(line, ignoreBounds=True)

        self._view.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self._view.installEventFilter(self)
        self._view.viewport().installEventFilter(self)

        self._vb.setXRange(-self.default_visible_bars + 3, 3, padding=0)
        self._vb.setYRange(0, 1, padding=0)
        self._vol_vb.setYRange(0, 1, padding=0)

    def _fill_combo(self, bars: MultiIntervalBars | None) -> None:
        combo = self._interval_combo
        combo.blockSignals(True)
        combo.clear()
        choices = [iv for iv, _ in INTERVAL_CHOICES]
        if bars is not None:
            choices = sorted(set(bars.intervals) | {iv for iv in choices if bars.can_derive(iv)})
        for iv in choices:
            combo.addItem(interval_label(iv), float(iv))
        i = combo.findData(self._interval)
        if i < 0:
            combo.addItem(interval_label(self._interval), self._interval)
            i = combo.count() - 1
        combo.setCurrentIndex(i)
        combo.blockSignals(False)

    # ================================================================== public API

    @property
    def symbol(self) -> str | None:
        return self._symbol

    @property
    def interval(self) -> float:
        return self._interval

    @property
    def series(self) -> BarSeries | None:
        """The bar series currently shown."""
        return self._series

    @property
    def follow(self) -> bool:
        return self._follow

    @property
    def interval_combo(self) -> QtWidgets.QComboBox:
        return self._interval_combo

    @property
    def live_button(self) -> QtWidgets.QToolButton:
        return self._live_button

    @property
    def price_plot(self) -> pg.PlotItem:
        return self._price_plot

    @property
    def volume_plot(self) -> pg.PlotItem:
        return self._volume_plot

    @property
    def view(self) -> pg.GraphicsLayoutWidget:
        return self._view

    @property
    def marker_items(self) -> dict[str, pg.ScatterPlotItem]:
        """One scatter item per marker kind (holding only the markers in the drawn window)."""
        return dict(self._marker_items)

    @property
    def readout(self) -> QtWidgets.QLabel:
        """The crosshair readout label in the toolbar."""
        return self._readout

    def set_series(self, symbol: str, bars: MultiIntervalBars) -> None:
        """Show ``symbol`` from ``bars``. Keeps the interval and zoom width; goes back to live."""
        if symbol == self._symbol and bars is self._bars:
            return
        self._symbol = symbol
        self._bars = bars
        self._symbol_label.setText(symbol)
        changed = False
        if not bars.can_derive(self._interval):
            # The store cannot make the chosen interval: fall back to the closest it holds.
            held = bars.intervals
            self._interval = min(held, key=lambda iv: abs(math.log(iv / self._interval)))
            changed = True
        self._fill_combo(bars)
        self._auto_decimals = 2
        self._apply_symbol_levels()
        self._marker_key = None
        self._set_follow_flag(True)
        self._switch_series(bars.series(self._interval), keep_from=None)
        if changed:
            self.intervalChanged.emit(self._interval)

    def set_interval(self, seconds: float) -> bool:
        """Show bars of ``seconds``; returns False (and changes nothing) if the store cannot."""
        iv = float(seconds)
        if iv == self._interval:
            return True
        if not (iv > 0) or (self._bars is not None and not self._bars.can_derive(iv)):
            log.warning("chart: interval %gs not available for %s", iv, self._symbol)
            self._fill_combo(self._bars)
            return False
        self._interval = iv
        self._fill_combo(self._bars)
        if self._bars is not None:
            self._switch_series(self._bars.series(iv), keep_from=self._series)
        self.intervalChanged.emit(iv)
        return True

    def set_levels(self, support: float | None, resistance: float | None, label: str = "",
                   key: str = "", symbol: str | None = None) -> None:
        """Draw one strategy's support/resistance (``key`` tells strategies apart).

        Both None removes that key's lines. ``symbol`` None means the symbol shown; levels for
        another symbol are kept and drawn when it is shown.
        """
        sym = self._symbol if symbol is None else symbol
        per = self._levels.setdefault(sym, {})
        if support is None and resistance is None:
            per.pop(key, None)
        else:
            per[key] = (_finite_or_none(support), _finite_or_none(resistance), str(label))
        if sym == self._symbol:
            self._apply_level(key, per.get(key))

    def add_marker(self, ts_ns: int, price: float, kind: str, text: str = "",
                   symbol: str | None = None) -> bool:
        """Mark a signal / rejection / fill at (time, price); False for an unknown kind.

        Kinds: signal_buy, signal_sell, signal_rejected, fill_buy, fill_sell. Kept per symbol
        (newest ``markers_per_symbol``); ``symbol`` None means the symbol shown.
        """
        sym = self._symbol if symbol is None else symbol
        store = self._markers.get(sym)
        if store is None:
            store = self._markers[sym] = MarkerStore(self.markers_per_symbol)
        if not store.add(ts_ns, price, kind, text):
            self.ignored_markers += 1
            if self.ignored_markers <= 5 or self.ignored_markers % 1000 == 0:
                log.warning("chart: ignored marker kind=%r price=%r (%d so far)", kind, price,
                            self.ignored_markers)
            return False
        if sym == self._symbol:
            self._dirty = True
        return True

    def clear_markers(self, symbol: str | None = None) -> None:
        store = self._markers.get(self._symbol if symbol is None else symbol)
        if store is not None:
            store.clear()
            self._dirty = True

    def markers(self, symbol: str | None = None) -> MarkerStore | None:
        return self._markers.get(self._symbol if symbol is None else symbol)

    def set_theme(self, dark: bool) -> None:
        th = DARK if dark else LIGHT
        self._theme = th
        self._view.setBackground(th.background)
        for plot in (self._price_plot, self._volume_plot):
            for name in ("right", "bottom"):
                ax = plot.getAxis(name)
                ax.setPen(th.axis)
                ax.setTextPen(th.foreground)
            plot.showGrid(x=True, y=True, alpha=th.grid_alpha)
        self._candles.set_colors(th.up, th.down)
        self._live_candle.set_colors(th.up, th.down)
        vol_up = mix_colors(th.up, th.background, 0.45)
        vol_down = mix_colors(th.down, th.background, 0.45)
        self._volume.set_colors(vol_up, vol_down)
        self._live_volume.set_colors(vol_up, vol_down)
        cross = pg.mkPen(th.crosshair, style=QtCore.Qt.PenStyle.DashLine)
        for line in (self._cross_v, self._cross_h, self._cross_v_vol):
            line.setPen(cross)
        self._style_label(self._cross_h, th.foreground, th.label_fill)
        self._last_up = None  # recolour the last-price line
        for key, (sup, res) in self._level_lines.items():
            self._style_level(sup, th.support)
            self._style_level(res, th.resistance)
        self._theme_rev += 1
        self._y_range = None
        self._dirty = True
        if self._series is not None:
            self.refresh()

    @property
    def dark(self) -> bool:
        return self._theme is DARK

    def set_price_decimals(self, decimals: int | None) -> None:
        """Fix the number of decimals in labels; None infers it from the prices."""
        self._decimals = None if decimals is None else max(0, int(decimals))
        self._update_label_formats()

    @property
    def price_decimals(self) -> int:
        return self._auto_decimals if self._decimals is None else self._decimals

    def set_follow(self, on: bool) -> None:
        """Follow the newest bar (True) or leave the view where it is (False)."""
        self._set_follow_flag(bool(on))
        if on and self._series is not None:
            self._apply_follow(self._series)
            self._dirty = True
            self._schedule()

    def go_live(self) -> None:
        self.set_follow(True)

    def go_oldest(self) -> None:
        s = self._series
        if s is None or len(s) == 0:
            return
        self._set_follow_flag(False)
        x0, x1 = self._vb.viewRange()[0]
        w = x1 - x0
        left = s.first_index - 0.5 - self._pad(w)
        self._set_x(left, left + w)

    def pan_bars(self, n: float) -> None:
        """Scroll by ``n`` bars (negative = back in time); turns follow off."""
        self._set_follow_flag(False)
        x0, x1 = self._vb.viewRange()[0]
        x0, x1 = self._clamp_pan(x0 + n, x1 + n)
        self._set_x(x0, x1)

    def zoom(self, factor: float) -> None:
        """Scale the visible width by ``factor`` (<1 zooms in). Anchored on the live edge while
        following (follow stays on), else on the centre."""
        x0, x1 = self._vb.viewRange()[0]
        w = x1 - x0
        nw = min(max(w * factor, self.min_visible_bars), 1_000_000)
        if self._follow and self._series is not None:
            self._apply_follow(self._series, width=nw)
            self._schedule()
        else:
            c = (x0 + x1) / 2
            self._set_x(c - nw / 2, c + nw / 2)

    def set_visible_bars(self, n: float) -> None:
        """Show ``n`` bar slots across (anchored like :meth:`zoom`)."""
        x0, x1 = self._vb.viewRange()[0]
        self.zoom(float(n) / (x1 - x0))

    def visible_range(self) -> tuple[int, int]:
        """Absolute bar indices [first, end) whose slots intersect the view."""
        x0, x1 = self._vb.viewRange()[0]
        return math.floor(x0 + 0.5), math.ceil(x1 + 0.5)

    def x_range(self) -> tuple[float, float]:
        x0, x1 = self._vb.viewRange()[0]
        return float(x0), float(x1)

    @property
    def candle_rebuilds(self) -> int:
        """How often the cached picture of completed candles was re-recorded."""
        return self._candles.rebuild_count

    @property
    def drawn_candles(self) -> int:
        """Candles in the cached picture plus the forming one."""
        return self._candles.drawn_count + self._live_candle.drawn_count

    @property
    def group_size(self) -> int:
        """Bars per drawn candle (1 unless zoomed out past the candle cap)."""
        return self._k

    def frame_time_ms(self) -> dict[str, float]:
        """Median / p99 / max of the last N ``refresh()`` durations in ms (and their count)."""
        return _stats(self._frame_times)

    def paint_time_ms(self) -> dict[str, float]:
        """Same for the candle/volume items' ``paint`` calls (QPicture replay)."""
        return _stats(self._paint_times)

    def reset_stats(self) -> None:
        self._frame_times.clear()
        self._paint_times.clear()

    # ================================================================== refresh

    def refresh(self) -> None:
        """Bring the drawing up to date with the bar store; cheap when nothing changed."""
        t0 = time.perf_counter()
        s = self._series
        if s is not None and (self._dirty or s.version != self._seen_version):
            self._in_update = True
            try:
                self._update(s)
            finally:
                self._in_update = False
        self._frame_times.append((time.perf_counter() - t0) * 1e3)

    def _update(self, s: BarSeries) -> None:
        last = s.last_index
        new_bar = last != self._seen_last
        if self._follow and new_bar:
            self._apply_follow(s)
        if new_bar and self._decimals is None and len(s) and s.last_index < 64 + s.first_index + 1:
            self._learn_decimals(s)
        self._dirty = False
        self._seen_version = s.version
        self._seen_last = last
        if len(s) == 0:
            self._clear_drawing()
            return

        v0, v1 = self.visible_range()
        k = self._group_size(v1 - v0)
        d0, d1 = self._drawn_window(v0, v1, k)
        first = s.first_index
        live_start = (last // k) * k

        c0, c1 = max(d0, first), min(d1, live_start)
        key = (id(s), c0, c1, k, s.history_version, self._theme_rev)
        if key != self._candle_key:
            self._candle_key = key
            if c1 > c0:
                self._draw_completed(s, c0, c1, k)
            else:
                self._candles.clear()
                self._volume.clear()

        if live_start < d1 and last >= d0:
            lkey = (id(s), s.version, k, self._theme_rev)
            if lkey != self._live_key:
                self._live_key = lkey
                self._draw_live(s, max(live_start, first), last, live_start, k)
        elif self._live_key is not None:
            self._live_key = None
            self._live_candle.clear()
            self._live_volume.clear()

        a, b = s.clip_range(v0, v1)
        if b > a:
            _, _, h, l, _, v = s.view(a, b)
            self._fit_y(float(l.min()), float(h.max()), float(v.max()))

        close, opn = s.last_close, s.last_open
        if close != self._last_price:
            self._last_price = close
            if not self._last_line.isVisible():
                self._last_line.setVisible(True)  # the label only formats while visible
            self._last_line.setValue(close)
        up = close >= opn
        if up != self._last_up:
            self._last_up = up
            color = self._theme.up if up else self._theme.down
            self._last_line.setPen(pg.mkPen(color, style=QtCore.Qt.PenStyle.DotLine))
            self._style_label(self._last_line, "#ffffff", color)

        store = self._markers.get(self._symbol)
        if store is not None and len(store):
            mkey = (id(s), store.version, d0, d1, self._theme_rev)
            if mkey != self._marker_key or (self._marker_pending and new_bar):
                self._marker_key = mkey
                self._draw_markers(s, store, d0, d1)
        elif self._marker_key is not None:
            self._marker_key = None
            for item in self._marker_items.values():
                item.clear()

    def _draw_completed(self, s: BarSeries, c0: int, c1: int, k: int) -> None:
        _, o, h, l, c, v = s.view(c0, c1)
        if k == 1:
            x = np.arange(c0, c1, dtype=np.float64)
        else:
            _, o, h, l, c, v, g = aggregate_bars(np.arange(c0, c1) // k, o, h, l, c, v)
            x = g * k + (k - 1) / 2.0
        width = BODY_WIDTH * k
        self._candles.set_candles(x, o, h, l, c, width)
        self._volume.set_bars(x, v, c >= o, width)

    def _draw_live(self, s: BarSeries, a: int, last: int, group_start: int, k: int) -> None:
        _, o, h, l, c, v = s.view(a, last + 1)
        x = np.array([group_start + (k - 1) / 2.0])
        o1, h1, l1 = np.array([o[0]]), np.array([h.max()]), np.array([l.min()])
        c1, v1 = np.array([c[-1]]), np.array([v.sum()])
        width = BODY_WIDTH * k
        self._live_candle.set_candles(x, o1, h1, l1, c1, width)
        self._live_volume.set_bars(x, v1, c1 >= o1, width)

    def _draw_markers(self, s: BarSeries, store: MarkerStore, d0: int, d1: int) -> None:
        ts, px, kind = store.arrays()
        t = ts / 1e9
        x = np.asarray(s.index_at_time(t), dtype=np.float64)
        last_t = s.last_time
        beyond = t >= last_t + s.interval_s
        if beyond.any():
            # No bar yet for these times: place them where their bar will be if no gap occurs,
            # and recompute when the next bar arrives.
            x[beyond] = s.last_index + np.floor((t[beyond] - last_t) / s.interval_s)
        self._marker_pending = bool(beyond.any())
        inwin = (x >= max(d0, s.first_index)) & (x < d1)
        fmt = "%H:%M:%S" if s.interval_s < 60 else "%Y-%m-%d %H:%M:%S"
        dec = self.price_decimals
        for code, kind_name in enumerate(MARKER_KINDS):
            item = self._marker_items[kind_name]
            sel = np.flatnonzero(inwin & (kind == code))[-self.max_markers_drawn:]
            if len(sel) == 0:
                item.clear()
                continue
            name = _MARKER_STYLE[kind_name][4]
            texts = store.texts(sel)
            tips = np.empty(len(sel), dtype=object)
            for j, (i, extra) in enumerate(zip(sel.tolist(), texts)):
                stamp = time.strftime(fmt, time.localtime(t[i]))
                tip = f"{name} {px[i]:.{dec}f} at {stamp}"
                tips[j] = f"{tip}\n{extra}" if extra else tip
            item.setData(x=x[sel], y=px[sel], data=tips)

    def _clear_drawing(self) -> None:
        self._candles.clear()
        self._volume.clear()
        self._live_candle.clear()
        self._live_volume.clear()
        self._candle_key = self._live_key = None
        self._last_line.setVisible(False)
        self._last_price = None
        if self._marker_key is not None:
            self._marker_key = None
            for item in self._marker_items.values():
                item.clear()

    # ================================================================== view geometry

    def _group_size(self, visible: int) -> int:
        cap = self.max_visible_candles
        px = self._vb.width()
        if px > 0:
            cap = max(50, min(cap, int(px / self.min_candle_px)))
        k = 1
        while visible > cap * k:
            k *= 2
        self._k = k
        return k

    def _drawn_window(self, v0: int, v1: int, k: int) -> tuple[int, int]:
        w = max(1, v1 - v0)
        cur = self._window
        if (cur is not None and cur[2] == k and cur[0] <= v0 and v1 <= cur[1]
                and cur[1] - cur[0] <= (1 + 3 * self.window_margin) * w + 2 * k):
            return cur[0], cur[1]
        m = max(k, int(w * self.window_margin))
        d0 = ((v0 - m) // k) * k
        d1 = -((-(v1 + m)) // k) * k
        self._window = (d0, d1, k)
        return d0, d1

    def max_drawn_candles(self) -> int:
        """Upper bound of candles held in the pictures for any view (what tests assert)."""
        return int(math.ceil(self.max_visible_candles * (1 + 3 * self.window_margin))) + 4

    @staticmethod
    def _pad(width: float) -> float:
        return max(2.0, 0.05 * width)

    def _apply_follow(self, s: BarSeries, width: float | None = None) -> None:
        x0, x1 = self._vb.viewRange()[0]
        w = (x1 - x0) if width is None else width
        last = s.last_index if len(s) else s.first_index
        right = last + 0.5 + self._pad(w)
        if abs(right - x1) > 1e-9 or abs((x1 - x0) - w) > 1e-9:
            self._set_x(right - w, right)

    def _clamp_pan(self, x0: float, x1: float) -> tuple[float, float]:
        s = self._series
        if s is None or len(s) == 0:
            return x0, x1
        keep = min(5, len(s))
        # never scroll so far that fewer than `keep` bars stay on screen
        hi = s.last_index + 0.5 - keep
        lo = s.first_index - 0.5 - (x1 - x0) + keep
        shift = min(0.0, hi - x0) if x0 > hi else max(0.0, lo - x0) if x0 < lo else 0.0
        return x0 + shift, x1 + shift

    def _set_x(self, x0: float, x1: float) -> None:
        self._vb.setXRange(x0, x1, padding=0)

    def _fit_y(self, lo: float, hi: float, vmax: float) -> None:
        span = hi - lo
        if span <= 0:
            span = max(abs(hi) * 2e-3, 1e-6)
        pad = 0.08 * span
        want = (lo - pad, hi + pad)
        cur = self._y_range
        # Hysteresis: do not rescale while the bars still fit and do not look squashed.
        if cur is None or lo < cur[0] or hi > cur[1] or (cur[1] - cur[0]) > 1.4 * (want[1] - want[0]):
            self._y_range = want
            self._vb.setYRange(want[0], want[1], padding=0)
        top = max(vmax, 1e-9) * 1.15
        if self._vol_range is None or vmax > self._vol_range or self._vol_range > 1.6 * top:
            self._vol_range = top
            self._vol_vb.setYRange(0, top, padding=0)

    def _switch_series(self, new: BarSeries, keep_from: BarSeries | None) -> None:
        x0, x1 = self._vb.viewRange()[0]
        w = x1 - x0
        self._series = new
        for axis in (self._time_axis, self._price_axis_x):
            axis.series = new
            axis.picture = None  # same range, other times: force new tick labels
            axis.update()
        self._candle_key = self._live_key = self._marker_key = None
        self._window = None
        self._y_range = self._vol_range = None
        self._last_price = None
        self._last_up = None
        self._seen_version = -1
        self._seen_last = None
        self._dirty = True
        if self._decimals is None and len(new):
            self._learn_decimals(new)
        if self._follow or keep_from is None or len(keep_from) == 0 or len(new) == 0:
            self._in_update = True
            try:
                self._apply_follow(new, width=w)
            finally:
                self._in_update = False
        else:
            centre = keep_from.time_at_index((x0 + x1) / 2)
            idx = new.index_at_time(centre)
            self._in_update = True
            try:
                self._set_x(idx - w / 2, idx + w / 2)
            finally:
                self._in_update = False
        self.refresh()

    # ================================================================== levels, labels

    def _apply_symbol_levels(self) -> None:
        wanted = self._levels.get(self._symbol, {})
        for key in list(self._level_lines):
            if key not in wanted:
                self._apply_level(key, None)
        for key, spec in wanted.items():
            self._apply_level(key, spec)

    def _apply_level(self, key: str, spec: tuple[float | None, float | None, str] | None) -> None:
        lines = self._level_lines.get(key)
        if spec is None:
            if lines is not None:
                for line in lines:
                    self._price_plot.removeItem(line)
                del self._level_lines[key]
            return
        if lines is None:
            slot = len(self._level_lines)
            lines = tuple(
                pg.InfiniteLine(angle=0, movable=False, label="",
                                labelOpts={"position": 0.02 + 0.13 * (slot % 6),
                                           "anchors": [(0, 1), (0, 1)]})
                for _ in range(2)
            )
            self._style_level(lines[0], self._theme.support)
            self._style_level(lines[1], self._theme.resistance)
            for line in lines:
                line.setZValue(10)
                self._price_plot.addItem(line, ignoreBounds=True)
            self._level_lines[key] = lines  # type: ignore[assignment]
        support, resistance, label = spec
        name = label or key
        esc = name.replace("{", "{{").replace("}", "}}")
        dec = self.price_decimals
        for line, value, tag in ((lines[0], support, "S"), (lines[1], resistance, "R")):
            if value is None:
                line.setVisible(False)
                continue
            line.label.format = f"{tag} {esc} {{value:.{dec}f}}" if esc else f"{tag} {{value:.{dec}f}}"
            line.setVisible(True)
            line.label.setVisible(True)
            line.setValue(value)
            line.label.valueChanged()

    def level_lines(self, key: str = "") -> tuple[pg.InfiniteLine, pg.InfiniteLine] | None:
        """The (support, resistance) lines drawn for ``key`` on the shown symbol, if any."""
        return self._level_lines.get(key)

    def _style_level(self, line: pg.InfiniteLine, color: str) -> None:
        line.setPen(pg.mkPen(color, width=1, style=QtCore.Qt.PenStyle.DashLine))
        line.label.setColor(pg.mkColor(color))

    @staticmethod
    def _style_label(line: pg.InfiniteLine, color: str, fill: str) -> None:
        line.label.setColor(pg.mkColor(color))
        line.label.fill = pg.mkBrush(fill)
        line.label.update()

    def _learn_decimals(self, s: BarSeries) -> None:
        d = max(self._auto_decimals, _infer_decimals(s.closes()[-64:]))
        if d != self._auto_decimals:
            self._auto_decimals = d
            self._update_label_formats()

    def _update_label_formats(self) -> None:
        dec = self.price_decimals
        for line in (self._last_line, self._cross_h):
            line.label.format = f"{{value:.{dec}f}}"
            line.label.valueChanged()
        for key, spec in self._levels.get(self._symbol, {}).items():
            self._apply_level(key, spec)
        self._marker_key = None
        self._dirty = True

    # ================================================================== interaction

    def _set_follow_flag(self, on: bool) -> None:
        changed = on != self._follow
        self._follow = on
        if self._live_button.isChecked() != on:
            self._live_button.blockSignals(True)
            self._live_button.setChecked(on)
            self._live_button.blockSignals(False)
        if changed:
            self.followChanged.emit(on)

    def _schedule(self) -> None:
        if not self._deferred.isActive():
            self._deferred.start()

    def _on_x_range_changed(self, *_args) -> None:
        if self._in_update:
            return
        self._dirty = True
        self._schedule()

    def _on_user_range(self, *_args) -> None:
        if self._follow:
            self._set_follow_flag(False)

    def _on_combo_activated(self, index: int) -> None:
        iv = self._interval_combo.itemData(index)
        if iv is not None:
            self.set_interval(float(iv))

    def keyPressEvent(self, ev: QtGui.QKeyEvent) -> None:  # noqa: N802
        if not self._handle_key(ev):
            super().keyPressEvent(ev)

    def eventFilter(self, obj: QtCore.QObject, ev: QtCore.QEvent) -> bool:  # noqa: N802
        et = ev.type()
        if et == QtCore.QEvent.Type.KeyPress:
            if self._handle_key(ev):
                return True
        elif et == QtCore.QEvent.Type.ShortcutOverride:
            # Our navigation keys win over app-wide shortcuts while the chart has focus.
            if self._nav_action(ev) is not None:
                ev.accept()
                return True
        elif et == QtCore.QEvent.Type.Leave:
            self._hide_crosshair()
        return super().eventFilter(obj, ev)

    def _nav_action(self, ev: QtGui.QKeyEvent):
        mods = ev.modifiers() & ~QtCore.Qt.KeyboardModifier.KeypadModifier
        shift = QtCore.Qt.KeyboardModifier.ShiftModifier
        if mods not in (QtCore.Qt.KeyboardModifier.NoModifier, shift):
            return None
        K = QtCore.Qt.Key
        key = ev.key()
        x0, x1 = self._vb.viewRange()[0]
        step = (x1 - x0) * (0.9 if mods == shift else 0.1)
        return {
            K.Key_Left: lambda: self.pan_bars(-step),
            K.Key_Right: lambda: self.pan_bars(step),
            K.Key_PageUp: lambda: self.pan_bars(-(x1 - x0) * 0.9),
            K.Key_PageDown: lambda: self.pan_bars((x1 - x0) * 0.9),
            K.Key_Plus: lambda: self.zoom(0.8),
            K.Key_Equal: lambda: self.zoom(0.8),
            K.Key_Minus: lambda: self.zoom(1.25),
            K.Key_Underscore: lambda: self.zoom(1.25),
            K.Key_End: self.go_live,
            # Home is "back to live" too (the brief's key map); Shift+Home goes to the oldest bar.
            K.Key_Home: self.go_oldest if mods == shift else self.go_live,
        }.get(key)

    def _handle_key(self, ev: QtGui.QKeyEvent) -> bool:
        action = self._nav_action(ev)
        if action is None:
            return False
        action()
        ev.accept()
        return True

    def _on_mouse_moved(self, pos: QtCore.QPointF) -> None:
        if self._vb.sceneBoundingRect().contains(pos):
            pt = self._vb.mapSceneToView(pos)
            in_price = True
        elif self._vol_vb.sceneBoundingRect().contains(pos):
            pt = self._vol_vb.mapSceneToView(pos)
            in_price = False
        else:
            self._hide_crosshair()
            return
        x = round(pt.x())
        self._cross_v.setPos(x)
        self._cross_v_vol.setPos(x)
        self._cross_v.setVisible(True)
        self._cross_v_vol.setVisible(True)
        if in_price:
            self._cross_h.setPos(pt.y())
        self._cross_h.setVisible(in_price)
        self._readout.setText(self.readout_text(x, pt.y() if in_price else None))

    def readout_text(self, index: int, price: float | None = None) -> str:
        """The crosshair readout for bar ``index`` (and the cursor price)."""
        s = self._series
        dec = self.price_decimals
        parts = []
        bar = s.bar(index) if s is not None else None
        if bar is not None:
            t, o, h, l, c, v = bar
            fmt = "%Y-%m-%d %H:%M:%S" if s.interval_s < 60 else "%Y-%m-%d %H:%M"
            parts.append(time.strftime(fmt, time.localtime(t)))
            parts.append(f"O {o:.{dec}f}  H {h:.{dec}f}  L {l:.{dec}f}  C {c:.{dec}f}  V {v:,.0f}")
        if price is not None:
            parts.append(f"▸ {price:.{dec}f}")
        return "   ".join(parts)

    def _hide_crosshair(self) -> None:
        for line in (self._cross_v, self._cross_h, self._cross_v_vol):
            line.setVisible(False)



def _marker_tip(x: float, y: float, data: object) -> str:
    # A module function, not a bound method: items holding a method of the widget would make
    # the widget part of a reference cycle (see ChartWidget.__init__).
    return str(data)


def _finite_or_none(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _stats(samples: deque) -> dict[str, float]:
    if not samples:
        return {"median": math.nan, "p99": math.nan, "max": math.nan, "count": 0}
    a = np.fromiter(samples, dtype=np.float64, count=len(samples))
    return {"median": float(np.median(a)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max()), "count": len(a)}
