"""The Network panel: every ZeroMQ socket of the fleet and of the window, with its endpoint and
state (from libzmq's socket-monitor events: workers.sockmon), message and byte rates and drops;
and the per-hop latency of the order path, tick -> strategy -> executor -> ack -> fill, with
p50 / p99 / p99.9 (docs/architecture.md, Monitoring).

Fed like the Workers panel: :meth:`NetworkPanel.refresh` reads the supervisor's worker views
(each heartbeat's ``stats["sockets"]`` and ``stats["latency"]``) and, for the window's own
sockets, a :class:`~workers.sockmon.SocketMonitor` the window's feeds register with.  Rates
are differences of the counters between two heartbeats of the same process, over the
heartbeats' own interval: a restarted worker starts from zero again instead of showing a
negative or a huge rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from app.models import columns as F
from app.models.columns import Column, attr
from app.models.table import RecordTableModel
from app.panels.table_panel import TablePanel
from app.qt import Qt, QtWidgets
from workers.sockmon import SocketMonitor, SocketReport, parse_reports

#: the order path's hops, in the order a trade goes through them: (stats key, label, what it measures)
HOPS = (
    ("tick_to_strategy", "tick → strategy", "a tick's publication to the strategy reading it"),
    ("signal_to_executor", "signal → executor", "a strategy's signal to the executor reading it"),
    ("order_ack", "order → ack", "the executor sending an order to the exchange's ack (retries included)"),
    ("tick_to_ack", "tick → ack", "end to end: the tick that caused an order to its ack"),
    ("tick_to_fill", "tick → fill", "end to end: the tick that caused an order to its fill report"),
)
_HOP_ORDER = {key: i for i, (key, _, _) in enumerate(HOPS)}
_HOP_LABEL = {key: label for key, label, _ in HOPS}
_HOP_TIP = {key: tip for key, _, tip in HOPS}
#: a hop with no sample for this long is shown muted (its figures are of an older heartbeat)
HOP_STALE_S = 5.0
WINDOW = "window"


@dataclass
class SocketRow:
    process: str
    report: SocketReport
    msgs_in_s: float = 0.0
    msgs_out_s: float = 0.0
    bytes_s: float = 0.0  # in + out
    # the counters and the time of the report the rates were last taken from
    _base: tuple[int, int, int] = (0, 0, 0)
    _base_t: float = 0.0

    @property
    def key(self) -> tuple[str, str, str, str]:
        r = self.report
        return (self.process, r.name, r.role, r.endpoint)


@dataclass
class HopRow:
    hop: str
    process: str
    stats: dict = field(default_factory=dict)
    seen_at: float = 0.0
    stale: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.hop, self.process)

    def us(self, name: str) -> float | None:
        v = self.stats.get(name)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def bytes_rate(v: float) -> str:
    if not v:
        return "0"
    for unit, scale in (("MB/s", 1e6), ("kB/s", 1e3)):
        if v >= scale:
            return f"{v / scale:,.1f} {unit}"
    return f"{v:,.0f} B/s"


_STATE_TONE = {"connected": "up", "listening": "up", "connecting": "warn", "retrying": "warn",
               "disconnected": "bad", "handshake failed": "bad", "bind failed": "bad", "closed": "muted"}


def _state_text(row: SocketRow) -> str:
    r = row.report
    return f"{r.state} · {r.peers} peer{'s' if r.peers != 1 else ''}" if r.role == "bind" else r.state


def _state_tip(row: SocketRow) -> str:
    r = row.report
    lines = [f"{r.state} for {r.since:.1f} s", f"connections {r.connects}, disconnects {r.disconnects}, "
             f"reconnect attempts {r.retries}, handshake failures {r.handshake_failures}"]
    if r.last_error:
        lines.append(f"last failure: {r.last_error}")
    return "\n".join(lines)


def _rep(name: str) -> Callable[[SocketRow], Any]:
    return lambda row: getattr(row.report, name)


SOCKET_COLUMNS = (
    Column("process", "Process", attr("process"), width=92),
    Column("name", "Socket", _rep("name"), width=70),
    Column("type", "Type", _rep("type"), width=56),
    Column("role", "Role", _rep("role"), width=56),
    Column("endpoint", "Endpoint", _rep("endpoint"), width=200),
    Column("state", "State", _state_text, tone=lambda row: _STATE_TONE.get(row.report.state), width=120,
           tip=_state_tip, csv=_rep("state"),
           header_tip="From ZeroMQ's socket monitor events (a bound socket: listening, with its peers)"),
    Column("in", "In msg/s", attr("msgs_in_s"), F.rate, "r", width=64),
    Column("out", "Out msg/s", attr("msgs_out_s"), F.rate, "r", width=64),
    Column("bytes", "Bytes/s", attr("bytes_s"), bytes_rate, "r", width=80, header_tip="In and out together"),
    Column("drops", "HWM drops", _rep("drops"), F.integer, "r", lambda row: "warn" if row.report.drops else "muted",
           width=80, header_tip="Sends refused at the high-water mark (a PUB drops silently: not countable)"),
    Column("retries", "Retries", _rep("retries"), F.integer, "r", lambda row: "warn" if row.report.retries else "muted",
           width=56, header_tip="Reconnect attempts"),
    Column("handshake", "HS fail", _rep("handshake_failures"), F.integer, "r",
           lambda row: "bad" if row.report.handshake_failures else "muted", width=52,
           header_tip="Handshakes that failed (CurveZMQ keys, a stranger, a protocol mismatch)"),
    Column("since", "In state", _rep("since"), F.duration, "r", width=60),
)


def _hop_tone(row: HopRow) -> str | None:
    return "muted" if row.stale else None


def _hop_tip(row: HopRow) -> str:
    tip = _HOP_TIP.get(row.hop, row.hop)
    return tip + (f"\nno sample for over {HOP_STALE_S:.0f} s: the figures are of an older heartbeat" if row.stale else "")


HOP_COLUMNS = (
    # numbered along the path: the view sorts (and CSV exports) this text, so the path's order holds
    Column("hop", "Hop", lambda row: f"{_HOP_ORDER.get(row.hop, len(HOPS)) + 1} {_HOP_LABEL.get(row.hop, row.hop)}",
           tone=_hop_tone, tip=_hop_tip, width=140),
    Column("process", "Measured by", attr("process"), tone=_hop_tone, width=96),
    Column("n", "Samples", lambda row: row.stats.get("n"), F.integer, "r", _hop_tone, width=60,
           header_tip="Samples in the last heartbeat (about one second)"),
    Column("p50", "p50", lambda row: row.us("p50_us"), F.micros, "r", _hop_tone, width=70),
    Column("p99", "p99", lambda row: row.us("p99_us"), F.micros, "r", _hop_tone, width=70),
    Column("p999", "p99.9", lambda row: row.us("p999_us"), F.micros, "r", _hop_tone, width=70),
    Column("max", "max", lambda row: row.us("max_us"), F.micros, "r", _hop_tone, width=70),
)


class NetworkPanel(QtWidgets.QWidget):
    """Sockets above, the order path's hop latencies below.

    ``workers``: the supervisor's worker views by name (``session.sup.workers``, the dict the
    Workers panel reads); ``window_monitor``: the window's own sockets, if its feeds register
    them; ``clock``: monotonic seconds (tests pass their own)."""

    def __init__(self, workers: dict, window_monitor: SocketMonitor | None = None, *,
                 clock: Callable[[], float] | None = None, parent=None):
        super().__init__(parent)
        import time

        self.setObjectName("panel_network")
        self.workers = workers
        self.window_monitor = window_monitor
        self._clock = clock or time.monotonic
        self.sockets = TablePanel("network_sockets", RecordTableModel(SOCKET_COLUMNS, key=lambda r: r.key))
        self.hops = TablePanel("network_hops", RecordTableModel(HOP_COLUMNS, key=lambda r: r.key), filterable=False)
        self.hops.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.bad_reports = 0  # malformed socket entries dropped (a forged or broken heartbeat)
        self._rows: dict[tuple, SocketRow] = {}
        self._hops: dict[tuple, HopRow] = {}
        self._beat: dict[str, float] = {}  # process -> the heartbeat time last read
        split = QtWidgets.QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.sockets)
        split.addWidget(self.hops)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)

    # ------------------------------------------------------------------ feeding
    def refresh(self) -> None:
        """Read the latest heartbeats (and the window's monitor); repaint what changed.
        Called a few times a second with the Workers panel's refresh."""
        now = self._clock()
        live: set[tuple] = set()
        for name, w in list(self.workers.items()):
            stats = w.stats if isinstance(getattr(w, "stats", None), dict) else {}
            if w.proc is None:
                continue  # not running: its sockets are gone with it
            beat = float(getattr(w, "last_heartbeat", 0.0) or 0.0)
            fresh = beat != self._beat.get(name)
            self._beat[name] = beat
            reports, bad = parse_reports(stats.get("sockets"))
            if fresh:
                self.bad_reports += bad
            for r in reports:
                live.add(self._update_socket(name, r, beat))
            if fresh:
                self._update_hops(name, stats.get("latency"), now)
        if self.window_monitor is not None:
            self.window_monitor.poll()
            for r in self.window_monitor.reports():
                live.add(self._update_socket(WINDOW, r, now))
        gone = [k for k in self._rows if k not in live]
        for k in gone:
            del self._rows[k]
        for h in self._hops.values():
            h.stale = now - h.seen_at > HOP_STALE_S
        # rows are new objects each refresh: upsert swaps them in (and repaints), set_rows only
        # when one went away
        if gone:
            self.sockets.model.set_rows(list(self._rows.values()))
        else:
            self.sockets.model.upsert(list(self._rows.values()))
        self.hops.model.upsert(list(self._hops.values()))

    def _update_socket(self, process: str, r: SocketReport, t: float) -> tuple:
        row = SocketRow(process, r)
        old = self._rows.get(row.key)
        counts = (r.msgs_in, r.msgs_out, r.bytes_in + r.bytes_out)
        if old is None:
            row._base, row._base_t = counts, t
        else:
            row.msgs_in_s, row.msgs_out_s, row.bytes_s = old.msgs_in_s, old.msgs_out_s, old.bytes_s
            row._base, row._base_t = old._base, old._base_t
            dt = t - old._base_t
            if any(c < b for c, b in zip(counts, old._base)):
                # counters went back: a new incarnation of the process; start again from it
                row.msgs_in_s = row.msgs_out_s = row.bytes_s = 0.0
                row._base, row._base_t = counts, t
            elif dt > 0:
                row.msgs_in_s, row.msgs_out_s, row.bytes_s = ((c - b) / dt for c, b in zip(counts, old._base))
                row._base, row._base_t = counts, t
        self._rows[row.key] = row
        return row.key

    def _update_hops(self, process: str, latency: Any, now: float) -> None:
        if not isinstance(latency, dict):
            return
        for hop, s in latency.items():
            if isinstance(hop, str) and isinstance(s, dict) and "p50_us" in s:
                self._hops[(hop, process)] = HopRow(hop, process, s, now)

    # ------------------------------------------------------------------ reading
    def socket_rows(self) -> list[SocketRow]:
        return list(self._rows.values())

    def hop_rows(self) -> list[HopRow]:
        """In the order of the path (tick -> strategy -> executor -> ack -> fill), then the rest."""
        return sorted(self._hops.values(), key=lambda h: (_HOP_ORDER.get(h.hop, len(HOPS)), h.hop, h.process))


__all__ = ["NetworkPanel", "SocketRow", "HopRow", "HOPS", "SOCKET_COLUMNS", "HOP_COLUMNS", "bytes_rate"]
