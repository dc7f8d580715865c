"""The chart's colours: the two themes and the marker styles. Plain data, no Qt."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DARK", "LIGHT", "MARKER_STYLE", "Theme"]


@dataclass(frozen=True)
class Theme:
    background: str
    foreground: str
    axis: str
    grid_alpha: float
    up: str
    down: str
    crosshair: str
    support: str
    resistance: str
    label_fill: str


DARK = Theme(background="#0b0e13", foreground="#c9d1d9", axis="#6e7681", grid_alpha=0.18,
             up="#26a69a", down="#ef5350", crosshair="#8b949e", support="#42a5f5",
             resistance="#ffa726", label_fill="#161b22")
LIGHT = Theme(background="#ffffff", foreground="#24292f", axis="#8c959f", grid_alpha=0.25,
              up="#089981", down="#f23645", crosshair="#57606a", support="#1e88e5",
              resistance="#fb8c00", label_fill="#f6f8fa")

#: marker kind -> (pyqtgraph symbol, fill (None = hollow), outline, size px, readable name)
MARKER_STYLE: dict[str, tuple[str, str | None, str, int, str]] = {
    "signal_buy": ("t1", "#00e676", "#00a152", 13, "Buy signal"),
    "signal_sell": ("t", "#ff1744", "#b2102f", 13, "Sell signal"),
    "signal_rejected": ("d", None, "#ffb300", 13, "Rejected signal"),
    "fill_buy": ("o", "#2979ff", "#e3f2fd", 9, "Buy fill"),
    "fill_sell": ("o", "#d500f9", "#f3e5f5", 9, "Sell fill"),
}
