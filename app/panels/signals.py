"""Signals: every strategy signal with the executor's decision (accepted, or why not)."""

from __future__ import annotations

from app.models.table import RecordTableModel
from app.models.tables import SIGNAL_COLUMNS
from app.panels.table_panel import TablePanel
from app.panels.live_label import LiveLabel
from app.state import MAX_SIGNALS, Changes


class SignalsPanel(TablePanel):
    def __init__(self, parent=None):
        self.summary = LiveLabel(32, muted=True)
        super().__init__("signals", RecordTableModel(SIGNAL_COLUMNS, key=lambda s: s.key, newest_first=True,
                                                     max_rows=MAX_SIGNALS), buttons=(self.summary,), parent=parent)
        self.accepted = 0
        self.rejected = 0

    def apply(self, ch: Changes) -> None:
        if ch.new_signals:
            for s in ch.new_signals:
                if s.accepted:
                    self.accepted += 1
                else:
                    self.rejected += 1
            self.model.upsert(ch.new_signals)
            self.summary.setText(f"accepted {self.accepted:,}  rejected {self.rejected:,}")
