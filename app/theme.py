"""Dark (default) and light themes: a Fusion palette, a style sheet, and the tone colours
that tables use for up/down/warning cells."""

from __future__ import annotations

from dataclasses import dataclass

from workers.config import resources_dir
from app.qt import QApplication, QColor, QtGui, QtWidgets
from app.models.table import RecordTableModel

THEMES = ("dark", "light")


@dataclass(frozen=True)
class Palette:
    window: str
    base: str
    alt: str
    text: str
    muted: str
    button: str
    highlight: str
    up: str
    down: str
    warn: str
    bad: str


DARK = Palette(window="#181b21", base="#13161b", alt="#171b21", text="#d7dae0", muted="#6f7783",
               button="#262b34", highlight="#24456e", up="#26c6a6", down="#ff5c5c", warn="#f0b429", bad="#ff6b6b")
LIGHT = Palette(window="#f4f5f7", base="#ffffff", alt="#f5f7fa", text="#1d2330", muted="#8a919c",
                button="#f4f5f7", highlight="#cfe0fb", up="#0f7b6c", down="#c62828", warn="#8a5a00", bad="#b71c1c")


def palette_for(name: str) -> Palette:
    return LIGHT if name == "light" else DARK


def apply_theme(app: QApplication, name: str) -> Palette:
    """Apply ``name`` ("dark" or "light") to the whole application (restyling every widget
    costs tens of milliseconds, so applying the theme already in use does nothing)."""
    p = palette_for(name)
    if app.property("tickdesk_theme") == p and RecordTableModel.tones:
        return p
    app.setProperty("tickdesk_theme", p)
    app.setStyle(QtWidgets.QStyleFactory.create("Fusion"))
    pal = QtGui.QPalette()
    R = QtGui.QPalette.ColorRole
    pal.setColor(R.Window, QColor(p.window))
    pal.setColor(R.WindowText, QColor(p.text))
    pal.setColor(R.Base, QColor(p.base))
    pal.setColor(R.AlternateBase, QColor(p.alt))
    pal.setColor(R.Text, QColor(p.text))
    pal.setColor(R.Button, QColor(p.button))
    pal.setColor(R.ButtonText, QColor(p.text))
    pal.setColor(R.Highlight, QColor(p.highlight))
    pal.setColor(R.HighlightedText, QColor("#ffffff" if name != "light" else "#000000"))
    pal.setColor(R.ToolTipBase, QColor(p.button))
    pal.setColor(R.ToolTipText, QColor(p.text))
    pal.setColor(R.PlaceholderText, QColor(p.muted))
    pal.setColor(QtGui.QPalette.ColorGroup.Disabled, R.Text, QColor(p.muted))
    pal.setColor(QtGui.QPalette.ColorGroup.Disabled, R.ButtonText, QColor(p.muted))
    app.setPalette(pal)
    qss = resources_dir() / "themes" / f"{'light' if name == 'light' else 'dark'}.qss"
    try:
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
    except OSError:
        app.setStyleSheet("")
    RecordTableModel.tones = {
        "up": QColor(p.up), "down": QColor(p.down), "warn": QColor(p.warn), "bad": QColor(p.bad), "muted": QColor(p.muted),
    }
    return p


def repolish(widget: QtWidgets.QWidget) -> None:
    """Re-apply the style sheet after a dynamic property (tone, engaged) changed."""
    st = widget.style()
    st.unpolish(widget)
    st.polish(widget)
    widget.update()
