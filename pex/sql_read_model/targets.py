"""The read model a projection writes: a SQLite file or a PostgreSQL schema, opened (its tables
created if missing) only if it is new or already this source's read model."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote

import psycopg
from eventsourcing.persistence import InfrastructureFactory, PersistenceError

from pex.sql_read_model.projection import identity_of
from pex.sql_read_model.tables import quote
from pex.sql_read_model.views import PostgresReadModel, ReadModel, SQLiteReadModel
from pex.domain.errors import one_line
from pex.stores import POSTGRES_TABLE, SQLITE_TABLE, EventLog, is_postgres, location, postgres_has, writer_env


class ProjectionError(Exception):
    """The read model cannot be made as asked (one line, fit for a user)."""


def open_target(into: str, schema: str | None) -> tuple[InfrastructureFactory[Any], ReadModel, str]:
    """The view (its tables created if missing), and where it is, for messages."""
    view_class: type[ReadModel]
    if is_postgres(into):
        schema = schema or "public"
        env = {**writer_env(into), "POSTGRES_SCHEMA": schema, "POSTGRES_CONNECT_TIMEOUT": "5", "POSTGRES_POOL_SIZE": "2"}
        where = f"schema {schema} of {location(into)}"
        _check_postgres_target(env, where)
        view_class = PostgresReadModel
    else:
        if schema:
            raise ProjectionError("--schema is for a PostgreSQL target; a SQLite target is a file")
        path = _check_sqlite_target(Path(into))
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": f"file:{url_quote(str(path))}?mode=rwc"}
        where = str(path)
        view_class = SQLiteReadModel
    factory: InfrastructureFactory[Any] = InfrastructureFactory.construct(env)
    try:
        return factory, factory.tracking_recorder(view_class), where
    except (PersistenceError, OSError, sqlite3.Error, psycopg.Error) as error:  # one line of what it says
        factory.close()
        raise ProjectionError(f"cannot write the read model at {where}: {one_line(error)}") from None


def _check_sqlite_target(path: Path) -> Path:
    if path.is_dir():
        raise ProjectionError(f"{path} is a directory: name a SQLite file for the read model")
    if not path.parent.is_dir():
        raise ProjectionError(f"cannot write the read model at {path}: no folder {path.parent}")
    if path.exists():
        try:
            db = sqlite3.connect(f"file:{url_quote(str(path.resolve()))}?mode=ro", uri=True)
            try:
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            finally:
                db.close()
        except sqlite3.Error as error:
            raise ProjectionError(f"{path} is not a SQLite read model: {one_line(error)}") from None
        if "stored_events" in tables:
            raise ProjectionError(f"{path} is an event store, not a read model: name another file")
    else:  # private, as the store is: it holds the same users' data (SQLite gives its WAL this mode)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as error:
            raise ProjectionError(f"cannot write the read model at {path}: {error.strerror}") from None
    return path.resolve()


def _check_postgres_target(env: dict[str, str], where: str) -> None:
    schema = quote(env["POSTGRES_SCHEMA"])
    reach = f"the read model's database ({where})"
    if any(postgres_has(env, f"{schema}.{table}", reach, ProjectionError) for table in (POSTGRES_TABLE, SQLITE_TABLE)):
        raise ProjectionError(f"{where} holds an event store: give the read model a schema of its own (--schema NAME)")


def check_belongs(view: ReadModel, source: EventLog, where: str) -> None:
    """A view holds one store's projection: refuse another store's, or one that is ahead."""
    missing = view.missing_columns()
    if missing:
        raise ProjectionError(f"{where} holds a read model an older OpenPEX made (it has no column {missing[0]}): "
                              "project into a new target")
    recorded = view.source()
    position = view.max_tracking_id(EventLog.name) or 0
    if recorded is None:
        if position:
            raise ProjectionError(f"{where} holds a projection but not which store it is of: project into a new target")
        return
    if recorded.identity != identity_of(source.recorder):
        raise ProjectionError(f"{where} holds the projection of another event store ({recorded.location}): "
                              "project into a new target")
    if position:
        found = source.recorder.select_notifications(position, 1, stop=position)
        here = [(str(n.originator_id), n.originator_version) for n in found]
        if here != [view.event_at(position)]:
            raise ProjectionError(f"{where} holds events this store does not have (at position {position}): "
                                  "project into a new target")


