"""The exchange gateway's journal: every order, state change, fill and reply, in SQLite.

One SQLite file in WAL mode, written only by the gateway that holds it (exclusive locking:
a second gateway on the same file fails to start instead of corrupting idempotency).

Two layers, because a trader waits on the first and nobody waits on the second:

* **the log** -- :meth:`Journal.write` stores one batch (everything a group commit changed)
  as ONE row of an append-only table, in one transaction.  That is the durability point: the
  gateway sends nothing before it returns.  Appending one row touches one or two pages, where
  updating the order, fill and index B-trees touched seven; it is what keeps an order's round
  trip near raw ZeroMQ (docs/performance.md).
* **the tables** -- :meth:`Journal.fold` moves what the log holds into queryable ``orders``,
  ``fills`` and ``meta`` tables and deletes those log rows, in one transaction.  The gateway
  folds when it is idle, when the log grows long, and when it stops; the folded rows come
  from memory, so folding never reads the log back.

:meth:`Journal.load` reads the tables, then replays whatever log rows a crash left, and folds
them.  A batch is therefore in exactly one place at any instant -- a log row or the tables --
and the fold's transaction moves it atomically.

* ``synchronous=NORMAL`` (default): a committed batch survives a crash of the process
  (SIGKILL included) because it is in the WAL file the moment COMMIT returns; a power loss
  or OS crash may lose the last batches, never consistency.
* ``synchronous=FULL`` (``--journal-sync full``): COMMIT also fsyncs the WAL, so a batch
  survives a power loss once it is committed.  Costs one fsync per batch.

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`; a v1 journal is upgraded by adding
the log table):

    orders(client_order_id PK, order_id, symbol, side, qty, order_type, limit_price, source,
           status, filled_qty, avg_price, reason, created_ts, updated_ts, cause_ts,
           origin_ts, reply BLOB)        -- reply: the exact bytes of the send_order reply
    fills(n PK, fill_id UNIQUE, client_order_id, order_id, symbol, side, qty, price, ts,
          source, cause_ts, origin_ts)
    meta(key PK, value INTEGER)          -- the exchange client's counters (next O / F number)
    log(n PK, batch BLOB)                -- msgpack [order rows, fill rows, [[cid, reply]], state]
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from workers.exchange.client import FillRecord, Order, PositionBook
from workers.protocol import OrderStatus, OrderType, Side

SCHEMA_VERSION = 2
SYNC_MODES = ("normal", "full")
#: SQLite stores signed 64-bit integers; a larger one would fail the fold long after the
#: batch was acknowledged, so :meth:`Journal.write` refuses it up front.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
#: pages; a safety net only -- the gateway checkpoints after each fold, off the order path
WAL_AUTOCHECKPOINT = 20_000

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
CREATE TABLE IF NOT EXISTS log (
    n     INTEGER PRIMARY KEY,
    batch BLOB NOT NULL
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
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (a lone INSERT is its own).
            self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=0.5)
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"journal {self.path}: could not switch to WAL mode (got {mode})")
            self.db.execute(f"PRAGMA synchronous={sync.upper()}")
            self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, SCHEMA_VERSION):
                raise JournalError(f"journal {self.path} has schema v{version}; this gateway writes v{SCHEMA_VERSION}")
            # A write transaction takes the exclusive lock now, not at the first order.
            self.db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        except sqlite3.Error as e:
            raise JournalError(f"cannot open journal {self.path}: {e} (is another exchange gateway using it?)") from e
        self._packer = msgpack.Packer(use_bin_type=True)
        self._saved_state: dict[str, int] = {}  # the counters as the journal holds them (log or tables)
        self._last_fill_n = 0
        self._known_fill_n = False
        # What the log holds and the tables do not yet (see fold).
        self._log_last = 0  # the highest log row written
        self._log_rows = 0
        self._orders: dict[str, list] = {}  # client_order_id -> newest order row (+ its first reply)
        self._fills: list[tuple] = []
        self._lone: dict[str, bytes] = {}  # replies for orders not in _orders (first one wins)
        self._state: dict[str, int] = {}

    # ------------------------------------------------------------------ writing
    @property
    def pending(self) -> int:
        """Log rows (batches) not folded into the tables yet."""
        return self._log_rows

    @property
    def pending_records(self) -> int:
        """Order rows and fills a fold would write now."""
        return len(self._orders) + len(self._fills)

    def write(
        self,
        orders: Iterable[Order] = (),
        fills: Iterable[FillRecord] = (),
        replies: Mapping[str, bytes] | None = None,
        state: Mapping[str, int] | None = None,
    ) -> None:
        """Store one batch atomically: order rows (insert or new state), new fills, stored
        replies (by client_order_id) and the exchange's counters.  One log row, one commit.
        Raises JournalError, and then nothing of the batch is stored."""
        replies = replies or {}
        order_rows = []
        seen = set()
        for o in orders:
            seen.add(o.client_order_id)
            order_rows.append(_order_row(o) + (replies.get(o.client_order_id),))
        fill_rows = [_fill_row(f) for f in fills]
        lone = [(cid, r) for cid, r in replies.items() if cid not in seen]
        changed_state = {k: v for k, v in (state or {}).items() if self._saved_state.get(k) != v}
        if not (order_rows or fill_rows or lone or changed_state):
            return
        self._check(order_rows, fill_rows, changed_state)
        try:
            blob = self._packer.pack([order_rows, fill_rows, lone, changed_state])
            cur = self.db.execute("INSERT INTO log (batch) VALUES (?)", (blob,))
        except (sqlite3.Error, OverflowError, ValueError, TypeError) as e:
            raise JournalError(f"journal write failed: {type(e).__name__}: {e}") from e
        self._log_last = cur.lastrowid
        self._log_rows += 1
        self._remember(order_rows, fill_rows, lone, changed_state)

    def _check(self, order_rows: list[tuple], fill_rows: list[tuple], state: Mapping[str, int]) -> None:
        """Refuse what the tables could not hold, before anything is acknowledged: integers
        beyond 64 bits, NaN prices, fills out of number order."""
        for row in order_rows:
            # qty, filled_qty, created/updated/cause/origin ts; avg_price (NaN != NaN)
            if not (_INT_MIN <= min(row[4], row[9], row[12], row[13], row[14], row[15])
                    and max(row[4], row[9], row[12], row[13], row[14], row[15]) <= _INT_MAX
                    and row[10] == row[10]):
                raise JournalError(f"journal write failed: a value out of range in order {row[0]!r}: {row}")
        n = self._last_fill_n
        for row in fill_rows:
            # n, qty, ts, cause_ts, origin_ts; price
            if not (_INT_MIN <= min(row[6], row[8], row[10], row[11]) and max(row[0], row[6], row[8], row[10], row[11]) <= _INT_MAX
                    and row[7] == row[7]):
                raise JournalError(f"journal write failed: a value out of range in fill {row[1]!r}: {row}")
            if row[0] <= n:
                raise JournalError(f"journal write failed: fill {row[1]} numbered {row[0]}, after fill number {n}")
            n = row[0]
        for v in state.values():
            if not (type(v) is int and _INT_MIN <= v <= _INT_MAX):
                raise JournalError(f"journal write failed: counter out of range: {v!r}")

    def _remember(self, order_rows: list, fill_rows: list, lone: list, state: Mapping[str, int]) -> None:
        pending = self._orders
        lone_pending = self._lone
        for row in order_rows:
            cid = row[0]
            old = pending.get(cid)
            if old is None and not lone_pending:
                pending[cid] = row  # the common case: an order new to the log
                continue
            if old is not None and old[-1] is not None:
                row = (*row[:-1], old[-1])  # the first stored reply is the reply
            elif old is None and row[-1] is None and cid in self._lone:
                row = (*row[:-1], self._lone.pop(cid))
            pending[cid] = row
        for cid, reply in lone:
            old = pending.get(cid)
            if old is not None:
                if old[-1] is None:
                    pending[cid] = (*old[:-1], reply)
            else:
                self._lone.setdefault(cid, reply)
        if fill_rows:
            self._fills.extend(fill_rows)
            self._last_fill_n = fill_rows[-1][0]
        self._state.update(state)
        self._saved_state.update(state)

    def fold(self) -> int:
        """Move every log row into the tables, in one transaction.  Returns the number of log
        rows folded.  Raises JournalError (and then the log still holds everything)."""
        if not self._log_rows:
            return 0
        db = self.db
        try:
            db.execute("BEGIN")
            if self._orders:
                db.executemany(_UPSERT_ORDER, list(self._orders.values()))
            if self._fills:
                db.executemany(_INSERT_FILL, self._fills)
            if self._lone:
                db.executemany(
                    "UPDATE orders SET reply = COALESCE(reply, ?) WHERE client_order_id = ?",
                    [(r, cid) for cid, r in self._lone.items()],
                )
            if self._state:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    list(self._state.items()),
                )
            db.execute("DELETE FROM log WHERE n <= ?", (self._log_last,))
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise JournalError(f"journal fold failed: {type(e).__name__}: {e}") from e
        folded = self._log_rows
        self._log_rows = 0
        self._orders.clear()
        self._fills.clear()
        self._lone.clear()
        self._state.clear()
        return folded

    def checkpoint(self) -> None:
        """Copy the WAL into the database file now (called when idle, never inside a commit)."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as e:
            raise JournalError(f"journal checkpoint failed: {type(e).__name__}: {e}") from e

    # ------------------------------------------------------------------ reading
    def reply_for(self, client_order_id: str) -> bytes | None:
        row = self.db.execute("SELECT reply FROM orders WHERE client_order_id = ?", (client_order_id,)).fetchone()
        if row and row[0] is not None:
            return bytes(row[0])  # folded earlier, so it came first
        pending = self._orders.get(client_order_id)
        if pending is not None and pending[-1] is not None:
            return bytes(pending[-1])
        reply = self._lone.get(client_order_id)
        return bytes(reply) if reply is not None else None

    def load(self) -> Recovered:
        """Read back every order, fill, position and counter (call once, at start): the
        tables, then any log rows a crash left -- which are folded before this returns."""
        self.fold()  # called on a journal in use (tests, tools): what this process wrote first
        rec = Recovered()
        orders: dict[str, Order] = {}
        for row in self.db.execute(f"SELECT {_ORDER_COLUMNS} FROM orders ORDER BY rowid"):
            orders[row[0]] = _order_from_row(row)
        for row in self.db.execute(
            "SELECT n, fill_id, client_order_id, order_id, symbol, side, qty, price, ts, source, cause_ts, origin_ts "
            "FROM fills ORDER BY n"
        ):
            rec.fills.append(_fill_from_row(row))
        state = {k: int(v) for k, v in self.db.execute("SELECT key, value FROM meta")}
        self._saved_state = dict(state)
        if rec.fills:
            self._last_fill_n = rec.fills[-1].n
        try:
            for n, blob in self.db.execute("SELECT n, batch FROM log ORDER BY n").fetchall():
                order_rows, fill_rows, lone, changed = msgpack.unpackb(blob, raw=False, use_list=True)
                order_rows = [tuple(r) for r in order_rows]
                fill_rows = [tuple(r) for r in fill_rows]
                for row in order_rows:
                    orders[row[0]] = _order_from_row(row[:16])
                rec.fills.extend(_fill_from_row(r) for r in fill_rows)
                state.update(changed)
                self._remember(order_rows, fill_rows, [tuple(x) for x in lone], changed)
                self._log_last = n
                self._log_rows += 1
        except (ValueError, TypeError, IndexError, msgpack.UnpackException) as e:
            raise JournalError(f"journal {self.path}: unreadable log row: {type(e).__name__}: {e}") from e
        rec.orders = list(orders.values())
        for fill in rec.fills:
            rec.positions.apply(fill)
        rec.state = state
        self.fold()
        return rec

    def close(self) -> None:
        """Fold what is left and checkpoint, so a cleanly stopped journal is all tables."""
        try:
            self.fold()
            self.checkpoint()
        except JournalError:
            pass  # the log still holds it; the next load folds it
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


def _fill_from_row(row: tuple) -> FillRecord:
    return FillRecord(*row[:5], Side(row[5]), *row[6:])


def _fill_row(f: FillRecord) -> tuple:
    return (f.n, f.fill_id, f.client_order_id, f.order_id, f.symbol, f.side.value, f.qty, f.price, f.ts, f.source, f.cause_ts, f.origin_ts)
