"""The audit ledger in the store's own database: the log's rows as Merkle leaves, and the
table of signed tree heads.

Rows are read with plain SQL, column by column as stored (not through eventsourcing's mapper):
a leaf must cover the bytes that are there, and a row that no longer decodes is evidence, not
an error. Each stored head keeps, besides its signature, the leaves it added since the head
before it (8-byte position, 32-byte leaf hash) and the tree's frontier at its size: the
leaves let `openpex verify` name the first position that differs and `openpex prove` answer
without rehashing the log; the frontier lets a restarted service go on where it stopped.

Heads live in `tree_heads` (SQLite, beside `stored_events`) or `openpex_tree_heads`
(PostgreSQL, beside `openpex_events`). The service creates the table and appends to it;
every other user opens the database read-only.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import quote
from uuid import UUID

import psycopg

from pex.audit.merkle import HASH_SIZE, Frontier, event_leaf, leaf_hash
from pex.audit.signing import TreeHead
from pex.domain.errors import one_line
from pex.stores import POSTGRES_TABLE, SQLITE_TABLE, is_postgres, location, reader_env, writer_env

LEAF_RECORD = 8 + HASH_SIZE  # a head's leaves: position, then leaf hash
PAGE = 20_000  # rows read at once
_NO_VERSION = 2**64 - 1  # what a NULL version is hashed as: no real version has it


class LedgerError(Exception):
    """The ledger cannot be read or written (one line, fit for a user)."""


class Row(NamedTuple):
    """One stored event, column by column."""

    position: int
    originator_id: object
    version: object
    topic: object
    state: object

    def leaf(self) -> bytes:
        """The row's leaf, over the columns as stored. What a writer could not have stored (an id
        not in the writer's own form, a NULL, a topic that is not UTF-8) is hashed all the same,
        so that tampering with it shows where it happened."""
        version = self.version if isinstance(self.version, int) and 0 <= self.version < _NO_VERSION else _NO_VERSION
        topic = self.topic.encode("utf-8", "surrogatepass") if isinstance(self.topic, str) else \
            self.topic if isinstance(self.topic, bytes) else b""
        state = bytes(self.state) if isinstance(self.state, (bytes, bytearray, memoryview)) else \
            self.state.encode() if isinstance(self.state, str) else b""
        return event_leaf(self.position, id_bytes(self.originator_id), version, topic[:65_535], state)

    def leaf_hash(self) -> bytes:
        return leaf_hash(self.leaf())


@dataclass(frozen=True)
class StoredHead:
    head: TreeHead
    leaves: bytes  # LEAF_RECORD bytes for each leaf this head added
    frontier: bytes

    def added(self) -> Iterator[tuple[int, bytes]]:
        """(position, leaf hash) of each leaf this head added, in order."""
        data = self.leaves
        for offset in range(0, len(data) - len(data) % LEAF_RECORD, LEAF_RECORD):
            yield int.from_bytes(data[offset:offset + 8], "big"), bytes(data[offset + 8:offset + LEAF_RECORD])

    @property
    def count(self) -> int:
        return len(self.leaves) // LEAF_RECORD


class Ledger:
    """One connection to a store's database, for the ledger's reads and (the service's) writes."""

    def __init__(self, connection: Any, postgres: bool, where: str, reconnect: Callable[[], Any] | None = None,
                 fence: Callable[[], int | None] | None = None) -> None:
        """Use Ledger.open. `reconnect`: a new connection, once the server dropped this one;
        `fence`: the writer's lease token now (None: not the writer), checked in the same
        transaction as every head stored (PostgreSQL: only the writer stores heads)."""
        self._connection = connection
        self._reconnect = reconnect
        self._fence = fence
        self._postgres = postgres
        self.where = where
        mark = "%s" if postgres else "?"
        events, heads = (POSTGRES_TABLE, "openpex_tree_heads") if postgres else (SQLITE_TABLE, "tree_heads")
        position = "notification_id" if postgres else "rowid"
        self._heads_table = heads
        self._select_rows = (f"SELECT {position}, originator_id, originator_version, topic, state FROM {events} "
                             f"WHERE {position} > {mark} ORDER BY {position} LIMIT {mark}")
        self._select_last = f"SELECT COALESCE(MAX({position}), 0) FROM {events}"
        columns = "tree_size, timestamp, root_hash, public_key, signature, leaves, frontier"
        self._select_heads = f"SELECT {columns} FROM {heads} WHERE tree_size > {mark} ORDER BY tree_size LIMIT {mark}"
        self._select_latest = f"SELECT {columns} FROM {heads} ORDER BY tree_size DESC LIMIT 1"
        self._insert_head = f"INSERT INTO {heads} ({columns}) VALUES ({', '.join([mark] * 7)})"
        blob, number = ("bytea", "bigint") if postgres else ("BLOB", "INTEGER")
        self._create = (f"CREATE TABLE IF NOT EXISTS {heads} (tree_size {number} PRIMARY KEY, "
                        f"timestamp {number} NOT NULL, root_hash {blob} NOT NULL, public_key {blob} NOT NULL, "
                        f"signature {blob} NOT NULL, leaves {blob} NOT NULL, frontier {blob} NOT NULL)")

    @property
    def _db(self) -> Any:
        if self._reconnect is not None and self._connection.closed:  # (a database restart, a cut network)
            self._connection = self._reconnect()
        return self._connection

    @classmethod
    def open(cls, store: str, *, write: bool = False, fence: Callable[[], int | None] | None = None) -> Ledger:
        """The ledger of `store` (a SQLite file or a postgresql:// URL). Read-only unless `write`
        (the service): then the heads table is created if missing. StoreError if the store is
        not there; LedgerError if its database fails."""
        if write:
            env = writer_env(store)
        else:
            env = reader_env(store)  # StoreError unless an OpenPEX store is there
        reconnect = None
        try:
            if is_postgres(store):
                def reconnect() -> Any:
                    connection = psycopg.connect(
                        host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]), dbname=env["POSTGRES_DBNAME"],
                        user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"], connect_timeout=5, autocommit=True)
                    if not write:  # (every statement of the session, autocommit or not)
                        connection.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                    return connection

                connection: Any = reconnect()
            else:
                target = f"file:{quote(str(Path(store).resolve()))}{'' if write else '?mode=ro'}"
                connection = sqlite3.connect(target, uri=True, timeout=10, isolation_level=None,
                                             check_same_thread=False)
                connection.text_factory = bytes  # the bytes stored, UTF-8 or not: a leaf covers them
        except (sqlite3.Error, psycopg.Error) as error:
            raise LedgerError(f"cannot open {location(store)}: {one_line(error)}") from None
        ledger = cls(connection, is_postgres(store), location(store), reconnect, fence if is_postgres(store) else None)
        if write:
            with ledger._failing("create the heads table"):
                connection.execute(ledger._create)
        return ledger

    # ------------------------------------------------------------------ the log's rows

    def rows(self, after: int = 0, until: int | None = None) -> Iterator[Row]:
        """The stored events after a position (up to `until`), in log order, read a page at a time."""
        while until is None or after < until:
            with self._failing("read the events"):
                page = self._db.execute(self._select_rows, (after, PAGE)).fetchall()
            for found in page:
                row = Row(*found)
                if until is not None and row.position > until:
                    return
                yield row
            if len(page) < PAGE:
                return
            after = page[-1][0]

    def page(self, after: int, limit: int) -> list[Row]:
        with self._failing("read the events"):
            return [Row(*found) for found in self._db.execute(self._select_rows, (after, limit)).fetchall()]

    def last_position(self) -> int:
        with self._failing("read the events"):
            return int(self._db.execute(self._select_last).fetchone()[0])

    # ------------------------------------------------------------------ the heads

    def has_heads(self) -> bool:
        with self._failing("look for the heads table"):
            if self._postgres:
                found = self._db.execute("SELECT to_regclass(%s) IS NOT NULL", (self._heads_table,)).fetchone()
                return bool(found and found[0])
            return self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                                    (self._heads_table,)).fetchone() is not None

    def heads(self) -> Iterator[StoredHead]:
        """Every stored head, smallest first (none if the service never signed one)."""
        if not self.has_heads():
            return
        after = -1
        while True:
            with self._failing("read the tree heads"):
                page = self._db.execute(self._select_heads, (after, 500)).fetchall()
            for found in page:
                yield _stored_head(found)
            if len(page) < 500:
                return
            after = page[-1][0]

    def latest(self) -> StoredHead | None:
        if not self.has_heads():
            return None
        with self._failing("read the tree heads"):
            found = self._db.execute(self._select_latest).fetchone()
        return None if found is None else _stored_head(found)

    def append(self, head: TreeHead, leaves: bytes, frontier: Frontier) -> None:
        """Store a head with the leaves it adds and the frontier at its size (one transaction)."""
        row = (head.size, head.timestamp, head.root, head.public_key, head.signature, leaves, frontier.to_bytes())
        if self._fence is None:
            with self._failing("store a tree head"):
                self._db.execute(self._insert_head, row)
            return
        token = self._fence()
        if token is None:
            raise LedgerError(f"no tree head stored in {self.where}: this process is not the store's writer")
        with self._failing("store a tree head"), self._db.transaction():
            self._db.execute("SELECT openpex_fence(%s)", (token,))
            self._db.execute(self._insert_head, row)

    # ------------------------------------------------------------------ life

    def close(self) -> None:
        try:
            self._connection.close()
        except (sqlite3.Error, psycopg.Error):
            pass

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def _failing(self, doing: str) -> Iterator[None]:
        """A database error while doing something: one LedgerError line, not a driver's traceback."""
        try:
            yield
        except (sqlite3.Error, psycopg.Error) as error:
            raise LedgerError(f"cannot {doing} in {self.where}: {one_line(error)}") from None


def _stored_head(found: tuple[Any, ...]) -> StoredHead:
    size, timestamp, root, public_key, signature, leaves, frontier = found
    return StoredHead(TreeHead(int(size), int(timestamp), bytes(root), bytes(public_key), bytes(signature)),
                      bytes(leaves), bytes(frontier))


def id_bytes(value: object) -> bytes:
    """An aggregate's id as its 16 bytes, from the form its writer stores: PostgreSQL's uuid, or
    SQLite's 32 lower-case hex digits. Any other form (upper case, dashes: eventsourcing would no
    longer find the row under its aggregate) is hashed, so that it differs from every id."""
    if isinstance(value, UUID):
        return value.bytes
    if isinstance(value, (bytes, str)) and len(value) == 32:
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        if text.isalnum() and text == text.lower():
            try:
                return bytes.fromhex(text)
            except ValueError:
                pass
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
    return hashlib.sha256(b"not an id:" + raw).digest()[:16]


__all__ = ["Ledger", "LedgerError", "Row", "StoredHead", "LEAF_RECORD"]
