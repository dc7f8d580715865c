"""The chart panel: embeds app.chart's ChartWidget and feeds it from the 30 Hz flush.

The chart reads the symbol's bars (built tick by tick in app.state) itself when
:meth:`ChartPanel.apply` calls its ``refresh()``; this panel tells it which symbol and
interval to show, the strategies' support/resistance levels, and markers for signals
(accepted and rejected) and fills, the shown symbol's working orders as lines at their
prices and the position's average price.  Dragging an order's line asks for a replace
(``orderMoved``); the line stays at the new price until the outcome, and snaps back to the
order's price when the replace is refused.  If the chart module cannot be imported the panel
shows why instead, and the rest of the window works on.
"""

from __future__ import annotations

import logging

from workers import protocol as P
from workers.protocol import Side
from app.orders import TYPE_LABELS, Outcome, can_modify
from app.qt import Qt, QtWidgets, Signal
from app.state import AppState, Changes

log = logging.getLogger("tickdesk.app.chart")

try:
    from app.chart.widget import ChartWidget

    CHART_ERROR = ""
except Exception as e:  # pragma: no cover - only while app/chart is incomplete or broken
    ChartWidget = None  # type: ignore[assignment,misc]
    CHART_ERROR = f"{type(e).__name__}: {e}"



#: outcomes that settle a dragged line: it goes where the order now is
SETTLING = frozenset({"replaced", "replace_rejected", "replace_unknown"})


class ChartPanel(QtWidgets.QWidget):
    """Signals:
        intervalChanged(int): the bar interval in seconds.
        orderMoved(str, str, float): an order's line was dragged: client_order_id, the field
            (limit_price or stop_price) and the new price (on the tick).
    """

    intervalChanged = Signal(int)
    orderMoved = Signal(str, str, float)

    def __init__(self, state: AppState, parent=None):
        super().__init__(parent)
        self.setObjectName("panel_chart")
        self.state = state
        self.symbol = ""
        self.interval = 1
        self.errors = 0
        self.placeholder_text = ""
        #: line key -> the price a dragged line was let go at, while its replace is out
        self.pending: dict[str, float] = {}
        self._lines_sent: tuple | None = None

        if ChartWidget is not None:
            try:
                self.chart = ChartWidget(self)
            except Exception as e:  # never let the chart take the window down
                log.exception("chart widget failed to start")
                self.chart = None
                self.placeholder_text = f"The chart failed to start: {type(e).__name__}: {e}"
        else:
            self.chart = None
            self.placeholder_text = f"Chart unavailable ({CHART_ERROR})"
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        if self.chart is not None:
            # the chart has its own toolbar: symbol, interval, live-follow, crosshair readout
            self.chart.intervalChanged.connect(self._chart_interval_changed)
            self.chart.orderLineMoved.connect(self._line_moved)
            self.body = self.chart
        else:
            self.body = QtWidgets.QLabel(self.placeholder_text, self)
            self.body.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.body.setObjectName("muted")
            self.body.setWordWrap(True)
        lay.addWidget(self.body, 1)

    # ------------------------------------------------------------------ calls into the chart
    def _call(self, method: str, *args, **kw):
        if self.chart is None:
            return None
        try:
            return getattr(self.chart, method)(*args, **kw)
        except Exception as e:
            self.errors += 1
            if self.errors <= 5 or self.errors % 1000 == 0:
                log.exception("chart %s failed (%d errors so far)", method, self.errors)
                self.state.log.error("chart", f"chart {method} failed: {type(e).__name__}: {e}")
            return None

    def set_symbol(self, symbol: str) -> None:
        if symbol == self.symbol:
            return
        bars = self.state.market.bars.get(symbol)
        if bars is None:
            return
        self.symbol = symbol
        # the symbol on the chart is watched: the universe cap never refuses nor evicts it
        self.state.market.set_watched("chart", (symbol,))
        self._call("set_series", symbol, bars)
        self.update_order_lines()

    def set_interval(self, seconds: int) -> None:
        if self.chart is None:
            self.interval = seconds
            self.intervalChanged.emit(seconds)
            return
        self._call("set_interval", seconds)  # the chart emits intervalChanged when it switched

    def _chart_interval_changed(self, seconds: float) -> None:
        self.interval = int(seconds) if float(seconds).is_integer() else seconds
        self.intervalChanged.emit(self.interval)

    def set_theme(self, dark: bool) -> None:
        self._call("set_theme", dark)

    def frame_time_ms(self) -> float | None:
        """Median time of the chart's refresh() over its recent frames, in ms."""
        v = self._call("frame_time_ms")
        if isinstance(v, dict):
            v = v.get("median")
        return v if isinstance(v, (int, float)) and v == v else None

    def _levels(self, lv) -> None:
        label = lv.strategy if lv.active else f"{lv.strategy} (inactive)"
        self._call("set_levels", lv.support, lv.resistance, label=label, key=lv.strategy, symbol=lv.symbol)

    # ------------------------------------------------------------------ flush
    def apply(self, ch: Changes) -> None:
        for s in ch.new_signals:
            kind = ("signal_buy" if s.side is Side.BUY else "signal_sell") if s.accepted else "signal_rejected"
            text = f"{s.strategy} {s.side.value} {s.qty} @ {s.price:.2f}" + ("" if s.accepted else f" REJECTED: {s.decision}")
            self._call("add_marker", s.ts, s.price, kind, text=text, symbol=s.symbol)
        for f in ch.new_fills:
            kind = "fill_buy" if f.side is Side.BUY else "fill_sell"
            self._call("add_marker", f.ts, f.price, kind, text=f"fill {f.side.value} {f.qty} @ {f.price:.2f} ({f.source})",
                       symbol=f.symbol)
        for lv in ch.levels.values():  # the chart keeps levels per symbol and shows the current one's
            self._levels(lv)
        sym = self.symbol
        if sym and (sym in ch.positions or any(o.symbol == sym for o in ch.new_orders)
                    or any(o.symbol == sym for o in ch.changed_orders)):
            self.update_order_lines()
        self._call("refresh")

    # ------------------------------------------------------------------ order lines
    def order_line_specs(self) -> list[tuple]:
        """(key, price, label, buy, movable) for every working order's price of the symbol
        shown: its limit and its stop (a trailing stop's as the exchange last said; none once
        a stop triggered).  Key: ``<client_order_id>|<field>``."""
        out = []
        for o in self.state.orders.live(self.symbol):
            buy = o.side is Side.BUY
            leg = ("TP " if o.client_order_id.endswith(P.BRACKET_SUFFIXES[0]) else "SL ") if o.parent_id else ""
            what = f"{leg}{o.side.value.upper()} {o.remaining:,} {TYPE_LABELS.get(o.order_type, o.order_type.value)}"
            for field in ("limit_price", "stop_price"):
                price = getattr(o, field)
                if not price or (field == "stop_price" and o.triggered):
                    continue
                key = f"{o.client_order_id}|{field}"
                tag = " stop" if field == "stop_price" and o.order_type.has_limit else ""
                out.append((key, self.pending.get(key, price), f"{what}{tag} {{value:.2f}}", buy, can_modify(o, field)))
        return out

    def update_order_lines(self) -> None:
        """Send the lines and the average price to the chart when they changed."""
        if self.chart is None:
            return
        specs = self.order_line_specs()
        if self.pending:  # a replace out for an order that is done meanwhile: nothing to hold
            keys = {sp[0] for sp in specs}
            for k in [k for k in self.pending if k not in keys]:
                del self.pending[k]
        pos = self.state.position(self.symbol) if self.symbol else None
        avg = (pos.avg_price, f"AVG {pos.qty:+,} @ {{value:.2f}}") if pos is not None and pos.qty else (None, "")
        sent = (tuple(specs), avg)
        if sent == self._lines_sent:
            return
        self._lines_sent = sent
        self._call("set_order_lines", specs)
        self._call("set_average_price", *avg)

    def _line_moved(self, key: str, price: float) -> None:
        coid, _, field = key.partition("|")
        self.pending[key] = price
        self._lines_sent = None  # the line moved under the last lines sent
        self.orderMoved.emit(coid, field, price)

    def order_outcome(self, o: Outcome) -> None:
        """A replace's outcome: a dragged line goes where the order is now (its new price,
        or back to the old one when refused)."""
        if o.kind not in SETTLING or not o.client_order_id:
            return
        prefix = f"{o.client_order_id}|"
        if any(k.startswith(prefix) for k in self.pending):
            for k in [k for k in self.pending if k.startswith(prefix)]:
                del self.pending[k]
            self._lines_sent = None
            self.update_order_lines()

    def bar_count(self) -> int:
        """Bars of the shown symbol at the shown interval (what the chart draws from)."""
        bars = self.state.market.bars.get(self.symbol)
        if bars is None:
            return 0
        try:
            return len(bars.series(self.interval))
        except KeyError:
            return 0
