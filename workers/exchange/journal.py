"""The exchange gateway's journal: every order, state change, fill and reply.

Two layers, because a trader waits on the first and nobody waits on the second:

* **The log** -- ``<journal>-log``, an append-only file.  :meth:`Journal.write` stores one
  batch (everything a group commit changed) as ONE record: ``<u32 length><u32 crc32>`` and a
  msgpack array ``[order rows, fill rows, [[cid, reply]], counters, account]``, in one
  ``write()`` (format 4: a reply of a request that is not an order, replace_order, is
  ``[cid, reply, terms]`` among the replies).
  That is the durability point: the gateway sends nothing before it returns.  A ``write()``
  costs a few microseconds even when the process has just woken up; the SQLite commit it
  replaces cost 25-100 us on a cold cache (docs/performance.md).
* **The tables** -- one SQLite file (WAL mode, exclusive lock: a second gateway on the same
  journal fails to start instead of corrupting idempotency).  :meth:`Journal.fold` moves the
  log's records into queryable ``orders``, ``fills`` and ``meta`` tables and, in the same
  transaction, records how far the log is folded (``log_state``: the log's generation and
  offset).  The gateway folds when it is idle, when the log grows long, and when it stops;
  the rows come from memory, so folding never reads the log back.  :meth:`Journal.checkpoint`
  copies the WAL into the database file (synced); once that holds every fold, the log file is
  replaced by an empty one of the next generation.

Opening a journal replays whatever the log holds beyond the folded offset -- a crash's
leftovers -- and folds it, so every record is in the tables or in the log's unfolded tail,
never lost and never counted twice.  A torn last record (a crash mid-``write``, or power loss)
fails its length or CRC and is cut off; everything before it stands.  Anything else that
fails a check is damage, not a torn tail, and is refused (:class:`JournalCorrupt`), never
served: a bad record with a valid record after it, a log shorter than its folded offset, a
log missing or of another generation than the tables name, a database emptied or unreadable
beside a log that says it held folds.  Serving such a journal would forget answered orders,
and a client's resend of one would become a second, new order.

A write that fails for lack of space (:class:`JournalFull`) is cut back to the last good
record, so a full disk never leaves half a record for the next open to take for damage.

* ``synchronous=NORMAL`` (default): a committed batch survives a crash of the process
  (SIGKILL included) because ``write()`` returned: it is in the OS's page cache.  A power loss
  or OS crash may lose the last batches, never consistency (the log is cut at its first bad
  record, the tables at their last synced fold).
* ``synchronous=FULL`` (``--journal-sync full``): each record is also ``fdatasync``-ed before
  ``write`` returns, and folds commit with SQLite's FULL sync, so a batch survives a power
  loss once it is written.  Costs one fsync per batch.

The account's own state (today: the kill switch, :class:`Account`) is journaled with the
batches like everything else: the fifth item of a log record (format 3), the ``account``
table once folded.  It is state of the account, not of a process: it survives every restart.

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`; v1..v3 journals are upgraded in
place, and a log of format 1 or 2 left by an earlier version is replayed once, then replaced
by a new generation in today's format):

    orders(client_order_id PK, order_id, symbol, side, qty, order_type, limit_price, source,
           status, filled_qty, avg_price, reason, created_ts, updated_ts, cause_ts,
           origin_ts, reply BLOB)        -- reply: the exact bytes of the send_order reply
    fills(n PK, fill_id UNIQUE, client_order_id, order_id, symbol, side, qty, price, ts,
          source, cause_ts, origin_ts)
    requests(client_order_id PK, terms BLOB, reply BLOB)
                                         -- requests that are not orders but answered once
                                            (replace_order): their terms and exact reply
    meta(key PK, value INTEGER)          -- the exchange client's counters (next O / F number)
    account(key PK, value)               -- the account's state (Account's fields: kill switch)
    log_state(key PK, value INTEGER)     -- 'gen', 'folded': the log folded so far
"""

from __future__ import annotations

import errno
import operator
import os
import sqlite3
import struct
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import msgspec

from workers.durable import sync_dir, sync_file
from workers.errors import CorruptStateError
from workers.exchange.client import FillRecord, Order
from workers.positions import PositionBook
from workers.protocol import TimeInForce

SCHEMA_VERSION = 5
#: the schema versions this gateway opens (and upgrades to SCHEMA_VERSION)
_READABLE_VERSIONS = (0, 1, 2, 3, 4, SCHEMA_VERSION)
SYNC_MODES = ("normal", "full")
#: SQLite stores signed 64-bit integers; a larger one would fail the fold long after the
#: batch was acknowledged, so :meth:`Journal.write` refuses it up front.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
#: pages; a safety net only -- the gateway checkpoints off the order path (see the gateway)
WAL_AUTOCHECKPOINT = 20_000
LOG_SUFFIX = "-log"
#: the log file's header: magic, format version, generation (a fresh log: the next one)
_LOG_HEADER = struct.Struct("<4sIQ")
_LOG_MAGIC = b"TDJL"
#: format 3: a record is [order rows, fill rows, replies, counters, account]; format 2: the
#: same without account (schema v3); format 1 (schema v2): format 2 with order rows in
#: _V2_ORDER_COLUMNS order.  Formats 1 and 2 are read (once, at open), never appended to.
_LOG_FORMAT = 4
_LOG_FORMATS = (1, 2, 3, _LOG_FORMAT)
#: how many items a record's payload array holds, by log format
_RECORD_ITEMS = {1: 4, 2: 4, 3: 5, 4: 5}
#: each record: payload length, crc32 of the payload
_REC = struct.Struct("<II")
#: a record longer than this is not one (a torn header read as a length)
_MAX_RECORD = 256 * 1024 * 1024
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def _sql_type(t: Any) -> str:
    t = _optional_inner(t)
    if t is int or t is bool:
        return "INTEGER"
    if t is float:
        return "REAL"
    return "TEXT"  # str and the str enums


def _optional_inner(t: Any) -> Any:
    args = [a for a in get_args(t) if a is not type(None)]
    return args[0] if args and type(None) in get_args(t) else t


def _columns(record: type, key: str, unique: tuple[str, ...] = ()) -> str:
    """CREATE TABLE column lines for ``record``'s fields (NULL allowed where the field is
    optional)."""
    lines = []
    for f in msgspec.structs.fields(record):
        lines.append(f"    {_column(f, key, unique)}")
    return ",\n".join(lines)


def _column(f: msgspec.structs.FieldInfo, key: str = "", unique: tuple[str, ...] = ()) -> str:
    null = type(None) in get_args(f.type)
    line = f"{f.name} {_sql_type(f.type)}"
    return line + (" PRIMARY KEY" if f.name == key else (" NOT NULL UNIQUE" if f.name in unique else ("" if null else " NOT NULL")))


def _sql_literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def _add_missing_columns(columns: set[str]) -> str:
    """ALTER TABLE lines that give a v4 orders table the columns issue 13's order kinds
    added, each with its field's default but ``tif``: gtc, since an order from before v5 lived
    until it filled or was cancelled (as a DAY order it would expire at the first timer tick
    after the upgrade).  A resend of such an order carries no tif (day today): the gateway
    takes it for the same order, by ``Journal.legacy_before``."""
    out = []
    for f in msgspec.structs.fields(Order):
        if f.name in columns or f.name == "updated_ts":
            continue
        default = _LEGACY_DEFAULTS.get(f.name, f.default if f.default is not msgspec.NODEFAULT else None)
        out.append(f"ALTER TABLE orders ADD COLUMN {_column(f)} DEFAULT {_sql_literal(default)};")
    return " ".join(out)


#: what a pre-v5 order is, where today's default differs (see _add_missing_columns)
_LEGACY_DEFAULTS = {"tif": TimeInForce.GTC.value}
#: log_state key: when the journal was upgraded to v5 (ns); orders created before are pre-v5
_V5_SINCE = "v5_since"


#: the columns of the orders and fills tables, in record order (log rows are in this order too)
ORDER_COLUMNS = tuple(f.name for f in msgspec.structs.fields(Order))
FILL_COLUMNS = tuple(f.name for f in msgspec.structs.fields(FillRecord))
#: what a row of the log's format 1 (schema v2) held, in order
_V2_ORDER_COLUMNS = ("client_order_id", "order_id", "symbol", "side", "qty", "order_type", "limit_price", "source", "status",
                     "filled_qty", "avg_price", "reason", "created_ts", "ts", "cause_ts", "origin_ts")
#: what a row of the log's formats 2 and 3 (schemas v3, v4) held, in order
_V4_ORDER_COLUMNS = ("client_order_id", "order_id", "symbol", "side", "qty", "filled_qty", "avg_price", "status", "ts", "reason",
                     "order_type", "limit_price", "source", "cause_ts", "origin_ts", "created_ts")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS orders (
{_columns(Order, "client_order_id")},
    reply           BLOB
);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders(status);
CREATE TABLE IF NOT EXISTS fills (
{_columns(FillRecord, "n", unique=("fill_id",))}
);
CREATE INDEX IF NOT EXISTS fills_by_order ON fills(client_order_id);
CREATE TABLE IF NOT EXISTS requests (
    client_order_id TEXT PRIMARY KEY,
    terms           BLOB NOT NULL,
    reply           BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS account (
    key   TEXT PRIMARY KEY,
    value
);
CREATE TABLE IF NOT EXISTS log_state (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

_ORDER_COLUMN_LIST = ", ".join(ORDER_COLUMNS)
#: what a later row of an order may change: everything but its id and creation time (a
#: replace_order changes its terms)
_ORDER_STATE = tuple(c for c in ORDER_COLUMNS if c not in ("client_order_id", "created_ts"))
# An order row is inserted once and then only its state changes; the stored reply is kept
# once written (COALESCE), so a later state change can never erase it.
_UPSERT_ORDER = f"""
INSERT INTO orders ({_ORDER_COLUMN_LIST}, reply) VALUES ({", ".join("?" * (len(ORDER_COLUMNS) + 1))})
ON CONFLICT(client_order_id) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in _ORDER_STATE)}, reply = COALESCE(orders.reply, excluded.reply)
"""
_INSERT_FILL = f"INSERT INTO fills ({', '.join(FILL_COLUMNS)}) VALUES ({', '.join('?' * len(FILL_COLUMNS))})"
#: positions in a row of the columns the tables hold as signed 64-bit integers, and as REALs
_ORDER_INTS = tuple(i for i, f in enumerate(msgspec.structs.fields(Order)) if f.type is int)
_ORDER_REALS = tuple(i for i, f in enumerate(msgspec.structs.fields(Order)) if f.type is float)
_FILL_INTS = tuple(i for i, f in enumerate(msgspec.structs.fields(FillRecord)) if f.type is int)
_FILL_REALS = tuple(i for i, f in enumerate(msgspec.structs.fields(FillRecord)) if f.type is float)
_order_row = operator.attrgetter(*ORDER_COLUMNS)
_fill_row = operator.attrgetter(*FILL_COLUMNS)


class JournalError(RuntimeError):
    """The journal cannot be opened or written; the gateway must not answer as if it had been."""


class JournalCorrupt(JournalError, CorruptStateError):
    """The journal fails its own checks in a way no crash or power loss explains: answered
    orders may be missing from it, so it must not be served (restore it, or decide by hand)."""


class JournalFull(JournalError):
    """A write found no room on the disk; nothing of the batch is stored and the log is cut
    back to its last good record, so writing may resume once there is room again."""


#: errno values that mean "no room" (a quota counts as a full disk)
_NO_ROOM = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)
#: SQLite's result code for a full disk (SQLITE_FULL)
_SQLITE_FULL = 13


def _sqlite_full(e: sqlite3.Error) -> bool:
    return getattr(e, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(e)


class Account(msgspec.Struct, frozen=True):
    """The account's state, journaled beside the orders (not the exchange client's: a
    reconnect to a broker must not change it).  Field order matters: a log record ends with
    this map, and its last value (a bool) never ends in zero bytes (see _TORN_ZEROS)."""

    #: why the kill switch was turned on ("" while off)
    kill_reason: str = ""
    #: when the kill switch was last set, on or off (ns)
    kill_ts: int = 0
    kill_switch: bool = False


_ACCOUNT_KEYS = tuple(f.name for f in msgspec.structs.fields(Account))


@dataclass
class Recovered:
    """Everything the journal gives back after a restart."""

    orders: list[Order] = field(default_factory=list)  # every order, oldest first
    fills: list[FillRecord] = field(default_factory=list)  # every fill, by n
    positions: PositionBook = field(default_factory=PositionBook)
    state: dict[str, int] = field(default_factory=dict)  # the exchange client's counters
    account: Account = field(default_factory=Account)
    #: answered requests that are not orders (replace_order): client_order_id -> their terms
    requests: dict[str, bytes] = field(default_factory=dict)

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
        self.log_path = Path(f"{self.path}{LOG_SUFFIX}")
        self.sync = sync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A database that is not there (or empty) is a new one to SQLite, which would create
        # it silently; whether that is a fresh start or a lost history, the log tells (see
        # _open_log), so remember it before connecting.
        try:
            db_was_new = self.path.stat().st_size == 0
        except FileNotFoundError:
            db_was_new = True
        if db_was_new:
            # ...and refuse before SQLite writes a new database over the evidence
            try:
                problem = self._log_problem(self.log_path.read_bytes(), 0, 0)
            except FileNotFoundError:
                problem = ""
            except OSError as e:
                raise JournalError(f"cannot read journal log {self.log_path}: {e}") from e
            if problem:
                raise JournalCorrupt(problem)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per fold.
            self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=0.5)
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"journal {self.path}: could not switch to WAL mode (got {mode})")
            self.db.execute(f"PRAGMA synchronous={sync.upper()}")
            self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version not in _READABLE_VERSIONS:
                raise JournalError(f"journal {self.path} has schema v{version}; this gateway writes v{SCHEMA_VERSION}")
            # v1/v2 named the time of an order's latest change updated_ts; v3 names its
            # columns after the record's fields, which are the order_update message's
            columns = {r[1] for r in self.db.execute("PRAGMA table_info(orders)")}
            upgrade = "ALTER TABLE orders RENAME COLUMN updated_ts TO ts;" if "updated_ts" in columns else ""
            legacy = ""
            if columns:  # v5 added the order kinds' columns
                upgrade += _add_missing_columns(columns | ({"ts"} if "updated_ts" in columns else set()))
                if "tif" not in columns:
                    legacy = f"INSERT OR IGNORE INTO log_state (key, value) VALUES ('{_V5_SINCE}', {time.time_ns()});"
            # A write transaction takes the exclusive lock now, not at the first order: from
            # here on this process alone may touch the log file too.
            self.db.executescript(f"BEGIN IMMEDIATE; {upgrade} {_SCHEMA} {legacy} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
            self._saved_state: dict[str, int] = {k: int(v) for k, v in self.db.execute("SELECT key, value FROM meta")}
            self._saved_account = self._read_account({})
            self._last_fill_n = self.db.execute("SELECT COALESCE(MAX(n), 0) FROM fills").fetchone()[0]
            marks = dict(self.db.execute("SELECT key, value FROM log_state").fetchall())
            #: orders created before this time (ns) were sent to a gateway before v5 (0: none)
            self.legacy_before = int(marks.get(_V5_SINCE, 0))
            if not db_was_new:
                # the structure of every table and index (not every value): O(size), once
                check = self.db.execute("PRAGMA quick_check").fetchall()
                if check != [("ok",)]:
                    raise JournalCorrupt(f"journal database {self.path} is damaged (quick_check: {'; '.join(str(r[0]) for r in check[:3])})")
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise JournalError(f"cannot open journal {self.path}: {e} (is another exchange gateway using it?)") from e
            raise JournalError(f"cannot open journal {self.path}: {e}") from e
        except sqlite3.DatabaseError as e:
            # "file is not a database", "database disk image is malformed": not a lock
            raise JournalCorrupt(f"journal database {self.path} is unreadable: {e}") from e
        except msgspec.ValidationError as e:
            raise JournalCorrupt(f"journal {self.path} holds an account row this gateway cannot read ({e})") from e
        self._packer = msgspec.msgpack.Encoder()
        # What the log holds and the tables do not yet (see fold).
        self._records = 0
        self._orders: dict[str, tuple] = {}  # client_order_id -> newest order row (+ its first reply)
        self._fills: list[tuple] = []
        self._lone: dict[str, bytes] = {}  # replies for orders not in _orders (first one wins)
        self._requests: dict[str, tuple[bytes, bytes]] = {}  # request id -> (terms, reply), not folded yet
        self._state: dict[str, int] = {}
        self._account: dict[str, Any] = {}  # account fields changed in the log, not in the table
        self.truncated_bytes = 0  # a torn tail cut off the log at open...
        self.truncated_at = 0  # ...at this offset
        self._broken = ""  # why no write may be accepted any more ("" = fine)
        self._fd = -1
        try:
            self._open_log(int(marks.get("gen", 0)), int(marks.get("folded", 0)))
        except JournalError:
            self._close_files()
            raise

    # ------------------------------------------------------------------ the log file
    def _open_log(self, folded_gen: int, folded_offset: int) -> None:
        """Open (or create) the log, replay what it holds beyond the folded offset, cut a torn
        tail, fold the replay.  Raises JournalCorrupt where the log and the tables disagree in
        a way no crash explains.

        What a crash or power loss can leave, by construction: a new log file only ever
        appears whole (header written and synced in a temporary file, then renamed), and only
        once the tables hold every record of the previous one, so the log is of the
        generation the tables name or of the next one (a crash between the swap and the next
        fold); it is never missing once the tables name a generation, never shorter than the
        offset they folded, and only its LAST record can be torn."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as e:
            raise JournalError(f"cannot read journal log {self.log_path}: {e}") from e
        problem = self._log_problem(data, folded_gen, folded_offset)
        if problem:
            raise JournalCorrupt(problem)
        if data is None:
            # A new journal.  Its log first, then the tables name it: from here on a missing
            # log is damage, not a new journal (a crash in between leaves a log the tables do
            # not name yet, which is replayed whole: it is empty).
            self._new_log_file(1)
            try:
                self.db.executemany("INSERT OR REPLACE INTO log_state (key, value) VALUES (?, ?)",
                                    [("gen", 1), ("folded", _LOG_HEADER.size)])
            except sqlite3.Error as e:
                raise JournalError(f"cannot start journal {self.path}: {e}") from e
            return
        magic, fmt, gen = _LOG_HEADER.unpack_from(data)
        self.gen = gen
        self._log_format = fmt
        # The log's records beyond what the tables hold: all of them if this generation was
        # never folded (a fresh log after a reset), else those past the folded offset.
        pos = max(folded_offset, _LOG_HEADER.size) if gen == folded_gen else _LOG_HEADER.size
        end = pos
        while end < len(data):
            length = _record_length(data, end)
            if length < 0:
                break
            start = end + _REC.size
            try:
                self._replay(data[start : start + length])
            except (ValueError, TypeError, IndexError, msgspec.DecodeError) as e:
                raise JournalCorrupt(f"{self.log_path}: unreadable record at offset {end}: {type(e).__name__}: {e}") from e
            end = start + length
        if end < len(data):
            damage = _damage(data, end, _PAYLOAD_STARTS[fmt])
            if damage:
                raise JournalCorrupt(f"journal log {self.log_path}: {damage}; cutting it there would drop "
                                     f"{len(data) - end} bytes of answered orders")
        try:
            self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | _O_BINARY)
            if end < len(data):
                self.truncated_bytes = len(data) - end
                self.truncated_at = end
                os.ftruncate(self._fd, end)
        except OSError as e:
            raise JournalError(f"cannot open journal log {self.log_path}: {e}") from e
        self._log_end = end
        self.fold()
        if self._log_format != _LOG_FORMAT:
            # A log of the previous format (what the previous version left) is read for one
            # version, never appended to: rows of two layouts in one file could not be told
            # apart after a crash.  Its records are folded now; once the tables are synced,
            # the next generation starts in today's format.
            self._sync_tables()
            self._new_log_file(self.gen + 1)

    def _log_problem(self, data: bytes | None, folded_gen: int, folded_offset: int) -> str:
        """Why the log (``data``; None: there is none) cannot follow tables that folded
        generation ``folded_gen`` up to ``folded_offset`` (0, 0: tables that never named a
        log), or "" if it can."""
        if data is None or len(data) < _LOG_HEADER.size:
            if folded_gen:
                what = "missing" if data is None else f"{len(data)} bytes long"
                return (f"journal log {self.log_path} is {what}, but {self.path} records folding generation {folded_gen} "
                        f"of it up to byte {folded_offset}: orders written after that fold would be lost")
            if data is not None:  # a log only ever appears with its header (see _new_log_file)
                return f"journal log {self.log_path} is {len(data)} bytes long: too short for its own header"
            return ""
        magic, fmt, gen = _LOG_HEADER.unpack_from(data)
        if magic != _LOG_MAGIC or fmt not in _LOG_FORMATS:
            return f"{self.log_path} is not a TickDesk journal log (magic {magic!r}, format {fmt})"
        if not folded_gen and gen > 1:
            return (f"journal log {self.log_path} is generation {gen}, so generations 1..{gen - 1} were folded into "
                    f"{self.path}, but the database holds no record of them (emptied, replaced or lost?)")
        if folded_gen and not folded_gen <= gen <= folded_gen + 1:
            return (f"journal log {self.log_path} is generation {gen}, but {self.path} was last folded from generation "
                    f"{folded_gen} (only {folded_gen} or {folded_gen + 1} can follow it): one of the two files is from another copy")
        if gen == folded_gen and folded_offset > len(data):
            return (f"journal log {self.log_path} is {len(data)} bytes long, shorter than the {folded_offset} bytes "
                    f"{self.path} records as folded: it was cut, and orders written after the fold would be lost")
        return ""

    def _replay(self, payload: bytes) -> None:
        items = msgspec.msgpack.decode(payload)
        if len(items) != _RECORD_ITEMS[self._log_format]:
            raise ValueError(f"a format-{self._log_format} record holds {_RECORD_ITEMS[self._log_format]} items, not {len(items)}")
        order_rows, fill_rows, lone, changed = items[:4]
        account = items[4] if len(items) > 4 else {}
        if not isinstance(account, dict):
            raise TypeError(f"account is a {type(account).__name__}, not a map")
        self._account.update(account)
        fill_rows = [tuple(r) for r in fill_rows if r[0] > self._last_fill_n]  # folded already
        if self._log_format != _LOG_FORMAT:
            order_rows = [_old_order_row(r, self._log_format) for r in order_rows]
        self._remember([tuple(r) for r in order_rows], fill_rows, [tuple(x) for x in lone], changed)
        self._records += 1

    def _new_log_file(self, gen: int) -> None:
        """An empty log of generation ``gen``, swapped in atomically (temp file + replace).
        If the new file cannot be made (a full disk), the old log stays open and in use."""
        tmp = Path(f"{self.log_path}.new")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_BINARY, 0o600)
            try:
                header = _LOG_HEADER.pack(_LOG_MAGIC, _LOG_FORMAT, gen)
                if os.write(fd, header) != len(header):
                    raise OSError(errno.ENOSPC, "short write of the log header")
                sync_file(fd)
            finally:
                os.close(fd)
        except OSError as e:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise (JournalFull if e.errno in _NO_ROOM else JournalError)(f"cannot create journal log {tmp}: {e}") from e
        try:
            if self._fd >= 0:
                os.close(self._fd)  # Windows cannot replace an open file
                self._fd = -1
            os.replace(tmp, self.log_path)
            sync_dir(self.log_path.parent)  # the rename itself must survive a power loss
            self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | _O_BINARY)
        except OSError as e:
            raise JournalError(f"cannot create journal log {self.log_path}: {e}") from e
        self.gen = gen
        self._log_format = _LOG_FORMAT
        self._log_end = _LOG_HEADER.size

    # ------------------------------------------------------------------ writing
    @property
    def pending(self) -> int:
        """Log records (batches) not folded into the tables yet."""
        return self._records

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
        account: Account | None = None,
        requests: Mapping[str, tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Store one batch atomically: order rows (insert or new state), new fills, stored
        replies (by client_order_id), the exchange's counters, the account's state and the
        answered requests that are not orders (``requests``: their client_order_id ->
        ``(terms, reply)``, e.g. replace_order; the first stored one stays).  One log record,
        one ``write()``.  Raises JournalError, and then nothing of the batch counts as stored."""
        replies = replies or {}
        order_rows = []
        seen = set()
        for o in orders:
            seen.add(o.client_order_id)
            order_rows.append(_order_row(o) + (replies.get(o.client_order_id),))
        fill_rows = [_fill_row(f) for f in fills]
        lone: list[tuple] = [(cid, r) for cid, r in replies.items() if cid not in seen]
        if requests:
            # a request's reply rides with the lone replies, its terms as a third item
            lone += [(cid, reply, terms) for cid, (terms, reply) in requests.items()]
        changed_state = {k: v for k, v in (state or {}).items() if self._saved_state.get(k) != v}
        changed_account = {} if account is None or account == self._saved_account else msgspec.structs.asdict(account)
        if not (order_rows or fill_rows or lone or changed_state or changed_account):
            return
        if self._broken:
            raise JournalError(f"journal write refused: {self._broken}")
        self._check(order_rows, fill_rows, changed_state)
        if changed_account and not _INT_MIN <= account.kill_ts <= _INT_MAX:
            raise JournalError(f"journal write failed: kill_ts out of range: {account.kill_ts!r}")
        try:
            payload = self._packer.encode([order_rows, fill_rows, lone, changed_state, changed_account])
        except (OverflowError, ValueError, TypeError) as e:
            raise JournalError(f"journal write failed: {type(e).__name__}: {e}") from e
        self._append(_REC.pack(len(payload), zlib.crc32(payload)) + payload)
        self._records += 1
        self._remember(order_rows, fill_rows, lone, changed_state)
        if changed_account:
            self._account.update(changed_account)
            self._saved_account = account

    def _append(self, record: bytes) -> None:
        try:
            written = os.write(self._fd, record)
            if written != len(record):
                # the rest would fail with ENOSPC; a record is stored whole or not at all
                raise OSError(errno.ENOSPC, f"short write: {written} of {len(record)} bytes")
            if self.sync == "full":
                sync_file(self._fd)
        except OSError as e:
            # Part of the record may be in the file: cut it off, or a later record appended
            # after it would be cut off with it at the next open (or, worse, make the next
            # open take the log for damaged).  If even that fails, no later write may
            # pretend to be stored.
            try:
                os.ftruncate(self._fd, self._log_end)
            except OSError as e2:
                self._broken = f"the log could not be cut back after a failed write ({e2})"
                raise JournalError(f"journal write failed: {type(e).__name__}: {e}; {self._broken}") from e
            if e.errno in _NO_ROOM:
                raise JournalFull(f"journal: disk full ({e.strerror or e})") from e
            raise JournalError(f"journal write failed: {type(e).__name__}: {e}") from e
        self._log_end += len(record)

    def probe(self) -> None:
        """Write an empty record (a batch that changes nothing): whether the log takes writes
        again after a JournalFull.  Raises JournalFull/JournalError as :meth:`write` does."""
        if self._broken:
            raise JournalError(f"journal write refused: {self._broken}")
        payload = self._packer.encode([[], [], [], {}, {}])
        self._append(_REC.pack(len(payload), zlib.crc32(payload)) + payload)
        self._records += 1

    def _check(self, order_rows: list[tuple], fill_rows: list[tuple], state: Mapping[str, int]) -> None:
        """Refuse what the tables could not hold, before anything is acknowledged: integers
        beyond 64 bits, NaN prices, fills out of number order."""
        for row in order_rows:
            ints = [row[i] for i in _ORDER_INTS]
            if not (_INT_MIN <= min(ints) and max(ints) <= _INT_MAX and all(row[i] == row[i] for i in _ORDER_REALS)):  # NaN != NaN
                raise JournalError(f"journal write failed: a value out of range in order {row[0]!r}: {row}")
        n = self._last_fill_n
        for row in fill_rows:
            ints = [row[i] for i in _FILL_INTS]
            if not (_INT_MIN <= min(ints) and max(ints) <= _INT_MAX and all(row[i] == row[i] for i in _FILL_REALS)):
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
            elif cid in self._lone:
                row = (*row[:-1], self._lone.pop(cid))  # a reply that came alone came first
            pending[cid] = row
        for item in lone:
            cid, reply = item[0], item[1]
            if len(item) > 2:
                if cid not in self._requests:  # the tables keep the first (ON CONFLICT DO NOTHING)
                    self._requests[cid] = (bytes(item[2]), bytes(reply))
                continue
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
        if not self._records:
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
            if self._requests:
                db.executemany(
                    "INSERT INTO requests (client_order_id, terms, reply) VALUES (?, ?, ?) ON CONFLICT(client_order_id) DO NOTHING",
                    [(cid, t, r) for cid, (t, r) in self._requests.items()],
                )
            if self._state:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    list(self._state.items()),
                )
            if self._account:
                db.executemany(
                    "INSERT INTO account (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    list(self._account.items()),
                )
            db.executemany(
                "INSERT INTO log_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [("gen", self.gen), ("folded", self._log_end)],
            )
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise (JournalFull if _sqlite_full(e) else JournalError)(f"journal fold failed: {type(e).__name__}: {e}") from e
        folded = self._records
        self._records = 0
        self._orders.clear()
        self._fills.clear()
        self._lone.clear()
        self._requests.clear()
        self._state.clear()
        self._account.clear()
        return folded

    def _sync_tables(self) -> None:
        """Every fold in the synced database file (the log may then be replaced)."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
        except sqlite3.Error as e:
            raise JournalError(f"journal checkpoint failed: {type(e).__name__}: {e}") from e

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (synced) -- called when idle, never inside a
        commit -- and then, if the tables hold every record, start an empty log file."""
        try:
            busy, wal_frames, done = self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as e:
            raise (JournalFull if _sqlite_full(e) else JournalError)(f"journal checkpoint failed: {type(e).__name__}: {e}") from e
        if not busy and done == wal_frames and not self._records and self._log_end > _LOG_HEADER.size:
            # Every fold is in the synced database file now, so the folded records can go.  A
            # crash before the next fold leaves log_state naming the older generation: the
            # newer log is then replayed whole, which is exactly what it holds.
            self._new_log_file(self.gen + 1)

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

    def request_for(self, client_order_id: str) -> tuple[bytes, bytes] | None:
        """The stored ``(terms, reply)`` of an answered request that is not an order
        (replace_order), or None: the tables' first, then the log's unfolded one."""
        return self._request_row(client_order_id) or self._requests.get(client_order_id)

    def _request_row(self, client_order_id: str) -> tuple[bytes, bytes] | None:
        row = self.db.execute("SELECT terms, reply FROM requests WHERE client_order_id = ?", (client_order_id,)).fetchone()
        return (bytes(row[0]), bytes(row[1])) if row else None

    def fills_after(self, since: int, limit: int) -> list[FillRecord]:
        """At most ``limit`` fills numbered after ``since``, oldest first: the tables' and the
        log's unfolded ones (always newer), without writing (a query, answered on a full disk
        too).  Raises JournalError (JournalCorrupt for a row the records cannot hold)."""
        try:
            rows = self.db.execute(f"SELECT {', '.join(FILL_COLUMNS)} FROM fills WHERE n > ? ORDER BY n LIMIT ?",
                                   (since, limit)).fetchall()
            if len(rows) < limit and self._fills and self._fills[-1][0] > since:
                rows += [r for r in self._fills if r[0] > since][: limit - len(rows)]
            # one conversion call for the whole page
            return msgspec.convert([dict(zip(FILL_COLUMNS, r)) for r in rows], list[FillRecord])
        except sqlite3.Error as e:
            raise JournalError(f"journal read failed: {type(e).__name__}: {e}") from e
        except msgspec.ValidationError as e:
            raise JournalCorrupt(f"journal {self.path} holds a fill this gateway cannot read ({e})") from e

    def load(self, fold: bool = True) -> Recovered:
        """Read back every order, fill, position and counter (at start; the log's leftovers
        were replayed and folded when the journal was opened).  ``fold=False``: write
        nothing -- the tables plus what the log holds beyond them (the gateway's way back to
        what is stored after a write failed on a full disk, where a fold would fail too)."""
        if fold:
            self.fold()  # a journal in use (tests, tools): what this process wrote, first
        rec = Recovered()
        try:
            orders = {}
            for row in self.db.execute(f"SELECT {_ORDER_COLUMN_LIST} FROM orders ORDER BY rowid"):
                o = _order_from_row(row)
                orders[o.client_order_id] = o
            for row in self._orders.values():  # unfolded: newer than the tables' rows
                o = _order_from_row(row[:-1])
                orders[o.client_order_id] = o
            rec.orders = list(orders.values())
            fills = [_fill_from_row(row) for row in self.db.execute(f"SELECT {', '.join(FILL_COLUMNS)} FROM fills ORDER BY n")]
            fills += [_fill_from_row(row) for row in self._fills]
            for fill in fills:
                rec.fills.append(fill)
                rec.positions.apply(fill)
            rec.requests = {cid: bytes(t) for cid, t in self.db.execute("SELECT client_order_id, terms FROM requests")}
            for cid, (t, _) in self._requests.items():
                rec.requests.setdefault(cid, t)
            rec.state = {k: int(v) for k, v in self.db.execute("SELECT key, value FROM meta")}
            rec.account = self._read_account(self._account)
        except (msgspec.ValidationError, sqlite3.Error) as e:
            # a row the records cannot hold: state that cannot be trusted is refused, not served
            raise JournalCorrupt(f"journal {self.path} holds a row this gateway cannot read ({e}); "
                                 f"restore the journal from a backup or ask for help before starting again") from e
        rec.state.update(self._state)
        self._saved_state = dict(rec.state)
        self._saved_account = rec.account
        return rec

    def _read_account(self, unfolded: Mapping[str, Any]) -> Account:
        """The account as the table holds it, with ``unfolded`` (the log's newer fields) on
        top.  SQLite gives a bool back as 0/1, hence lax conversion; a value of the wrong
        kind raises msgspec.ValidationError (the caller refuses the journal)."""
        values = {k: v for k, v in self.db.execute("SELECT key, value FROM account")}
        values.update(unfolded)
        if values.get("kill_switch") not in (None, 0, 1):  # lax conversion would take "true"
            raise msgspec.ValidationError(f"account kill_switch is {values['kill_switch']!r}")
        return msgspec.convert(values, Account, strict=False)

    def close(self) -> None:
        """Fold what is left and checkpoint, so a cleanly stopped journal is all tables."""
        try:
            self.fold()
            self.checkpoint()
        except JournalError:
            pass  # the log still holds it; the next load folds it
        self._close_files()

    def _close_files(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _record_length(data: bytes, at: int) -> int:
    """The payload length of a whole, valid record at ``at`` (-1 if there is none)."""
    if at + _REC.size > len(data):
        return -1
    length, crc = _REC.unpack_from(data, at)
    start = at + _REC.size
    # length 0 is never written (a batch is never empty): zeros where a power loss left the
    # file's length but not its last blocks -- and crc32(b"") is 0, so catch it here
    if not 0 < length <= _MAX_RECORD or start + length > len(data):
        return -1
    if zlib.crc32(memoryview(data)[start : start + length]) != crc:
        return -1
    return length


#: every record's payload is a msgpack array of 4 (fixarray 0x94; formats 1, 2) or 5 (0x95)
_PAYLOAD_STARTS = {fmt: bytes([0x90 | n]) for fmt, n in _RECORD_ITEMS.items()}
_PAYLOAD_START = _PAYLOAD_STARTS[_LOG_FORMAT]


def _next_record(data: bytes, at: int, payload_start: bytes = _PAYLOAD_START) -> int:
    """The offset of the first valid record starting at or after ``at``, or -1.  Only offsets
    whose payload would start like one are checked, so scanning a damaged log costs a find()
    and a CRC per candidate, not per byte."""
    i = data.find(payload_start, at + _REC.size)
    while i >= 0:
        if _record_length(data, i - _REC.size) > 0:
            return i - _REC.size
        i = data.find(payload_start, i + 1)
    return -1


#: a write that a power loss tore ends in at least this many zero bytes where its blocks
#: were never written (a record's own payload never ends so: its last item is a map -- the
#: counters in formats 1-2, the account in format 3, whose last value is a bool)
_TORN_ZEROS = 4


def _damage(data: bytes, at: int, payload_start: bytes = _PAYLOAD_START) -> str:
    """Why the bytes from ``at`` (where the log's first bad record starts) to the end are
    damage rather than a torn tail, or "" for a torn tail.

    A crash or a power loss can only tear the write that was under way, the last one: what
    it leaves is that record cut short, or of its full length but ending in zeros where its
    last blocks were never written, or zeros alone.  Anything else -- a valid record after
    the bad one, a whole payload under a damaged length, a changed byte inside a record of
    full length -- was damaged after it was written, and the records in it were answered."""
    later = _next_record(data, at + 1, payload_start)
    if later >= 0:
        return (f"the record at byte {at} fails its check, but a valid record follows at byte {later}: "
                f"the log is damaged in the middle, not torn at its end")
    zeros_from = len(data.rstrip(b"\0"))
    if zeros_from <= at + _REC.size:
        return ""  # half a header, or zeros where the payload should be
    length, crc = _REC.unpack_from(data, at)
    start = at + _REC.size
    if not 0 < length <= _MAX_RECORD:
        return f"the record at byte {at} has an impossible length ({length}) and is not a torn write"
    if start + length > len(data):
        if zlib.crc32(memoryview(data)[start:]) == crc:
            return (f"the record at byte {at} is whole but its length field is damaged "
                    f"({length}, the file holds {len(data) - start})")
        return ""  # cut short: the torn tail
    if start + length - zeros_from >= _TORN_ZEROS:
        return ""  # of full length, ending in zeros (and nothing but zeros after it)
    return (f"the record at byte {at} ({length} bytes) fails its check although it is whole and does not end in "
            f"unwritten (zero) blocks: a byte of it was changed after it was written")


def remove_journal(path: str | os.PathLike) -> None:
    """Delete a journal, its log and its WAL side files (``--fresh``)."""
    for suffix in ("", "-wal", "-shm", "-journal", LOG_SUFFIX, f"{LOG_SUFFIX}.new"):
        try:
            os.remove(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def _order_from_row(row: tuple) -> Order:
    # strict=False: SQLite gives booleans back as 0/1 (it has no bool type)
    return msgspec.convert(dict(zip(ORDER_COLUMNS, row)), Order, strict=False)  # converts the enums back


def _fill_from_row(row: tuple) -> FillRecord:
    return msgspec.convert(dict(zip(FILL_COLUMNS, row)), FillRecord)


def _defaults() -> dict[str, Any]:
    out = {}
    for f in msgspec.structs.fields(Order):
        d = f.default if f.default is not msgspec.NODEFAULT else None
        out[f.name] = d.value if hasattr(d, "value") else d
    return out


_ROW_DEFAULTS = _defaults()
_OLD_ROW_DEFAULTS = {**_ROW_DEFAULTS, **_LEGACY_DEFAULTS}
#: log format -> for each of today's columns, its index in that format's row, or None (the default)
_OLD_TO_ROW = {
    fmt: tuple(cols.index(c) if c in cols else None for c in ORDER_COLUMNS)
    for fmt, cols in ((1, _V2_ORDER_COLUMNS), (2, _V4_ORDER_COLUMNS), (3, _V4_ORDER_COLUMNS))
}


def _old_order_row(row: list, fmt: int) -> tuple:
    """A row of an earlier log format (its last cell: the stored reply) in today's column
    order, the columns it lacked at their defaults."""
    where = _OLD_TO_ROW[fmt]
    return (*(row[i] if i is not None else _OLD_ROW_DEFAULTS[c] for i, c in zip(where, ORDER_COLUMNS)), row[-1])
