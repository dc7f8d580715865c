"""The order ticket: symbol, quantity, market/limit, limit price, Buy and Sell.

The ticket only builds a :class:`~app.orders.Ticket` and emits it; the window confirms
(if the trader wants that) and hands it to the order service.  A live check (the same
validation and risk check the send uses, without recording anything) says under the
buttons what would happen, and the outcome of every send -- ack, fill, reject with its
reason, no reply -- replaces it the moment it is known.
"""

from __future__ import annotations

from collections.abc import Callable

from workers.executor.risk import Decision
from workers.protocol import OrderType, Side
from app.models.columns import price as fmt_price
from app.orders import Outcome, Ticket
from app.panels.live_label import LiveLabel
from app.qt import Qt, QtWidgets, Signal
from app.state import AppState
from app.theme import repolish

TONE_FOR = {"ok": "ok", "bad": "bad", "warn": "warn"}


class TicketPanel(QtWidgets.QWidget):
    """Signals:
        submitted(object): a Ticket the trader asked to send (Buy/Sell button or hotkey).
    """

    submitted = Signal(object)

    def __init__(self, state: AppState, default_qty: int = 100, parent=None):
        super().__init__(parent)
        self.setObjectName("ticket")
        self.state = state
        self.validator: Callable[[Ticket], Decision] | None = None
        self._known: set[str] = set()

        self.symbol = QtWidgets.QComboBox(self)
        self.symbol.setObjectName("ticketSymbol")
        self.symbol.setEditable(True)
        self.symbol.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.symbol.setMinimumWidth(90)
        self.symbol.lineEdit().setPlaceholderText("Symbol")
        self.qty = QtWidgets.QSpinBox(self)
        self.qty.setObjectName("ticketQty")
        self.qty.setRange(1, 10_000_000)
        self.qty.setSingleStep(100)
        self.qty.setValue(default_qty)
        self.qty.setAccelerated(True)
        self.qty.setMinimumWidth(80)
        self.order_type = QtWidgets.QComboBox(self)
        self.order_type.setObjectName("ticketType")
        # item data are plain strings: Qt turns a StrEnum into a QString anyway
        self.order_type.addItem("Market", OrderType.MARKET.value)
        self.order_type.addItem("Limit", OrderType.LIMIT.value)
        self.limit = QtWidgets.QDoubleSpinBox(self)
        self.limit.setObjectName("ticketLimit")
        self.limit.setRange(0.0, 1e9 - 1)
        self.limit.setDecimals(2)
        self.limit.setSingleStep(0.01)
        self.limit.setMinimumWidth(90)
        self.limit.setEnabled(False)
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

        self.grid = grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(4)
        self._labels = []
        for text, w in (("Symbol", self.symbol), ("Qty", self.qty), ("Type", self.order_type), ("Limit", self.limit)):
            lbl = QtWidgets.QLabel(text, self)
            lbl.setObjectName("muted")
            lbl.setBuddy(w)
            self._labels.append((lbl, w))
        self.compact = None
        # an explicit minimum (the compact arrangement's) instead of the wide row's: a narrow
        # dock reflows the ticket instead of cutting Sell off or painting over its neighbours
        self._arrange(compact=True)
        self.setMinimumWidth(grid.minimumSize().width())
        self._arrange(compact=False)
        self._limit_symbol = ""  # the symbol the limit price was taken for
        self._kill_notice = False  # the outcome line shows the kill switch's state
        self._connect_signals()

    #: narrower than this, Buy and Sell go on a row of their own (never cut off)
    COMPACT_BELOW = 560

    def _arrange(self, compact: bool) -> None:
        """One row (fields, Buy, Sell) when wide; fields over the buttons when narrow."""
        if compact == self.compact:
            return
        self.compact = compact
        grid = self.grid
        for lbl, w in self._labels:
            grid.removeWidget(lbl)
            grid.removeWidget(w)
        for w in (self.buy, self.sell, self.quote, self.outcome):
            grid.removeWidget(w)
        for col, (lbl, w) in enumerate(self._labels):
            grid.addWidget(lbl, 0, col)
            grid.addWidget(w, 1, col)
        for c in range(6):
            grid.setColumnStretch(c, 0)
        if compact:
            grid.addWidget(self.buy, 2, 0, 1, 2)
            grid.addWidget(self.sell, 2, 2, 1, 2)
            first = 3
            grid.setColumnStretch(0, 2)
            grid.setColumnStretch(2, 1)
        else:
            grid.addWidget(self.buy, 1, 4)
            grid.addWidget(self.sell, 1, 5)
            first = 2
            grid.setColumnStretch(0, 2)
            grid.setColumnStretch(4, 1)
            grid.setColumnStretch(5, 1)
        span = 4 if compact else 6
        grid.addWidget(self.quote, first, 0, 1, span)
        grid.addWidget(self.outcome, first + 1, 0, 1, span)
        for r in range(6):
            grid.setRowStretch(r, 0)
        grid.setRowStretch(first + 2, 1)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._arrange(self.width() < self.COMPACT_BELOW)

    def _connect_signals(self) -> None:
        self.buy.clicked.connect(lambda: self.send(Side.BUY))
        self.sell.clicked.connect(lambda: self.send(Side.SELL))
        self.order_type.currentIndexChanged.connect(self._type_changed)
        self.symbol.currentTextChanged.connect(self._symbol_changed)
        self.qty.valueChanged.connect(self._inputs_changed)
        self.limit.valueChanged.connect(self._inputs_changed)

    # ------------------------------------------------------------------ inputs
    def current_type(self) -> OrderType:
        return OrderType(self.order_type.currentData())

    def ticket(self, side: Side) -> Ticket:
        ot = self.current_type()
        return Ticket(symbol=self.symbol.currentText().strip().upper(), side=side, qty=int(self.qty.value()),
                      order_type=ot, limit_price=float(self.limit.value()) if ot is OrderType.LIMIT else None)

    def set_symbol(self, symbol: str, prefill_limit: bool = True) -> None:
        """Fill the ticket from the market watch (double-click)."""
        self.add_symbols([symbol])
        self.symbol.setCurrentText(symbol)
        q = self.state.market.quotes.get(symbol)
        if prefill_limit and q is not None and q.last:
            self.limit.setValue(q.last)
            self._limit_symbol = symbol
        self.refresh_quote()

    def set_order_type(self, ot: OrderType) -> None:
        self.order_type.setCurrentIndex(self.order_type.findData(OrderType(ot).value))

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
        is_limit = self.current_type() is OrderType.LIMIT
        self.limit.setEnabled(is_limit)
        # A limit order starts from the market as it is now, not from whatever price the
        # (disabled) field last held.
        self._track_last()
        self._inputs_changed()

    def _track_last(self) -> None:
        """Follow the last price in the limit field while the ticket is on market orders."""
        q = self.state.market.quotes.get(self.symbol.currentText().strip().upper())
        if q is not None and q.last and (self.current_type() is OrderType.MARKET or not self.limit.value()):
            self.limit.setValue(q.last)

    def _inputs_changed(self, *_) -> None:
        self.refresh_quote()

    def _symbol_changed(self, text: str) -> None:
        """A limit price belongs to its symbol: another symbol's price is never kept (it
        would be sent, or refused by the band check with a confusing reason).  The new
        symbol's last price, or nothing while the symbol has none."""
        sym = text.strip().upper()
        if sym != self._limit_symbol:
            q = self.state.market.quotes.get(sym)
            self.limit.setValue(q.last if q is not None and q.last else 0.0)
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
        tone = "ok" if o.ok else ("warn" if o.kind in ("unknown", "cancel_unknown") else "bad")
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
        if self.current_type() is OrderType.MARKET:
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
