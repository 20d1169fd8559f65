"""The event store a read model is made from, read only: its recorder, mapper and repository
under the OpenPEX application's name, and a subscription to follow it: PostgreSQL's
LISTEN/NOTIFY, or for a SQLite file (which cannot notify another process) a look every POLL
seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import (
    ApplicationRecorder,
    ListenNotifySubscription,
    Subscription,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder

from pex.stores import is_postgres, reader_env

POLL = 0.2  # seconds between looks at a SQLite source for new events
PAGE = 1_000  # notifications read per query


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
    env = reader_env(store)
    if not is_postgres(store):  # (SQLite cannot notify another process: its recorder polls)
        env["APPLICATION_RECORDER_TOPIC"] = f"{__name__}:{PollingSQLiteRecorder.__name__}"
    return env
