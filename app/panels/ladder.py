"""The price ladder (depth of market): one row per price tick down the middle, the book's bid
sizes left of it and ask sizes right of it, the trader's own working orders in a column of
their own on each side, the last trade marked, and one-click trading.

* Click in the bid side (the bid size column or the empty buy-order cell) places a BUY LIMIT
  at that row's price, in the ask side a SELL LIMIT, for the quantity of the ladder's spin
  box.  Clicking one's own order (its cell in the order column) cancels it; dragging it to
  another row moves it there (``replace_order``, the order keeps its id).
* Keys (the ladder focused): Up / Down move a price cursor (Shift: 10 ticks), PageUp /
  PageDown scroll a page, B / S place a buy / sell limit at the cursor, Delete cancels one's
  orders at the cursor, M picks the orders at the cursor up and M (or Enter) puts them down
  at the cursor (the drag's equivalent; Escape drops it), C centres on the last trade and
  puts the cursor there.
* Re-centring: with Auto-centre on, the ladder centres on the last trade whenever it leaves
  the middle half of the rows (while the pointer is over the ladder, only when it leaves the
  screen: the rows do not move under a click); the mouse wheel or PageUp / PageDown scroll it by hand and turn
  Auto-centre off; C (or the Centre button) centres now and turns it back on.

The ladder paints itself (:class:`LadderView.paintEvent`): a QTableView asks its model about
seven roles per cell in Python, which measured 4-7 ms for a 20 x 11 table (docs/window.md),
while this view draws only the cells that hold something.  It repaints at most once per flush
(30 Hz), and only when its symbol's book, quote or own orders changed (bench/ladder.py
measures it).  The panel emits what the trader asked for; the window confirms (if asked to)
and sends it through the order service.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from workers.protocol import OrderStatus, OrderType, Side
from app.orders import TICK_SIZE, Outcome, Ticket
from app.models.table import RecordTableModel
from app.panels.live_label import LiveLabel
from app.qt import QColor, Qt, QtCore, QtGui, QtWidgets, Signal
from app.state import AppState, Changes, OrderRow

#: the ladder's columns, left to right
BUY_ORDERS, BID, PRICE, ASK, SELL_ORDERS = range(5)
COLUMN_TITLES = ("Buy", "Bid", "Price", "Ask", "Sell")
#: each column's share of the width
COLUMN_SHARES = (0.18, 0.2, 0.24, 0.2, 0.18)
#: ticks scrolled per wheel notch
WHEEL_TICKS = 3
#: the auto-centre band: the last trade may move this share of the rows away from the middle
CENTRE_BAND = 0.25
#: price labels kept formatted (a long session scrolls through many prices)
PRICE_CACHE = 4096


def to_ticks(price: float, tick: float = TICK_SIZE) -> int:
    return int(round(price / tick))


def order_price(o: OrderRow) -> float | None:
    """Where an order sits on the ladder: a limit at its limit, a stop at its stop (a
    triggered stop limit at its limit)."""
    ot = o.order_type
    if ot is OrderType.LIMIT:
        return o.limit_price
    if ot is OrderType.STOP_LIMIT:
        return o.limit_price if o.triggered else o.stop_price
    if ot in (OrderType.STOP, OrderType.TRAILING_STOP):
        return o.stop_price
    return None


def moved_terms(o: OrderRow, price: float) -> dict | None:
    """The ``replace`` arguments that move ``o`` to ``price``; None for an order a drag cannot
    move (a trailing stop follows the market; an untriggered stop limit has two prices)."""
    ot = o.order_type
    if ot is OrderType.LIMIT or (ot is OrderType.STOP_LIMIT and o.triggered):
        return {"limit_price": price}
    if ot is OrderType.STOP:
        return {"stop_price": price}
    return None


@dataclass
class Cell:
    """One side's own orders at one price (or, in ``LadderView.others``, the strategies')."""

    qty: int = 0
    coids: list[str] = field(default_factory=list)
    stop: bool = False  # a stop kind among them (marked S)
    pending: bool = False  # not acknowledged yet (or UNKNOWN)
    sources: list[str] = field(default_factory=list)  # the strategies', for the tooltip and message


class LadderView(QtWidgets.QWidget):
    """The painted ladder.  Prices are held as integer ticks (``price / tick``), so rows and
    orders meet exactly whatever the float noise.

    Signals:
        placeRequested(object, float): (Side, price) a click or key placed.
        cancelRequested(list): client_order_ids to cancel.
        moveRequested(list, float): client_order_ids to move to a price.
        centreChanged(bool): Auto-centre turned on or off here (wheel, PageUp/PageDown, C).
        othersClicked(object): the :class:`Cell` of the strategies' orders a click landed on
            (nothing is placed or cancelled: they are the strategies' to move).
    """

    othersClicked = Signal(object)
    placeRequested = Signal(object, float)
    cancelRequested = Signal(list)
    moveRequested = Signal(list, float)
    centreChanged = Signal(bool)

    def __init__(self, parent=None, tick: float = TICK_SIZE):
        super().__init__(parent)
        self.setObjectName("ladderView")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setMouseTracking(False)
        self.setMinimumSize(200, 160)
        self.tick = tick
        self.decimals = max(0, len(f"{tick:.10f}".rstrip("0").split(".")[1]))
        self.centre = 0  # the middle row's price, in ticks
        self.auto_centre = True
        self.cursor: int | None = None
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.best_bid: int | None = None
        self.best_ask: int | None = None
        self.last: int | None = None
        self.max_size = 1
        self.own: dict[tuple[Side, int], Cell] = {}
        #: the strategies' working orders of the account, drawn outlined beside the trader's
        self.others: dict[tuple[Side, int], Cell] = {}
        self._press: tuple[int, int] | None = None  # (column, price) of the mouse press
        self.hovered = False  # the pointer is over the ladder: it must not move under it
        self._drag: tuple[Side, int, list[str]] | None = None  # own orders being dragged
        self._drag_to: int | None = None
        self.picked: tuple[Side | None, int, list[str]] | None = None  # the keyboard's "drag"
        self._labels: dict[int, str] = {}
        self.paints = 0
        self.paint_ms = 0.0  # the last paint's time
        self._layout_font()

    # ------------------------------------------------------------------ geometry
    def _layout_font(self) -> None:
        fm = self.fontMetrics()
        self.row_h = fm.height() + 2
        self.header_h = fm.height() + 6

    def changeEvent(self, event) -> None:  # noqa: N802
        if event.type() == QtCore.QEvent.Type.FontChange:
            self._layout_font()
        super().changeEvent(event)

    def rows(self) -> int:
        return max(1, (self.height() - self.header_h) // self.row_h)

    def top(self) -> int:
        """The price (ticks) of the first row."""
        return self.centre + self.rows() // 2

    def column_edges(self) -> list[int]:
        w = self.width()
        edges, x = [0], 0.0
        for share in COLUMN_SHARES:
            x += share * w
            edges.append(int(round(x)))
        edges[-1] = w
        return edges

    def column_at(self, x: int) -> int | None:
        edges = self.column_edges()
        for c in range(5):
            if edges[c] <= x < edges[c + 1]:
                return c
        return None

    def ticks_at(self, y: int) -> int | None:
        if y < self.header_h:
            return None
        i = (y - self.header_h) // self.row_h
        return self.top() - i if i < self.rows() else None

    def price_of(self, t: int) -> float:
        return round(t * self.tick, self.decimals)

    def row_rect(self, t: int) -> QtCore.QRect | None:
        i = self.top() - t
        if not 0 <= i < self.rows():
            return None
        return QtCore.QRect(0, self.header_h + i * self.row_h, self.width(), self.row_h)

    def cell_rect(self, price: float, column: int) -> QtCore.QRect | None:
        """Where ``price``'s row meets ``column`` (None: the price is not on screen)."""
        r = self.row_rect(to_ticks(price, self.tick))
        if r is None:
            return None
        edges = self.column_edges()
        return QtCore.QRect(edges[column], r.top(), edges[column + 1] - edges[column], r.height())

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.recentre_if_needed()

    # ------------------------------------------------------------------ centring
    def centre_on(self, t: int | None) -> None:
        if t is not None and t != self.centre:
            self.centre = t
            self.update()

    def recentre_if_needed(self) -> bool:
        """Auto-centre: the last trade (else the mid) left the middle band of the rows.  While
        the pointer is over the ladder the rows stay where they are unless the last trade
        leaves the screen (a click must land on the price the trader aimed at), and never
        during a press or a drag."""
        ref = self.reference()
        if not self.auto_centre or ref is None or self._press is not None:
            return False
        n = self.rows()
        band = max(1, n // 2 - 2) if self.hovered else max(1, int(n * CENTRE_BAND))
        if self.centre == 0 or abs(ref - self.centre) > band:
            self.centre_on(ref)
            return True
        return False

    def enterEvent(self, event) -> None:  # noqa: N802
        self.hovered = True
        super().enterEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: N802
        self.hovered = False
        self.recentre_if_needed()
        super().leaveEvent(event)

    def reference(self) -> int | None:
        if self.last is not None:
            return self.last
        if self.best_bid is not None and self.best_ask is not None:
            return (self.best_bid + self.best_ask) // 2
        return self.best_bid if self.best_bid is not None else self.best_ask

    def set_auto_centre(self, on: bool) -> None:
        if on != self.auto_centre:
            self.auto_centre = on
            self.centreChanged.emit(on)
        if on:
            self.recentre_if_needed()

    def centre_now(self) -> None:
        """Centre on the last trade, with the cursor on it; Auto-centre on."""
        self.set_auto_centre(True)
        ref = self.reference()
        if ref is not None:
            self.cursor = ref
        self.centre_on(ref)
        self.update()

    def scroll(self, ticks: int) -> None:
        self.set_auto_centre(False)
        self.centre_on(self.centre + ticks)

    # ------------------------------------------------------------------ mouse
    def _side_of(self, column: int) -> Side | None:
        if column in (BUY_ORDERS, BID):
            return Side.BUY
        if column in (ASK, SELL_ORDERS):
            return Side.SELL
        return None

    @staticmethod
    def _cell_at(cells: dict[tuple[Side, int], Cell], column: int, t: int) -> Cell | None:
        """The orders of ``cells`` (``own`` or ``others``) in an order column's row."""
        side = Side.BUY if column == BUY_ORDERS else Side.SELL if column == SELL_ORDERS else None
        return cells.get((side, t)) if side is not None else None

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        pos = event.position().toPoint()
        col, t = self.column_at(pos.x()), self.ticks_at(pos.y())
        self._press = (col, t) if col is not None and t is not None else None
        self._drag = None
        if self._press is not None:
            cell = self._cell_at(self.own, col, t)
            if cell is not None:
                self._drag = (Side.BUY if col == BUY_ORDERS else Side.SELL, t, list(cell.coids))
                self._drag_to = t
        event.accept()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._drag is not None:
            t = self.ticks_at(event.position().toPoint().y())
            if t is not None and t != self._drag_to:
                self._drag_to = t
                self.update()
        event.accept()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton or self._press is None:
            return super().mouseReleaseEvent(event)
        pos = event.position().toPoint()
        col, t = self.column_at(pos.x()), self.ticks_at(pos.y())
        press, drag = self._press, self._drag
        self._press = self._drag = self._drag_to = None
        self.update()
        event.accept()
        if drag is not None:
            _side, start, coids = drag
            if t is None or t == start:
                self.cancelRequested.emit(coids)  # a click on one's own order
            else:
                self.moveRequested.emit(coids, self.price_of(t))
            return
        if (col, t) != press or t is None:
            return  # pressed in one cell, let go in another: not a click
        theirs = self._cell_at(self.others, col, t)
        if theirs is not None:  # a click on a strategy's order: not a new order on top of it
            self.othersClicked.emit(theirs)
            return
        side = self._side_of(col)
        if side is not None:
            self.cursor = t
            self.placeRequested.emit(side, self.price_of(t))
        elif col == PRICE:
            self.cursor = t
            self.update()

    def wheelEvent(self, event) -> None:  # noqa: N802
        notches = event.angleDelta().y() / 120.0
        if notches:
            self.scroll(int(round(notches * WHEEL_TICKS)) or (1 if notches > 0 else -1))
        event.accept()

    # ------------------------------------------------------------------ keys
    def keyPressEvent(self, event) -> None:  # noqa: N802
        key, mods = event.key(), event.modifiers()
        K = Qt.Key
        if mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier):
            return super().keyPressEvent(event)  # the window's shortcuts
        step = 10 if mods & Qt.KeyboardModifier.ShiftModifier else 1
        if key in (K.Key_Up, K.Key_Down):
            self.move_cursor(step if key == K.Key_Up else -step)
        elif key in (K.Key_PageUp, K.Key_PageDown):
            self.scroll(self.rows() - 1 if key == K.Key_PageUp else 1 - self.rows())
        elif key in (K.Key_B, K.Key_S):
            t = self._cursor_or_reference()
            if t is not None:
                self.placeRequested.emit(Side.BUY if key == K.Key_B else Side.SELL, self.price_of(t))
        elif key == K.Key_Delete:
            t = self._cursor_or_reference()
            coids = [c for side in Side for c in (self.own.get((side, t)) or Cell()).coids] if t is not None else []
            if coids:
                self.cancelRequested.emit(coids)
        elif key == K.Key_C:
            self.centre_now()
        elif key in (K.Key_M, K.Key_Return, K.Key_Enter):
            self._pick_or_put(key == K.Key_M)
        elif key == K.Key_Escape and self.picked is not None:
            self.picked = None
            self.update()
        else:
            return super().keyPressEvent(event)
        event.accept()

    def _cursor_or_reference(self) -> int | None:
        if self.cursor is None:
            self.cursor = self.reference()
            self.update()
        return self.cursor

    def move_cursor(self, ticks: int) -> None:
        t = self._cursor_or_reference()
        if t is None:
            return
        self.cursor = t + ticks
        top, n = self.top(), self.rows()
        if not top - n < self.cursor <= top:  # keep the cursor on screen
            self.set_auto_centre(False)
            self.centre += self.cursor - (top if ticks > 0 else top - n + 1)
        self.update()

    def _pick_or_put(self, m_key: bool) -> None:
        t = self._cursor_or_reference()
        if t is None:
            return
        if self.picked is None:
            if not m_key:
                return  # Enter without anything picked up does nothing
            coids = [c for side in Side for c in (self.own.get((side, t)) or Cell()).coids]
            if coids:
                self.picked = (None, t, coids)
                self.update()
            return
        _, start, coids = self.picked
        self.picked = None
        self.update()
        if t != start:
            self.moveRequested.emit(coids, self.price_of(t))

    # ------------------------------------------------------------------ painting
    def _label(self, t: int) -> str:
        s = self._labels.get(t)
        if s is None:
            if len(self._labels) >= PRICE_CACHE:
                self._labels.clear()
            s = self._labels[t] = f"{t * self.tick:,.{self.decimals}f}"
        return s

    def paintEvent(self, _event) -> None:  # noqa: N802
        t0 = time.perf_counter()
        p = QtGui.QPainter(self)
        pal = self.palette()
        R = QtGui.QPalette.ColorRole
        base, alt, text = pal.color(R.Base), pal.color(R.AlternateBase), pal.color(R.Text)
        muted = pal.color(R.PlaceholderText)
        tones = RecordTableModel.tones  # the theme's (app.theme)
        up = tones.get("up") or QColor("#26c6a6")
        down = tones.get("down") or QColor("#ff5c5c")
        warn = tones.get("warn") or QColor("#f0b429")
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, base)
        edges = self.column_edges()
        rh, hh = self.row_h, self.header_h
        n, top = self.rows(), self.top()
        # header
        p.fillRect(0, 0, w, hh, alt)
        p.setPen(muted)
        for c, title in enumerate(COLUMN_TITLES):
            p.drawText(QtCore.QRect(edges[c], 0, edges[c + 1] - edges[c], hh), Qt.AlignmentFlag.AlignCenter, title)
        bid_bg, ask_bg = QColor(up), QColor(down)
        bid_bg.setAlpha(40)
        ask_bg.setAlpha(40)
        bid_bar, ask_bar = QColor(up), QColor(down)
        bid_bar.setAlpha(90)
        ask_bar.setAlpha(90)
        # the price column's band, the spread's rows between the best bid and ask
        px0, pxw = edges[PRICE], edges[PRICE + 1] - edges[PRICE]
        p.fillRect(px0, hh, pxw, h - hh, alt)
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        centre = Qt.AlignmentFlag.AlignCenter
        bids, asks, own, others = self.bids, self.asks, self.own, self.others
        bw = edges[BID + 1] - edges[BID]
        aw = edges[ASK + 1] - edges[ASK]
        mx = float(self.max_size or 1)
        bold = QtGui.QFont(self.font())
        bold.setBold(True)
        drag_to = self._drag_to if self._drag is not None else None
        for i in range(n):
            t = top - i
            y = hh + i * rh
            b = bids.get(t)
            if b:
                p.fillRect(edges[BID], y, bw, rh, bid_bg)
                bar = int(bw * b / mx)
                p.fillRect(edges[BID + 1] - bar, y + 2, bar, rh - 4, bid_bar)
                p.setPen(text)
                p.drawText(QtCore.QRect(edges[BID], y, bw - 4, rh), right, f"{b:,}")
            a = asks.get(t)
            if a:
                p.fillRect(edges[ASK], y, aw, rh, ask_bg)
                bar = int(aw * a / mx)
                p.fillRect(edges[ASK], y + 2, bar, rh - 4, ask_bar)
                p.setPen(text)
                p.drawText(QtCore.QRect(edges[ASK] + 4, y, aw - 4, rh), left, f"{a:,}")
            if t == self.last:
                p.fillRect(px0, y, pxw, rh, pal.color(R.Highlight))
                p.setPen(pal.color(R.HighlightedText))
                p.setFont(bold)
                p.drawText(QtCore.QRect(px0, y, pxw, rh), centre, self._label(t))
                p.setFont(self.font())
            else:
                p.setPen(up if t == self.best_bid else down if t == self.best_ask else text)
                p.drawText(QtCore.QRect(px0, y, pxw, rh), centre, self._label(t))
            if own or others:
                for side, col, tone in ((Side.BUY, BUY_ORDERS, up), (Side.SELL, SELL_ORDERS, down)):
                    cell = own.get((side, t))
                    theirs = others.get((side, t))
                    if cell is None and theirs is None:
                        continue
                    x0, cw = edges[col], edges[col + 1] - edges[col]
                    r = QtCore.QRect(x0 + 2, y + 1, cw - 4, rh - 2)
                    if cell is None:  # only the strategies': outlined, dotted, muted figures
                        p.setPen(QtGui.QPen(tone, 1, Qt.PenStyle.DotLine))
                        p.drawRect(r.adjusted(0, 0, -1, -1))
                        p.setPen(muted)
                        p.drawText(r, centre, f"{'S ' if theirs.stop else ''}{theirs.qty:,}")
                        continue
                    fill = QColor(warn if cell.pending else tone)
                    fill.setAlpha(110)
                    p.fillRect(r, fill)
                    p.setPen(warn if cell.pending else tone)
                    p.drawRect(r.adjusted(0, 0, -1, -1))
                    p.setPen(text)
                    label = f"{'S ' if cell.stop else ''}{cell.qty:,}"
                    p.drawText(r, centre, label if theirs is None else f"{label} +{theirs.qty:,}")
        # the dragged (or picked) orders' target row, the cursor
        if drag_to is not None and self._drag is not None and drag_to != self._drag[1]:
            r = self.row_rect(drag_to)
            if r is not None:
                col = BUY_ORDERS if self._drag[0] is Side.BUY else SELL_ORDERS
                pen = QtGui.QPen(warn, 2, Qt.PenStyle.DashLine)
                p.setPen(pen)
                p.drawRect(QtCore.QRect(edges[col] + 2, r.top() + 1, edges[col + 1] - edges[col] - 5, rh - 3))
        if self.picked is not None:
            r = self.row_rect(self.picked[1])
            if r is not None:
                p.setPen(QtGui.QPen(warn, 2, Qt.PenStyle.DashLine))
                p.drawRect(r.adjusted(1, 1, -2, -2))
        if self.cursor is not None:
            r = self.row_rect(self.cursor)
            if r is not None:
                p.setPen(QtGui.QPen(pal.color(R.Highlight) if not self.hasFocus() else text, 1, Qt.PenStyle.DotLine))
                p.drawRect(r.adjusted(0, 0, -1, -1))
        # column rules
        p.setPen(alt.darker(130) if base.lightness() > 128 else alt.lighter(160))
        for x in edges[1:-1]:
            p.drawLine(x, hh, x, h)
        p.end()
        self.paints += 1
        self.paint_ms = (time.perf_counter() - t0) * 1000.0


class LadderPanel(QtWidgets.QWidget):
    """The ladder of one symbol with its controls: symbol (following the chart's, or chosen
    here), quantity, Confirm, Auto-centre, Centre; a line for the outcome of its orders.

    Attributes:
        view: the painted :class:`LadderView`.
        symbol: the symbol shown ("" before the first).
        sent: client_order_ids this ladder placed (their outcomes show on its line).

    Signals:
        orderRequested(object): a :class:`~app.orders.Ticket` (a limit order) to confirm and send.
        cancelRequested(list): client_order_ids to cancel.
        replaceRequested(str, object): (client_order_id, ``OrderService.replace`` keywords).
        confirmChanged(bool): the Confirm box was ticked or cleared.
    """

    orderRequested = Signal(object)
    cancelRequested = Signal(list)
    replaceRequested = Signal(str, object)
    confirmChanged = Signal(bool)

    def __init__(self, state: AppState, default_qty: int = 100, confirm: bool = True, parent=None,
                 name: str = "ladder"):
        super().__init__(parent)
        #: the window's name for it ("ladder", "ladder2", ...): its dock's and its watch's
        self.name = name
        self.setObjectName(f"panel_{name}")
        self.state = state
        self.symbol = ""
        self.sent: set[str] = set()
        self._sig: tuple | None = None  # what the view shows of the quote and book
        self._own_rows: dict[str, OrderRow] = {}
        self.repaints_asked = 0

        self.symbol_box = QtWidgets.QComboBox(self)
        self.symbol_box.setObjectName("ladderSymbol")
        self.symbol_box.setEditable(True)
        self.symbol_box.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.symbol_box.setMinimumContentsLength(6)
        self.symbol_box.setToolTip("The ladder's symbol: follows the chart's while Follow is ticked; "
                                   "choosing one here stops following")
        self.follow = QtWidgets.QCheckBox("Follow", self)
        self.follow.setObjectName("ladderFollow")
        self.follow.setChecked(True)
        self.follow.setToolTip("Show the symbol selected in the market watch / chart")
        self.qty = QtWidgets.QSpinBox(self)
        self.qty.setObjectName("ladderQty")
        self.qty.setRange(1, 10_000_000)
        self.qty.setSingleStep(100)
        self.qty.setValue(max(1, int(default_qty)))
        self.qty.setToolTip("Quantity of each order the ladder places")
        self.confirm = QtWidgets.QCheckBox("Confirm", self)
        self.confirm.setObjectName("ladderConfirm")
        self.confirm.setChecked(confirm)
        self.confirm.setToolTip("Ask before each ladder order (only while Settings > Ask before sending a manual "
                                "order is on too); cancels and moves never ask")
        self.auto = QtWidgets.QCheckBox("Auto-centre", self)
        self.auto.setObjectName("ladderAuto")
        self.auto.setChecked(True)
        self.auto.setToolTip("Centre on the last trade when it leaves the middle of the ladder")
        self.centre_button = QtWidgets.QToolButton(self)
        self.centre_button.setObjectName("ladderCentre")
        self.centre_button.setText("Centre")
        self.centre_button.setToolTip("Centre on the last trade now (C)")
        self.view = LadderView(self)
        self.message = LiveLabel(40, muted=True, parent=self)
        self.message.setObjectName("ladderMessage")

        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        row = QtWidgets.QHBoxLayout()
        row.setSpacing(4)
        row.addWidget(self.symbol_box, 1)
        row.addWidget(self.follow)
        row.addWidget(self.qty)
        lay.addLayout(row)
        row = QtWidgets.QHBoxLayout()
        row.setSpacing(4)
        row.addWidget(self.confirm)
        row.addWidget(self.auto)
        row.addStretch(1)
        row.addWidget(self.centre_button)
        lay.addLayout(row)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.message)

        self.symbol_box.activated.connect(self._symbol_chosen)
        self.symbol_box.lineEdit().editingFinished.connect(self._symbol_typed)
        self.follow.toggled.connect(self._follow_toggled)
        self.auto.toggled.connect(self.view.set_auto_centre)
        self.view.centreChanged.connect(self.auto.setChecked)
        self.centre_button.clicked.connect(self.view.centre_now)
        self.confirm.toggled.connect(self.confirmChanged)
        self.view.placeRequested.connect(self._place)
        self.view.cancelRequested.connect(self._cancel)
        self.view.moveRequested.connect(self._move)
        self.view.othersClicked.connect(self._others_clicked)

    # ------------------------------------------------------------------ the symbol
    def set_symbol(self, symbol: str) -> None:
        symbol = (symbol or "").strip().upper()
        if symbol == self.symbol:
            return
        self.symbol = symbol
        if self.symbol_box.currentText() != symbol:
            self.symbol_box.setEditText(symbol)
        self.state.depth.want(self.name, [symbol] if symbol else [])
        self.state.market.set_watched(self.name, [symbol] if symbol else [])  # held whatever the universe cap
        v = self.view
        v.cursor = None
        v.picked = None
        v.last = v.best_bid = v.best_ask = None
        v.bids, v.asks, v.own = {}, {}, {}
        v.centre = 0
        self._sig = None
        self._rebuild_own()
        self.refresh()
        v.set_auto_centre(True)
        v.update()

    def release(self) -> None:
        """Closed for good (an extra ladder): its symbol is no longer watched nor its book wanted."""
        self.state.depth.want(self.name, [])
        self.state.market.set_watched(self.name, [])

    def follow_symbol(self, symbol: str) -> None:
        """The chart's symbol (called at every flush): shown while Follow is ticked."""
        if self.follow.isChecked() and symbol and symbol != self.symbol:
            self.set_symbol(symbol)

    def _symbol_chosen(self, _index: int) -> None:
        self.follow.setChecked(False)
        self.set_symbol(self.symbol_box.currentText())

    def _symbol_typed(self) -> None:
        text = self.symbol_box.currentText().strip().upper()
        if text and text != self.symbol:
            self.follow.setChecked(False)
            self.set_symbol(text)

    def _follow_toggled(self, on: bool) -> None:
        if on:
            self._sig = None  # the next flush takes the chart's symbol

    def _update_symbols(self) -> None:
        """The choice of symbols: the held ones (only when that set changed)."""
        quotes = self.state.market.quotes
        if self.symbol_box.count() != len(quotes):
            current = self.symbol_box.currentText()
            self.symbol_box.blockSignals(True)
            self.symbol_box.clear()
            self.symbol_box.addItems(sorted(quotes))
            self.symbol_box.setEditText(current)
            self.symbol_box.blockSignals(False)

    # ------------------------------------------------------------------ the flush
    def apply(self, ch: Changes, follow: str = "") -> bool:
        """What changed (the window's flush, ~30 Hz); ``follow``: the chart's symbol.  The view
        repaints only when its symbol's quote, book or own orders changed; returns whether."""
        if ch.evicted_symbols:
            self.state.depth.forget(ch.evicted_symbols)
        if ch.symbols:
            self._update_symbols()
        self.follow_symbol(follow)
        if not self.symbol:
            return False
        changed = False
        sym = self.symbol
        if any(o.symbol == sym for o in ch.new_orders) or any(o.symbol == sym for o in ch.changed_orders) \
                or any(c in self._own_rows for c in ch.evicted_orders):
            changed = self._rebuild_own()
        return self.refresh(changed)

    def refresh(self, changed: bool = False) -> bool:
        """Take the symbol's quote and book into the view if they moved; repaint if anything did."""
        v = self.view
        q = self.state.market.quotes.get(self.symbol)
        book = self.state.depth.get(self.symbol)
        sig = (q.seq if q else None, q.epoch if q else None, q.last if q else None,
               book.version if book else None)
        if sig != self._sig:
            self._sig = sig
            self._take_book(q, book)
            changed = True
        if changed:
            v.recentre_if_needed()
            v.update()
            self.repaints_asked += 1
        return changed

    def _take_book(self, q, book) -> None:
        """Sizes per price from the book; the quote's top of book wins where it is newer (the
        book comes ~10 times a second, the quote with every tick)."""
        v = self.view
        tick = v.tick
        bids = {to_ticks(p, tick): s for p, s in book.bids} if book else {}
        asks = {to_ticks(p, tick): s for p, s in book.asks} if book else {}
        if q is not None and q.bid and q.ask and (book is None or q.ts > book.ts):
            bb, ba = to_ticks(q.bid, tick), to_ticks(q.ask, tick)
            bids = {t: s for t, s in bids.items() if t < bb}
            asks = {t: s for t, s in asks.items() if t > ba}
            if q.bid_size:
                bids[bb] = q.bid_size
            if q.ask_size:
                asks[ba] = q.ask_size
        v.bids, v.asks = bids, asks
        v.best_bid = max(bids) if bids else (to_ticks(q.bid, tick) if q is not None and q.bid else None)
        v.best_ask = min(asks) if asks else (to_ticks(q.ask, tick) if q is not None and q.ask else None)
        v.last = to_ticks(q.last, tick) if q is not None and q.last else None
        v.max_size = max(max(bids.values(), default=1), max(asks.values(), default=1))

    def _rebuild_own(self) -> bool:
        """The symbol's working orders, summed per side and price: the trader's (manual) ones,
        which a click cancels and a drag moves, and the strategies' (shown, theirs to move)."""
        v = self.view
        own: dict[tuple[Side, int], Cell] = {}
        others: dict[tuple[Side, int], Cell] = {}
        rows: dict[str, OrderRow] = {}
        for o in self.state.orders.live(self.symbol) if self.symbol else ():
            price = order_price(o)
            if price is None or not o.remaining:
                continue
            manual = o.source == "manual"
            if manual:
                rows[o.client_order_id] = o
            cell = (own if manual else others).setdefault((o.side, to_ticks(price, v.tick)), Cell())
            cell.qty += o.remaining
            cell.coids.append(o.client_order_id)
            cell.stop = cell.stop or o.order_type is not OrderType.LIMIT
            cell.pending = cell.pending or o.status in (OrderStatus.PENDING_NEW, OrderStatus.UNKNOWN)
            if not manual and o.source not in cell.sources:
                cell.sources.append(o.source)
        self._own_rows = rows
        if own == v.own and others == v.others:
            return False
        v.own, v.others = own, others
        return True

    def _others_clicked(self, cell: Cell) -> None:
        who = ", ".join(s.removeprefix("strategy:").removeprefix("strategy.") for s in cell.sources) or "a strategy"
        self.show_message(f"{cell.qty:,} of {who}'s: the strategies' orders are theirs to move "
                          "(cancel them in Working orders)", "warn")

    # ------------------------------------------------------------------ actions
    def _place(self, side: Side, price: float) -> None:
        if not self.symbol:
            self.show_message("choose a symbol first", "warn")
            return
        self.orderRequested.emit(Ticket(self.symbol, side, int(self.qty.value()), OrderType.LIMIT, price))

    def _cancel(self, coids: list) -> None:
        self.show_message(f"cancel {len(coids)} order{'s' * (len(coids) != 1)} at the exchange", None)
        self.cancelRequested.emit(list(coids))

    def _move(self, coids: list, price: float) -> None:
        moved = 0
        for c in coids:
            o = self._own_rows.get(c)
            terms = moved_terms(o, price) if o is not None else None
            if terms is None:
                kind = o.order_type.value if o is not None else "unknown"
                self.show_message(f"a {kind} order cannot be dragged: modify it in the working orders (F2)", "warn")
                continue
            self.replaceRequested.emit(c, terms)
            moved += 1
        if moved:
            self.show_message(f"move {moved} order{'s' * (moved != 1)} to {price:.{self.view.decimals}f}", None)

    def sent_order(self, coid: str, ticket: Ticket) -> None:
        self.sent.add(coid)
        if len(self.sent) > 10_000:
            self.sent = {coid}
        self.show_message(f"{ticket.describe()} sent", None)

    def on_outcome(self, o: Outcome) -> None:
        """An order outcome (the order service's listener): shown if it is about the ladder's
        symbol's orders."""
        row = self.state.orders.get(o.client_order_id) if o.client_order_id else None
        if o.client_order_id in self.sent or (row is not None and row.symbol == self.symbol and row.source == "manual"):
            self.show_message(o.text, None if o.ok else "bad")

    def show_message(self, text: str, tone: str | None) -> None:
        self.message.set_segments([(text, RecordTableModel.tones.get(tone) if tone else None)])
        self.message.setToolTip(text)
