"""Window settings: what they are (a dataclass), where they live (QSettings, an INI file in the
data folder), and the dialog that edits them (endpoints, risk limits, confirmations, theme)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from workers.config import Endpoints, is_loopback
from workers.executor.risk import RiskLimits
from workers.symbols import normalize_symbol, parse_symbols
from app.qt import QSettings, QtWidgets
from app.state import IDLE_EVICT_S, MAX_SYMBOLS

SETTINGS_FILE = "tickdesk.ini"
QTY_PRESETS = (100, 500, 1000)
MAX_PRESETS = 6
RISK_FIELDS = ("max_order_qty", "max_position", "price_band_pct", "max_orders_per_sec")


@dataclass
class UiSettings:
    theme: str = "dark"
    #: ask before sending a manual order (an expert turns this off)
    confirm_orders: bool = True
    #: ask before "cancel all" (the kill switch never asks: it must act at once)
    confirm_cancel_all: bool = True
    #: ask before quitting while positions are open or orders are working
    confirm_quit: bool = True
    default_qty: int = 100
    #: the ticket's quantity buttons (1 to 6 of them)
    qty_presets: list = field(default_factory=lambda: list(QTY_PRESETS))
    #: risk limits of the manual ticket (RiskLimits field -> value)
    risk: dict = field(default_factory=lambda: {k: getattr(RiskLimits(), k) for k in RISK_FIELDS})
    #: also send the limits to the executor (set_limits) when they change
    apply_limits_to_executor: bool = False
    #: endpoint overrides (name -> url); empty = the default; used at the next start
    endpoints: dict = field(default_factory=dict)
    #: symbols always held, whatever the universe cap (besides those with orders or
    #: positions and the chart's, which are held anyway)
    watchlist: list = field(default_factory=list)
    #: symbols held besides the watched ones; ticks of further new symbols are refused
    max_symbols: int = MAX_SYMBOLS
    #: an unwatched symbol idle this long may give its place to a new one (0: never)
    idle_evict_s: float = IDLE_EVICT_S

    def limits(self) -> RiskLimits:
        return RiskLimits().updated(self.risk)


class Settings:
    """QSettings in INI format at ``path`` (tests and --data-dir get their own file)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.q = QSettings(self.path, QSettings.Format.IniFormat)

    def load(self) -> UiSettings:
        d = UiSettings()
        q = self.q
        s = UiSettings(
            theme=str(q.value("ui/theme", d.theme)),
            confirm_orders=_bool(q.value("orders/confirm", d.confirm_orders)),
            confirm_cancel_all=_bool(q.value("orders/confirm_cancel_all", d.confirm_cancel_all)),
            confirm_quit=_bool(q.value("orders/confirm_quit", d.confirm_quit)),
            default_qty=_int(q.value("orders/default_qty", d.default_qty), d.default_qty),
            apply_limits_to_executor=_bool(q.value("risk/apply_to_executor", d.apply_limits_to_executor)),
        )
        if s.theme not in ("dark", "light"):
            s.theme = "dark"
        risk = dict(d.risk)
        for k in RISK_FIELDS:
            v = q.value(f"risk/{k}")
            if v is not None:
                risk[k] = v
        try:
            RiskLimits().updated(risk)
            s.risk = {k: getattr(RiskLimits().updated(risk), k) for k in RISK_FIELDS}
        except ValueError:
            s.risk = dict(d.risk)  # a hand-edited file with nonsense: back to safe defaults
        for n in Endpoints.NAMES:
            v = q.value(f"endpoints/{n}")
            if v:
                s.endpoints[n] = str(v)
        s.watchlist = parse_watchlist(q.value("market/watchlist", ""))
        try:
            s.qty_presets = parse_presets(q.value("orders/qty_presets", ""))
        except ValueError:
            s.qty_presets = list(QTY_PRESETS)  # a hand-edited file with nonsense
        s.max_symbols = min(max(_int(q.value("market/max_symbols", d.max_symbols), d.max_symbols), MIN_CAP), MAX_CAP)
        s.idle_evict_s = max(0.0, _float(q.value("market/idle_evict_s", d.idle_evict_s), d.idle_evict_s))
        return s

    def save(self, s: UiSettings) -> None:
        q = self.q
        q.setValue("ui/theme", s.theme)
        q.setValue("orders/confirm", s.confirm_orders)
        q.setValue("orders/confirm_cancel_all", s.confirm_cancel_all)
        q.setValue("orders/confirm_quit", s.confirm_quit)
        q.setValue("orders/default_qty", int(s.default_qty))
        q.setValue("orders/qty_presets", " ".join(str(n) for n in s.qty_presets))
        q.setValue("risk/apply_to_executor", s.apply_limits_to_executor)
        for k in RISK_FIELDS:
            q.setValue(f"risk/{k}", s.risk[k])
        q.setValue("market/watchlist", " ".join(s.watchlist))
        q.setValue("market/max_symbols", int(s.max_symbols))
        q.setValue("market/idle_evict_s", float(s.idle_evict_s))
        q.remove("endpoints")
        for n, v in s.endpoints.items():
            if v:
                q.setValue(f"endpoints/{n}", v)
        q.sync()

    # raw values (geometry, dock state, header states)
    def value(self, key: str, default=None):
        return self.q.value(key, default)

    def set_value(self, key: str, value) -> None:
        self.q.setValue(key, value)

    def sync(self) -> None:
        self.q.sync()


def parse_presets(text) -> list[int]:
    """``"100 500 1000"`` -> [100, 500, 1000]; empty -> the defaults.  Raises ValueError with
    the reason for a word that is not a whole quantity of at least 1, or too many."""
    if isinstance(text, (list, tuple)):  # QSettings reads "100, 500" back as a list
        text = " ".join(str(x) for x in text)
    words = str(text or "").replace(",", " ").split()
    if not words:
        return list(QTY_PRESETS)
    if len(words) > MAX_PRESETS:
        raise ValueError(f"at most {MAX_PRESETS} quantity presets")
    out = []
    for w in words:
        if not w.isdigit() or not 1 <= int(w) <= 10_000_000:
            raise ValueError(f"quantity preset {w!r} is not a whole number from 1 to 10,000,000")
        out.append(int(w))
    return out


def _bool(v) -> bool:
    if isinstance(v, bool):
        return v
    return str(v).lower() in ("1", "true", "yes", "on")


def _int(v, default: int) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _float(v, default: float) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return f if f == f and f != float("inf") else default


#: bounds of the universe cap a setting can ask for
MIN_CAP, MAX_CAP = 0, 100_000


def parse_watchlist(v) -> list[str]:
    """The stored watch list (text, or a list as QSettings may hand it back) -> symbols in
    the one normal form (workers/symbols.py), in order, once each; a hand-edited word that is
    not a symbol is left out rather than losing the whole list."""
    words = v if isinstance(v, (list, tuple)) else [str(v or "")]
    out: list[str] = []
    for w in words:
        try:
            syms = parse_symbols(str(w))
        except ValueError:
            syms = tuple(x for x in (_symbol_or_none(p) for p in str(w).replace(",", " ").split()) if x)
        out.extend(x for x in syms if x not in out)
    return out


def _symbol_or_none(word: str) -> str | None:
    try:
        return normalize_symbol(word)
    except ValueError:
        return None


class CheckedDialog(QtWidgets.QDialog):
    """A dialog whose OK runs ``_accept``: that accepts, or keeps the dialog open and says
    what is wrong (``_fail``) on a line above the buttons."""

    def _lay_out(self, *parts: QtWidgets.QWidget | QtWidgets.QLayout) -> None:
        self.error = QtWidgets.QLabel("")
        self.error.setObjectName("outcome")
        self.error.setProperty("tone", "bad")
        self.error.hide()
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        lay = QtWidgets.QVBoxLayout(self)
        for part in parts:
            if isinstance(part, QtWidgets.QLayout):
                lay.addLayout(part)
            else:
                lay.addWidget(part)
        lay.addWidget(self.error)
        lay.addWidget(buttons)

    def _accept(self) -> None:
        raise NotImplementedError

    def _fail(self, text: str) -> None:
        self.error.setText(text)
        self.error.show()


def _spin(lo: float, hi: float, value: float, box: type = QtWidgets.QSpinBox) -> QtWidgets.QAbstractSpinBox:
    # the range first: a value outside the default range would be clamped
    b = box()
    b.setRange(lo, hi)
    b.setValue(value)
    return b


def _form_tab(tabs: QtWidgets.QTabWidget, title: str,
              *rows: tuple[str, QtWidgets.QWidget] | QtWidgets.QWidget) -> None:
    """A tab of labelled rows; a bare widget spans the row."""
    page = QtWidgets.QWidget()
    form = QtWidgets.QFormLayout(page)
    for row in rows:
        if isinstance(row, tuple):
            form.addRow(*row)
        else:
            form.addRow(row)
    tabs.addTab(page, title)


def _check(text: str, checked: bool) -> QtWidgets.QCheckBox:
    b = QtWidgets.QCheckBox(text)
    b.setChecked(checked)
    return b


class SettingsDialog(CheckedDialog):
    """Edits a copy of the settings; :meth:`result_settings` returns it after OK."""

    def __init__(self, settings: UiSettings, current_endpoints: Endpoints, parent=None):
        super().__init__(parent)
        self.setWindowTitle("TickDesk settings")
        self.setObjectName("settingsDialog")
        self._orig = settings
        tabs = QtWidgets.QTabWidget()

        self.theme = QtWidgets.QComboBox()
        self.theme.addItems(["dark", "light"])
        self.theme.setCurrentText(settings.theme)
        self.confirm = _check("Ask before sending a manual order", settings.confirm_orders)
        self.confirm_cancel_all = _check("Ask before cancelling all working orders", settings.confirm_cancel_all)
        self.confirm_quit = _check("Ask before quitting with open positions or working orders", settings.confirm_quit)
        self.default_qty = _spin(1, 10_000_000, settings.default_qty)
        self.qty_presets = QtWidgets.QLineEdit(" ".join(str(n) for n in settings.qty_presets))
        self.qty_presets.setObjectName("qtyPresets")
        self.qty_presets.setToolTip(f"The ticket's quantity buttons: up to {MAX_PRESETS} quantities, space separated")
        _form_tab(tabs, "General", ("Theme", self.theme), ("", self.confirm), ("", self.confirm_cancel_all), ("", self.confirm_quit),
                  ("Default quantity", self.default_qty), ("Quantity presets", self.qty_presets))

        self.max_qty = _spin(1, 10_000_000, int(settings.risk["max_order_qty"]))
        self.max_pos = _spin(0, 100_000_000, int(settings.risk["max_position"]))
        self.band = _spin(0.01, 100.0, float(settings.risk["price_band_pct"]), QtWidgets.QDoubleSpinBox)
        self.band.setDecimals(2)
        self.band.setSuffix(" %")
        self.rate = _spin(1, 10_000, int(settings.risk["max_orders_per_sec"]))
        self.to_executor = _check("Also apply these limits to the executor (strategy orders)",
                                  settings.apply_limits_to_executor)
        self.watchlist = QtWidgets.QLineEdit(" ".join(settings.watchlist))
        self.watchlist.setPlaceholderText("AAPL MSFT …")
        self.watchlist.setToolTip("Always held and shown, however many symbols the feed has")
        self.max_symbols = _spin(MIN_CAP, MAX_CAP, int(settings.max_symbols))
        self.max_symbols.setToolTip("Symbols held besides the watched ones (watch list, orders, positions, chart); "
                                    "ticks of further new symbols are ignored, and the log says so")
        self.idle_evict = _spin(0, 86_400, int(settings.idle_evict_s))
        self.idle_evict.setSuffix(" s")
        self.idle_evict.setToolTip("At the cap, a symbol without a tick for this long makes room for a new one "
                                   "(0, the default: never; new symbols are refused and the log says so)")
        _form_tab(tabs, "Market", ("Watch list", self.watchlist), ("Max other symbols", self.max_symbols),
                  ("Replace symbols idle for", self.idle_evict))

        _form_tab(tabs, "Risk limits", ("Max order quantity", self.max_qty), ("Max position (per symbol)", self.max_pos),
                  ("Price band around last", self.band), ("Max orders per second", self.rate), ("", self.to_executor))

        note = QtWidgets.QLabel("Endpoints take effect at the next start. Only loopback (127.x, ::1, ipc://) "
                                "is allowed without CurveZMQ keys.")
        note.setWordWrap(True)
        note.setObjectName("muted")
        self.endpoint_edits: dict[str, QtWidgets.QLineEdit] = {}
        defaults = Endpoints()
        for n in Endpoints.NAMES:
            e = QtWidgets.QLineEdit(settings.endpoints.get(n, ""))
            e.setPlaceholderText(getattr(defaults, n))
            e.setToolTip(f"now: {getattr(current_endpoints, n)}")
            self.endpoint_edits[n] = e
        _form_tab(tabs, "Endpoints", note, *self.endpoint_edits.items())

        self._lay_out(tabs)
        self._result: UiSettings | None = None

    def _accept(self) -> None:
        s = dataclasses.replace(self._orig)
        s.theme = self.theme.currentText()
        s.confirm_orders = self.confirm.isChecked()
        s.confirm_cancel_all = self.confirm_cancel_all.isChecked()
        s.confirm_quit = self.confirm_quit.isChecked()
        s.default_qty = self.default_qty.value()
        try:
            s.qty_presets = parse_presets(self.qty_presets.text())
        except ValueError as e:
            return self._fail(str(e))
        s.risk = {"max_order_qty": self.max_qty.value(), "max_position": self.max_pos.value(),
                  "price_band_pct": self.band.value(), "max_orders_per_sec": self.rate.value()}
        s.apply_limits_to_executor = self.to_executor.isChecked()
        try:
            s.watchlist = list(parse_symbols(self.watchlist.text()))
        except ValueError as e:
            return self._fail(f"watch list: {e}")
        s.max_symbols = self.max_symbols.value()
        s.idle_evict_s = float(self.idle_evict.value())
        s.endpoints = {}
        for n, e in self.endpoint_edits.items():
            v = e.text().strip()
            if not v:
                continue
            if not v.startswith(("tcp://", "ipc://", "inproc://")):
                return self._fail(f"{n}: an endpoint looks like tcp://127.0.0.1:5555 or ipc:///path")
            if not is_loopback(v):
                return self._fail(f"{n}: {v} is not loopback; remote endpoints need CurveZMQ keys (see docs)")
            s.endpoints[n] = v
        try:
            s.limits()
        except ValueError as e:
            return self._fail(str(e))
        self._result = s
        self.accept()

    def result_settings(self) -> UiSettings | None:
        return self._result
