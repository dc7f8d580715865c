"""Where the window's docks go, and how the layout is kept between runs.

The default layout puts market watch, ticket and positions in a column left of the chart and
two tab groups across the bottom; the trader's own layout (geometry, dock state, each
table's columns, the chart's interval and symbol) is saved in the settings when the window
closes and restored when it opens.
"""

from __future__ import annotations

from app.qt import QByteArray, Qt, QTimer, QtWidgets

__all__ = ["LAYOUT_VERSION", "CHART_INTERVALS", "WindowLayout"]

#: Qt's saveState version: raise it when the docks change, so an old saved state is ignored
#: (restoreState refuses it) instead of restoring a layout that no longer fits.
LAYOUT_VERSION = 3
#: Chart intervals a saved setting may restore (what the window's Alt+1..3 offer).
CHART_INTERVALS = (1, 5, 60)


class WindowLayout:
    """The docks of ``window`` (a ``QMainWindow``) by name, laid out and persisted.

    Attributes:
        sizes_pending: the default dock sizes still have to be applied (they only take once
            the window has its real size, after it is shown).
    """

    def __init__(self, window: QtWidgets.QMainWindow, docks: dict[str, QtWidgets.QDockWidget]) -> None:
        self.window = window
        self.docks = docks
        self.sizes_pending = False

    def reset(self) -> None:
        """The default layout: every dock docked and shown."""
        w, d = self.window, self.docks
        for dock in d.values():
            dock.setFloating(False)
            dock.show()
        L, B = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.BottomDockWidgetArea
        w.addDockWidget(L, d["market"])
        w.splitDockWidget(d["market"], d["ticket"], Qt.Orientation.Vertical)
        w.splitDockWidget(d["ticket"], d["positions"], Qt.Orientation.Vertical)
        w.addDockWidget(B, d["working"])
        w.splitDockWidget(d["working"], d["workers"], Qt.Orientation.Horizontal)
        for a, b in (("working", "history"), ("history", "fills"), ("fills", "signals"), ("workers", "log")):
            w.tabifyDockWidget(d[a], d[b])
        d["working"].raise_()
        d["workers"].raise_()
        self.sizes_pending = True
        if w.isVisible():
            QTimer.singleShot(0, self.apply_default_sizes)

    def shown(self) -> None:
        """The window was shown: apply the default sizes if they are still due."""
        if self.sizes_pending:
            QTimer.singleShot(0, self.apply_default_sizes)

    def apply_default_sizes(self) -> None:
        self.sizes_pending = False
        win, d = self.window, self.docks
        w, h = win.width(), win.height()
        H, V = Qt.Orientation.Horizontal, Qt.Orientation.Vertical
        win.resizeDocks([d["market"]], [min(712, int(w * 0.45))], H)
        win.resizeDocks([d["working"]], [max(220, int(h * 0.32))], V)
        ticket_h = d["ticket"].widget().sizeHint().height() + 24
        win.resizeDocks([d["market"], d["ticket"], d["positions"]], [200, ticket_h, 200], V)
        win.resizeDocks([d["working"], d["workers"]], [int(w * 0.47), int(w * 0.53)], H)

    def save(self, settings, tables: dict, chart) -> None:
        """Geometry, dock state, every table's columns, the chart's interval and symbol."""
        s, win = settings, self.window
        s.set_value("window/geometry", win.saveGeometry())
        s.set_value("window/state", win.saveState(LAYOUT_VERSION))
        for p in tables.values():
            p.save_state(s)
        s.set_value("chart/interval", chart.interval)
        if chart.symbol:
            s.set_value("session/symbol", chart.symbol)
        s.sync()

    def restore(self, settings, tables: dict, chart) -> None:
        """What :meth:`save` kept; anything missing or unreadable keeps its default."""
        s, win = settings, self.window
        geo = s.value("window/geometry")
        if isinstance(geo, QByteArray) and not geo.isEmpty():
            win.restoreGeometry(geo)
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty() and win.restoreState(state, LAYOUT_VERSION):
            self.sizes_pending = False  # the saved state has the trader's sizes
        for p in tables.values():
            p.restore_state(s)
        try:
            interval = int(s.value("chart/interval", 1))
        except (TypeError, ValueError):
            interval = 1
        if interval in CHART_INTERVALS:
            chart.set_interval(interval)
