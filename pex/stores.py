"""Where an event store is, as a user names it: a SQLite file or a postgresql:// URL.

The writer (`openpex serve`) creates its store; readers (`pex.query`, `openpex project`) must
never create or change one, so they open it read-only and refuse, with one message naming
what is wrong, a file that is not there or a server that does not answer.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote, unquote, urlparse
from uuid import UUID

import psycopg
from eventsourcing.application import Application


class StoreError(Exception):
    """An event store cannot be opened as asked (one line, fit for a user)."""


def is_postgres(store: str) -> bool:
    return store.startswith(("postgres://", "postgresql://"))


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
        env = writer_env(store)
        _check_postgres(env)
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
    if "stored_events" not in tables:
        raise StoreError(f"{path} is not an OpenPEX event store (it has no stored_events table)")


def _check_postgres(env: dict[str, str]) -> None:
    where = f"{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}/{env['POSTGRES_DBNAME']}"
    try:
        with psycopg.connect(host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]), dbname=env["POSTGRES_DBNAME"],
                             user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"], connect_timeout=5) as db:
            found = db.execute("SELECT to_regclass('stored_events') IS NOT NULL").fetchone()
    except psycopg.Error as error:
        raise StoreError(f"cannot reach the event store at {where}: {' '.join(str(error).split())[:200]}") from None
    if not found or not found[0]:
        raise StoreError(f"{where} is not an OpenPEX event store (it has no stored_events table)")


def open_reader(store: object) -> Application[UUID]:
    """An eventsourcing Application on the store, for reading its recorder and mapper only."""
    from pex.domain.application import OpenPEX  # (its transcoder: the events' own encoding)

    return Application(env={**reader_env(store), "TRANSCODER_TOPIC": OpenPEX.env["TRANSCODER_TOPIC"]})
