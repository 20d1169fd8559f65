"""One writer per store (issue 13), tried as an operator would: real `openpex serve` processes
on one SQLite data dir and on one PostgreSQL database; the fence itself checked at the
database, where a writer whose lease was taken cannot append even if it believes it holds it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from pex.fencing import LEASE_SECONDS, FencedPostgresRecorder, Lease, LeaseKeeper, NotTheWriter
from pex.service import store_env
from tests.support.proxy import Proxy
from tests.support.server import ADMIN_PASSWORD, Server, free_port

ADMIN = ("admin", ADMIN_PASSWORD)


def url(server: Any) -> str:
    return f"postgresql://{server.user}:{server.password}@{server.host}:{server.port}/{server.dbname}"


def second_serve(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """A second `openpex serve` as an operator would start it; it must not come up."""
    return subprocess.run([sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(data_dir), "--port", "0", *extra],
                          capture_output=True, text=True, timeout=60,
                          env={"OPENPEX_ADMIN_PASSWORD": ADMIN_PASSWORD, "PATH": "/usr/bin:/bin"})


def events(database: str) -> int:
    with psycopg.connect(database, autocommit=True) as db:
        return int(db.execute("SELECT count(*) FROM openpex_events").fetchone()[0])


def test_a_second_serve_on_a_sqlite_store_exits_at_once_naming_the_first_and_a_killed_ones_lock_is_not_stale(tmp_path):
    first = Server(tmp_path)
    try:
        started = time.monotonic()
        second = second_serve(tmp_path)
        assert time.monotonic() - started < 15
        assert second.returncode == 1
        assert f"in use by another openpex serve (PID {first.process.pid})" in second.stderr
        assert first.request("POST", "/OpenPEX/users", {"username": "alice", "password": "alice-password"})[0] == 201
        first.kill(signal.SIGKILL)  # its lock file stays behind
        assert (tmp_path / "events.db.lock").exists()
        third = Server(tmp_path)
        try:
            status, user = third.request("GET", "/OpenPEX/users/alice", auth=ADMIN)
            assert (status, user["username"]) == (200, "alice")
        finally:
            third.close()
    finally:
        first.close()


def serves(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/OpenPEX/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def test_two_writers_started_at_once_on_sqlite_exactly_one_serves(tmp_path):
    ports = [free_port(), free_port()]
    processes = [subprocess.Popen([sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(tmp_path), "--port",
                                   str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, "OPENPEX_ADMIN_PASSWORD": ADMIN_PASSWORD})
                 for port in ports]
    try:
        deadline = time.monotonic() + 60
        while sum(p.poll() is not None for p in processes) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        stopped = [p for p in processes if p.poll() is not None]
        assert len(stopped) == 1, "exactly one of the two must give way"
        assert stopped[0].returncode == 1
        winner = processes[1 - processes.index(stopped[0])]
        assert f"PID {winner.pid}" in stopped[0].stdout.read()
        port = ports[processes.index(winner)]
        while not serves(port):  # the one that took the store comes up and serves
            assert winner.poll() is None and time.monotonic() < deadline, "the one that took the store stopped"
            time.sleep(0.1)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=30)
            process.stdout.close()


def test_two_serves_started_at_once_on_postgres_one_writes_and_one_stands_by(tmp_path, postgres_server):
    postgres_server.reset()
    database = url(postgres_server)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    servers: list[Server] = []
    started = [threading.Thread(target=lambda d=d: servers.append(Server(d, "--database", database)))
               for d in (tmp_path / "a", tmp_path / "b")]
    try:
        for thread in started:
            thread.start()
        for thread in started:
            thread.join(timeout=90)
        assert len(servers) == 2
        roles = sorted(server.request("GET", "/OpenPEX/health")[1]["role"] for server in servers)
        assert roles == ["standby", "writer"]
        writer = next(s for s in servers if s.request("GET", "/OpenPEX/health")[1]["role"] == "writer")
        standby = next(s for s in servers if s is not writer)
        assert "its writer is " in standby.log.read_text() and f"PID {writer.process.pid}" in standby.log.read_text()
        assert standby.request("POST", "/OpenPEX/users", {"username": "bob", "password": "bob-password-1"})[0] == 503
        before = events(database)
        assert writer.request("POST", "/OpenPEX/users", {"username": "alice", "password": "alice-password"})[0] == 201
        assert events(database) > before
        # A clean stop gives the lease up at once: the standby need not wait it out.
        assert writer.kill(signal.SIGTERM) == 0
        stopped = time.monotonic()
        while standby.request("GET", "/OpenPEX/health")[1]["role"] != "writer":
            assert time.monotonic() - stopped < 10
            time.sleep(0.05)
        assert time.monotonic() - stopped < LEASE_SECONDS, "the lease was not given up at the clean stop"
        assert standby.request("GET", "/OpenPEX/users/alice", auth=ADMIN)[0] == 200
    finally:
        for server in servers:
            server.close()


def test_read_only_tools_need_no_lock_while_the_store_is_served(tmp_path):
    server = Server(tmp_path)
    try:
        listed = subprocess.run([sys.executable, "-m", "pex.cli", "events", "--data-dir", str(tmp_path),
                                 "--limit", "3"], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert len(listed.stdout.strip().splitlines()) >= 3
    finally:
        server.close()


def test_a_writer_whose_lease_is_taken_records_nothing_more_and_stops(tmp_path, postgres_server):
    postgres_server.reset()
    database = url(postgres_server)
    writer = Server(tmp_path, "--database", database)
    try:
        assert writer.request("POST", "/OpenPEX/users", {"username": "alice", "password": "alice-password"})[0] == 201
        before = events(database)
        with psycopg.connect(database, autocommit=True) as db:  # another process takes the lease
            db.execute("UPDATE openpex_lease SET token = token + 1, holder = 'another', "
                       "expires_at = clock_timestamp() + interval '1 minute'")
        try:
            status, body = writer.request("POST", "/OpenPEX/users", {"username": "bob", "password": "bob-password-1"})
        except OSError:  # (it may already have stopped)
            status, body = None, None
        assert status in (None, 503), body
        assert writer.process.wait(timeout=10) == 3, writer.log.read_text()
        assert "lost the writer's lease" in writer.log.read_text()
        assert events(database) == before
    finally:
        writer.close()


@pytest.fixture
def recorders(postgres_server):
    """Two recorders on one database, as two processes would hold them, and a fresh lease table."""
    postgres_server.reset()
    env = store_env(url(postgres_server), Path("unused"))
    from pex.domain.application import OpenPEX

    apps = [OpenPEX(env), OpenPEX(env)]
    try:
        yield env, [app.recorder for app in apps]
    finally:
        for app in apps:
            app.close()


def stored(n: int) -> list[StoredEvent]:
    from uuid import uuid4

    return [StoredEvent(uuid4(), 1, "pex.domain.aggregates:Fenced", b"x") for _ in range(n)]


def test_the_fence_is_checked_at_the_database_in_the_append_itself(recorders):
    env, (old, new) = recorders
    assert isinstance(old, FencedPostgresRecorder)
    with pytest.raises(NotTheWriter):  # holding no lease: refused before the database
        old.insert_events(stored(1))
    first, second = Lease(env), Lease(env, seconds=30)
    try:
        first.create()
        assert first.acquire() == 1
        old.fence = LeaseKeeper(first, lambda why: None, since=time.monotonic())
        assert len(old.insert_events(stored(2))) == 2
        assert second.acquire() is None, "the lease is held"
        with psycopg.connect(host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]), dbname=env["POSTGRES_DBNAME"],
                             user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"], autocommit=True) as db:
            db.execute("UPDATE openpex_lease SET expires_at = clock_timestamp()")  # it lapses
        assert second.acquire() == 2
        new.fence = LeaseKeeper(second, lambda why: None, since=time.monotonic())
        # The old writer still believes it holds the lease (its own deadline has not passed), but the
        # database refuses: its token is not the lease's.
        assert old.fence.holds()
        with pytest.raises(NotTheWriter):
            old.insert_events(stored(1))
        assert not old.fence.holds(), "a refused append tells the keeper the lease is lost"
        assert len(new.insert_events(stored(1))) == 1
        assert len(new.select_notifications(1, 100)) == 3
    finally:
        first.close()
        second.close()


def test_a_taker_waits_for_an_append_under_way_and_the_old_token_appends_nothing_after(recorders):
    """The fence locks the lease row FOR SHARE in the append's transaction: a taker's UPDATE
    waits for that append to commit, so nothing of the old writer lands after the new token."""
    env, (old, _) = recorders
    lease = Lease(env)
    try:
        lease.create()
        lease.acquire()
        old.fence = LeaseKeeper(lease, lambda why: None, since=time.monotonic())
        connect = dict(host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]), dbname=env["POSTGRES_DBNAME"],
                       user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"])
        with psycopg.connect(**connect) as held, psycopg.connect(**connect, autocommit=True) as taker:
            held.execute("SELECT openpex_fence(%s)", (lease.token,))  # an append's fence, not yet committed
            took: list[float] = []

            def take() -> None:
                taker.execute("UPDATE openpex_lease SET token = token + 1, expires_at = clock_timestamp()")
                took.append(time.monotonic())

            thread = threading.Thread(target=take)
            thread.start()
            time.sleep(0.5)
            assert took == [], "the taker went past an append under way"
            committed = time.monotonic()
            held.commit()
            thread.join(timeout=10)
            assert took and took[0] >= committed
        with pytest.raises(NotTheWriter):
            old.insert_events(stored(1))
    finally:
        lease.close()


def test_a_writer_cut_off_from_its_database_stops_and_another_takes_over_after_the_lease(tmp_path, postgres_server):
    """The network between the writer and PostgreSQL is cut: the writer cannot renew, stops by
    its own deadline (exit 3) and a second writer, which could not start while the lease held,
    takes the store over once it lapses, with nothing lost."""
    postgres_server.reset()
    proxy = Proxy(postgres_server.host, postgres_server.port)
    through = f"postgresql://{postgres_server.user}:{postgres_server.password}@127.0.0.1:{proxy.port}/{postgres_server.dbname}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Server(tmp_path / "a", "--database", through)
    try:
        assert first.request("POST", "/OpenPEX/users", {"username": "alice", "password": "alice-password"})[0] == 201
        cut = time.monotonic()
        proxy.cut()
        assert first.process.wait(timeout=20) == 3, first.log.read_text()
        assert "lost the writer's lease" in first.log.read_text()
        second = Server(tmp_path / "b", "--database", url(postgres_server))
        try:
            assert time.monotonic() - cut < 20
            assert second.request("GET", "/OpenPEX/users/alice", auth=ADMIN)[0] == 200
            assert second.request("POST", "/OpenPEX/users", {"username": "bob", "password": "bob-password-1"})[0] == 201
        finally:
            second.close()
    finally:
        first.close()


def test_a_writer_whose_database_stops_answering_stops_by_its_own_deadline(tmp_path, postgres_server):
    """A database that takes every byte and answers none (stopped with SIGSTOP; a pooler that
    hangs): no timeout of the client's connection fires, the renewal hangs, and the writer
    stops all the same, by its own watchdog, before its lease could lapse at the database."""
    postgres_server.reset()
    proxy = Proxy(postgres_server.host, postgres_server.port)
    through = f"postgresql://{postgres_server.user}:{postgres_server.password}@127.0.0.1:{proxy.port}/{postgres_server.dbname}"
    writer = Server(tmp_path, "--database", through)
    try:
        assert writer.request("POST", "/OpenPEX/users", {"username": "alice", "password": "alice-password"})[0] == 201
        frozen = time.monotonic()
        proxy.freeze()
        assert writer.process.wait(timeout=30) == 3, writer.log.read_text()
        log = writer.log.read_text()
        assert "lost the writer's lease" in log and "did not answer in time" in log, log
        print(f"stopped {time.monotonic() - frozen:.1f} s after its database froze")
    finally:
        writer.close()
        proxy.cut()


def test_tree_heads_are_stored_under_the_lease_too(recorders, postgres_server):
    """The Notary of a writer that lost its lease must not store heads over the new writer's
    events (two keepers' heads would interleave, and verify would blame a clean log)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pex.audit.keeper import TreeKeeper
    from pex.audit.ledger import Ledger, LedgerError

    env, (old, new) = recorders
    first, second = Lease(env), Lease(env, seconds=30)
    try:
        first.create()
        first.acquire()
        old.fence = LeaseKeeper(first, lambda why: None, since=time.monotonic())
        old.insert_events(stored(2))
        with Ledger.open(url(postgres_server), write=True, fence=lambda: first.token) as ledger:
            keeper = TreeKeeper(ledger, Ed25519PrivateKey.generate())
            assert keeper.turn(now=1_000) == 2
            with psycopg.connect(url(postgres_server), autocommit=True) as db:
                db.execute("UPDATE openpex_lease SET expires_at = clock_timestamp()")
            assert second.acquire() == 2
            new.fence = LeaseKeeper(second, lambda why: None, since=time.monotonic())
            new.insert_events(stored(1))
            with pytest.raises(LedgerError, match="does not hold the lease"):
                keeper.turn(now=2_000)
            assert [head.head.size for head in ledger.heads()] == [2]
    finally:
        first.close()
        second.close()


def test_a_database_that_cannot_be_reached_stops_the_start_in_one_line(tmp_path):
    closed = free_port()  # (nothing listens there)
    done = subprocess.run([sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(tmp_path / "data"),
                           "--database", f"postgresql://openpex:secret-pw@127.0.0.1:{closed}/openpex"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OPENPEX_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert done.returncode == 1, done.stderr
    said = [line for line in done.stderr.splitlines() if "cannot start" in line]
    assert len(said) == 1 and "the store's database failed" in said[0] and "Connection refused" in said[0]
    assert "Traceback" not in done.stderr and "secret-pw" not in done.stderr  # (the password is not echoed)


def test_the_writers_wall_clock_jumping_neither_ends_its_lease_nor_lets_another_take_it(recorders, monkeypatch):
    """The writer trusts its lease by the monotonic clock and the lease lapses by the
    database's: a wall clock set an hour ahead, then a day back, changes neither."""
    env, _ = recorders
    lease, other = Lease(env), Lease(env)
    lost: list[str] = []
    keeper = None
    try:
        lease.create()
        assert lease.acquire() == 1
        keeper = LeaseKeeper(lease, lost.append, since=time.monotonic())
        keeper.start()
        real = time.time
        for jump in (3600.0, -86400.0):
            monkeypatch.setattr(time, "time", lambda jump=jump: real() + jump)
            deadline = time.monotonic() + 2 * LEASE_SECONDS
            while time.monotonic() < deadline:  # (renewals go on meanwhile)
                assert keeper.holds() and not lost
                assert other.acquire() is None, "the lease is held"
                time.sleep(0.25)
        assert keeper.token == 1
    finally:
        if keeper is not None:
            keeper.stop()
        lease.close()
        other.close()
