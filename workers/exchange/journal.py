"""The exchange gateway's journal: every order, state change, fill and reply, in SQLite.

One SQLite file in WAL mode, written only by the gateway that holds it (exclusive locking:
a second gateway on the same file fails to start instead of corrupting idempotency).

* ``synchronous=NORMAL`` (default): a committed batch survives a crash of the process
  (SIGKILL included) because it is in the WAL file the moment COMMIT returns; a power loss
  or OS crash may lose the last batches, never consistency.
* ``synchronous=FULL`` (``--journal-sync full``): COMMIT also fsyncs the WAL, so a batch
  survives a power loss once it is committed.  Costs one fsync per batch.

The gateway writes one transaction per batch (:meth:`Journal.write`) and sends nothing
before it has returned: replies and execution reports only ever describe journaled facts.

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`):

    orders(client_order_id PK, order_id, symbol, side, qty, order_type, limit_price, source,
           status, filled_qty, avg_price, reason, created_ts, updated_ts, cause_ts,
           origin_ts, reply BLOB)        -- reply: the exact bytes of the send_order reply
    fills(n PK, fill_id UNIQUE, client_order_id, order_id, symbol, side, qty, price, ts,
          source, cause_ts, origin_ts)
    meta(key PK, value INTEGER)          -- the exchange client's counters (next O / F number)
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from workers.exchange.client import FillRecord, Order, PositionBook
from workers.protocol import OrderStatus, OrderType, Side

SCHEMA_VERSION = 1
SYNC_MODES = ("normal", "full")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    qty             INTEGER NOT NULL,
    order_type      TEXT NOT NULL,
    limit_price     REAL,
    source          TEXT NOT NULL,
    status          TEXT NOT NULL,
    filled_qty      INTEGER NOT NULL,
    avg_price       REAL NOT NULL,
    reason          TEXT NOT NULL,
    created_ts      INTEGER NOT NULL,
    updated_ts      INTEGER NOT NULL,
    cause_ts        INTEGER NOT NULL,
    origin_ts       INTEGER NOT NULL,
    reply           BLOB
);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders(status);
CREATE TABLE IF NOT EXISTS fills (
    n               INTEGER PRIMARY KEY,
    fill_id         TEXT NOT NULL UNIQUE,
    client_order_id TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    qty             INTEGER NOT NULL,
    price           REAL NOT NULL,
    ts              INTEGER NOT NULL,
    source          TEXT NOT NULL,
    cause_ts        INTEGER NOT NULL,
    origin_ts       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fills_by_order ON fills(client_order_id);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

_ORDER_COLUMNS = (
    "client_order_id, order_id, symbol, side, qty, order_type, limit_price, source, status, "
    "filled_qty, avg_price, reason, created_ts, updated_ts, cause_ts, origin_ts"
)

# An order row is inserted once and then only its state changes; the stored reply is kept
# once written (COALESCE), so a later state change can never erase it.
_UPSERT_ORDER = f"""
INSERT INTO orders ({_ORDER_COLUMNS}, reply) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT(client_order_id) DO UPDATE SET
    order_id = excluded.order_id, status = excluded.status, filled_qty = excluded.filled_qty,
    avg_price = excluded.avg_price, reason = excluded.reason, updated_ts = excluded.updated_ts,
    cause_ts = excluded.cause_ts, reply = COALESCE(orders.reply, excluded.reply)
"""

_INSERT_FILL = """
INSERT INTO fills (n, fill_id, client_order_id, order_id, symbol, side, qty, price, ts, source, cause_ts, origin_ts)
VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
"""


class JournalError(RuntimeError):
    """The journal cannot be opened or written; the gateway must not answer as if it had been."""


@dataclass
class Recovered:
    """Everything the journal gives back after a restart."""

    orders: list[Order] = field(default_factory=list)  # every order, oldest first
    fills: list[FillRecord] = field(default_factory=list)  # every fill, by n
    positions: PositionBook = field(default_factory=PositionBook)
    state: dict[str, int] = field(default_factory=dict)  # the exchange client's counters

    @property
    def open_orders(self) -> list[Order]:
        return [o for o in self.orders if o.is_working]

    @property
    def last_fill_seq(self) -> int:
        return self.positions.last_fill_seq


class Journal:
    def __init__(self, path: str | os.PathLike, sync: str = "normal"):
        if sync not in SYNC_MODES:
            raise ValueError(f"journal sync must be one of {SYNC_MODES}, got {sync!r}")
        self.path = Path(path)
        self.sync = sync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per batch.
            self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=0.5)
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"journal {self.path}: could not switch to WAL mode (got {mode})")
            self.db.execute(f"PRAGMA synchronous={sync.upper()}")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise JournalError(f"journal {self.path} has schema v{version}; this gateway writes v{SCHEMA_VERSION}")
            # A write transaction takes the exclusive lock now, not at the first order.
            self.db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        except sqlite3.Error as e:
            raise JournalError(f"cannot open journal {self.path}: {e} (is another exchange gateway using it?)") from e
        self._saved_state: dict[str, int] = {}

    # ------------------------------------------------------------------ writing
    def write(
        self,
        orders: Iterable[Order] = (),
        fills: Iterable[FillRecord] = (),
        replies: Mapping[str, bytes] | None = None,
        state: Mapping[str, int] | None = None,
    ) -> None:
        """Store one batch atomically: order rows (insert or new state), new fills, stored
        replies (by client_order_id) and the exchange's counters.  Raises JournalError."""
        replies = replies or {}
        order_rows = []
        seen = set()
        for o in orders:
            seen.add(o.client_order_id)
            order_rows.append(_order_row(o) + (replies.get(o.client_order_id),))
        fill_rows = [_fill_row(f) for f in fills]
        lone_replies = [(r, cid) for cid, r in replies.items() if cid not in seen]
        changed_state = {k: v for k, v in (state or {}).items() if self._saved_state.get(k) != v}
        if not (order_rows or fill_rows or lone_replies or changed_state):
            return
        db = self.db
        try:
            db.execute("BEGIN")
            if order_rows:
                db.executemany(_UPSERT_ORDER, order_rows)
            if fill_rows:
                db.executemany(_INSERT_FILL, fill_rows)
            if lone_replies:
                db.executemany("UPDATE orders SET reply = COALESCE(reply, ?) WHERE client_order_id = ?", lone_replies)
            if changed_state:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    list(changed_state.items()),
                )
            db.execute("COMMIT")
        except (sqlite3.Error, OverflowError, ValueError, TypeError) as e:
            # (OverflowError: an integer beyond SQLite's 64 bits.)  Whatever it was, the batch
            # is not stored, and the gateway must learn it as a JournalError, not a stray crash.
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise JournalError(f"journal write failed: {type(e).__name__}: {e}") from e
        self._saved_state.update(changed_state)

    # ------------------------------------------------------------------ reading
    def reply_for(self, client_order_id: str) -> bytes | None:
        row = self.db.execute("SELECT reply FROM orders WHERE client_order_id = ?", (client_order_id,)).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def load(self) -> Recovered:
        """Read back every order, fill, position and counter (call once, at start)."""
        rec = Recovered()
        for row in self.db.execute(f"SELECT {_ORDER_COLUMNS} FROM orders ORDER BY rowid"):
            rec.orders.append(_order_from_row(row))
        for row in self.db.execute(
            "SELECT n, fill_id, client_order_id, order_id, symbol, side, qty, price, ts, source, cause_ts, origin_ts "
            "FROM fills ORDER BY n"
        ):
            fill = FillRecord(*row[:5], Side(row[5]), *row[6:])
            rec.fills.append(fill)
            rec.positions.apply(fill)
        rec.state = {k: int(v) for k, v in self.db.execute("SELECT key, value FROM meta")}
        self._saved_state = dict(rec.state)
        return rec

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass


def remove_journal(path: str | os.PathLike) -> None:
    """Delete a journal and its WAL side files (``--fresh``)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def _order_row(o: Order) -> tuple:
    return (
        o.client_order_id,
        o.order_id,
        o.symbol,
        o.side.value,
        o.qty,
        o.order_type.value,
        o.limit_price,
        o.source,
        o.status.value,
        o.filled_qty,
        o.avg_price,
        o.reason,
        o.created_ts,
        o.updated_ts,
        o.cause_ts,
        o.origin_ts,
    )


def _order_from_row(row: tuple) -> Order:
    (cid, oid, symbol, side, qty, otype, limit_price, source, status, filled, avg, reason, created, updated, cause, origin) = row
    return Order(
        client_order_id=cid,
        symbol=symbol,
        side=Side(side),
        qty=qty,
        order_type=OrderType(otype),
        limit_price=limit_price,
        source=source,
        order_id=oid,
        status=OrderStatus(status),
        filled_qty=filled,
        avg_price=avg,
        reason=reason,
        created_ts=created,
        updated_ts=updated,
        cause_ts=cause,
        origin_ts=origin,
    )


def _fill_row(f: FillRecord) -> tuple:
    return (f.n, f.fill_id, f.client_order_id, f.order_id, f.symbol, f.side.value, f.qty, f.price, f.ts, f.source, f.cause_ts, f.origin_ts)
