"""The order ticket: symbol, quantity, order type, time in force, limit and stop prices, a
trailing stop's trail, a bracket's take-profit and stop-loss (each with its own time in force),
Buy and Sell.

The ticket only builds a :class:`~app.orders.Ticket` and emits it; the window confirms
(if the trader wants that) and hands it to the order service.  The same validation and risk
check the send uses (without recording anything) runs when Buy or Sell is pressed and says
what is wrong in the ticket's words, and the outcome of every send -- ack, fill, reject with
its reason, no reply -- replaces it the moment it is known.

Helpers a trader expects of a ticket: quantity presets (Settings), the price one tick up or
down (buttons, Ctrl+Up / Ctrl+Down), Bid / Mid / Ask buttons that put the market's price in
the limit (or stop) field, bracket offsets in ticks or in price from the entry.

The fields sit in a scroll area above the Buy and Sell row, so a squeezed dock (the window at
its minimum size) scrolls the fields and never cuts Buy, Sell or the outcome line off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from workers.executor.risk import Decision
from workers.protocol import OrderType, Side, TimeInForce
from app.models.columns import price as fmt_price
from app.orders import TICK_SIZE, VALID_TIFS, Outcome, Ticket, entry_price, snap
from app.panels.live_label import LiveLabel
from app.qt import Qt, QtCore, QtWidgets, Signal
from app.state import AppState
from app.theme import repolish

TONE_FOR = {"ok": "ok", "bad": "bad", "warn": "warn"}

TYPE_CHOICES = (("Market", OrderType.MARKET), ("Limit", OrderType.LIMIT), ("Stop", OrderType.STOP),
                ("Stop limit", OrderType.STOP_LIMIT), ("Trailing stop", OrderType.TRAILING_STOP))
TIF_CHOICES = (("DAY", TimeInForce.DAY), ("GTC", TimeInForce.GTC), ("IOC", TimeInForce.IOC), ("FOK", TimeInForce.FOK))
#: a bracket leg's: it rests until it fills (the protocol's default GTC first)
LEG_TIF_CHOICES = (("GTC", TimeInForce.GTC), ("DAY", TimeInForce.DAY))
#: the bracket's offsets are counted in ticks of TICK_SIZE, or given as a price distance
BRACKET_TICKS, BRACKET_PRICE = "ticks", "price"
TRAIL_AMOUNT, TRAIL_PCT = "amount", "pct"
_STOP_TYPES = (OrderType.STOP, OrderType.STOP_LIMIT)


def _price_spin(parent, name: str, tip: str) -> QtWidgets.QDoubleSpinBox:
    s = QtWidgets.QDoubleSpinBox(parent)
    s.setObjectName(name)
    s.setRange(0.0, 1e9 - 1)
    s.setDecimals(2)
    s.setSingleStep(TICK_SIZE)
    s.setMinimumWidth(84)
    s.setToolTip(tip)
    return s


def _small_button(parent, text: str, name: str, tip: str) -> QtWidgets.QToolButton:
    b = QtWidgets.QToolButton(parent)
    b.setText(text)
    b.setObjectName(name)
    b.setToolTip(tip)
    b.setFocusPolicy(Qt.FocusPolicy.TabFocus)
    b.setAutoRaise(False)
    return b


def _row(parent, *widgets, stretch: bool = True) -> QtWidgets.QWidget:
    w = QtWidgets.QWidget(parent)
    lay = QtWidgets.QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(3)
    for x in widgets:
        if x is None:
            lay.addSpacing(8)
        else:
            lay.addWidget(x)
    if stretch:
        lay.addStretch(1)
    return w


class TicketPanel(QtWidgets.QWidget):
    """Signals:
        submitted(object): a Ticket the trader asked to send (Buy/Sell button or hotkey).
    """

    submitted = Signal(object)

    def __init__(self, state: AppState, default_qty: int = 100, parent=None, presets: Sequence[int] = (100, 500, 1000)):
        super().__init__(parent)
        self.setObjectName("ticket")
        self.state = state
        self.validator: Callable[[Ticket], Decision] | None = None
        self._known: set[str] = set()

        self.form = QtWidgets.QWidget(self)
        self.form.setObjectName("ticketForm")
        f = self.form
        self.symbol = QtWidgets.QComboBox(f)
        self.symbol.setObjectName("ticketSymbol")
        self.symbol.setEditable(True)
        self.symbol.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.symbol.setMinimumWidth(90)
        self.symbol.lineEdit().setPlaceholderText("Symbol")
        self.qty = QtWidgets.QSpinBox(f)
        self.qty.setObjectName("ticketQty")
        self.qty.setRange(1, 10_000_000)
        self.qty.setSingleStep(100)
        self.qty.setValue(default_qty)
        self.qty.setAccelerated(True)
        self.qty.setMinimumWidth(80)
        self.order_type = QtWidgets.QComboBox(f)
        self.order_type.setObjectName("ticketType")
        # item data are plain strings: Qt turns a StrEnum into a QString anyway
        for text, ot in TYPE_CHOICES:
            self.order_type.addItem(text, ot.value)
        self.tif = QtWidgets.QComboBox(f)
        self.tif.setObjectName("ticketTif")
        self.tif.setToolTip("Time in force: DAY (until the session's end), GTC (until cancelled), IOC (fill what "
                            "can be filled at once, cancel the rest), FOK (all at once or nothing); IOC and FOK "
                            "are for market and limit orders")
        for text, tif in TIF_CHOICES:
            self.tif.addItem(text, tif.value)
        self.limit = _price_spin(f, "ticketLimit", "Limit price (Ctrl+Up / Ctrl+Down: one tick)")
        self.limit.setEnabled(False)
        self.stop = _price_spin(f, "ticketStop", "Stop price: a buy stop triggers when the last trade is at or above "
                                "it, a sell stop at or below (Ctrl+Up / Ctrl+Down: one tick)")
        self.stop.setEnabled(False)

        # quantity presets, price helpers
        self.presets_box = _row(f)
        self.preset_buttons: list[QtWidgets.QToolButton] = []
        self.set_presets(presets)
        self.bid_button = _small_button(f, "Bid", "ticketBid", "The bid into the limit price (the stop price for a stop)")
        self.mid_button = _small_button(f, "Mid", "ticketMid", "The mid price, rounded to the tick, into the limit "
                                        "price (the stop price for a stop)")
        self.ask_button = _small_button(f, "Ask", "ticketAsk", "The ask into the limit price (the stop price for a stop)")
        self.tick_down = _small_button(f, "−", "ticketTickDown", "Price one tick down (Ctrl+Down)")
        self.tick_up = _small_button(f, "+", "ticketTickUp", "Price one tick up (Ctrl+Up)")
        self.tools_box = _row(f, self.bid_button, self.mid_button, self.ask_button, None, self.tick_down, self.tick_up)

        # a trailing stop's trail
        self.trail = _price_spin(f, "ticketTrail", "Trailing stop: the stop follows the market at this distance")
        self.trail.setEnabled(False)
        self.trail_unit = QtWidgets.QComboBox(f)
        self.trail_unit.setObjectName("ticketTrailUnit")
        self.trail_unit.addItem("price", TRAIL_AMOUNT)
        self.trail_unit.addItem("%", TRAIL_PCT)
        self.trail_unit.setToolTip("The trail as a price distance, or in percent of the best price since the order was placed")
        self.trail_unit.setEnabled(False)
        self.trail.setMinimumWidth(60)
        self.trail_box = _row(f, self.trail, self.trail_unit, stretch=False)
        # a trailing stop has a trail where the others have a stop price: one column for both
        self.stop_stack = QtWidgets.QStackedWidget(f)
        self.stop_stack.addWidget(self.stop)
        self.stop_stack.addWidget(self.trail_box)

        # a bracket: offsets from the entry, 0 = no such leg
        self.take_profit = self._offset_spin("ticketTakeProfit", "Take profit: a limit on the other side, this far "
                                             "beyond the entry (0: none)")
        self.stop_loss = self._offset_spin("ticketStopLoss", "Stop loss: a stop on the other side, this far behind "
                                           "the entry (0: none)")
        self.bracket_unit = QtWidgets.QComboBox(f)
        self.bracket_unit.setObjectName("ticketBracketUnit")
        self.bracket_unit.addItem("ticks", BRACKET_TICKS)
        self.bracket_unit.addItem("price", BRACKET_PRICE)
        self.bracket_unit.setToolTip(f"Bracket offsets in ticks ({TICK_SIZE:g}) or as a price distance from the entry")
        # each leg's own time in force; a leg rests until it fills, so DAY or GTC only
        # (P.check_order_terms refuses IOC / FOK for them); shown only while its leg is on
        self.take_profit_tif = self._leg_tif("ticketTakeProfitTif", "take-profit")
        self.stop_loss_tif = self._leg_tif("ticketStopLossTif", "stop-loss")
        tp_label = QtWidgets.QLabel("TP", f)
        sl_label = QtWidgets.QLabel("SL", f)
        for lbl, w in ((tp_label, self.take_profit), (sl_label, self.stop_loss)):
            lbl.setObjectName("muted")
            lbl.setBuddy(w)
        # one leg a line in the compact arrangement (both with their TIF do not fit its width)
        self.bracket_box = _row(f, _row(f, tp_label, self.take_profit, self.take_profit_tif),
                                _row(f, sl_label, self.stop_loss, self.stop_loss_tif, self.bracket_unit))
        self.bracket_box.layout().setSpacing(8)

        self.buy = QtWidgets.QPushButton("Buy  Ctrl+B", self)
        self.buy.setObjectName("buyButton")
        self.buy.setToolTip("Send a buy order (Ctrl+B)")
        self.sell = QtWidgets.QPushButton("Sell  Ctrl+S", self)
        self.sell.setObjectName("sellButton")
        self.sell.setToolTip("Send a sell order (Ctrl+S)")
        for b in (self.buy, self.sell):
            b.setMinimumHeight(28)
            b.setAutoDefault(False)
        self.quote = LiveLabel(60, muted=True, parent=self)  # changes with every tick
        self.quote.setObjectName("ticketQuote")
        self.outcome = QtWidgets.QLabel("Ready.", self)
        self.outcome.setObjectName("outcome")
        self.outcome.setWordWrap(True)
        self.outcome.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.outcome.setMinimumHeight(24)

        self.grid = grid = QtWidgets.QGridLayout(self.form)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(3)
        self._labels = []
        for text, w in (("Symbol", self.symbol), ("Qty", self.qty), ("Type", self.order_type), ("TIF", self.tif),
                        ("Limit", self.limit), ("Stop", self.stop_stack)):
            lbl = QtWidgets.QLabel(text, f)
            lbl.setObjectName("muted")
            lbl.setBuddy(w)
            self._labels.append((lbl, w))
        self.stop_label = self._labels[-1][0]
        # the wide arrangement's one row of helpers (presets, prices, bracket)
        self.helpers = _row(f)
        self.helpers.layout().setSpacing(12)
        self.scroll = QtWidgets.QScrollArea(self)
        self.scroll.setObjectName("ticketScroll")
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(self.form)
        self.scroll.viewport().setAutoFillBackground(False)
        self.form.setAutoFillBackground(False)

        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(6, 4, 6, 4)
        outer.setSpacing(4)
        outer.addWidget(self.scroll, 1)
        buttons = QtWidgets.QHBoxLayout()
        buttons.setSpacing(6)
        buttons.addWidget(self.buy)
        buttons.addWidget(self.sell)
        outer.addLayout(buttons)
        outer.addWidget(self.quote)
        outer.addWidget(self.outcome)

        self.compact = self.bracket_row = None
        self._placed = False  # laid out for a real width (the first resize)
        # an explicit minimum (the compact arrangement's width; one row of fields high): a
        # narrow or short dock reflows or scrolls the fields instead of cutting Sell off or
        # painting over its neighbours; measured with the legs' TIFs shown
        self._legs_changed(shown=True)
        self._arrange(compact=True)
        bar = self.scroll.verticalScrollBar().sizeHint().width()
        self.scroll.setMinimumWidth(grid.minimumSize().width() + bar)
        self.scroll.setMinimumHeight(self.symbol.sizeHint().height() + 22)
        self._arrange(compact=False)
        self._wide_form_h = grid.sizeHint().height()
        # the bracket's width with both TIFs, less a TIF's for each hidden one: Qt's cached
        # minimum of the rows lags a combo shown or hidden until the next layout pass
        self._bracket_w = self.bracket_box.minimumSizeHint().width()
        self._leg_tif_w = {c: c.minimumSizeHint().width() + c.parentWidget().layout().spacing()
                           for c in (self.take_profit_tif, self.stop_loss_tif)}
        self._legs_changed()
        self._limit_symbol = ""  # the symbol the limit and stop prices were taken for
        self._kill_notice = False  # the outcome line shows the kill switch's state
        self._bracket_unit = BRACKET_TICKS
        self._connect_signals()
        self._type_changed()

    def _offset_spin(self, name: str, tip: str) -> QtWidgets.QDoubleSpinBox:
        s = QtWidgets.QDoubleSpinBox(self.form)
        s.setObjectName(name)
        s.setRange(0, 1_000_000)
        s.setDecimals(0)
        s.setSingleStep(1)
        s.setSpecialValueText("off")
        s.setMinimumWidth(64)
        s.setToolTip(tip)
        return s

    def _leg_tif(self, name: str, leg: str) -> QtWidgets.QComboBox:
        c = QtWidgets.QComboBox(self.form)
        c.setObjectName(name)
        for text, tif in LEG_TIF_CHOICES:
            c.addItem(text, tif.value)
        c.setCurrentIndex(c.findData(TimeInForce.GTC.value))
        c.setToolTip(f"The {leg}'s time in force: GTC (until cancelled) or DAY (expires at the session's end)")
        c.setVisible(False)
        return c

    def _legs_changed(self, *_, shown: bool = False) -> None:
        """A leg's TIF is there only while the leg is (``shown``: both, to measure)."""
        self.take_profit_tif.setVisible(shown or self.take_profit.value() > 0)
        self.stop_loss_tif.setVisible(shown or self.stop_loss.value() > 0)
        if not shown and self._placed:
            self._rearrange()

    def set_presets(self, presets: Sequence[int]) -> None:
        """The quantity buttons (Settings > General > Quantity presets)."""
        lay = self.presets_box.layout()
        for b in self.preset_buttons:
            lay.removeWidget(b)
            b.deleteLater()
        self.preset_buttons = []
        for i, n in enumerate(presets):
            b = _small_button(self.presets_box, f"{n:,}" if n < 10_000 else f"{n // 1000:,}k", f"qtyPreset{n}",
                              f"Quantity {n:,}")
            b.clicked.connect(lambda _=False, n=n: self.qty.setValue(n))
            lay.insertWidget(i, b)
            self.preset_buttons.append(b)

    #: narrower than this, the fields go three to a row instead of six
    COMPACT_BELOW = 560

    def _arrange(self, compact: bool, bracket_row: bool = False) -> None:
        """Six fields to a row when wide, three when narrow; the helpers' rows under them.
        ``bracket_row`` (wide only): the bracket on a row of its own, under the presets and
        prices (the legs' TIFs make one row of helpers too wide for a middling dock)."""
        bracket_row = bracket_row and not compact
        if (compact, bracket_row) == (self.compact, self.bracket_row):
            return
        self.compact, self.bracket_row = compact, bracket_row
        # a box moved between the helpers' row and the grid changes parent, which hides it
        # until a queued show and takes the focus from a field in it (typing a take-profit
        # widens the bracket and moves it): shown again at once, the focus put back
        focus = QtWidgets.QApplication.focusWidget()
        grid = self.grid
        self.bracket_box.layout().setDirection(QtWidgets.QBoxLayout.Direction.TopToBottom if compact
                                               else QtWidgets.QBoxLayout.Direction.LeftToRight)
        boxes = (self.presets_box, self.tools_box, self.bracket_box)
        for lbl, w in self._labels:
            grid.removeWidget(lbl)
            grid.removeWidget(w)
        for b in boxes:
            grid.removeWidget(b)
            self.helpers.layout().removeWidget(b)
        grid.removeWidget(self.helpers)
        cols = 3 if compact else 6
        for i, (lbl, w) in enumerate(self._labels):
            r, c = divmod(i, cols)
            grid.addWidget(lbl, 2 * r, c)
            grid.addWidget(w, 2 * r + 1, c)
        first = 2 * ((len(self._labels) + cols - 1) // cols)
        for c in range(6):
            grid.setColumnStretch(c, 0)
        grid.setColumnStretch(0, 2)
        if compact:
            for i, b in enumerate(boxes):
                grid.addWidget(b, first + i, 0, 1, cols)
            self.helpers.hide()
            rows = len(boxes)
        else:
            in_row = boxes[:2] if bracket_row else boxes
            for i, b in enumerate(in_row):
                self.helpers.layout().insertWidget(i, b)
            grid.addWidget(self.helpers, first, 0, 1, cols)
            if bracket_row:
                grid.addWidget(self.bracket_box, first + 1, 0, 1, cols)
            self.helpers.show()
            rows = 2 if bracket_row else 1
        for r in range(12):
            grid.setRowStretch(r, 0)
        grid.setRowStretch(first + rows, 1)
        for b in boxes:
            b.show()
        if focus is not None and self.form.isAncestorOf(focus) and focus.isVisible() and not focus.hasFocus():
            focus.setFocus(Qt.FocusReason.OtherFocusReason)

    def _rearrange(self) -> None:
        """The arrangement for the ticket's width and the helpers shown now."""
        w = self.width()
        if w < self.COMPACT_BELOW:
            self._arrange(True)
            return
        m = self.layout().contentsMargins()
        bracket = self._bracket_w - sum(v for c, v in self._leg_tif_w.items() if c.isHidden())
        one_row = (self.presets_box.minimumSizeHint().width() + self.tools_box.minimumSizeHint().width() + bracket
                   + 2 * self.helpers.layout().spacing() + self.scroll.verticalScrollBar().sizeHint().width()
                   + m.left() + m.right())
        self._arrange(False, bracket_row=w < one_row)

    def sizeHint(self):  # noqa: N802
        """Tall enough for every field (the default layout sizes the dock by it): the scroll
        area's own hint is a bounded guess, not its content's height."""
        h = super().sizeHint()
        # the wide arrangement's: the default layout gives the ticket a wide dock, and the
        # hint is asked before the dock has its width (while the ticket is still compact); a
        # few pixels spare for the theme's padding, applied after the default layout is made
        form_h = self._wide_form_h if self.compact else self.form.sizeHint().height()
        return QtCore.QSize(h.width(), h.height() - self.scroll.sizeHint().height() + form_h + 8)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._placed = True
        self._rearrange()

    def _connect_signals(self) -> None:
        self.buy.clicked.connect(lambda: self.send(Side.BUY))
        self.sell.clicked.connect(lambda: self.send(Side.SELL))
        self.order_type.currentIndexChanged.connect(self._type_changed)
        self.symbol.currentTextChanged.connect(self._symbol_changed)
        self.qty.valueChanged.connect(self._inputs_changed)
        self.limit.valueChanged.connect(self._inputs_changed)
        self.stop.valueChanged.connect(self._inputs_changed)
        self.bid_button.clicked.connect(lambda: self.price_from("bid"))
        self.mid_button.clicked.connect(lambda: self.price_from("mid"))
        self.ask_button.clicked.connect(lambda: self.price_from("ask"))
        self.tick_up.clicked.connect(lambda: self.tick(1))
        self.tick_down.clicked.connect(lambda: self.tick(-1))
        self.bracket_unit.currentIndexChanged.connect(self._bracket_unit_changed)
        self.take_profit.valueChanged.connect(self._legs_changed)
        self.stop_loss.valueChanged.connect(self._legs_changed)

    # ------------------------------------------------------------------ inputs
    def current_type(self) -> OrderType:
        return OrderType(self.order_type.currentData())

    def current_tif(self) -> TimeInForce:
        return TimeInForce(self.tif.currentData())

    def _quote(self):
        return self.state.market.quotes.get(self.symbol.currentText().strip().upper())

    def ticket(self, side: Side) -> Ticket:
        ot = self.current_type()
        trailing = ot is OrderType.TRAILING_STOP
        trail = float(self.trail.value()) if trailing and self.trail.value() > 0 else None
        pct = self.trail_unit.currentData() == TRAIL_PCT
        t = Ticket(symbol=self.symbol.currentText().strip().upper(), side=side, qty=int(self.qty.value()),
                   order_type=ot, limit_price=float(self.limit.value()) if ot.has_limit else None,
                   tif=self.current_tif(), stop_price=float(self.stop.value()) if ot in _STOP_TYPES else None,
                   trail_amount=trail if not pct else None, trail_pct=trail if pct else None)
        tp_off, sl_off = self._offset(self.take_profit), self._offset(self.stop_loss)
        if tp_off or sl_off:
            q = self._quote()
            entry = entry_price(t, q) if q is not None and q.last else None
            if entry:
                sign = 1 if side is Side.BUY else -1
                t = dataclasses.replace(t, take_profit_price=snap(entry + sign * tp_off) if tp_off else None,
                                        stop_loss_price=snap(entry - sign * sl_off) if sl_off else None,
                                        take_profit_tif=self._leg_tif_of(self.take_profit_tif, tp_off),
                                        stop_loss_tif=self._leg_tif_of(self.stop_loss_tif, sl_off))
        return t

    @staticmethod
    def _leg_tif_of(combo: QtWidgets.QComboBox, offset: float) -> TimeInForce:
        # a leg that is off sends the protocol's default, as before there was a choice
        return TimeInForce(combo.currentData()) if offset else TimeInForce.GTC

    def _offset(self, spin: QtWidgets.QDoubleSpinBox) -> float:
        """A bracket offset as a price distance (0: no leg)."""
        v = float(spin.value())
        return v * TICK_SIZE if self._bracket_unit == BRACKET_TICKS else v

    def _bracket_unit_changed(self) -> None:
        """The offsets keep their distance when the unit changes (10 ticks <-> 0.10)."""
        unit = self.bracket_unit.currentData()
        if unit == self._bracket_unit:
            return
        to_price = unit == BRACKET_PRICE
        for s in (self.take_profit, self.stop_loss):
            v = s.value()
            if to_price:
                s.setDecimals(2)
                s.setSingleStep(TICK_SIZE)
                s.setValue(round(v * TICK_SIZE, 2))
            else:
                s.setValue(round(v / TICK_SIZE))
                s.setDecimals(0)
                s.setSingleStep(1)
        self._bracket_unit = unit

    def set_symbol(self, symbol: str, prefill_limit: bool = True) -> None:
        """Fill the ticket from the market watch (double-click)."""
        self.add_symbols([symbol])
        self.symbol.setCurrentText(symbol)
        q = self.state.market.quotes.get(symbol)
        if prefill_limit and q is not None and q.last:
            self.limit.setValue(q.last)
            self.stop.setValue(q.last)
            self._limit_symbol = symbol
        self.refresh_quote()

    def set_order_type(self, ot: OrderType) -> None:
        self.order_type.setCurrentIndex(self.order_type.findData(OrderType(ot).value))

    def set_tif(self, tif: TimeInForce) -> None:
        self.tif.setCurrentIndex(self.tif.findData(TimeInForce(tif).value))

    def add_symbols(self, symbols) -> None:
        new = set(symbols) - self._known
        if new:
            self._known |= new
            text = self.symbol.currentText()
            # _known mirrors the list, so no findText per symbol (slow with hundreds of them)
            self.symbol.addItems(sorted(new))
            self.symbol.setCurrentText(text)

    def forget_symbols(self, symbols) -> None:
        """Symbols the window no longer holds (the universe cap replaced them) leave the list;
        the one in the ticket stays as typed."""
        gone = set(symbols) & self._known
        if gone:
            self._known -= gone
            text = self.symbol.currentText()
            for s in gone:
                i = self.symbol.findText(s)
                if i >= 0:
                    self.symbol.removeItem(i)
            self.symbol.setCurrentText(text)

    def focus_symbol(self) -> None:
        self.symbol.setFocus()
        self.symbol.lineEdit().selectAll()

    def _type_changed(self) -> None:
        ot = self.current_type()
        self.limit.setEnabled(ot.has_limit)
        self.stop.setEnabled(ot in _STOP_TYPES)
        trailing = ot is OrderType.TRAILING_STOP
        self.trail.setEnabled(trailing)
        self.trail_unit.setEnabled(trailing)
        self.stop_stack.setCurrentIndex(1 if trailing else 0)
        self.stop_label.setText("Trail" if trailing else "Stop")
        self.stop_label.setBuddy(self.trail if trailing else self.stop)
        for b in (self.bid_button, self.mid_button, self.ask_button):
            b.setEnabled(not trailing)
        for b in (self.tick_up, self.tick_down):
            b.setEnabled(ot.has_limit or ot in _STOP_TYPES)
        # only the time in force the type may carry can be chosen (IOC/FOK: market and limit)
        valid = VALID_TIFS[ot]
        model = self.tif.model()
        for i in range(self.tif.count()):
            model.item(i).setEnabled(TimeInForce(self.tif.itemData(i)) in valid)
        if self.current_tif() not in valid:
            self.set_tif(TimeInForce.DAY)
        # A price field starts from the market as it is now, not from whatever price the
        # (disabled) field last held.
        self._track_last()
        self._inputs_changed()

    def _track_last(self) -> None:
        """Follow the last price in the price fields the order type does not use (and in an
        empty one), so a field the trader turns to starts at the market."""
        q = self._quote()
        if q is None or not q.last:
            return
        ot = self.current_type()
        for spin, used in ((self.limit, ot.has_limit), (self.stop, ot in _STOP_TYPES)):
            if (not used or not spin.value()) and spin.value() != q.last:
                spin.blockSignals(True)
                spin.setValue(q.last)
                spin.blockSignals(False)

    def price_target(self) -> QtWidgets.QDoubleSpinBox | None:
        """The price field the helpers move: the limit, else the stop (None for market and
        trailing stop orders)."""
        ot = self.current_type()
        if ot.has_limit:
            return self.limit
        if ot in _STOP_TYPES:
            return self.stop
        return None

    def tick(self, n: int) -> None:
        """The limit (or stop) price ``n`` ticks up (down for n < 0); Ctrl+Up / Ctrl+Down."""
        spin = self.price_target()
        if spin is None:
            return
        q = self._quote()
        base = spin.value() or (q.last if q is not None else 0.0)
        spin.setValue(max(TICK_SIZE, snap(base + n * TICK_SIZE)))

    def price_from(self, which: str) -> None:
        """Bid, Ask or Mid (rounded to the tick) into the limit price, or the stop's for a stop
        order; a market ticket becomes a limit ticket at that price."""
        q = self._quote()
        if q is None or not q.last:
            self.show_message("No prices for this symbol.", "warn")
            return
        px = {"bid": q.bid, "ask": q.ask, "mid": snap((q.bid + q.ask) / 2) if q.bid and q.ask else q.last}[which]
        if not px:
            self.show_message(f"No {which} for this symbol now.", "warn")
            return
        if self.current_type() is OrderType.MARKET:
            self.set_order_type(OrderType.LIMIT)
        spin = self.price_target()
        if spin is not None:
            spin.setValue(px)

    def _inputs_changed(self, *_) -> None:
        self.refresh_quote()

    def _symbol_changed(self, text: str) -> None:
        """A price belongs to its symbol: another symbol's price is never kept (it would be
        sent, or refused by the band check with a confusing reason).  The new symbol's last
        price, or nothing while the symbol has none."""
        sym = text.strip().upper()
        if sym != self._limit_symbol:
            q = self.state.market.quotes.get(sym)
            px = q.last if q is not None and q.last else 0.0
            self.limit.setValue(px)
            self.stop.setValue(px)
            self._limit_symbol = sym
        self.refresh_quote()

    def kill_switch_changed(self, on: bool) -> None:
        """The outcome line says what the switch means for the ticket, and a refusal by the
        kill switch never stays up in red once it is released."""
        if on:
            self.show_message("KILL SWITCH ON: only orders that reduce a position are accepted (Flatten).", "bad")
            self._kill_notice = True
        elif self._kill_notice or "kill switch" in self.outcome.text().lower():
            self.show_message("Kill switch released: orders are accepted again.", "ok")
            self._kill_notice = False

    # ------------------------------------------------------------------ sending
    def send(self, side: Side) -> None:
        t = self.ticket(side)
        if self.validator is not None:
            d = self.validator(t)
            if not d:
                self.show_message(f"{t.describe()} not sent: {d.reason}", "bad")
                return
        self.submitted.emit(t)

    def show_outcome(self, o: Outcome) -> None:
        tone = "ok" if o.ok else ("warn" if o.kind in ("unknown", "cancel_unknown", "replace_unknown", "oco_unknown")
                                  else "bad")
        self.show_message(o.text, tone)

    def show_message(self, text: str, tone: str) -> None:
        self._kill_notice = False
        self.outcome.setText(text)
        self.outcome.setProperty("tone", TONE_FOR.get(tone, ""))
        repolish(self.outcome)

    # ------------------------------------------------------------------ flush
    def refresh_quote(self) -> None:
        sym = self.symbol.currentText().strip().upper()
        q = self.state.market.quotes.get(sym)
        if q is None:
            self.quote.setText(f"{sym or 'No symbol'}: no prices" if sym else "")
            return
        self._track_last()
        pos = self.manual_position(sym)
        net = self.state.positions.qty(sym)
        account = f" (account {net:+,})" if net != pos else ""
        working = len(self.state.orders.live(sym))
        self.quote.setText(f"Bid {fmt_price(q.bid)} x {q.bid_size:,}   Ask {fmt_price(q.ask)} x {q.ask_size:,}   "
                           f"Last {fmt_price(q.last)}   Pos {pos:+,}{account}   Working {working}")

    def manual_position(self, symbol: str) -> int:
        """The ticket's own position: what the trader traded by hand, not the strategies'."""
        return self.state.manual_position(symbol)

    def apply(self, symbols: set[str], evicted=()) -> None:
        if evicted:
            self.forget_symbols(evicted)
        if symbols:
            self.add_symbols(symbols)
            if self.symbol.currentText().strip().upper() in symbols:
                self.refresh_quote()
