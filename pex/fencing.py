"""One writer per store (issue 13): OpenPEX decides capacity in one process's memory, so no
second process may append to the log it decides from.

- **SQLite** (one machine): `openpex serve` holds an exclusive `flock` on `<store>.lock` for as
  long as it runs, its PID written inside. The kernel drops the lock when the process ends,
  however it ends, so a lock file left behind by a killed writer never blocks the next one; a
  second writer finds the lock taken and exits at once naming the holder.
- **PostgreSQL** (any number of machines): a lease row (`openpex_lease`) with a fencing token.
  The writer takes it when it has expired (the token goes up by one), renews it every
  `RENEW_EVERY` seconds for `LEASE_SECONDS`, and every append checks, in the append's own
  transaction, that its token still holds an unexpired lease (`openpex_fence`, which locks the
  row FOR SHARE: a taker's UPDATE waits until that append commits, so nothing the old writer
  appends can land after the new writer's token). Expiry is judged by the database's clock
  alone. A writer that cannot renew stops deciding by its own monotonic deadline, before the
  lease can expire there (the database refuses it anyway). Readers (`pex.query`, `openpex
  events`, ...) take no lock and no lease.

Why not eventsourcing's DCB conditional append ("fail if any event on these tags was recorded
after position P")? It fences per decision, on the tags a decision read; OpenPEX's decisions
read the whole capacity model (any node, any hour), so every append would be conditional on
the whole log's head, which is the lease's token with more work and no owner to name. And the
application's recorder is not a DCB recorder. The lease says who writes, and for how long.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from pex.domain.errors import DomainError, one_line

log = logging.getLogger("openpex")

LEASE_SECONDS = 3.0  # how long a lease lasts unrenewed: a standby may take over after this
RENEW_EVERY = 0.5  # seconds between renewals
MARGIN = 0.5  # the writer stops this much before its lease could expire at the database
FENCE_REFUSED = "OPX01"  # the SQLSTATE of an append refused by the fence


class StoreInUse(Exception):
    """Another process writes this store (one line, for an operator)."""


class NotTheWriter(DomainError):
    """This process does not (or no longer) hold the store's writer lease: nothing was recorded."""

    status = 503
    code = "NOT_THE_WRITER"


class Standby(DomainError):
    """This process is a standby: it answers reads from its own view of the log and leaves
    every write to the writer (try again in a second: a standby may be the writer by then)."""

    status = 503
    code = "STANDBY"
    retry_after = 1


# ---------------------------------------------------------------------- SQLite


class StoreLock:
    """An exclusive hold on a SQLite store for the life of this process (`<store>.lock`)."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.path = Path(f"{store}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            for _ in range(20):  # (a holder that has just taken the lock writes its PID a moment later)
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                if holder:
                    break
                time.sleep(0.05)
            os.close(fd)
            holder = holder or "unknown"
            raise StoreInUse(f"the store {self.store} is in use by another openpex serve (PID {holder}); "
                             "stop that one first, or give this one another --data-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # (the file stays: removing it would race a next writer's open)
            self._fd = None


# ---------------------------------------------------------------------- PostgreSQL


def _connect(env: Mapping[str, str]) -> psycopg.Connection[Any]:
    # A renewal must fail within the lease rather than hang: a statement timeout for a slow
    # server, keepalives and a TCP timeout for a cut network.
    return psycopg.connect(host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]), dbname=env["POSTGRES_DBNAME"],
                           user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"], autocommit=True,
                           connect_timeout=2, options="-c statement_timeout=1000", keepalives=1,
                           keepalives_idle=1, keepalives_interval=1, keepalives_count=1, tcp_user_timeout=1000)


def _schema(env: Mapping[str, str]) -> str:
    # As eventsourcing reads it (its environment falls back on the process's).
    return (env.get("POSTGRES_SCHEMA") or os.environ.get("POSTGRES_SCHEMA") or "").strip() or "public"


class Lease:
    """The writer's lease on a PostgreSQL store: `acquire` once, then `renew` while writing."""

    def __init__(self, env: Mapping[str, str], seconds: float = LEASE_SECONDS) -> None:
        self.env = dict(env)
        self.seconds = seconds
        self.holder = f"{socket.gethostname()} PID {os.getpid()}"
        self.token: int | None = None
        self._db: psycopg.Connection[Any] | None = None
        self._names = {"schema": Identifier(_schema(env)), "lease": Identifier("openpex_lease"),
                       "fence": Identifier("openpex_fence")}

    def _connection(self) -> psycopg.Connection[Any]:
        if self._db is None or self._db.closed:
            self._db = _connect(self.env)
        return self._db

    def create(self) -> None:
        """The lease table and the fence function, made once (concurrent starts queue on a lock)."""
        db = self._connection()
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(hashtext('openpex_lease'))")
            db.execute(SQL("CREATE TABLE IF NOT EXISTS {schema}.{lease} (name text PRIMARY KEY, token bigint NOT NULL, "
                           "holder text NOT NULL, expires_at timestamptz NOT NULL)").format(**self._names))
            found = db.execute("SELECT to_regprocedure(%s)", (f"{_schema(self.env)}.openpex_fence(bigint)",)).fetchone()
            if found is not None and found[0] is not None:
                return  # (never replaced under a live writer)
            db.execute(SQL(
                "CREATE FUNCTION {schema}.{fence}(given bigint) RETURNS void LANGUAGE plpgsql AS $$ "
                "BEGIN "
                "  PERFORM 1 FROM {schema}.{lease} WHERE name = 'writer' AND token = given "
                "    AND expires_at > clock_timestamp() FOR SHARE; "
                "  IF NOT FOUND THEN "
                "    RAISE EXCEPTION 'openpex: the writer with token % does not hold the lease', given "
                f"      USING ERRCODE = '{FENCE_REFUSED}'; "
                "  END IF; "
                "END $$").format(**self._names))

    def acquire(self) -> int | None:
        """Take the lease if nobody holds it (or it expired); the new token, or None (also when
        an append under way holds the row longer than a statement may wait: a writer is busy)."""
        try:
            return self._acquire()
        except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable):
            return None

    def _acquire(self) -> int | None:
        row = self._connection().execute(SQL(
            "INSERT INTO {schema}.{lease} AS l (name, token, holder, expires_at) "
            "VALUES ('writer', 1, %(holder)s, clock_timestamp() + make_interval(secs => %(seconds)s)) "
            "ON CONFLICT (name) DO UPDATE SET token = l.token + 1, holder = EXCLUDED.holder, "
            "expires_at = EXCLUDED.expires_at WHERE l.expires_at <= clock_timestamp() "
            "RETURNING token").format(**self._names), {"holder": self.holder, "seconds": self.seconds}).fetchone()
        self.token = int(row[0]) if row else None
        return self.token

    def held_by(self) -> str:
        """Who holds the lease now, and for how much longer (for a message)."""
        row = self._connection().execute(SQL(
            "SELECT holder, token, greatest(0, extract(epoch FROM expires_at - clock_timestamp())) "
            "FROM {schema}.{lease} WHERE name = 'writer'").format(**self._names)).fetchone()
        if row is None:
            return "nobody"
        return f"{row[0]} (token {row[1]}, {float(row[2]):.1f} s left unless renewed)"

    def renew(self) -> bool:
        """Extend the lease; False if another has it or it expired (then it is lost for good)."""
        if self.token is None:
            return False
        row = self._connection().execute(SQL(
            "UPDATE {schema}.{lease} SET expires_at = clock_timestamp() + make_interval(secs => %(seconds)s) "
            "WHERE name = 'writer' AND token = %(token)s AND expires_at > clock_timestamp() "
            "RETURNING token").format(**self._names), {"token": self.token, "seconds": self.seconds}).fetchone()
        return row is not None

    def release(self) -> None:
        """Let it go at once (a clean stop: a standby need not wait out the lease)."""
        if self.token is not None:
            try:
                self._connection().execute(SQL(
                    "UPDATE {schema}.{lease} SET expires_at = clock_timestamp() "
                    "WHERE name = 'writer' AND token = %s").format(**self._names), (self.token,))
            except psycopg.Error as error:
                log.warning("could not release the writer's lease (it lapses by itself): %s", one_line(error))
        self.token = None
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


class LeaseKeeper(threading.Thread):
    """Renews the lease and knows, by this process's monotonic clock, until when it surely
    holds it: a renewal sent at t gives at least until t + LEASE_SECONDS at the database, so
    this process writes until t + LEASE_SECONDS - MARGIN and no longer. When the lease is lost
    (taken, or unrenewable until that deadline) `on_lost` is called once."""

    def __init__(self, lease: Lease, on_lost: Callable[[str], None], *, since: float,
                 every: float = RENEW_EVERY) -> None:
        """`since`: the monotonic time at which the acquiring statement was sent."""
        super().__init__(name="lease-keeper", daemon=True)
        self.lease = lease
        self.on_lost = on_lost
        self.every = every
        self._until = since + lease.seconds - MARGIN
        self._lost = False
        self._halt = threading.Event()
        self._lock = threading.Lock()
        # A renewal may hang (a frozen server, a network that drops silently): the deadline is
        # kept by a watchdog of its own, not by the renewing thread.
        self._watchdog = threading.Thread(target=self._watch, name="lease-watchdog", daemon=True)

    @property
    def token(self) -> int | None:
        return self.lease.token

    def holds(self) -> bool:
        if not self._lost and time.monotonic() >= self._until:
            self.lose("the lease could not be renewed in time")  # (even if a renewal hangs)
        return not self._lost

    def start(self) -> None:
        super().start()
        self._watchdog.start()

    def _watch(self) -> None:
        while not self._lost and not self._halt.is_set():
            left = self._until - time.monotonic()
            if left <= 0:
                self.lose("the database did not answer in time to renew the lease")
                return
            self._halt.wait(min(left, self.every))

    def run(self) -> None:
        while not self._halt.wait(self.every) and not self._lost:
            sent = time.monotonic()
            try:
                renewed: bool | None = self.lease.renew()
            except psycopg.Error as error:
                renewed = None  # the database did not answer: keep trying until the deadline
                log.warning("could not renew the writer's lease: %s", one_line(error))
                self.lease.close()
            if renewed:
                self._until = sent + self.lease.seconds - MARGIN
            elif renewed is False or time.monotonic() >= self._until:
                self.lose("another process holds the lease now" if renewed is False
                          else "the database did not answer in time to renew the lease")
                return

    def lose(self, why: str) -> None:
        with self._lock:
            if self._lost:
                return
            self._lost = True
        self.on_lost(why)

    def stop(self) -> None:
        self._halt.set()
        for thread in (self, self._watchdog):
            if thread.is_alive() and threading.current_thread() is not thread:
                thread.join(timeout=2)  # (a renewal that hangs is left to die with the process)


class FencedPostgresRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, appending only under the writer's lease: with no keeper, or
    one whose lease has lapsed, it refuses before touching the database; otherwise the fence
    function checks the token in the append's own transaction."""

    fence: LeaseKeeper | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.datastore.enable_db_functions = False  # (eventsourcing's insert function would skip the fence)

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        fence = self.fence
        if fence is None or fence.token is None or not fence.holds():
            raise NotTheWriter("this OpenPEX is not the store's writer (it holds no lease): nothing was recorded")
        curs.execute(SQL("SELECT {schema}.{fence}(%s)").format(
            schema=Identifier(self.datastore.schema), fence=Identifier("openpex_fence")), (fence.token,))

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        try:
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        except Exception as error:
            if getattr(error.__cause__, "sqlstate", None) == FENCE_REFUSED:
                if self.fence is not None:
                    self.fence.lose("the store refused an append: another process holds the lease")
                raise NotTheWriter("this OpenPEX no longer holds the store's writer lease: nothing was recorded") from None
            raise


RECORDER_TOPIC = f"{__name__}:FencedPostgresRecorder"
