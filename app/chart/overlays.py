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
from app.qt import QtCore, QtGui, QtWidgets

import pyqtgraph as pg  # noqa: E402,I001

from app.chart.bars import BarSeries  # noqa: E402
from app.chart.markers import MARKER_KINDS, MarkerStore  # noqa: E402
from app.chart.style import MARKER_STYLE, Theme  # noqa: E402
from app.chart.viewport import marker_positions, stack_labels  # noqa: E402

__all__ = ["Crosshair", "LastPriceLine", "LevelOverlay", "LevelTag", "MarkerOverlay", "OrderLines", "readout_text"]

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


class LevelTag(QtWidgets.QGraphicsItem):
    """A level's name and price in a filled box with a border in the level's colour.

    A child of the ViewBox itself (not of its view-coordinate group), so it lives in plot
    pixels: it keeps its size whatever the zoom, and :meth:`LevelOverlay.layout` can keep it
    inside the plot rect and clear of the other tags.  Text is in the theme's foreground on its
    label fill, which reads in both themes (orange text on white did not).
    """

    PAD_X = 4.0
    PAD_Y = 1.0

    def __init__(self, parent: QtWidgets.QGraphicsItem) -> None:
        super().__init__(parent)
        #: The text without the arrow that marks a level beyond the view.
        self.base = ""
        self.text = ""
        self._font = QtGui.QFont()
        self._size = QtCore.QSizeF(0, 0)
        self._pen = QtGui.QPen()
        self._fill = QtGui.QBrush()
        self._text_pen = QtGui.QPen()
        self.setAcceptedMouseButtons(QtCore.Qt.MouseButton.NoButton)  # drags and wheel go to the plot
        self.setAcceptHoverEvents(False)
        self.setZValue(25)

    def set_text(self, text: str) -> None:
        if text == self.text:
            return
        self.prepareGeometryChange()
        self.text = text
        fm = QtGui.QFontMetricsF(self._font)
        self._size = QtCore.QSizeF(fm.horizontalAdvance(text) + 2 * self.PAD_X, fm.height() + 2 * self.PAD_Y)
        self.update()

    def set_colors(self, border: str, fill: str, text: str) -> None:
        self._pen = pg.mkPen(border, width=1)
        fill_color = pg.mkColor(fill)
        fill_color.setAlpha(235)
        self._fill = QtGui.QBrush(fill_color)
        self._text_pen = pg.mkPen(text)
        self.update()

    def size(self) -> QtCore.QSizeF:
        return QtCore.QSizeF(self._size)

    def boundingRect(self) -> QtCore.QRectF:  # noqa: N802 (Qt naming)
        return QtCore.QRectF(QtCore.QPointF(0, 0), self._size)

    def paint(self, p: QtGui.QPainter, *args) -> None:
        r = self.boundingRect().adjusted(0.5, 0.5, -0.5, -0.5)
        p.setPen(self._pen)
        p.setBrush(self._fill)
        p.drawRoundedRect(r, 2, 2)
        p.setFont(self._font)
        p.setPen(self._text_pen)
        p.drawText(r.adjusted(self.PAD_X - 0.5, 0, 0, 0),
                   int(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter), self.text)


class LevelOverlay:
    """Dashed support/resistance lines, one pair per key (one strategy per key), kept per
    symbol and drawn for the symbol shown, each with a :class:`LevelTag`.

    Tags sit just above their line at the plot's left edge, or at the right edge while the
    newest bar is in the left half of the plot: never over the latest candles.  They are
    kept inside the plot rect (a level beyond the view is tagged at the edge it lies beyond,
    with an arrow) and stacked so that close levels do not cover each other.  The widget calls
    :meth:`layout` whenever the view range or size changes.
    """

    #: Pixels between a tag and the plot edge.
    MARGIN = 4.0

    def __init__(self, plot: pg.PlotItem, theme: Theme) -> None:
        self._plot = plot
        self._vb = plot.getViewBox()
        self._theme = theme
        self._decimals = 2
        self._newest_x: float | None = None
        self.symbol: str | None = None
        self._by_symbol: dict[str | None, dict[str, LevelSpec]] = {}
        self._lines: dict[str, tuple[pg.InfiniteLine, pg.InfiniteLine]] = {}
        self._tags: dict[str, tuple[LevelTag, LevelTag]] = {}

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
            self.layout()

    def show(self, symbol: str | None) -> None:
        """Draw ``symbol``'s levels instead of the ones shown."""
        self.symbol = symbol
        wanted = self._by_symbol.get(symbol, {})
        for key in list(self._lines):
            if key not in wanted:
                self._apply(key, None)
        for key, spec in wanted.items():
            self._apply(key, spec)
        self.layout()

    def lines(self, key: str = "") -> tuple[pg.InfiniteLine, pg.InfiniteLine] | None:
        return self._lines.get(key)

    def tags(self, key: str = "") -> tuple[LevelTag, LevelTag] | None:
        return self._tags.get(key)

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        for key, (sup, res) in self._lines.items():
            self._style(sup, theme.support)
            self._style(res, theme.resistance)
            tsup, tres = self._tags[key]
            tsup.set_colors(theme.support, theme.label_fill, theme.foreground)
            tres.set_colors(theme.resistance, theme.label_fill, theme.foreground)

    def set_decimals(self, decimals: int) -> None:
        self._decimals = decimals
        for key, spec in self._by_symbol.get(self.symbol, {}).items():
            self._apply(key, spec)
        self.layout()

    def _apply(self, key: str, spec: LevelSpec | None) -> None:
        lines = self._lines.get(key)
        if spec is None:
            if lines is not None:
                for line in lines:
                    self._plot.removeItem(line)
                for tag in self._tags.pop(key):
                    tag.setParentItem(None)
                    if tag.scene() is not None:
                        tag.scene().removeItem(tag)
                del self._lines[key]
            return
        if lines is None:
            lines = (pg.InfiniteLine(angle=0, movable=False), pg.InfiniteLine(angle=0, movable=False))
            self._style(lines[0], self._theme.support)
            self._style(lines[1], self._theme.resistance)
            for line in lines:
                line.setZValue(10)
                self._plot.addItem(line, ignoreBounds=True)
            self._lines[key] = lines
            tags = (LevelTag(self._vb), LevelTag(self._vb))
            tags[0].set_colors(self._theme.support, self._theme.label_fill, self._theme.foreground)
            tags[1].set_colors(self._theme.resistance, self._theme.label_fill, self._theme.foreground)
            self._tags[key] = tags
        tags = self._tags[key]
        support, resistance, label = spec
        name = label or key
        for line, tag, value, letter in ((lines[0], tags[0], support, "S"), (lines[1], tags[1], resistance, "R")):
            if value is None:
                line.setVisible(False)
                tag.setVisible(False)
                continue
            line.setValue(value)
            line.setVisible(True)
            tag.base = f"{letter} {name} {value:.{self._decimals}f}" if name else f"{letter} {value:.{self._decimals}f}"
            tag.set_text(tag.base)
            tag.setVisible(True)

    def layout(self, newest_x: float | None = None) -> None:
        """Place the tags for the current view; ``newest_x`` (view x of the newest bar, kept
        from the last call when None) picks the side away from the latest candles."""
        if newest_x is not None:
            self._newest_x = newest_x
        vb = self._vb
        rect = vb.boundingRect()
        if rect.width() <= 0 or rect.height() <= 0:
            return
        (x0, x1), (y0, y1) = vb.viewRange()
        right = self._newest_x is not None and x1 > x0 and (self._newest_x - x0) / (x1 - x0) < 0.5
        items: list[tuple[LevelTag, float]] = []
        for key, (sup, res) in self._lines.items():
            for line, tag in zip((sup, res), self._tags[key]):
                if line.isVisible():
                    items.append((tag, float(line.value())))
        if not items:
            return
        top, bottom = rect.top() + 1, rect.bottom() - 1
        wanted, heights = [], []
        for tag, value in items:
            h = tag.size().height()
            if value > y1:
                text, want = "▲ " + tag.base, top
            elif value < y0:
                text, want = "▼ " + tag.base, bottom - h
            else:
                text = tag.base
                y = vb.mapFromView(QtCore.QPointF(x0, value)).y()
                # Just above its line; below it where the top edge leaves no room.
                want = y - h - 1 if y - h - 1 >= top else y + 1
            tag.set_text(text)
            wanted.append(want)
            heights.append(tag.size().height())
        tops = stack_labels(wanted, heights, top, bottom)
        for (tag, _), t in zip(items, tops):
            w = tag.size().width()
            x = rect.right() - self.MARGIN - w if right else rect.left() + self.MARGIN
            tag.setPos(max(rect.left(), x), t)

    @staticmethod
    def _style(line: pg.InfiniteLine, color: str) -> None:
        line.setPen(pg.mkPen(color, width=1, style=QtCore.Qt.PenStyle.DashLine))


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


#: one order line: (key, price, label, buy, movable).  The label is a format string with
#: ``{value}`` for the line's price, so it reads the new price while the line is dragged.
OrderLineSpec = tuple[str, float, str, bool, bool]

#: the order lines' colours: a buy's blue and a sell's magenta, as the fill markers'
ORDER_COLOURS = {"buy": MARKER_STYLE["fill_buy"][1], "sell": MARKER_STYLE["fill_sell"][1]}


class OrderEdgeTag(LevelTag):
    """The edge tag of an order beyond the view.  A movable order's tag can be dragged into the
    plot: while held it follows the mouse and reads the price under it; let go,
    ``drop(tag, scene_pos)`` is called (``scene_pos`` None for a release within the drag
    distance of the press: a click moves nothing), and the owner moves the order only to a
    price inside the view."""

    def __init__(self, parent: QtWidgets.QGraphicsItem, move, drop) -> None:
        super().__init__(parent)
        self.key = ""
        self.movable = False
        self._move, self._drop = move, drop
        self._grab: tuple[QtCore.QPointF, float] | None = None  # where it was, where it was held

    @property
    def held(self) -> bool:
        return self._grab is not None

    def set_movable(self, on: bool) -> None:
        if on == self.movable:
            return
        self.movable = on
        self.setAcceptedMouseButtons(QtCore.Qt.MouseButton.LeftButton if on else QtCore.Qt.MouseButton.NoButton)
        if on:
            self.setCursor(QtCore.Qt.CursorShape.SizeVerCursor)
        else:
            self.unsetCursor()
        self.setToolTip("drag into the chart to move the order there (a replace when let go)" if on else "")

    def mousePressEvent(self, ev) -> None:  # noqa: N802
        if not self.movable or ev.button() != QtCore.Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        self._grab = (self.pos(), ev.pos().y())
        ev.accept()

    def mouseMoveEvent(self, ev) -> None:  # noqa: N802
        if self._grab is None:
            return
        start, dy = self._grab
        self.setPos(start.x(), self.mapToParent(ev.pos()).y() - dy)
        self._move(self, ev.scenePos())
        ev.accept()

    def mouseReleaseEvent(self, ev) -> None:  # noqa: N802
        if self._grab is None:
            return
        start, _ = self._grab
        self._grab = None
        ev.accept()
        # the tag sits inside the plot, at a price of the view: a click or a jiggle on it is
        # not a move there (it would take a stop from far away to the edge of the screen)
        if abs(self.pos().y() - start.y()) < QtWidgets.QApplication.startDragDistance():
            self._drop(self, None)
        else:
            self._drop(self, ev.scenePos())


class OrderLines(QtCore.QObject):
    """Working orders as horizontal lines at their prices (limit, stop), labelled with side,
    quantity, type and price, and the position's average price as a dash-dotted line.

    The lines are outside the y-axis fit (the view stays on the market); an order beyond the
    view is a :class:`LevelTag` pinned at the edge it lies beyond, ``▲ BUY 100 STP 195.00``,
    so the trader knows it is there.  :meth:`layout` places them; the widget calls it when
    the view range or size changes (not per frame).  A movable order's edge tag can be
    dragged into the plot: let go inside the view, it is :attr:`moved` there as a line would
    be (its line then shows at the new price until the owner sets the lines again).

    A movable line (an order that can be replaced) follows the mouse in steps of ``tick``
    while dragged; let go at another price it emits :attr:`moved` with its key and the new
    price.  It stays there until the owner sets the lines again: at the order's new price
    when the replace went through, at the old one (it snaps back) when it was refused.  A
    line being dragged is never moved by :meth:`set_lines`.

    Signals:
        moved(str, float): an order line's key and the price it was let go at.
    """

    moved = QtCore.Signal(str, float)
    #: label position along the line (0 left, 1 right): left of the last-price label
    LABEL_AT = 0.82
    AVG_LABEL_AT = 0.55

    def __init__(self, plot: pg.PlotItem, theme: Theme, tick: float = 0.01) -> None:
        super().__init__()
        self._plot = plot
        self._theme = theme
        self.tick = tick
        self._lines: dict[str, pg.InfiniteLine] = {}
        self._specs: dict[str, OrderLineSpec] = {}
        self._vb = plot.getViewBox()
        #: key -> the tag at the plot's edge for an order beyond the view (hidden while in it)
        self._edge: dict[str, OrderEdgeTag] = {}
        self.average = pg.InfiniteLine(angle=0, movable=False, label="", labelOpts={
            "position": self.AVG_LABEL_AT, "anchors": [(1, 1), (1, 1)]})
        self.average.setZValue(18)
        self.average.setVisible(False)
        plot.addItem(self.average, ignoreBounds=True)
        self._avg: tuple[float, str] | None = None
        self._style_average()

    # ------------------------------------------------------------------ public
    def lines(self) -> dict[str, pg.InfiniteLine]:
        return dict(self._lines)

    def edge_tags(self) -> dict[str, OrderEdgeTag]:
        """key -> the edge tag of each order line beyond the view (only those shown)."""
        return {k: t for k, t in self._edge.items() if t.isVisible()}

    def set_lines(self, specs: list[OrderLineSpec]) -> None:
        """Show exactly these lines (others go)."""
        wanted = {sp[0]: sp for sp in specs}
        for key in [k for k in self._lines if k not in wanted]:
            line = self._lines.pop(key)
            self._specs.pop(key, None)
            self._plot.removeItem(line)
            tag = self._edge.pop(key, None)
            if tag is not None:
                tag.setParentItem(None)
                if tag.scene() is not None:
                    tag.scene().removeItem(tag)
        for key, spec in wanted.items():
            line = self._lines.get(key)
            if line is None:
                line = self._new_line(key)
            elif line.moving:
                continue  # the trader holds it
            if self._specs.get(key) != spec or abs(float(line.value()) - spec[1]) > 1e-9:
                self._apply(line, spec)
                self._specs[key] = spec
        self.layout()

    def layout(self) -> None:
        """Pin a tag at the top (bottom) edge for each line above (below) the view, right
        aligned where the lines' labels end, stacked apart; hide the others'."""
        vb = self._vb
        rect = vb.boundingRect()
        if not self._lines or rect.width() <= 0 or rect.height() <= 0:
            for tag in self._edge.values():
                tag.setVisible(False)
            return
        y0, y1 = vb.viewRange()[1]
        above: list[tuple[float, OrderEdgeTag]] = []
        below: list[tuple[float, OrderEdgeTag]] = []
        for key, line in self._lines.items():
            spec = self._specs.get(key)
            v = float(line.value())
            out = spec is not None and not line.moving and (v > y1 or v < y0)
            tag = self._edge.get(key)
            if tag is not None and tag.held:
                continue  # the trader holds it: it follows the mouse
            if not out:
                if tag is not None:
                    tag.setVisible(False)
                continue
            if tag is None:  # an order's side never changes: its colour is set once
                tag = self._edge[key] = OrderEdgeTag(vb, self._edge_moving, self._edge_dropped)
                tag.key = key
                tag.setZValue(26)
                colour = ORDER_COLOURS["buy" if spec[3] else "sell"]
                tag.set_colors(colour, colour, "#ffffff")
            tag.set_movable(bool(spec[4]))
            tag.set_text(("▲ " if v > y1 else "▼ ") + spec[2].format(value=v))
            tag.setVisible(True)
            (above if v > y1 else below).append((v, tag))
        top, bottom = rect.top() + 1, rect.bottom() - 1
        right = rect.left() + self.LABEL_AT * rect.width()
        # top down in price order, as the axis reads: the highest at the top
        above.sort(key=lambda vt: -vt[0])
        below.sort(key=lambda vt: -vt[0])
        for group, at_top in ((above, True), (below, False)):
            if not group:
                continue
            heights = [t.size().height() for _, t in group]
            wanted = [top if at_top else bottom - h for h in heights]
            for (_, tag), t in zip(group, stack_labels(wanted, heights, top, bottom)):
                tag.setPos(max(rect.left(), right - tag.size().width()), t)

    def set_average(self, price: float | None, text: str = "") -> None:
        """The position's average price (None: flat, no line)."""
        if price is None or not math.isfinite(price) or price <= 0:
            self._avg = None
            self.average.setVisible(False)
            return
        if self._avg == (price, text):
            return
        self._avg = (price, text)
        self.average.setVisible(True)  # the label only formats while visible
        self.average.label.format = text
        self.average.setValue(price)
        self.average.label.valueChanged()

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        for key, line in self._lines.items():
            if key in self._specs:
                self._style(line, self._specs[key])
        self._style_average()
        self.layout()

    # ------------------------------------------------------------------ lines
    def _new_line(self, key: str) -> pg.InfiniteLine:
        line = pg.InfiniteLine(angle=0, movable=False, label="", labelOpts={
            "position": self.LABEL_AT, "anchors": [(1, 1), (1, 1)]})
        line.setZValue(20)  # over the candles and the levels, so the press reaches the line
        line.order_key = key
        line.sigDragged.connect(self._dragged)
        line.sigPositionChangeFinished.connect(self._finished)
        self._plot.addItem(line, ignoreBounds=True)
        self._lines[key] = line
        return line

    def _apply(self, line: pg.InfiniteLine, spec: OrderLineSpec) -> None:
        _key, price, text, _buy, movable = spec
        line.setMovable(movable)
        self._style(line, spec)
        line.label.format = text
        line.setValue(price)
        line.label.valueChanged()

    def _style(self, line: pg.InfiniteLine, spec: OrderLineSpec) -> None:
        colour = ORDER_COLOURS["buy" if spec[3] else "sell"]
        movable = spec[4]
        line.setPen(pg.mkPen(colour, width=1.5, style=QtCore.Qt.PenStyle.SolidLine if movable
                             else QtCore.Qt.PenStyle.DashLine))
        line.setHoverPen(pg.mkPen(colour, width=3))
        style_label(line, "#ffffff", colour)
        line.label.setToolTip("drag to move the order (a replace when let go)" if movable else "")

    def _style_average(self) -> None:
        colour = self._theme.foreground
        self.average.setPen(pg.mkPen(colour, width=1, style=QtCore.Qt.PenStyle.DashDotLine))
        style_label(self.average, self._theme.background, colour)

    def _dragged(self, line: pg.InfiniteLine) -> None:
        # the price steps with the tick while dragged: what the label reads is what is sent
        v = float(line.value())
        snapped = self._snap(v)
        if abs(snapped - v) > 1e-12:
            line.setValue(snapped)

    def _snap(self, v: float) -> float:
        """The price on the tick (what the label reads is what is sent)."""
        return round(round(v / self.tick) * self.tick, 8)

    def _moves(self, spec: OrderLineSpec, new: float) -> bool:
        """Whether letting go at ``new`` moves the order (a sensible price, not its own)."""
        return new > 0 and abs(new - spec[1]) >= self.tick / 2

    def _edge_moving(self, tag: OrderEdgeTag, scene_pos: QtCore.QPointF) -> None:
        spec = self._specs.get(tag.key)
        if spec is not None:
            v = self._snap(self._vb.mapSceneToView(scene_pos).y())
            tag.set_text("↕ " + spec[2].format(value=v))

    def _edge_dropped(self, tag: OrderEdgeTag, scene_pos: QtCore.QPointF) -> None:
        """An edge tag let go: inside the view, the order moves to the price there."""
        key = tag.key
        spec, line = self._specs.get(key), self._lines.get(key)
        if scene_pos is None or spec is None or line is None or not spec[4]:
            self.layout()  # a click, or an order that cannot move: back to its edge
            return
        y0, y1 = self._vb.viewRange()[1]
        v = self._vb.mapSceneToView(scene_pos).y()
        new = self._snap(v)
        if not (y0 <= v <= y1) or not self._moves(spec, new):
            self.layout()  # let go outside the view, or where it is: nothing to send
            return
        line.setValue(new)  # the line shows where it goes, as after a drag of the line
        self.layout()
        self.moved.emit(key, new)

    def _finished(self, line: pg.InfiniteLine) -> None:
        key = getattr(line, "order_key", None)
        spec = self._specs.get(key)
        if spec is None:
            return
        new = self._snap(float(line.value()))
        if not self._moves(spec, new):
            line.setValue(spec[1])  # let go where it was (or nowhere sensible): nothing to send
            return
        line.setValue(new)
        self.moved.emit(key, new)


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
        if price is None or not math.isfinite(price):
            self.h.setVisible(False)
            return
        self.h.setVisible(True)
        self.h.setPos(price)
        # Written here, not left to pyqtgraph: its label reformats only on a move while it is
        # visible, and a line shown again at a new price (after a hide, e.g. the wheel zoom's
        # leave/enter) kept the text of its last visible moment -- "0.00" from construction.
        self.h.label.setText(self.h.label.format.format(value=float(price)))

    @property
    def price_text(self) -> str:
        """What the price label says."""
        return self.h.label.toPlainText()

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
