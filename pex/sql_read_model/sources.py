"""The event store a read model is made from, read only: its recorder, mapper and repository
under the OpenPEX application's name, and a subscription to follow it: PostgreSQL's
LISTEN/NOTIFY, or for a SQLite file (which cannot notify another process) a look every POLL
seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import (
    ApplicationRecorder,
    ListenNotifySubscription,
    Subscription,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder

from pex.domain.application import OpenPEX
from pex.stores import StoreError, is_postgres, reader_env, writer_env

EVENTS_TABLE = "openpex_events"  # the OpenPEX application's events on PostgreSQL
POLL = 0.2  # seconds between looks at a SQLite source for new events
PAGE = 1_000  # notifications read per query


class EventLog(Application[UUID]):
    """The OpenPEX event store, for reading: its recorder, mapper and repository."""

    name = "OpenPEX"  # the application name in tracking records
    env: ClassVar[dict[str, str]] = {"TRANSCODER_TOPIC": OpenPEX.env["TRANSCODER_TOPIC"]}


class PollingSQLiteRecorder(SQLiteApplicationRecorder):
    """eventsourcing's SQLite recorder offers no subscription: this one polls."""

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Subscription[ApplicationRecorder]:
        return _PollingSubscription(self, gt=gt, topics=topics)


class _PollingSubscription(ListenNotifySubscription[SQLiteApplicationRecorder]):
    """Pulls as the LISTEN/NOTIFY subscription does, woken by a ticker instead of a NOTIFY."""

    def __init__(self, recorder: SQLiteApplicationRecorder, gt: int | None = None, topics: Sequence[str] = ()) -> None:
        self._stopping = threading.Event()
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._select_limit = PAGE
        self._ticker = threading.Thread(target=self._tick, name="sqlite-poll")
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stopping.wait(POLL):
            self._has_been_notified.set()

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        try:
            super().__exit__(*args, **kwargs)
        finally:
            self._ticker.join()


def source_env(store: str) -> dict[str, str]:
    """eventsourcing's settings to read `store` and follow it, never writing it."""
    if not is_postgres(store):
        return {**reader_env(store), "APPLICATION_RECORDER_TOPIC": f"{__name__}:{PollingSQLiteRecorder.__name__}"}
    # (Not pex.stores.reader_env: it looks for `stored_events`, SQLite's name for the table;
    # on PostgreSQL eventsourcing names it after the application.)
    env = {**writer_env(store), "CREATE_TABLE": "false", "POSTGRES_CONNECT_TIMEOUT": "5"}
    where = location(store)
    if not postgres_has(env, f"public.{EVENTS_TABLE}", f"the event store at {where}", StoreError):
        raise StoreError(f"{where} is not an OpenPEX event store (it has no {EVENTS_TABLE} table)")
    return env


def location(store: str) -> str:
    """Where a store is, without its password."""
    if is_postgres(store):
        url = urlparse(store)
        return f"postgresql://{url.hostname}:{url.port or 5432}{url.path}"
    return str(Path(store).resolve())


def postgres_has(env: dict[str, str], table: str, what: str, error: type[Exception]) -> bool:
    """Whether the database holds `table` (error, with one line, if it cannot be reached)."""
    try:
        with psycopg.connect(host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]), dbname=env["POSTGRES_DBNAME"],
                             user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"], connect_timeout=5) as db:
            found = db.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    except psycopg.Error as failure:
        raise error(f"cannot reach {what}: {one_line(failure)}") from None
    return bool(found and found[0])


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__
