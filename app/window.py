"""The TickDesk main window: composes the panels, docks, toolbar, menus and hotkeys, and
runs the flush.

Data flow (see docs/window.md): the feeds drain sockets into :class:`~app.state.AppState`;
``_flush`` runs about 30 times a second, takes what changed (``AppState.collect``) and
hands it to each panel, which updates only the rows that changed; ``_poll`` takes the
supervisor's snapshots and events every 50 ms (the supervisor itself runs on its own thread,
``workers.supervisor_thread``: a stalled UI thread delays what the window shows, never a
heartbeat answer or a restart); ``_slow`` repaints the workers panel and the status bar 4
times a second.  Every signal of the window is wired in :meth:`MainWindow._connect_signals`.

The parts with a job of their own live beside it: the status bar and lag meter
(``app.statusbar``), questions to the trader (``app.prompts``), the kill switch's buttons
(``app.killswitch``) and the dock layout and its persistence (``app.layout``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from pathlib import Path

from workers.protocol import OrderStatus, OrderType, Side
from app import prompts
from app.killswitch import KillSwitch
from app.gcguard import MainThreadGC
from app.layout import WindowLayout
from app.orders import Outcome, Ticket, confirmation_text
from app.panels.backtest import BacktestPanel
from app.panels.blotters import FillsPanel, HistoryPanel, PositionsPanel, WorkingOrdersPanel
from app.panels.chart import ChartPanel
from app.panels.ladder import LadderPanel
from app.models.table import RecordTableModel
from app.panels.live_label import LiveLabel
from app.panels.log import LogPanel
from app.panels.market_watch import MarketWatchPanel
from app.panels.network import NetworkPanel
from app.panels.replay import ReplayBar
from app.panels.signals import SignalsPanel
from app.panels.ticket import TicketPanel
from app.panels.workers import StrategyParamsDialog, WorkersPanel, ask_args
from app.qt import QAction, QKeySequence, Qt, QTimer, QtWidgets, Signal
from app.session import Session
from app.settings import Settings, SettingsDialog, UiSettings
from app.statusbar import LagMeter, StatusBar, UiTimes
from app.theme import apply_theme, repolish

log = logging.getLogger("tickdesk.app.window")

FLUSH_MS = 33  # ~30 Hz
POLL_MS = 50
SLOW_EVERY = 8  # flushes between workers-panel / status-bar refreshes (~4 Hz)
#: flushes between repaints of moved prices (market watch, positions marked to market, the
#: ticket's quote, P&L): ~10 Hz.  A table repaint costs 2-7 ms of the UI thread (measured:
#: Qt's delegate asks the model 7 roles per cell), and at 30 Hz those repaints were most of
#: the window's CPU.  Orders, fills and positions moved by a fill still show at the next
#: flush; the chart keeps the full rate (it reads its bars, not this change set).
QUOTE_EVERY = 3
LAG_MS = 50

#: (key, action, group): the F1 list, one row each, grouped; docs/window.md lists the same keys
HOTKEYS = (
    ("Ctrl+B", "Buy (order ticket)", "Orders"),
    ("Ctrl+S", "Sell (order ticket)", "Orders"),
    ("Ctrl+T", "Focus the ticket's symbol", "Orders"),
    ("Ctrl+L", "Ticket: toggle market / limit", "Orders"),
    ("Ctrl+Up / Ctrl+Down", "Ticket: limit (or stop) price one tick up / down", "Orders"),
    ("F2 / double-click", "Working orders: modify the order's price or quantity in place (replace)", "Orders"),
    ("Delete", "Cancel the selected working orders (working-orders table)", "Orders"),
    ("Ctrl+Shift+X", "Cancel all working orders", "Orders"),
    ("Ctrl+Shift+F", "Flatten the selected position (else the ticket's symbol) at market", "Orders"),
    ("Ctrl+Alt+F", "Flatten all positions at market", "Orders"),
    ("F12 / Ctrl+Shift+K", "KILL SWITCH: account kill switch on, cancel all, pause strategies", "Orders"),
    ("F5", "Resync orders and positions from the exchange", "Orders"),
    ("Enter / double-click", "Market watch: load the symbol into the ticket", "Panels"),
    ("Ctrl+1 … Ctrl+8", "Focus market watch, chart, ticket, working, fills, positions, signals, workers", "Panels"),
    ("Ctrl+9", "Focus the price ladder", "Panels"),
    ("Ctrl+Shift+D", "Open another price ladder (DOM; on the chart's symbol; close its dock to remove it)", "Panels"),
    ("Click bid / ask side", "Ladder: buy / sell limit at that price (the ladder's quantity)", "Ladder"),
    ("Click own order / drag it", "Ladder: cancel it / move it to another price (replace)", "Ladder"),
    ("Up / Down (Shift: 10)", "Ladder: move the price cursor one tick (ten ticks)", "Ladder"),
    ("B / S", "Ladder: buy / sell limit at the cursor", "Ladder"),
    ("Delete", "Ladder: cancel own orders at the cursor", "Ladder"),
    ("M, then M or Enter", "Ladder: pick up own orders at the cursor, put them down at the cursor (Escape: drop)", "Ladder"),
    ("C", "Ladder: centre on the last trade (Auto-centre on)", "Ladder"),
    ("PageUp / PageDown, wheel", "Ladder: scroll (Auto-centre off)", "Ladder"),
    ("Alt+1 / Alt+2 / Alt+3", "Chart interval 1 s / 5 s / 1 min", "Chart"),
    ("Left / Right", "Chart: pan 10 % (Shift: 90 %)", "Chart"),
    ("PageUp / PageDown", "Chart: pan 90 %", "Chart"),
    ("+ / -", "Chart: zoom in / out", "Chart"),
    ("End or Home", "Chart: back to live (follow the newest bar)", "Chart"),
    ("Shift+Home", "Chart: oldest bar", "Chart"),
    ("Ctrl+Shift+L", "Toggle dark / light theme", "Window"),
    ("Ctrl+,", "Settings (endpoints, risk limits, confirmations)", "Window"),
    ("F1", "This list", "Window"),
    ("Ctrl+Q", "Quit (stops every worker)", "Window"),
)
#: how long a banner that needs nothing more from the trader (a release) stays up
BANNER_OK_S = 8.0


class _ClosingDock(QtWidgets.QDockWidget):
    """A dock that says when the trader closes it (an extra ladder's: closing removes it)."""

    closing = Signal()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.closing.emit()
        super().closeEvent(event)


class MainWindow(QtWidgets.QMainWindow):
    """The workstation.

    Attributes:
        session: the fleet, state, feeds and order service behind the window.
        market_watch, ticket, chart, working, history, fills, positions, signals_panel,
        workers_panel, log_panel: the panels.
        kill_switch: the kill switch's buttons (app.killswitch); status_bar: the status bar's
        labels (app.statusbar); dock_layout: the docks' layout and its persistence (app.layout).

    Signals:
        closed(): the window closed and every worker has stopped.
    """

    closed = Signal()

    def __init__(self, session: Session, settings: Settings, ui: UiSettings | None = None, parent=None):
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowTitle("TickDesk")
        self.session = session
        self.state = session.state
        self.settings = settings
        self.ui = ui or settings.load()
        self._apply_market(self.ui)
        self._closing = False
        self._quit_asked = False  # the trader said yes to quitting (or nobody has to be asked)
        self._quit_box = None
        self._banner_serial = 0
        self._fitted_width = 0
        #: (client_order_id, ticket, status last shown) of the ticket's newest order
        self._ticket_order: tuple | None = None
        #: (box, ticket) of the order confirmation while it is open
        self._confirm: tuple | None = None
        self.lag = LagMeter(LAG_MS)
        self._flush_ms = collections.deque(maxlen=100)
        self.flushes = 0

        self._build_panels()
        self._build_docks()
        self._build_toolbar()
        self._build_menus()
        self._build_status_bar()
        self._build_timers()
        self._connect_signals()
        self.resize(1600, 960)
        self._restore_extra_ladders()  # before the dock state, which places them
        self.restore_layout()
        self.set_theme(self.ui.theme, save=False)

    # ------------------------------------------------------------------ construction
    def _build_panels(self) -> None:
        st = self.state
        self.market_watch = MarketWatchPanel(st.market)
        self.ticket = TicketPanel(st, self.ui.default_qty, presets=self.ui.qty_presets)
        self.chart = ChartPanel(st)
        self.ladder = self._make_ladder("ladder")
        #: every price ladder: the first (``self.ladder``, "ladder") and View > New price ladder's
        self.ladders: list[LadderPanel] = [self.ladder]
        self.working = WorkingOrdersPanel()
        self.history = HistoryPanel()
        self.fills = FillsPanel()
        self.positions = PositionsPanel(st)
        self.positions.add_context_actions = self._position_menu  # the table's row actions
        self.flatten_button = QtWidgets.QPushButton("Flatten", self)
        self.flatten_button.setObjectName("flattenButton")
        self.flatten_button.setToolTip("Close the selected position at market (Ctrl+Shift+F); allowed while the "
                                       "kill switch is on")
        self.flatten_all_button = QtWidgets.QPushButton("Flatten all", self)
        self.flatten_all_button.setObjectName("flattenAllButton")
        self.flatten_all_button.setToolTip("Close every position at market (Ctrl+Alt+F); allowed while the kill "
                                           "switch is on")
        self.positions_box = QtWidgets.QWidget(self)
        box = QtWidgets.QVBoxLayout(self.positions_box)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(2)
        row = QtWidgets.QHBoxLayout()
        row.setContentsMargins(4, 2, 4, 0)
        row.addWidget(self.flatten_button)
        row.addWidget(self.flatten_all_button)
        row.addStretch(1)
        box.addLayout(row)
        box.addWidget(self.positions, 1)
        self.signals_panel = SignalsPanel()
        self.workers_panel = WorkersPanel(self.session.sup.workers)
        self.network_panel = NetworkPanel(self.session.sup.workers, self.session.feeds.sockmon)
        self.log_panel = LogPanel(st.log)
        # the data folder is where the settings file lives (app/main.py): its newest recording
        self.backtest = BacktestPanel(data_dir=Path(self.settings.path).parent, control=self.session.control)
        self.tables = {p.name: p for p in (self.market_watch, self.working, self.history, self.fills, self.positions,
                                            self.signals_panel, self.workers_panel)}

        self.banner = QtWidgets.QLabel("", self)
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.hide()
        central = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.banner)
        self.replay_bar = ReplayBar(self)  # the replay's mark and controls, shown only while replaying
        lay.addWidget(self.replay_bar)
        lay.addWidget(self.chart, 1)
        self.setCentralWidget(central)

    def _make_ladder(self, name: str) -> LadderPanel:
        return LadderPanel(self.state, default_qty=self.ticket.qty.value(), name=name,
                           confirm=str(self.settings.value("ladder/confirm", "true")).lower() != "false")

    def _dock(self, title: str, widget: QtWidgets.QWidget, name: str,
              kind: type[QtWidgets.QDockWidget] = QtWidgets.QDockWidget) -> QtWidgets.QDockWidget:
        d = kind(title, self)
        d.setObjectName(f"dock_{name}")
        d.setWidget(widget)
        d.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
                      | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable
                      | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable)
        return d

    def _build_docks(self) -> None:
        self.setDockOptions(QtWidgets.QMainWindow.DockOption.AnimatedDocks
                            | QtWidgets.QMainWindow.DockOption.AllowTabbedDocks
                            | QtWidgets.QMainWindow.DockOption.AllowNestedDocks)
        # the bottom blotters span the full width; the left column sits beside the chart
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.docks = {
            "market": self._dock("Market watch", self.market_watch, "market"),
            "ticket": self._dock("Order ticket", self.ticket, "ticket"),
            "positions": self._dock("Positions", self.positions_box, "positions"),
            "working": self._dock("Working orders", self.working, "working"),
            "history": self._dock("Order history", self.history, "history"),
            "fills": self._dock("Fills", self.fills, "fills"),
            "signals": self._dock("Signals", self.signals_panel, "signals"),
            "workers": self._dock("Workers", self.workers_panel, "workers"),
            "log": self._dock("Log", self.log_panel, "log"),
            "network": self._dock("Network", self.network_panel, "network"),
            "ladder": self._dock("Price ladder", self.ladder, "ladder"),
            "backtest": self._dock("Backtest", self.backtest, "backtest"),
        }
        # shown from the View menu: raised too, as it opens as a tab behind the others
        self.docks["backtest"].toggleViewAction().triggered.connect(
            lambda on: on and self.docks["backtest"].raise_())
        self.dock_layout = WindowLayout(self, self.docks)
        self.default_layout()

    def default_layout(self) -> None:
        self.dock_layout.reset()
        # a research tool, not a trading one: a hidden tab of the bottom-right group until
        # View > Backtest, so the default layout stays the trading one
        self.tabifyDockWidget(self.docks["network"], self.docks["backtest"])
        self.docks["backtest"].hide()
        self.docks["workers"].raise_()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.dock_layout.shown()

    def _build_toolbar(self) -> None:
        tb = QtWidgets.QToolBar("Trading", self)
        tb.setObjectName("toolbar_trading")
        tb.setMovable(False)
        tb.setFloatable(False)
        tb.toggleViewAction().setEnabled(False)  # the kill switch must stay on screen
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)
        title = QtWidgets.QLabel(" TickDesk ", tb)
        f = title.font()
        f.setBold(True)
        f.setPointSize(f.pointSize() + 2)
        title.setFont(f)
        tb.addWidget(title)
        self.pnl_label = LiveLabel(60, parent=tb)
        self.pnl_label.setObjectName("pnl")
        tb.addWidget(self.pnl_label)
        spacer = QtWidgets.QWidget(tb)
        spacer.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Preferred)
        tb.addWidget(spacer)
        self.cancel_all_button = QtWidgets.QPushButton("Cancel all orders", tb)
        self.cancel_all_button.setObjectName("toolbarCancelAll")
        self.cancel_all_button.setToolTip("Cancel every working order (Ctrl+Shift+X)")
        tb.addWidget(self.cancel_all_button)
        self.kill_switch = KillSwitch(self.session.control, tb, self)
        self.kill_button = self.kill_switch.button
        self.release_button = self.kill_switch.release_button
        self.release_action = self.kill_switch.release_action
        self.trading_toolbar = tb

    def _action(self, menu, text: str, slot, shortcut: str | list[str] | None = None, tip: str = "") -> QAction:
        a = QAction(text, self)
        if shortcut:
            keys = [shortcut] if isinstance(shortcut, str) else shortcut
            a.setShortcuts([QKeySequence(k) for k in keys])
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            a.setStatusTip(tip)
        a.triggered.connect(slot)
        menu.addAction(a)
        self.addAction(a)  # shortcuts work with the menu bar hidden, too
        return a

    def _build_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        exp = m.addMenu("Export CSV")
        for name, panel in self.tables.items():
            exp.addAction(self.docks.get(name, None).windowTitle() if name in self.docks else name.title(),
                          panel.export_dialog)
        self.act_settings = self._action(m, "Settings…", self.open_settings, "Ctrl+,")
        m.addSeparator()
        self._action(m, "Quit", self.close, "Ctrl+Q")

        m = mb.addMenu("&Trading")
        self.act_buy = self._action(m, "Buy", lambda: self.ticket.send(Side.BUY), "Ctrl+B")
        self.act_sell = self._action(m, "Sell", lambda: self.ticket.send(Side.SELL), "Ctrl+S")
        self._action(m, "Focus ticket symbol", self._focus_ticket, "Ctrl+T")
        self._action(m, "Toggle market / limit", self._toggle_order_type, "Ctrl+L")
        self._action(m, "Ticket price one tick up", lambda: self.ticket.tick(1), "Ctrl+Up")
        self._action(m, "Ticket price one tick down", lambda: self.ticket.tick(-1), "Ctrl+Down")
        m.addSeparator()
        self.act_cancel_all = self._action(m, "Cancel all working orders", self.cancel_all, "Ctrl+Shift+X")
        self.act_flatten = self._action(m, "Flatten selected position", self.flatten_selected, "Ctrl+Shift+F")
        self.act_flatten_all = self._action(m, "Flatten all positions", self.flatten_all, "Ctrl+Alt+F")
        self.act_kill = self._action(m, "KILL SWITCH", self.kill_switch.engage, ["F12", "Ctrl+Shift+K"])
        self._action(m, "Release kill switch…", self.kill_switch.ask_release)
        m.addSeparator()
        self._action(m, "Resync orders and positions", self.resync, "F5")

        m = mb.addMenu("&View")
        for dock in self.docks.values():
            m.addAction(dock.toggleViewAction())
        self._action(m, "New price ladder", lambda: self.new_ladder(), "Ctrl+Shift+D")
        m.addSeparator()
        focus = (("market", self.market_watch.view), ("chart", self.chart), ("ticket", None), ("working", self.working.view),
                 ("fills", self.fills.view), ("positions", self.positions.view), ("signals", self.signals_panel.view),
                 ("workers", self.workers_panel.view), ("ladder", self.ladder.view))
        fm = m.addMenu("Focus")
        for i, (name, widget) in enumerate(focus, 1):
            self._action(fm, name.title(), lambda _=False, n=name, w=widget: self.focus_panel(n, w), f"Ctrl+{i}")
        im = m.addMenu("Chart interval")
        for i, secs in enumerate((1, 5, 60), 1):
            self._action(im, f"{secs if secs < 60 else 1}{'s' if secs < 60 else 'm'}",
                         lambda _=False, s=secs: self.chart.set_interval(s), f"Alt+{i}")
        m.addSeparator()
        self._action(m, "Toggle dark / light theme", self.toggle_theme, "Ctrl+Shift+L")
        self._action(m, "Reset layout", self.reset_layout)

        m = mb.addMenu("&Help")
        self._action(m, "Keyboard shortcuts", self.show_hotkeys, "F1")

    def createPopupMenu(self):
        menu = super().createPopupMenu()
        if menu is not None:
            menu.removeAction(self.trading_toolbar.toggleViewAction())
        return menu

    def _build_status_bar(self) -> None:
        self.status_bar = StatusBar(self.statusBar())

    def _build_timers(self) -> None:
        self.gc = MainThreadGC(self)
        self.flush_timer = QTimer(self)
        self.flush_timer.setInterval(FLUSH_MS)
        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(POLL_MS)
        self.lag_timer = QTimer(self)
        self.lag_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.lag_timer.setInterval(LAG_MS)

    def _connect_signals(self) -> None:
        # timers: network -> state (feeds, asyncio) ... state -> widgets (here)
        self.flush_timer.timeout.connect(self._timed_flush)
        self.poll_timer.timeout.connect(self._poll)
        self.lag_timer.timeout.connect(self.lag.tick)
        # market watch -> chart and ticket
        self.market_watch.symbolSelected.connect(self.chart.set_symbol)
        self.market_watch.symbolActivated.connect(self._load_ticket)
        # ticket -> orders
        self.ticket.submitted.connect(self.submit_ticket)
        # blotters -> cancels
        self.working.cancelRequested.connect(self.cancel_orders)
        self.working.cancelAllRequested.connect(self.cancel_all)
        # blotter and chart -> replace / OCO (the outcome comes back through _on_outcome)
        self.working.modifyRequested.connect(lambda coid, changes: self.session.orders.replace(coid, **changes))
        self.working.ocoRequested.connect(self.session.orders.set_oco)
        self.chart.orderMoved.connect(lambda coid, field, price: self.session.orders.replace(coid, **{field: price}))
        self.cancel_all_button.clicked.connect(self.cancel_all)
        self._wire_ladder(self.ladder)
        # kill switch -> fleet control; its report -> the banner
        self.kill_button.clicked.connect(self.kill_switch.engage)
        self.release_button.clicked.connect(self.kill_switch.ask_release)
        self.kill_switch.banner.connect(self.show_banner)
        self.kill_switch.changed.connect(self.ticket.kill_switch_changed)
        # positions -> flatten
        self.flatten_button.clicked.connect(self.flatten_selected)
        self.flatten_all_button.clicked.connect(self.flatten_all)
        # workers
        self.workers_panel.action.connect(self.worker_action)
        # services without Qt report through plain callbacks
        self.session.orders.listeners.append(self._on_outcome)
        self.ticket.validator = self.session.orders.check
        # exports
        for panel in self.tables.values():
            panel.exported.connect(self._exported)
            panel.exportFailed.connect(lambda text: self.state.log.error("export", text))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the fleet and the timers (the asyncio loop must be running or about to)."""
        self.gc.start()  # before the supervisor's thread starts allocating (app/gcguard.py)
        self.session.start()
        for t in (self.flush_timer, self.poll_timer, self.lag_timer):
            t.start()
        try:  # an exception in a task nobody awaits must reach the trader, not vanish
            asyncio.get_event_loop().set_exception_handler(self._loop_exception)
        except RuntimeError:
            pass
        self.lag.start()

    def open_exposure(self) -> tuple[int, int]:
        """(symbols with an open position, working orders): what quitting would leave behind."""
        return (sum(1 for s in self.state.positions.positions if self.state.positions.qty(s)),
                len(self.state.orders.live()))

    def close_now(self) -> None:
        """Close without the quit question (--duration, SIGTERM, Ctrl-C: the decision is made)."""
        self._quit_asked = True
        self.close()

    def closeEvent(self, event) -> None:
        if self._closing:
            event.accept()
            return
        npos, nord = self.open_exposure()
        if self.ui.confirm_quit and not self._quit_asked and (npos or nord):
            event.ignore()
            if self._quit_box is None:
                self._ask_quit(npos, nord)
            return
        self._closing = True
        self.kill_switch.close()
        try:
            self.save_layout()
        except Exception:
            log.exception("saving the layout failed")
        for t in (self.flush_timer, self.poll_timer, self.lag_timer):
            t.stop()
        self.statusBar().showMessage("Stopping workers…")
        self.hide()
        try:
            self.session.close()
        finally:
            self.gc.stop()  # the supervisor's thread has ended: collection may run anywhere again
            event.accept()
            self.closed.emit()

    def _ask_quit(self, npos: int, nord: int) -> None:
        what = " and ".join(x for x in (f"{npos} open position{'s' * (npos != 1)}" if npos else "",
                                          f"{nord} working order{'s' * (nord != 1)}" if nord else "") if x)

        def answered(yes: bool, never: bool) -> None:
            self._quit_box = None
            if not yes:
                return
            if never:
                self.ui.confirm_quit = False
                self.settings.save(self.ui)
            self.close_now()

        self._quit_box = prompts.ask(
            self, "Quit TickDesk",
            f"Quit with {what}? They stay at the exchange: working orders can still fill and positions keep "
            "their risk while nothing watches them (the strategies stop with the window).",
            answered, warning=True, object_name="confirmQuit", default=False, offer_dont_ask=True)

    # ------------------------------------------------------------------ the flush
    def _timed_flush(self) -> None:
        self._flush(quotes=self.flushes % QUOTE_EVERY == 0)

    def _flush(self, quotes: bool = True) -> None:
        """Show what changed; ``quotes=False`` leaves moved prices for a later flush."""
        t0 = time.perf_counter()
        ch = self.state.collect(quotes=quotes)
        if ch.symbols or ch.evicted_symbols:  # a flush may only drop symbols (the universe cap)
            self.market_watch.apply(ch)
            self.ticket.apply(ch.symbols, ch.evicted_symbols)
            if self._confirm is not None and self._confirm[1].symbol in ch.symbols:
                self._confirm[0].setText(self._confirm_text(self._confirm[1]))
            if ch.symbols and not self.chart.symbol:
                self._first_symbol()
        if self._ticket_order is not None and (ch.changed_orders or ch.new_orders):
            self._follow_ticket_order(ch)
        self.working.apply(ch)
        self.history.apply(ch)
        self.fills.apply(ch)
        self.positions.apply(ch)
        if ch.positions:
            self._update_pnl()
            if self.ticket.symbol.currentText().strip().upper() in ch.positions:
                self.ticket.refresh_quote()  # its Pos moves with the fill, not with the next tick
        self.signals_panel.apply(ch)
        if ch.new_log:
            self.log_panel.append(ch.new_log)
            worst = max(ch.new_log, key=lambda ln: ln.level)
            if worst.level >= logging.WARNING:
                self.status_bar.alert(f"[{worst.source}] {worst.text}", worst.level)
        self.chart.apply(ch)
        for lad in self.ladders:
            lad.apply(ch, follow=self.chart.symbol)
        self.flushes += 1
        if self.flushes % SLOW_EVERY == 0:  # in the same pass: one repaint, not two
            self._slow()
        self._flush_ms.append((time.perf_counter() - t0) * 1000.0)

    def _first_symbol(self) -> None:
        saved = str(self.settings.value("session/symbol", "") or "")
        quotes = self.state.market.quotes
        sym = saved if saved in quotes else sorted(quotes)[0]
        self.market_watch.select_symbol(sym)
        self.chart.set_symbol(sym)
        if not self.ticket.symbol.currentText():
            self.ticket.set_symbol(sym)

    def _poll(self) -> None:
        try:
            self.session.poll()
        except Exception as e:  # the window must keep showing the fleet whatever happens
            self.state.log.error("supervisor", f"poll failed: {type(e).__name__}: {e}")

    def _loop_exception(self, loop, context) -> None:
        exc = context.get("exception")
        msg = context.get("message", "")
        text = f"{msg}: {type(exc).__name__}: {exc}" if exc is not None else msg
        log.error("asyncio: %s", text, exc_info=exc)
        self.state.log.error("app", text)

    def ui_lag_p99(self) -> float:
        return self.lag.p99()

    def _slow(self) -> None:
        self.workers_panel.refresh()
        if self.docks["network"].isVisible():  # a hidden tab costs nothing
            self.network_panel.refresh()
        self.dock_layout.follow_size()
        self.replay_bar.refresh()
        if self.width() != self._fitted_width:  # checked here, not in resizeEvent: a drag resizes 60 times a second
            self._fitted_width = self.width()
            self.status_bar.fit(self._fitted_width)
        self._update_status()

    def _update_status(self) -> None:
        flush = sorted(self._flush_ms)[len(self._flush_ms) // 2] if self._flush_ms else 0.0
        times = UiTimes(lag_p99=self.ui_lag_p99(), flush=flush, chart=self.chart.frame_time_ms())
        sup = self.session.sup
        self.status_bar.refresh(self.state, sup.totals(), sup.workers, self.session.control.kill_engaged, times)

    def _update_pnl(self) -> None:
        realized, unrealized = self.state.pnl_totals()
        total = realized + unrealized
        tones = RecordTableModel.tones
        color = tones.get("up") if total > 0 else (tones.get("down") if total < 0 else None)
        self.pnl_label.set_segments([("   P&L ", None), (f"{total:+,.2f}", color),
                                     (f"  (realized {realized:+,.2f}, unrealized {unrealized:+,.2f})", None)])

    def show_banner(self, text: str, tone: str = "warn") -> None:
        """Above the chart; an "ok" banner (nothing left to do) goes after BANNER_OK_S, an
        empty text takes it away at once."""
        self._banner_serial += 1
        self.banner.setText(text)
        self.banner.setProperty("tone", tone)
        repolish(self.banner)
        self.banner.setVisible(bool(text))
        if text and tone == "ok":
            serial = self._banner_serial
            QTimer.singleShot(int(BANNER_OK_S * 1000), self, lambda: serial == self._banner_serial and self.show_banner(""))  # dropped with the window

    # ------------------------------------------------------------------ ticket and orders
    def _load_ticket(self, symbol: str) -> None:
        self.ticket.set_symbol(symbol)
        self.docks["ticket"].raise_()
        self.ticket.qty.setFocus()
        self.ticket.qty.selectAll()

    def _focus_ticket(self) -> None:
        self.docks["ticket"].show()
        self.docks["ticket"].raise_()
        self.ticket.focus_symbol()

    def _toggle_order_type(self) -> None:
        cur = self.ticket.current_type()
        self.ticket.set_order_type(OrderType.MARKET if cur is OrderType.LIMIT else OrderType.LIMIT)

    def submit_ticket(self, ticket: Ticket) -> None:
        if not self.ui.confirm_orders:
            self._send(ticket)
            return
        def answered(yes: bool, never: bool) -> None:
            self._confirm = None
            if yes:
                if never:
                    self.ui.confirm_orders = False
                    self.settings.save(self.ui)
                self._send(ticket)
            else:
                self.ticket.show_message(f"{ticket.describe()} not sent (cancelled at confirmation)", "warn")

        box = prompts.ask(self, "Confirm order", self._confirm_text(ticket), answered,
                          object_name="confirmOrder", default=True, offer_dont_ask=True)
        self._confirm = (box, ticket)

    def submit_ladder(self, ticket: Ticket, ladder: LadderPanel | None = None) -> None:
        """A ladder click: asked first only while both the settings' order confirmation and
        the ladder's own Confirm box are on ("don't ask again" clears the ladder's box)."""
        lad = ladder or self.ladder
        if not (self.ui.confirm_orders and lad.confirm.isChecked()):
            self._send_ladder(ticket, lad)
            return

        def answered(yes: bool, never: bool) -> None:
            self._confirm = None
            if yes:
                if never:
                    lad.confirm.setChecked(False)
                self._send_ladder(ticket, lad)
            else:
                lad.show_message(f"{ticket.describe()} not sent (cancelled at confirmation)", "warn")

        box = prompts.ask(self, "Confirm order", self._confirm_text(ticket), answered,
                          object_name="confirmOrder", default=True, offer_dont_ask=True)
        self._confirm = (box, ticket)

    def _send_ladder(self, ticket: Ticket, lad: LadderPanel) -> None:
        d, coid = self.session.orders.submit(ticket)
        if not d:
            lad.show_message(f"{ticket.describe()} not sent: {d.reason}", "bad")
        else:
            lad.sent_order(coid, ticket)

    # ------------------------------------------------------------------ ladders
    def _wire_ladder(self, lad: LadderPanel) -> None:
        """A ladder's orders (confirmed as the ticket's), cancels and replaces go through the
        order service; its outcomes come back to it."""
        lad.orderRequested.connect(lambda t, lad=lad: self.submit_ladder(t, lad))
        lad.cancelRequested.connect(self.cancel_orders)
        lad.replaceRequested.connect(lambda coid, changes: self.session.orders.replace(coid, **changes))
        lad.confirmChanged.connect(lambda on: self.settings.set_value("ladder/confirm", on))
        self.session.orders.listeners.append(lad.on_outcome)

    def new_ladder(self, symbol: str = "") -> LadderPanel:
        """Another price ladder (View > New price ladder, Ctrl+Shift+D): its own dock beside
        the first, on ``symbol`` (default: the chart's), not following the chart.  Closing its
        dock removes it; the open ones come back at the next start (``ladder/extra``)."""
        k = 2
        while f"ladder{k}" in self.docks:
            k += 1
        name = f"ladder{k}"
        lad = self._make_ladder(name)
        lad.follow.setChecked(False)
        lad.set_symbol(symbol or self.chart.symbol or self.ladder.symbol)
        dock = self._dock(f"Price ladder {k}", lad, name, kind=_ClosingDock)
        dock.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dock.closing.connect(lambda lad=lad: self._close_ladder(lad))
        main = self.docks["ladder"]
        width = self.width()
        if main.isVisible() and not main.isFloating():
            self.splitDockWidget(main, dock, Qt.Orientation.Horizontal)
        else:
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        dock.show()
        self.layout().activate()
        if self.minimumSizeHint().width() > width and main.isVisible() and not main.isFloating():
            # beside the first it would widen the window past its size (off the screen on a
            # laptop): a tab of the first's instead, raised
            self.tabifyDockWidget(main, dock)
            dock.raise_()
            self.layout().activate()
            self.resize(width, self.height())  # back from what the split made it
        self.docks[name] = dock
        self.ladders.append(lad)
        self._wire_ladder(lad)
        self._save_extra_ladders()
        return lad

    def _close_ladder(self, lad: LadderPanel) -> None:
        if lad not in self.ladders or lad is self.ladder:
            return
        self.ladders.remove(lad)
        self.docks.pop(lad.name, None)
        if lad.on_outcome in self.session.orders.listeners:
            self.session.orders.listeners.remove(lad.on_outcome)
        lad.release()
        if not self._closing:  # quitting keeps the ladders for the next start
            self._save_extra_ladders()

    def _save_extra_ladders(self) -> None:
        self.settings.set_value("ladder/extra", ",".join(lad.symbol or "-" for lad in self.ladders[1:]))

    def _restore_extra_ladders(self) -> None:
        for sym in str(self.settings.value("ladder/extra", "") or "").split(","):
            sym = sym.strip()
            if sym:
                self.new_ladder("" if sym == "-" else sym)

    def _confirm_text(self, ticket: Ticket) -> str:
        """The confirmation's question with the market as it is now: the flush keeps it live,
        so a dialog left open never shows the prices of when it opened."""
        q = self.state.market.quotes.get(ticket.symbol)
        if q is None or not q.last:
            return f"Send {ticket.describe()}?\nno prices"
        return f"Send {ticket.describe()}?\n" + confirmation_text(ticket, q).split("\n", 1)[1]

    def _send(self, ticket: Ticket) -> None:
        d, coid = self.session.orders.submit(ticket)
        if not d:
            self.ticket.show_message(f"{ticket.describe()} not sent: {d.reason}", "bad")
        else:
            self._ticket_order = (coid, ticket, None)

    def _on_outcome(self, o: Outcome) -> None:
        if self._closing:
            return
        self.ticket.show_outcome(o)
        self.chart.order_outcome(o)
        if self._ticket_order and o.client_order_id == self._ticket_order[0]:
            row = self.state.orders.get(o.client_order_id)
            self._ticket_order = (*self._ticket_order[:2], row.status if row else None)

    def _follow_ticket_order(self, ch) -> None:
        """The ticket's last order changed on the stream (filled, cancelled...) after its
        reply: say so in the ticket at once, not only in the blotter."""
        coid, ticket, shown = self._ticket_order
        for o in ch.changed_orders + ch.new_orders:
            if o.client_order_id != coid or o.status is shown:
                continue
            self._ticket_order = (coid, ticket, o.status)
            fill = f" {o.filled_qty:,} @ {o.avg_price:,.2f}" if o.filled_qty else ""
            tone = "bad" if o.status is OrderStatus.REJECTED else ("warn" if o.status is OrderStatus.UNKNOWN else "ok")
            reason = f": {o.reason}" if o.reason and o.status is OrderStatus.REJECTED else ""
            self.ticket.show_message(f"{ticket.describe()} {o.status.value}{fill}{reason} ({coid})", tone)

    def cancel_orders(self, coids: list) -> None:
        for coid in coids:
            self.session.orders.cancel(coid)

    def cancel_all(self) -> None:
        live = len(self.state.orders.live())
        if not self.ui.confirm_cancel_all:
            self.session.control.spawn(self.session.orders.cancel_all())
            return
        prompts.ask(self, "Cancel all orders",
                    f"Cancel every working order at the exchange ({live} known here), the strategies' included?",
                    lambda yes, _never: yes and self.session.control.spawn(self.session.orders.cancel_all()),
                    warning=True, object_name="confirmCancelAll")

    def resync(self) -> None:
        """F5: load orders and positions from the exchange now."""
        self.state.log.info("orders", "resync requested")

        async def run() -> None:
            ok = await self.session.orders.sync()
            if ok:
                self.state.log.info("orders", f"resynced: {len(self.state.orders)} orders, "
                                    f"{len(self.state.positions)} positions")
            else:
                self.state.log.error("orders", "resync failed: the exchange did not answer")

        self.session.control.spawn(run())

    # ------------------------------------------------------------------ flatten
    def _position_menu(self, menu: QtWidgets.QMenu) -> None:
        syms = self.selected_position_symbols()
        a = menu.addAction(f"Flatten {', '.join(syms)}" if syms else "Flatten", self.flatten_selected)
        a.setEnabled(bool(syms))
        menu.addAction("Flatten all", self.flatten_all)
        menu.addSeparator()

    def selected_position_symbols(self) -> list[str]:
        rows = self.positions.selected_rows() or ([self.positions.current_row()] if self.positions.current_row() else [])
        return sorted({r.symbol for r in rows if r is not None})

    def flatten_selected(self) -> None:
        """Flatten the symbols selected in the positions table, else the ticket's symbol."""
        syms = self.selected_position_symbols()
        if not syms:
            sym = self.ticket.symbol.currentText().strip().upper()
            syms = [sym] if sym else []
        self.flatten(syms)

    def flatten_all(self) -> None:
        self.flatten(sorted(self.state.positions.positions))

    def flatten_tickets(self, symbols) -> list[Ticket]:
        """Market orders that take each symbol's net position (the account's) to zero."""
        out = []
        for sym in symbols:
            q = self.state.positions.qty(sym)
            if q:
                out.append(Ticket(sym, Side.SELL if q > 0 else Side.BUY, abs(q), OrderType.MARKET))
        return out

    def flatten(self, symbols) -> None:
        """Close positions at market: the kill switch lets them through (they reduce a
        position).  The symbol's working orders are cancelled first, so that none reopens it."""
        tickets = self.flatten_tickets(symbols)
        if not tickets:
            self.ticket.show_message(f"Flatten: no open position{' in ' + ', '.join(symbols) if symbols else ''}", "warn")
            return

        def go() -> None:
            for t in tickets:
                self.session.control.spawn(self._flatten_one(t), f"flatten {t.symbol}")

        if not self.ui.confirm_orders:
            go()
            return
        prompts.ask(self, "Flatten", "Send at market?\n" + "\n".join(t.describe() for t in tickets),
                    lambda yes, _never: yes and go(), warning=True, object_name="confirmFlatten", default=True)

    async def _flatten_one(self, t: Ticket) -> None:
        if self.state.orders.live(t.symbol):
            await self.session.orders.cancel_all(t.symbol)
        q = self.state.positions.qty(t.symbol)  # what it is now, after any fill meanwhile
        if not q:
            return
        t = Ticket(t.symbol, Side.SELL if q > 0 else Side.BUY, abs(q), OrderType.MARKET)
        self.state.log.warning("flatten", f"{t.describe()} to close {t.symbol} ({q:+,})")
        self._send(t)

    # ------------------------------------------------------------------ kill switch
    @property
    def last_kill_report(self):
        """The report of the last completed kill switch (None before the first)."""
        return self.kill_switch.last_report

    # ------------------------------------------------------------------ workers
    def worker_action(self, name: str, action: str) -> None:
        ctl = self.session.control
        if action == "restart":
            ctl.spawn(ctl.restart_worker(name))
        elif action == "stop":
            ctl.spawn(ctl.stop_worker(name))
        elif action == "start":
            ctl.spawn(ctl.start_worker(name))
        elif action in ("pause", "resume"):
            ctl.spawn(ctl.strategy_command(name, action))
        elif action == "params":
            ctl.spawn(self._edit_params(name))
        elif action == "args":
            w = self.session.sup.workers[name]
            args = ask_args(self, name, w.spec.args)
            if args is not None:
                self.session.sup.set_worker_args(name, args)
                self.state.log.info(name, f"options set (next restart): {' '.join(args)}")

    async def _edit_params(self, name: str) -> None:
        r = await self.session.control.command(name, "get_params")
        if r is None or not r.ok:
            self.state.log.error(name, f"get_params failed: {'no reply' if r is None else r.reason}")
            return
        params = r.result.get("params", {})
        dlg = StrategyParamsDialog(name, params, self)

        def done(code: int) -> None:
            if code == QtWidgets.QDialog.DialogCode.Accepted and dlg.changes:
                self.session.control.spawn(self.session.control.strategy_command(name, "set_params", dlg.changes))
            dlg.deleteLater()

        dlg.finished.connect(done)
        dlg.open()

    # ------------------------------------------------------------------ view
    def focus_panel(self, name: str, widget) -> None:
        dock = self.docks.get(name)
        if dock is not None:
            dock.show()
            dock.raise_()
        if name == "ticket":
            self.ticket.focus_symbol()
        elif widget is not None:
            widget.setFocus()

    def set_theme(self, name: str, save: bool = True) -> None:
        app = QtWidgets.QApplication.instance()
        apply_theme(app, name)
        self.ui.theme = name
        self.chart.set_theme(name != "light")
        self.log_panel.set_dark(name != "light")
        for p in self.tables.values():
            p.model.refresh_all()
        if save:
            self.settings.save(self.ui)

    def toggle_theme(self) -> None:
        self.set_theme("light" if self.ui.theme == "dark" else "dark")

    def reset_layout(self) -> None:
        self.default_layout()
        for p in self.tables.values():
            p.reset_columns()

    def show_hotkeys(self):
        return prompts.show_table(self, "Keyboard shortcuts", ["Key", "Action", "Where"],
                                  [(k, v, g) for k, v, g in HOTKEYS], object_name="hotkeys")

    def open_settings(self) -> None:
        dlg = SettingsDialog(self.ui, self.session.endpoints, self)

        def done(code: int) -> None:
            s = dlg.result_settings()
            dlg.deleteLater()
            if code != QtWidgets.QDialog.DialogCode.Accepted or s is None:
                return
            self.apply_settings(s)

        dlg.finished.connect(done)
        dlg.open()

    def _apply_market(self, s: UiSettings) -> None:
        """The symbol universe's bound (docs/window.md, *Symbol universe*)."""
        self.state.market.configure(max_symbols=s.max_symbols, watchlist=s.watchlist, idle_evict_s=s.idle_evict_s)

    def apply_settings(self, s: UiSettings) -> None:
        old = self.ui
        try:
            self.session.orders.set_limits(s.risk)
        except ValueError as e:
            self.state.log.error("settings", f"risk limits not applied: {e}")
            return
        self.ui = s
        self._apply_market(s)
        self.ticket.set_presets(s.qty_presets)
        self.settings.save(s)
        if s.theme != old.theme:
            self.set_theme(s.theme, save=False)
        if s.apply_limits_to_executor:
            for name in self.session.control.names("executor"):
                self.session.control.spawn(self.session.control.strategy_command(name, "set_limits", dict(s.risk)))
        if s.endpoints != old.endpoints:
            self.state.log.warning("settings", "endpoints changed: they take effect at the next start")
        self.state.log.info("settings", "settings saved")

    def _exported(self, path: str, n: int) -> None:
        self.state.log.info("export", f"{n:,} rows written to {path}")
        self.status_bar.message(f"Exported {n:,} rows to {path}", 5000)

    # ------------------------------------------------------------------ layout persistence
    def save_layout(self) -> None:
        self._save_extra_ladders()  # a ladder's symbol may have changed since it was opened
        self.dock_layout.save(self.settings, self.tables, self.chart)

    def restore_layout(self) -> None:
        self.dock_layout.restore(self.settings, self.tables, self.chart)
