"""A FIX 4.4 venue behind the exchange gateway: :class:`FixExchange`, an ExchangeClient.

The gateway owns idempotency, the journal, risk and the execution stream; this client turns
its calls into FIX messages and the venue's ExecutionReports into order snapshots and fills:

* ``submit`` -> NewOrderSingle (35=D), ``cancel`` -> OrderCancelRequest (F), ``replace`` ->
  OrderCancelReplaceRequest (G).  Nothing blocks: each returns at once ("requested") and the
  venue's answers arrive through ``poll``, which the gateway calls on its timer
  (``async_events``).  While the session is down, orders are refused with the reason, never
  queued for later: a trader must not have an order reach the market minutes after he sent it.
* ExecutionReports (8) -> the order's state from OrdStatus (39), CumQty (14), AvgPx (6),
  OrderID (37), Text (58); a trade (ExecType 150=F) is a fill of LastQty (32) at LastPx (31).
  A fill is taken once: by ExecID (17) within a session, and across restarts by the order's
  cumulative quantity (a report whose CumQty the journal already holds is a resend).
* OrderCancelReject (9): the order is as it was; its reason says why the cancel or replace
  was refused.
* After every logon (a start, a reconnect) each working order is asked for with
  OrderStatusRequest (H), so what happened while the link was down comes back as reports.
* Order kinds the venue lacks natively (stops, trailing stops, brackets, OCO) are emulated by
  the gateway's :class:`~workers.exchange.kinds.OrderKinds`, which says so (``emulated``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import simplefix

from workers import protocol as P
from workers.exchange.client import CancelResult, ExchangeClient, ExecEvent, FillEvent, FillRecord, Order, OrderEvent
from workers.fix.connection import FixConnection
from workers.fix.session import utc_timestamp
from workers.fix.settings import FixSessionSettings
from workers.protocol import OrderStatus, OrderType, Side, TimeInForce

# tags of the application messages used here
CL_ORD_ID, ORIG_CL_ORD_ID, ORDER_ID, EXEC_ID, EXEC_TYPE, ORD_STATUS = 11, 41, 37, 17, 150, 39
SYMBOL, SIDE, ORDER_QTY, ORD_TYPE, PRICE, TIF, TRANSACT_TIME, HANDL_INST = 55, 54, 38, 40, 44, 59, 60, 21
CUM_QTY, LEAVES_QTY, AVG_PX, LAST_QTY, LAST_PX, TEXT, CXL_REJ_RESPONSE_TO = 14, 151, 6, 32, 31, 58, 434

_SIDE = {Side.BUY: "1", Side.SELL: "2"}
_ORD_TYPE = {OrderType.MARKET: "1", OrderType.LIMIT: "2"}
_TIF = {TimeInForce.DAY: "0", TimeInForce.GTC: "1", TimeInForce.IOC: "3", TimeInForce.FOK: "4"}
_STATUS = {
    b"0": OrderStatus.NEW, b"1": OrderStatus.PARTIALLY_FILLED, b"2": OrderStatus.FILLED,
    b"4": OrderStatus.CANCELLED, b"8": OrderStatus.REJECTED, b"C": OrderStatus.EXPIRED,
    b"A": OrderStatus.PENDING_NEW, b"3": OrderStatus.EXPIRED,  # 3: done for day (what is left will not fill)
    b"6": None, b"E": None, b"5": None,  # pending cancel / pending replace / replaced: still working
}


def _text(v: bytes | None) -> str:
    return v.decode("utf-8", "replace") if v else ""


def _num(v: bytes | None, default: float = 0.0) -> float:
    try:
        return float(v) if v else default
    except ValueError:
        return default


class FixExchange(ExchangeClient):
    """One FIX 4.4 venue (one session of the settings file)."""

    name = "fix"
    capabilities: Mapping = {
        "order_types": frozenset({OrderType.MARKET, OrderType.LIMIT}),
        "cancel": True,
        "remote": True,
        "async_events": True,
        "needs_ticks": False,
        "tifs": frozenset(_TIF),
        "replace": True,
        "brackets": False,
        "oco": False,
        "depth": False,
    }

    def __init__(self, settings: FixSessionSettings, connection: FixConnection | None = None,
                 clock=time.monotonic):
        self.settings = settings
        self.conn = connection or FixConnection(settings, clock=clock)
        self.conn.on_app = self._on_app
        self.clock = clock
        self.next_fill_n = 1
        self.orders: dict[str, Order] = {}  # client_order_id -> the gateway's record
        self._alias: dict[str, str] = {}  # a FIX ClOrdID (a cancel's, a replace's) -> client_order_id
        self._current: dict[str, str] = {}  # client_order_id -> the ClOrdID the venue knows it by now
        self._exec_ids: set[str] = set()
        self._events: list[ExecEvent] = []
        self._req_n = 0
        self._next_connect = 0.0
        self._status_asked = False
        self.notices: list[str] = []  # session events for the gateway's log

    # ------------------------------------------------------------------ the session
    def _ensure_connected(self) -> None:
        if self.conn.sock is not None:
            return
        now = self.clock()
        if now < self._next_connect:
            return
        self._next_connect = now + self.settings.reconnect_s
        self._status_asked = False
        try:
            self.conn.connect(timeout=2.0)
        except OSError as e:
            self.notices.append(f"FIX {self.settings.session_id}: cannot connect to {self.settings.host}:"
                                f"{self.settings.port}: {e}")

    def _refusal(self) -> str:
        s = self.conn.session
        why = s.failure or s.state.value
        return f"the FIX venue {self.settings.target_comp_id} is not connected ({why}); not sent"

    def _new_id(self, coid: str, kind: str) -> str:
        self._req_n += 1
        fid = f"{coid}~{kind}{self._req_n}"
        self._alias[fid] = coid
        return fid

    # ------------------------------------------------------------------ orders
    def submit(self, order: Order, now: int) -> list[ExecEvent]:
        if not self.conn.up:
            order.status = OrderStatus.REJECTED
            order.reason = self._refusal()
            order.ts = now
            return [OrderEvent(order.snapshot())]
        fields = [(CL_ORD_ID, order.client_order_id), (HANDL_INST, "1"), (SYMBOL, order.symbol),
                  (SIDE, _SIDE[order.side]), (TRANSACT_TIME, utc_timestamp()), (ORDER_QTY, order.qty),
                  (ORD_TYPE, _ORD_TYPE[order.exec_type]), (TIF, _TIF[order.tif])]
        if order.exec_type is OrderType.LIMIT:
            fields.append((PRICE, _px(order.limit_price)))
        self.orders[order.client_order_id] = order
        self._current[order.client_order_id] = order.client_order_id
        self.conn.send_app("D", fields)
        return []

    def cancel(self, order: Order, now: int, cause_ts: int = 0) -> CancelResult:
        if not self.conn.up:
            return CancelResult(False, self._refusal())
        mine = self.orders.get(order.client_order_id, order)
        self.orders.setdefault(order.client_order_id, mine)
        fid = self._new_id(order.client_order_id, "c")
        self.conn.send_app("F", [(ORIG_CL_ORD_ID, self._current.get(order.client_order_id, order.client_order_id)),
                                 (CL_ORD_ID, fid), (SYMBOL, order.symbol), (SIDE, _SIDE[order.side]),
                                 (TRANSACT_TIME, utc_timestamp()), (ORDER_QTY, order.qty)])
        return CancelResult(True, "cancel requested from the venue")

    def replace(self, order: Order, qty: int | None, limit_price: float | None, stop_price: float | None, now: int,
                cause_ts: int = 0) -> CancelResult:
        if not self.conn.up:
            return CancelResult(False, self._refusal())
        if order.exec_type is not OrderType.LIMIT and limit_price is not None:
            return CancelResult(False, "only a limit order has a price to change at the venue")
        mine = self.orders.setdefault(order.client_order_id, order)
        fid = self._new_id(order.client_order_id, "r")
        fields = [(ORIG_CL_ORD_ID, self._current.get(order.client_order_id, order.client_order_id)), (CL_ORD_ID, fid),
                  (HANDL_INST, "1"), (SYMBOL, order.symbol), (SIDE, _SIDE[order.side]), (TRANSACT_TIME, utc_timestamp()),
                  (ORDER_QTY, qty if qty is not None else mine.qty), (ORD_TYPE, _ORD_TYPE[mine.exec_type]),
                  (TIF, _TIF[mine.tif])]
        if mine.exec_type is OrderType.LIMIT:
            fields.append((PRICE, _px(limit_price if limit_price is not None else mine.limit_price)))
        self.conn.send_app("G", fields)
        return CancelResult(True, "replace requested from the venue")

    # ------------------------------------------------------------------ the venue's answers
    def poll(self, now: int) -> list[ExecEvent]:
        self._ensure_connected()
        if self.conn.sock is not None:
            self.conn.step(0.0)
        for ev in self.conn.take_events():
            self.notices.append(f"FIX {self.settings.session_id}: {ev.text}")
        if self.conn.up and not self._status_asked:
            self._status_asked = True
            self._ask_status()
        out, self._events = self._events, []
        return out

    def _ask_status(self) -> None:
        """OrderStatusRequest for every working order: the resync after a (re)connect."""
        for coid, o in self.orders.items():
            if o.is_working:
                self.conn.send_app("H", [(CL_ORD_ID, self._current.get(coid, coid)), (SYMBOL, o.symbol),
                                         (SIDE, _SIDE[o.side])])

    def _on_app(self, m: simplefix.FixMessage) -> None:
        mt = m.get(35)
        if mt == b"8":
            self._on_report(m)
        elif mt == b"9":
            self._on_cancel_reject(m)

    def _order_of(self, m: simplefix.FixMessage) -> Order | None:
        for tag in (CL_ORD_ID, ORIG_CL_ORD_ID):
            fid = _text(m.get(tag))
            coid = self._alias.get(fid, fid)
            if coid in self.orders:
                return self.orders[coid]
        return None

    def _on_report(self, m: simplefix.FixMessage) -> None:
        o = self._order_of(m)
        if o is None:
            self.notices.append(f"FIX {self.settings.session_id}: a report for an order this gateway did not send "
                                f"({_text(m.get(CL_ORD_ID))}): ignored")
            return
        now = P.now_ns()
        fid = _text(m.get(CL_ORD_ID))
        if fid:
            self._current[o.client_order_id] = fid
        if m.get(ORDER_ID):
            o.order_id = _text(m.get(ORDER_ID))
        exec_type = m.get(EXEC_TYPE)
        cum = int(_num(m.get(CUM_QTY), o.filled_qty))
        if exec_type == b"F":
            exec_id = _text(m.get(EXEC_ID))
            qty, px = int(_num(m.get(LAST_QTY))), _num(m.get(LAST_PX))
            # once: by ExecID in this session, by the cumulative quantity across restarts
            fresh = exec_id not in self._exec_ids and cum > o.filled_qty and qty > 0
            if exec_id:
                self._exec_ids.add(exec_id)
            if fresh:
                qty = min(qty, cum - o.filled_qty, o.qty - o.filled_qty)
                n = self.next_fill_n
                self.next_fill_n = n + 1
                self._events.append(FillEvent(FillRecord(
                    n=n, fill_id=f"F{n}", client_order_id=o.client_order_id, order_id=o.order_id, symbol=o.symbol,
                    side=o.side, qty=qty, price=px, ts=now, source=o.source, cause_ts=o.cause_ts,
                    origin_ts=o.origin_ts)))
                o.apply_fill(qty, px)
        if exec_type == b"5":  # replaced: the venue's terms now
            if m.get(ORDER_QTY):
                o.qty = int(_num(m.get(ORDER_QTY), o.qty))
            if m.get(PRICE) and o.exec_type is OrderType.LIMIT:
                o.limit_price = _num(m.get(PRICE), o.limit_price or 0.0)
        status = _STATUS.get(m.get(ORD_STATUS))
        # filled is final: a late or resent report of an earlier state does not undo it
        if status is not None and o.status is not OrderStatus.FILLED:
            if status is OrderStatus.FILLED and o.filled_qty < o.qty:
                status = OrderStatus.PARTIALLY_FILLED  # its fills are not all here yet
            o.status = status
        if m.get(AVG_PX) and o.filled_qty:
            o.avg_price = _num(m.get(AVG_PX), o.avg_price)
        if status in (OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.EXPIRED) and m.get(TEXT):
            o.reason = _text(m.get(TEXT))[: P.MAX_TEXT]
        o.ts = now
        self._events.append(OrderEvent(o.snapshot()))

    def _on_cancel_reject(self, m: simplefix.FixMessage) -> None:
        o = self._order_of(m)
        if o is None:
            return
        what = "replace" if m.get(CXL_REJ_RESPONSE_TO) == b"2" else "cancel"
        o.reason = f"{what} refused by the venue: {_text(m.get(TEXT)) or 'no reason given'}"[: P.MAX_TEXT]
        o.ts = P.now_ns()
        self._events.append(OrderEvent(o.snapshot()))

    def take_notices(self) -> list[str]:
        out, self.notices = self.notices, []
        return out

    def gauges(self) -> dict:
        session = self.conn.session
        return {"venue": session.state.value, **{f"fix_{k}": v for k, v in session.counters.items()}}

    # ------------------------------------------------------------------ restarts
    def state(self) -> dict[str, int]:
        return {"next_fill_n": self.next_fill_n}

    def recover(self, orders: Iterable[Order], state: Mapping[str, int], now: int) -> list[ExecEvent]:
        """The journal's working orders are the venue's to tell about: they are asked for with
        OrderStatusRequest once the session is up (nothing is assumed meanwhile)."""
        self.next_fill_n = max(self.next_fill_n, int(state.get("next_fill_n", 1)))
        for o in orders:
            if o.is_working:
                self.orders[o.client_order_id] = o
                self._current.setdefault(o.client_order_id, o.client_order_id)
        self._status_asked = False
        return []

    def working_symbols(self) -> Iterable[str]:
        return {o.symbol for o in self.orders.values() if o.is_working}

    def close(self) -> None:
        if self.conn.sock is not None:
            try:
                self.conn.logout("the gateway is stopping", timeout=1.0)
            except OSError:
                self.conn.close("stopping")


def _px(v: float | None) -> str:
    return f"{v:.10g}" if v is not None else "0"

