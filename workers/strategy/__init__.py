"""Support/resistance strategy worker.

``levels`` holds the pure signal logic (no sockets, deterministic on tick timestamps);
``worker`` wraps it in a TickDesk worker process: SUB ticks, PUSH signals and levels to the
executor, SUB the executor's decisions to revert rejected signals.  See docs/strategy.md.
"""

from workers.strategy.levels import MODES, RollingRange, SRStrategy, StrategyParams, SupportResistance

__all__ = ["MODES", "RollingRange", "SRStrategy", "StrategyParams", "SupportResistance"]
