"""Where an event store is, as a user names it: a SQLite file or a postgresql:// URL.

The writer (`openpex serve`) creates its store; readers (`pex.query`, `openpex project`) must
never create or change one, so they open it read-only and refuse, with one message naming
what is wrong, a file that is not there or a server that does not answer.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote, unquote, urlparse
from uuid import UUID

import psycopg
from eventsourcing.application import Application

from pex.domain.application import OpenPEX
from pex.domain.errors import one_line

# The writer's application: eventsourcing names the PostgreSQL table after it (SQLite's is
# always `stored_events`), and its transcoder is how the events are encoded.
WRITER = OpenPEX.name
TRANSCODER = OpenPEX.env["TRANSCODER_TOPIC"]
POSTGRES_TABLE = f"{WRITER.lower()}_events"
SQLITE_TABLE = "stored_events"


class StoreError(Exception):
    """An event store cannot be opened as asked (one line, fit for a user)."""


class EventLog(Application[UUID]):
    """An OpenPEX store opened for reading: its recorder, mapper and repository, under the
    writer's name and with the writer's encoding."""

    name = WRITER
    env: ClassVar[dict[str, str]] = {"TRANSCODER_TOPIC": TRANSCODER}


def is_postgres(store: str) -> bool:
    return store.startswith(("postgres://", "postgresql://"))


def location(store: str) -> str:
    """Where a store is, without its password."""
    if is_postgres(store):
        url = urlparse(store)
        return f"postgresql://{url.hostname}:{url.port or 5432}{url.path}"
    return str(Path(store).resolve())


def writer_env(store: str) -> dict[str, str]:
    """eventsourcing's settings to open (and create, if need be) the store for writing."""
    if is_postgres(store):
        url = urlparse(store)
        return {"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": url.path.lstrip("/"),
                "POSTGRES_HOST": url.hostname or "127.0.0.1", "POSTGRES_PORT": str(url.port or 5432),
                "POSTGRES_USER": unquote(url.username or ""), "POSTGRES_PASSWORD": unquote(url.password or "")}
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": store}


def reader_env(store: object) -> dict[str, str]:
    """Settings to read an existing store and never write it: a SQLite file opened read-only
    (mode=ro: SQLite itself refuses any write), tables never created. StoreError unless the
    store is there and holds OpenPEX's events."""
    if not isinstance(store, (str, Path)) or not str(store):
        raise StoreError("the store must be a SQLite file's path or a postgresql:// URL")
    store = str(store)
    if is_postgres(store):
        env = {**writer_env(store), "POSTGRES_CONNECT_TIMEOUT": "5"}
        if not postgres_has(env, POSTGRES_TABLE, f"the event store at {location(store)}"):
            raise StoreError(f"{location(store)} is not an OpenPEX event store (it has no {POSTGRES_TABLE} table)")
    else:
        path = Path(store)
        if not path.is_file():
            raise StoreError(f"no event store at {store}: {'it is a directory' if path.exists() else 'no such file'}")
        _check_sqlite(path)
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
               "SQLITE_DBNAME": f"file:{quote(str(path.resolve()))}?mode=ro"}
    return {**env, "CREATE_TABLE": "false"}


def _check_sqlite(path: Path) -> None:
    try:
        with sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path} is not an event store: {error}") from None
    if SQLITE_TABLE not in tables:
        raise StoreError(f"{path} is not an OpenPEX event store (it has no {SQLITE_TABLE} table)")


def postgres_has(env: dict[str, str], table: str, what: str, error: type[Exception] = StoreError) -> bool:
    """Whether the database holds `table` (`error`, with one line, if it cannot be reached)."""
    try:
        with psycopg.connect(host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]), dbname=env["POSTGRES_DBNAME"],
                             user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"], connect_timeout=5) as db:
            found = db.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    except psycopg.Error as failure:
        raise error(f"cannot reach {what}: {one_line(failure)}") from None
    return bool(found and found[0])


def open_reader(store: object) -> EventLog:
    """The store, for reading only (see reader_env)."""
    return EventLog(env=reader_env(store))
