"""The tree the service keeps over its log, on real SQLite and PostgreSQL stores: heads stored
as the log grows, a restart that goes on from the last head, a failed write that loses no
leaf, and the running service's Notary (its head, its metric)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pex.actors.calls import ask_sync
from pex.audit.keeper import TreeKeeper
from pex.audit.ledger import Ledger, LedgerError
from pex.audit.merkle import Frontier
from pex.audit.signing import TreeHead
from pex.audit.verify import verify_store
from pex.domain.application import OpenPEX


def store_of(env: dict[str, str]) -> str:
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        return env["SQLITE_DBNAME"]
    return (f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@{env['POSTGRES_HOST']}:"
            f"{env['POSTGRES_PORT']}/{env['POSTGRES_DBNAME']}")


def add_templates(app: OpenPEX, first: int, count: int) -> None:
    for i in range(first, first + count):
        app.catalogue.register_template(f"t{i}", f"template {i}", {"kind": "simulated"})


def test_heads_follow_the_log_and_a_new_keeper_goes_on_from_the_last(durable_store_env: dict[str, str]) -> None:
    app = OpenPEX(durable_store_env)
    store, key = store_of(durable_store_env), Ed25519PrivateKey.generate()
    try:
        add_templates(app, 0, 7)
        with Ledger.open(store, write=True) as ledger:
            keeper = TreeKeeper(ledger, key)
            assert keeper.turn(now=1_000, most=3) == 3  # a long catch-up comes in turns
            assert keeper.turn(now=2_000) == 4
            assert keeper.turn(now=3_000) == 0  # idle: a fresh head, not stored
            assert keeper.latest is not None and keeper.latest.timestamp == 3_000
            assert [s.head.size for s in ledger.heads()] == [3, 7]
            assert [s.head.timestamp for s in ledger.heads()] == [1_000, 2_000]
        add_templates(app, 7, 5)
        with Ledger.open(store, write=True) as ledger:
            keeper = TreeKeeper(ledger, key)  # a restart
            assert (keeper.frontier.size, keeper.last_position) == (7, 7)
            assert keeper.turn(now=4_000) == 5
        with Ledger.open(store) as reader:
            stored = list(reader.heads())
            assert [s.head.size for s in stored] == [3, 7, 12]
            assert [position for s in stored for position, _ in s.added()] == list(range(1, 13))
            verdict = verify_store(reader)
            assert (verdict.ok, verdict.events, verdict.heads, verdict.unsigned) == (True, 12, 3, 0), verdict
            root = Frontier()
            for s in stored:
                for _, hashed in s.added():
                    root.append(hashed)
                assert s.head.root == root.root() and s.head.verifies()
    finally:
        app.close()


class _FailingOnce(Ledger):
    failed = False

    def append(self, head: TreeHead, leaves: bytes, frontier: Frontier) -> None:
        if not self.failed:
            self.failed = True
            raise LedgerError("the disk is full")
        super().append(head, leaves, frontier)


def test_a_head_that_cannot_be_stored_loses_no_leaf(tmp_path: Any) -> None:
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "events.db")}
    app = OpenPEX(env)
    try:
        add_templates(app, 0, 4)
        opened = Ledger.open(env["SQLITE_DBNAME"], write=True)
        ledger = _FailingOnce(opened._db, False, opened.where)
        keeper = TreeKeeper(ledger, Ed25519PrivateKey.generate())
        with pytest.raises(LedgerError):
            keeper.turn(now=1)
        add_templates(app, 4, 2)
        assert keeper.turn(now=2) == 2
        stored = list(ledger.heads())
        assert [(s.head.size, s.count) for s in stored] == [(6, 6)]
        assert verify_store(ledger).ok
        ledger.close()
    finally:
        app.close()


def test_the_running_service_signs_a_head_every_second(service: Any, clock: Any) -> None:
    system = service.system
    assert system.notary is not None
    position = service.system.app.recorder.max_notification_id()
    deadline = time.monotonic() + 5
    while True:
        head = ask_sync(system.notary, lambda notary: notary.latest())
        if head is not None and head.size == position:
            break
        assert time.monotonic() < deadline, head
        time.sleep(0.1)
    assert head.verifies()
    clock.set(head.timestamp + 60_000)  # idle: the head is signed again, at the new time
    deadline = time.monotonic() + 5
    while (newer := ask_sync(system.notary, lambda notary: notary.latest())) == head:
        assert time.monotonic() < deadline, newer
        time.sleep(0.05)
    assert newer is not None and (newer.size, newer.timestamp) == (position, head.timestamp + 60_000)
    assert system.metrics.registry.get_sample_value("openpex_tree_head_size") == position


def test_a_store_no_head_vouches_for_does_not_verify(tmp_path: Any) -> None:
    path = str(tmp_path / "events.db")
    app = OpenPEX({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path})
    try:
        add_templates(app, 0, 2)
        with Ledger.open(path) as reader:
            verdict = verify_store(reader)
        assert (verdict.ok, verdict.events, verdict.first_bad_position) == (False, 2, None)
        assert "no signed tree head" in verdict.reason
    finally:
        app.close()


async def test_the_admin_reads_the_signed_head_over_http(client: Any, service: Any) -> None:
    from pex.audit.signing import read_public_key
    from tests.integration.test_http import ADMIN, register

    alice = await register(client, "alice")
    answer = await client.get("/OpenPEX/audit/head", headers=ADMIN)
    assert answer.status == 200, await answer.text()
    head = TreeHead.from_json(await answer.json())
    key = read_public_key(str(service.config.data_dir / "audit-signing-key.pub"))
    assert head.verifies(key) and head.size >= 1
    refused = await client.get("/OpenPEX/audit/head", headers=alice)
    assert refused.status == 403 and (await refused.json())["error"] == "FORBIDDEN"
    scraped = await client.get("/metrics", headers=ADMIN)
    assert "openpex_tree_head_size " in await scraped.text()


@pytest.mark.parametrize("damage", ["frontier", "short frontier", "signature", "root"])
def test_a_keeper_refuses_to_go_on_from_a_damaged_head(tmp_path: Any, damage: str) -> None:
    import sqlite3

    path = str(tmp_path / "events.db")
    app = OpenPEX({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path})
    key = Ed25519PrivateKey.generate()
    try:
        add_templates(app, 0, 3)
        with Ledger.open(path, write=True) as ledger:
            TreeKeeper(ledger, key).turn(now=1)
        column, value = {"frontier": ("frontier", b"\x00" * 64), "short frontier": ("frontier", b"\x00"),
                         "signature": ("signature", b"\x01" * 64), "root": ("root_hash", b"\x02" * 32)}[damage]
        with sqlite3.connect(path) as db:
            db.execute(f"UPDATE tree_heads SET {column} = ?", (value,))
        with Ledger.open(path, write=True) as ledger, pytest.raises(LedgerError, match="openpex verify"):
            TreeKeeper(ledger, key)
    finally:
        app.close()


def test_the_keeper_goes_on_after_the_database_dropped_its_connection(postgres_env: dict[str, str]) -> None:
    """A database restart (or a cut network) closes the ledger's connection: the turn that meets
    it fails with one line, and the next one reconnects, signing what was added meanwhile."""
    import psycopg

    app = OpenPEX(postgres_env)
    store = store_of(postgres_env)
    try:
        add_templates(app, 0, 3)
        with Ledger.open(store, write=True) as ledger:
            keeper = TreeKeeper(ledger, Ed25519PrivateKey.generate())
            assert keeper.turn(now=1_000) == 3
            with psycopg.connect(store, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE pid <> pg_backend_pid() AND datname = current_database() AND state = 'idle' "
                              "AND query LIKE '%tree_heads%'")
            add_templates(app, 3, 2)
            try:
                keeper.turn(now=2_000)
            except LedgerError:
                pass  # (the turn that meets the dropped connection)
            assert keeper.turn(now=3_000) == 2
            assert [s.head.size for s in ledger.heads()] == [3, 5]
    finally:
        app.close()
