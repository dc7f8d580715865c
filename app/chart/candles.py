"""Graphics items for candles and volume bars, recorded once into a QPicture.

Candles are drawn with two batched calls per colour: ``drawLines`` for the wicks and
``drawRects`` for the bodies, fed straight from numpy ``(n, 4)`` float64 arrays whose memory is
handed to Qt as a ``QLineF*``/``QRectF*`` (no Python object per candle). The result is recorded
into a ``QPicture`` and ``paint`` only replays it. Measured on the target machine class for 1500
candles: a per-candle ``drawLine``/``drawRect`` loop records in ~7.3 ms and replays in ~2.8 ms;
these batched arrays ~1.7 / 1.8 ms. Filled ``QPainterPath``s record as fast but replay tall
rectangles (volume bars, zoomed-out candles) 20-50x slower than ``drawRects`` (~19 ms vs
~0.4 ms for 400 volume bars), and a translucent brush costs ~10x an opaque one, so volume
colours are pre-mixed with the background instead of using alpha.

The chart uses two instances of each item: one holding the completed bars of the drawn window
(rebuilt only when that window or the completed bar set changes) and one holding just the
still-forming candle, which is cheap to re-record on every refresh.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import numpy as np

# app.qt before pyqtgraph: it chooses pyqtgraph's binding (see app/qt.py).
from app.qt import QtCore, QtGui, wrapInstance

import pyqtgraph as pg  # noqa: E402,I001

__all__ = ["CandleItem", "VolumeItem", "draw_lines", "draw_rects", "mix_colors", "BODY_WIDTH"]

#: Body width as a fraction of one bar slot.
BODY_WIDTH = 0.7

_ptr_arrays = True  # PySide6 >= 6.4.3 takes (QRectF*, count); fall back to lists otherwise


def _draw_array(painter: QtGui.QPainter, arr: np.ndarray, klass, method: str) -> None:
    global _ptr_arrays
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if len(arr) == 0:
        return
    if _ptr_arrays:
        try:
            getattr(painter, method)(wrapInstance(arr.ctypes.data, klass), len(arr))
            return
        except TypeError:
            _ptr_arrays = False
    getattr(painter, method)([klass(*row) for row in arr.tolist()])


def draw_lines(painter: QtGui.QPainter, arr: np.ndarray) -> None:
    """``drawLines`` from an ``(n, 4)`` array of x1, y1, x2, y2."""
    _draw_array(painter, arr, QtCore.QLineF, "drawLines")


def draw_rects(painter: QtGui.QPainter, arr: np.ndarray) -> None:
    """``drawRects`` from an ``(n, 4)`` array of x, y, width, height."""
    _draw_array(painter, arr, QtCore.QRectF, "drawRects")


def mix_colors(a, b, t: float) -> QtGui.QColor:
    """``a`` moved ``t`` of the way towards ``b`` (an opaque stand-in for alpha blending)."""
    ca, cb = pg.mkColor(a), pg.mkColor(b)
    return QtGui.QColor(
        round(ca.red() + (cb.red() - ca.red()) * t),
        round(ca.green() + (cb.green() - ca.green()) * t),
        round(ca.blue() + (cb.blue() - ca.blue()) * t),
    )


def _cosmetic_pen(color: QtGui.QColor) -> QtGui.QPen:
    pen = pg.mkPen(color)  # width 1, cosmetic
    # A zero-length wick (a one-price bar) with a square cap, replayed from a QPicture under the
    # view's scaling transform, paints as a band across the whole plot. Flat caps end exactly
    # at low/high and draw nothing for a zero-length line (the body outline still shows it).
    pen.setCapStyle(QtCore.Qt.PenCapStyle.FlatCap)
    return pen


class _PictureItem(pg.GraphicsObject):
    """A GraphicsObject that replays one QPicture; subclasses record it."""

    def __init__(self, paint_times: deque | None = None) -> None:
        super().__init__()
        self._picture: QtGui.QPicture | None = None
        self._bounds = QtCore.QRectF()
        self._padded: QtCore.QRectF | None = None
        self._paint_times = paint_times
        #: How many times the picture was re-recorded.
        self.rebuild_count = 0
        #: How many bars (or aggregated candles) the current picture holds.
        self.drawn_count = 0
        self._up_pen = _cosmetic_pen(pg.mkColor("#26a69a"))
        self._down_pen = _cosmetic_pen(pg.mkColor("#ef5350"))
        self._up_brush = pg.mkBrush("#26a69a")
        self._down_brush = pg.mkBrush("#ef5350")

    def set_colors(self, up: str | QtGui.QColor, down: str | QtGui.QColor) -> None:
        """Colours for the next recording (the owner re-records after a theme change)."""
        up_c, down_c = pg.mkColor(up), pg.mkColor(down)
        # The 1 px cosmetic outline is what keeps sub-pixel wide bars and flat bodies visible.
        self._up_pen = _cosmetic_pen(up_c)
        self._down_pen = _cosmetic_pen(down_c)
        self._up_brush = pg.mkBrush(up_c)
        self._down_brush = pg.mkBrush(down_c)

    def clear(self) -> None:
        if self._picture is None and self.drawn_count == 0:
            return
        self.prepareGeometryChange()
        self._picture = None
        self._bounds = QtCore.QRectF()
        self._padded = None
        self.drawn_count = 0
        self.update()

    def _set_picture(self, picture: QtGui.QPicture, bounds: QtCore.QRectF, count: int) -> None:
        self.prepareGeometryChange()
        self._picture = picture
        self._bounds = bounds
        self._padded = None
        self.drawn_count = count
        self.rebuild_count += 1
        self.update()

    def _record(self, x: np.ndarray, half: float, up: np.ndarray,
                draw: Callable[[QtGui.QPainter, np.ndarray, int, QtGui.QPen, QtGui.QBrush], None],
                y_range: Callable[[], tuple[float, float]]) -> None:
        """One picture of bars at x: ``draw`` records the rising ones in the up colours, then
        the falling ones; ``y_range`` is asked only when there is a bar."""
        if len(x) == 0:
            self.clear()
            return
        pic = QtGui.QPicture()
        p = QtGui.QPainter(pic)
        try:
            for mask, pen, brush in ((up, self._up_pen, self._up_brush),
                                     (~up, self._down_pen, self._down_brush)):
                n = int(np.count_nonzero(mask))
                if n:
                    draw(p, mask, n, pen, brush)
        finally:
            p.end()
        y0, y1 = y_range()
        self._set_picture(pic, _data_rect(float(x[0]) - half, float(x[-1]) + half, y0, y1), len(x))

    # QGraphicsItem -------------------------------------------------------

    def boundingRect(self) -> QtCore.QRectF:
        if self._padded is None:
            r = QtCore.QRectF(self._bounds)
            if not r.isNull():
                # Cosmetic 1 px outlines reach half a pixel past the data; pad by 2 px.
                vx, vy = self.pixelVectors()
                if vx is not None and vy is not None:
                    px, py = vx.length(), vy.length()
                    r.adjust(-2 * px, -2 * py, 2 * px, 2 * py)
            self._padded = r
        return self._padded

    def viewTransformChanged(self) -> None:
        self.prepareGeometryChange()
        self._padded = None

    def paint(self, painter: QtGui.QPainter, *args) -> None:
        if self._picture is None:
            return
        if self._paint_times is None:
            painter.drawPicture(0, 0, self._picture)
            return
        t0 = time.perf_counter()
        painter.drawPicture(0, 0, self._picture)
        self._paint_times.append((time.perf_counter() - t0) * 1e3)


def _data_rect(x0: float, x1: float, y0: float, y1: float) -> QtCore.QRectF:
    if y1 <= y0:  # flat: keep a non-empty rect or the scene never asks us to paint
        eps = max(abs(y0) * 1e-9, 1e-12)
        y0, y1 = y0 - eps, y1 + eps
    return QtCore.QRectF(x0, y0, x1 - x0, y1 - y0)


class CandleItem(_PictureItem):
    """Candlesticks at x (bar slot centres) with the given body width (in x units)."""

    def set_candles(self, x: np.ndarray, o: np.ndarray, h: np.ndarray, l: np.ndarray,
                    c: np.ndarray, width: float = BODY_WIDTH) -> None:
        half = width / 2

        def draw(p: QtGui.QPainter, mask: np.ndarray, n: int, pen, brush) -> None:
            xm = x[mask]
            om, cm = o[mask], c[mask]
            wicks = np.empty((n, 4))
            wicks[:, 0] = xm
            wicks[:, 1] = l[mask]
            wicks[:, 2] = xm
            wicks[:, 3] = h[mask]
            bodies = np.empty((n, 4))
            bodies[:, 0] = xm - half
            np.minimum(om, cm, out=bodies[:, 1])
            bodies[:, 2] = width
            bodies[:, 3] = np.abs(cm - om)
            p.setPen(pen)
            p.setBrush(QtCore.Qt.BrushStyle.NoBrush)
            draw_lines(p, wicks)
            p.setBrush(brush)
            draw_rects(p, bodies)

        self._record(x, half, c >= o, draw, lambda: (float(np.min(l)), float(np.max(h))))


class VolumeItem(_PictureItem):
    """Volume bars from 0 to v at x, coloured by the candle's direction."""

    def set_bars(self, x: np.ndarray, v: np.ndarray, up: np.ndarray, width: float = BODY_WIDTH) -> None:
        half = width / 2

        def draw(p: QtGui.QPainter, mask: np.ndarray, n: int, pen, brush) -> None:
            rects = np.zeros((n, 4))
            rects[:, 0] = x[mask] - half
            rects[:, 2] = width
            rects[:, 3] = v[mask]
            p.setPen(pen)
            p.setBrush(brush)
            draw_rects(p, rects)

        self._record(x, half, up, draw, lambda: (0.0, float(np.max(v))))
