"""How a standby learns that its writer appended: PostgreSQL's LISTEN/NOTIFY.

Every append (eventsourcing's PostgreSQL recorder, and so OpenPEX's fenced one) sends a NOTIFY
on the events table's channel in the append's own transaction, so it is heard only once the
events are there to read. A standby listens on that channel with a connection of its own and,
at each notification, has its view read on from its position (the Allocator's `follow`). It
also reads on every `fallback` seconds without one, so a notification lost with a dropped
connection costs at most that long; a connection that drops is opened again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


class LogListener:
    def __init__(self, env: Mapping[str, str], channel: str, read_on: Callable[[], None], *,
                 fallback: float = 1.0) -> None:
        """`env`: eventsourcing's POSTGRES_* settings; `read_on` is called (on this listener's
        thread, and waited for) after each notification or `fallback` seconds of silence."""
        self.env, self.channel, self.read_on, self.fallback = env, channel, read_on, fallback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="LogListener", daemon=True)
        self._said_at = float("-inf")

    def start(self) -> LogListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=self.fallback + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._connect() as connection:
                    connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self._read_on()  # (what was appended before this listened)
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=self.fallback, stop_after=1):
                            pass
                        self._read_on()  # (heard one, or the fallback's turn)
            except Exception as error:  # (whatever it is, the standby must go on reading)
                self._say(f"cannot listen for the writer's appends ({error}); reading on every "
                          f"{self.fallback:.0f} s meanwhile")
                self._read_on()
                self._stop.wait(self.fallback)

    def _connect(self) -> psycopg.Connection:
        env = self.env
        return psycopg.connect(host=env.get("POSTGRES_HOST"), port=env.get("POSTGRES_PORT"),
                               dbname=env.get("POSTGRES_DBNAME"), user=env.get("POSTGRES_USER"),
                               password=env.get("POSTGRES_PASSWORD"), autocommit=True, connect_timeout=5,
                               keepalives=1, keepalives_idle=1, keepalives_interval=1, keepalives_count=3)

    def _read_on(self) -> None:
        if self._stop.is_set():
            return
        try:
            self.read_on()
        except Exception as error:  # (the Allocator says a store it cannot read once a minute itself)
            self._say(f"reading on in the log failed: {error}")

    def _say(self, what: str) -> None:
        now = time.monotonic()
        if now - self._said_at >= 60:
            self._said_at = now
            log.warning("%s", what)
