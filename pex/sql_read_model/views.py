"""The materialised view: eventsourcing tracking recorders that also write the read model.

`write` puts a batch's rows and the tracking record of its last event in ONE transaction, so
the view either has a batch and knows it, or has neither; the tracking insert refuses a
position at or below the one recorded, and the events table refuses a position twice, so no
event is ever applied twice. A projection that is killed resumes after the tracked position.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.sql import SQL, Composed, Identifier

from pex.sql_read_model.rows import Row
from pex.sql_read_model.tables import (
    BOOKINGS,
    EVENTS,
    INSTANCES,
    NODES,
    PRICES,
    RESERVATIONS,
    SOURCE,
    TABLES,
    Dialect,
)


@dataclass
class Changes:
    """What one batch of events changes in the view."""

    events: list[Row] = field(default_factory=list)
    reservations: list[Row] = field(default_factory=list)
    instances: list[Row] = field(default_factory=list)
    nodes: list[Row] = field(default_factory=list)
    rebooked: list[tuple[str]] = field(default_factory=list)  # reservations whose booking rows are replaced
    bookings: list[Row] = field(default_factory=list)
    cards: list[tuple[int, list[Row]]] = field(default_factory=list)  # (in force from, its rows), in log order
    source: Row | None = None  # the source's identity, when the view has none yet


@dataclass(frozen=True)
class Source:
    identity: str
    location: str


class ReadModel(TrackingRecorder, ABC):
    dialect: Dialect

    def _statements(self) -> None:
        d = self.dialect
        self._sql = {table.name: (d.insert(table), d.upsert(table)) for table in TABLES}
        self._delete_bookings = d.delete_bookings()
        self._close_prices = d.close_prices()

    @abstractmethod
    def _transaction(self, *, commit: bool) -> AbstractContextManager[Any]:
        """A cursor in a transaction of the view's database."""

    @abstractmethod
    def _insert_tracking(self, c: Any, tracking: Tracking) -> None:
        """(eventsourcing's: records the position, or raises IntegrityError if not past it)"""

    def write(self, changes: Changes, tracking: Tracking) -> None:
        with self._transaction(commit=True) as c:
            if changes.source is not None:
                c.execute(self._sql[SOURCE.name][0], changes.source)
            c.executemany(self._sql[EVENTS.name][0], changes.events)
            for table, rows in ((RESERVATIONS, changes.reservations), (INSTANCES, changes.instances),
                                (NODES, changes.nodes)):
                if rows:
                    c.executemany(self._sql[table.name][1], rows)
            if changes.rebooked:
                c.executemany(self._delete_bookings, changes.rebooked)
            if changes.bookings:
                c.executemany(self._sql[BOOKINGS.name][0], changes.bookings)
            for start, rows in changes.cards:
                c.execute(self._close_prices, (start,))
                c.executemany(self._sql[PRICES.name][0], rows)
            self._insert_tracking(c, tracking)

    def source(self) -> Source | None:
        """The event store this view is a projection of (None: none yet)."""
        for row in self._select(f"SELECT identity, location FROM {self.dialect.table(SOURCE.name)}"):
            return Source(row["identity"], row["location"])
        return None

    def missing_columns(self) -> list[str]:
        """The columns this version writes that the view's tables lack ("table.column"): a read
        model an older OpenPEX made."""
        missing = []
        for table in TABLES:
            statement, params = self.dialect.columns_of(table)
            have = {str(row["name"]) for row in self._select(statement, params)}
            missing += [f"{table.name}.{name}" for name in table.column_names if name not in have]
        return missing

    def event_at(self, position: int) -> tuple[str, int] | None:
        """(originator id, version) of the event projected at `position`."""
        d = self.dialect
        for row in self._select(f"SELECT originator_id, originator_version FROM {d.table(EVENTS.name)} "
                                f"WHERE position = {d.marker}", (position,)):
            return str(row["originator_id"]), int(row["originator_version"])
        return None

    def _select(self, statement: str, params: tuple[Any, ...] = ()) -> Iterator[Any]:
        with self._transaction(commit=False) as c:
            c.execute(statement, params)
            rows = c.fetchall()
        yield from rows


class SQLiteReadModel(SQLiteTrackingRecorder, ReadModel):
    dialect = Dialect(postgres=False)

    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self._statements()

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(),
                *(statement for table in TABLES for statement in self.dialect.create(table))]

    @contextmanager
    def _transaction(self, *, commit: bool) -> Iterator[Any]:
        with self.datastore.get_connection(commit=commit) as connection:
            if commit:
                # A commit that survives the process (SIGKILL) but skips the fsync: a power cut
                # may lose the last batches, rows and tracking record alike (WAL keeps each
                # transaction whole), and they are projected again. A bigger page cache keeps
                # the indexes' pages at hand. (Outside the transaction: pragmas apply to it.)
                connection.cursor().execute("PRAGMA synchronous = NORMAL")
                connection.cursor().execute("PRAGMA cache_size = -65536")
                connection.cursor().execute("PRAGMA wal_autocheckpoint = 16384")
            with connection.transaction(commit=commit) as cursor:
                yield cursor


class PostgresReadModel(PostgresTrackingRecorder, ReadModel):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.dialect = Dialect(postgres=True, schema=datastore.schema)
        self._statements()
        # The schema first: the tracking table eventsourcing creates goes into it too.
        self.sql_create_statements.insert(0, SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(datastore.schema)))
        self.sql_create_statements += [Composed([SQL(statement)]) for table in TABLES
                                       for statement in self.dialect.create(table)]

    def _transaction(self, *, commit: bool) -> AbstractContextManager[Any]:
        return self.datastore.transaction(commit=commit)

