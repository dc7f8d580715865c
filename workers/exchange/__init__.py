"""The exchange gateway ("DLL gateway"): orders in over a ROUTER, execution reports out over a PUB.

* :mod:`.client`    -- the :class:`ExchangeClient` seam a broker library plugs into, and the
  records (orders, fills, positions) the gateway keeps.
* :mod:`.simulated` -- :class:`SimulatedExchange`, the embedded default.
* :mod:`.journal`   -- the SQLite (WAL) journal behind exactly-once orders and recovery.
* :mod:`.gateway`   -- the worker process (``main.py worker exchange``).
"""

from workers.exchange.client import ExchangeClient, FillRecord, Order
from workers.positions import PositionBook
from workers.exchange.simulated import SimulatedExchange

__all__ = ["ExchangeClient", "FillRecord", "Order", "PositionBook", "SimulatedExchange"]
