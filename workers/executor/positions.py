"""Where the executor's position book used to live; it is :mod:`workers.positions` now.

The exchange gateway, the executor and the window share one implementation (one arithmetic,
one snapshot rule), so this module only keeps the old import path working for the window.
"""

from workers.positions import SEEN_FILLS, PositionBook, SymbolPosition, fill_number

__all__ = ["SEEN_FILLS", "PositionBook", "SymbolPosition", "fill_number"]
