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

Modules. The widget keeps the wiring: toolbar, plots, keys and mouse, and ``refresh``, which
decides what to redraw. The arithmetic of the view (follow, pan, zoom, grouping, drawn window,
y fit) is in :mod:`app.chart.viewport` (no Qt); levels, markers, the last-price line and the
crosshair are in :mod:`app.chart.overlays`; candle and volume items in :mod:`app.chart.candles`.
"""

from __future__ import annotations

import logging
import math
import operator
import time
from collections import deque

import numpy as np

# app.qt before pyqtgraph: it chooses pyqtgraph's binding (see app/qt.py).
from app.qt import QtCore, QtGui, QtWidgets

import pyqtgraph as pg  # noqa: E402,I001

from app.chart import viewport as vp  # noqa: E402
from app.chart.axis import TimeAxis  # noqa: E402
from app.chart.bars import BarSeries, MultiIntervalBars, aggregate_bars  # noqa: E402
from app.chart.candles import BODY_WIDTH, CandleItem, VolumeItem, mix_colors  # noqa: E402
from app.chart.markers import MarkerStore  # noqa: E402
from app.chart.overlays import Crosshair, LastPriceLine, LevelOverlay, MarkerOverlay, OrderLines, readout_text  # noqa: E402
from app.chart.style import DARK, LIGHT, Theme  # noqa: E402

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


def _read_only(attr: str, doc: str | None = None) -> property:
    """A public name, for reading only, of a private attribute."""
    return property(operator.attrgetter(attr), doc=doc)


class ChartWidget(QtWidgets.QWidget):
    """Candlestick + volume chart of one symbol with levels, markers, crosshair and live follow.

    Keys (when the chart has focus): Left/Right pan 10 % (Shift: 90 %), PageUp/PageDown pan
    90 %, +/- zoom (anchored on the live edge while following), End or Home = back to live
    (follow on), Shift+Home = oldest bar. Mouse: drag pans, wheel zooms; either turns follow off.
    """

    intervalChanged = QtCore.Signal(float)
    followChanged = QtCore.Signal(bool)
    #: an order line's key and the price it was dragged to (see set_order_lines)
    orderLineMoved = QtCore.Signal(str, float)

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
        self._y_range: tuple[float, float] | None = None
        self._vol_range: float | None = None
        self._k = 1

        #: add_marker calls refused (unknown kind, non-finite price).
        self.ignored_markers = 0

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
            vb.setLimits(minXRange=self.min_visible_bars, maxXRange=vp.MAX_WIDTH)
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
        # Level tags are placed in plot pixels and the crosshair follows the cursor, not a price:
        # both are placed again whenever the view moves under them (a zoom refits y).
        self._vb.sigRangeChanged.connect(self._on_view_changed)
        self._vb.sigResized.connect(self._on_view_changed)

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

        self._marker_layer = MarkerOverlay(self._price_plot, self.markers_per_symbol, self.max_markers_drawn)
        self._levels = LevelOverlay(self._price_plot, self._theme)
        self._last_price = LastPriceLine(self._price_plot)
        self._order_lines = OrderLines(self._price_plot, self._theme)
        self._order_lines.moved.connect(self.orderLineMoved)
        self._crosshair = Crosshair(self._price_plot, self._volume_plot)
        self._cross_v = self._crosshair.v  # the tests look at this line
        self._cursor: QtCore.QPointF | None = None  # scene position of the crosshair's cursor

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

    symbol = _read_only("_symbol")
    interval = _read_only("_interval")
    series = _read_only("_series", "The bar series currently shown.")
    follow = _read_only("_follow")
    interval_combo = _read_only("_interval_combo")
    live_button = _read_only("_live_button")
    price_plot = _read_only("_price_plot")
    volume_plot = _read_only("_volume_plot")
    view = _read_only("_view")
    readout = _read_only("_readout", "The crosshair readout label in the toolbar.")

    @property
    def marker_items(self) -> dict[str, pg.ScatterPlotItem]:
        """One scatter item per marker kind (holding only the markers in the drawn window)."""
        return dict(self._marker_layer.items)

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
        self._levels.show(symbol)
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
        self._levels.set(self._symbol if symbol is None else symbol, key, support, resistance, label)

    def add_marker(self, ts_ns: int, price: float, kind: str, text: str = "",
                   symbol: str | None = None) -> bool:
        """Mark a signal / rejection / fill at (time, price); False for an unknown kind.

        Kinds: signal_buy, signal_sell, signal_rejected, fill_buy, fill_sell. Kept per symbol
        (newest ``markers_per_symbol``); ``symbol`` None means the symbol shown.
        """
        sym = self._symbol if symbol is None else symbol
        if not self._marker_layer.add(sym, ts_ns, price, kind, text):
            self.ignored_markers += 1
            if self.ignored_markers <= 5 or self.ignored_markers % 1000 == 0:
                log.warning("chart: ignored marker kind=%r price=%r (%d so far)", kind, price,
                            self.ignored_markers)
            return False
        if sym == self._symbol:
            self._dirty = True
        return True

    def clear_markers(self, symbol: str | None = None) -> None:
        store = self._marker_layer.stores.get(self._symbol if symbol is None else symbol)
        if store is not None:
            store.clear()
            self._dirty = True

    def set_order_lines(self, specs) -> None:
        """The working orders' lines of the symbol shown: ``(key, price, label, buy, movable)``
        each (``label`` formats ``{value}``, the line's price); the others go.  A movable line
        dragged and let go at another price emits ``orderLineMoved(key, price)`` (snapped to
        the tick); it stays there until the next call says where the order is."""
        self._order_lines.set_lines(list(specs))

    def set_average_price(self, price: float | None, text: str = "") -> None:
        """The position's average price as a line (None: none), labelled ``text`` (``{value}``: the price)."""
        self._order_lines.set_average(price, text)

    def order_lines(self) -> dict:
        """key -> the pg.InfiniteLine drawn for it (tests, and the panel's hit checks)."""
        return self._order_lines.lines()

    def order_edge_tags(self) -> dict:
        """key -> the tag pinned at the plot's top or bottom edge for each order line beyond
        the view (``▲ BUY 100 STP 195.00``); the y-range is not widened to show the line."""
        return self._order_lines.edge_tags()

    @property
    def average_line(self):
        return self._order_lines.average

    def markers(self, symbol: str | None = None) -> MarkerStore | None:
        return self._marker_layer.stores.get(self._symbol if symbol is None else symbol)

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
        self._crosshair.set_theme(th)
        self._last_price.forget_colour()
        self._levels.set_theme(th)
        self._order_lines.set_theme(th)
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
        self._set_x(*vp.oldest_range(s.first_index, x1 - x0))

    def pan_bars(self, n: float) -> None:
        """Scroll by ``n`` bars (negative = back in time); turns follow off."""
        self._set_follow_flag(False)
        x0, x1 = self._vb.viewRange()[0]
        s = self._series
        if s is not None:
            x0, x1 = vp.clamp_pan(x0 + n, x1 + n, s.first_index, s.last_index, len(s))
        else:
            x0, x1 = x0 + n, x1 + n
        self._set_x(x0, x1)

    def zoom(self, factor: float) -> None:
        """Scale the visible width by ``factor`` (<1 zooms in). Anchored on the live edge while
        following (follow stays on), else on the centre."""
        x0, x1 = self._vb.viewRange()[0]
        nw = vp.zoom_width(x1 - x0, factor, self.min_visible_bars)
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
        return vp.visible_range(x0, x1)

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
        k = self._k = vp.group_size(v1 - v0, self.max_visible_candles, self._vb.width(), self.min_candle_px)
        self._window = vp.drawn_window(v0, v1, k, self._window, self.window_margin)
        d0, d1, _ = self._window
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

        self._last_price.update(s.last_close, s.last_open, self._theme)
        if new_bar:
            self._levels.layout(float(last))

        store = self._marker_layer.stores.get(self._symbol)
        if store is not None and len(store):
            mkey = (id(s), store.version, d0, d1, self._theme_rev)
            if mkey != self._marker_key or (self._marker_layer.pending and new_bar):
                self._marker_key = mkey
                self._marker_layer.draw(s, store, d0, d1, self.price_decimals)
        elif self._marker_key is not None:
            self._marker_key = None
            self._marker_layer.clear()

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

    def _clear_drawing(self) -> None:
        self._candles.clear()
        self._volume.clear()
        self._live_candle.clear()
        self._live_volume.clear()
        self._candle_key = self._live_key = None
        self._last_price.hide()
        if self._marker_key is not None:
            self._marker_key = None
            self._marker_layer.clear()

    # ================================================================== view geometry

    def max_drawn_candles(self) -> int:
        """Upper bound of candles held in the pictures for any view (what tests assert)."""
        return vp.max_drawn_candles(self.max_visible_candles, self.window_margin)

    def _apply_follow(self, s: BarSeries, width: float | None = None) -> None:
        x0, x1 = self._vb.viewRange()[0]
        w = (x1 - x0) if width is None else width
        left, right = vp.follow_range(s.last_index if len(s) else s.first_index, w)
        if abs(right - x1) > 1e-9 or abs((x1 - x0) - w) > 1e-9:
            self._set_x(left, right)

    def _set_x(self, x0: float, x1: float) -> None:
        self._vb.setXRange(x0, x1, padding=0)

    def _fit_y(self, lo: float, hi: float, vmax: float) -> None:
        want = vp.fit_price(lo, hi, self._y_range)
        if want is not None:
            self._y_range = want
            self._vb.setYRange(want[0], want[1], padding=0)
        top = vp.fit_volume(vmax, self._vol_range)
        if top is not None:
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
        self._last_price.forget()
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

    def level_lines(self, key: str = "") -> tuple[pg.InfiniteLine, pg.InfiniteLine] | None:
        """The (support, resistance) lines drawn for ``key`` on the shown symbol, if any."""
        return self._levels.lines(key)

    def level_tags(self, key: str = ""):
        """The (support, resistance) :class:`~app.chart.overlays.LevelTag` of ``key``, if any."""
        return self._levels.tags(key)

    def _newest_x(self) -> float | None:
        s = self._series
        return float(s.last_index) if s is not None and len(s) else None

    def _on_view_changed(self, *_args) -> None:
        self._levels.layout(self._newest_x())
        self._order_lines.layout()
        if self._cursor is not None:
            self._on_mouse_moved(self._cursor)

    def _learn_decimals(self, s: BarSeries) -> None:
        d = max(self._auto_decimals, vp.infer_decimals(s.closes()[-64:]))
        if d != self._auto_decimals:
            self._auto_decimals = d
            self._update_label_formats()

    def _update_label_formats(self) -> None:
        dec = self.price_decimals
        self._last_price.set_decimals(dec)
        self._crosshair.set_decimals(dec)
        self._levels.set_decimals(dec)
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
        self._cursor = QtCore.QPointF(pos)
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
        self._crosshair.show(x, pt.y() if in_price else None)
        self._readout.setText(self.readout_text(x, pt.y() if in_price else None))

    def readout_text(self, index: int, price: float | None = None) -> str:
        """The crosshair readout for bar ``index`` (and the cursor price)."""
        return readout_text(self._series, index, price, self.price_decimals)

    def _hide_crosshair(self) -> None:
        self._cursor = None
        self._crosshair.hide()

    @property
    def crosshair_price_text(self) -> str:
        """The crosshair's price label ('' while it is hidden)."""
        return self._crosshair.price_text if self._crosshair.h.isVisible() else ""


def _stats(samples: deque) -> dict[str, float]:
    if not samples:
        return {"median": math.nan, "p99": math.nan, "max": math.nan, "count": 0}
    a = np.fromiter(samples, dtype=np.float64, count=len(samples))
    return {"median": float(np.median(a)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max()), "count": len(a)}
