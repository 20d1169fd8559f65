"""Snapshots of the view (pex.snapshots, issue 13) on a real store (SQLite file and PostgreSQL):
a view read from a snapshot and the log after it equals the view rebuilt from the whole log,
whatever happened after the snapshot (to open reservations, to settled ones' VMs, to nodes);
a snapshot that cannot stand for the log is refused and the whole log read instead."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pex import snapshots
from pex.domain.application import OpenPEX, Settings
from pex.domain.clock import HOUR, MINUTE
from pex.domain.negotiation import TermsChange
from pex.domain.projections import Projections, frozen
from pex.domain.sizes import Resources
from pex.domain.statuses import InstanceStatus
from pex.stores import location
from tests.support.apps import opener

NOW = 1_900_000_000_000
STORE = "the store under test"


def proposal(rng: random.Random, now: int) -> TermsChange:
    return TermsChange(instance_type=rng.choice(["SMALL", "MEDIUM", "LARGE"]), template="debian",
                       fixed=rng.randint(1, 3), optional=rng.randint(0, 1),
                       start=now + rng.randint(1, 30) * MINUTE, duration=rng.randint(1, 6) * 15 * MINUTE)


class History:
    """Users negotiating, confirming, activating, cancelling; what falls due carried out; VMs
    reported running and stopped; a node lost and back: a log with every kind of family."""

    def __init__(self, app: OpenPEX, seed: int) -> None:
        self.app, self.rng, self.now = app, random.Random(seed), NOW

    def seed(self) -> None:
        for name in ("n1", "n2", "n3"):
            self.app.catalogue.register_node(name, f"test:///{name}.xml", Resources(16, 32768, 400))
        self.app.catalogue.register_template("debian", "Debian 12")
        for user in ("alice", "bob", "carol"):
            self.app.catalogue.register_account(user, "argon2-hash-placeholder", user.title(), f"{user}@example.org")

    def run(self, steps: int) -> None:
        app, rng = self.app, self.rng
        for _ in range(steps):
            self.now += rng.randint(1, 4) * MINUTE
            user = rng.choice(["alice", "bob", "carol"])
            answer = app.negotiation.propose(user, proposal(rng, self.now), self.now)
            rid = answer.reservation_id
            roll = rng.random()
            if answer.reply == "COUNTER" and roll < 0.85:
                app.negotiation.respond(rid, user, "ACCEPT", self.now)  # (a counter is accepted, then confirmed)
            if answer.reply in ("ACCEPT", "COUNTER") and roll < 0.75:
                app.negotiation.respond(rid, user, "CONFIRM", self.now)
                if rng.random() < 0.7:
                    app.lifecycle.activate(rid, user)
                if rng.random() < 0.1:
                    app.lifecycle.cancel(rid, user, now=self.now)
            elif answer.reply in ("ACCEPT", "COUNTER") and roll < 0.85:
                app.negotiation.respond(rid, user, "REJECT", self.now)
            self.carry_out()

    def carry_out(self) -> None:
        """What the hosts would report: booted VMs run; ended ones halt (most of the time:
        some reports are lost, so some closed reservations keep a running VM)."""
        for order in self.app.lifecycle.settle(self.now):
            if order.operation.value == "boot":
                self.app.operations.record_status(order.vm_id, "RUNNING", None, node=order.node)
            elif self.rng.random() < 0.9:
                self.app.operations.record_status(order.vm_id, "HALTED", None, node=order.node)


def typed(value: Any) -> Any:
    """A value with the type of each part: a snapshot must give back a status member, not its
    string, and a list where there was a list. (An instance's status is its member or the
    string a StatusChanged event carries, interchangeably: its type is not compared.)"""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(item) for item in value])
    if isinstance(value, InstanceStatus):
        return str(value)
    return (type(value).__name__, value)


def state(view: Projections) -> dict[str, Any]:
    """Everything a view holds, settled families brought in (after their counts are read)."""
    statuses = view.instance_statuses()
    reservations = {rid: typed(frozen(r)) for rid, r in view.reservations.items()}
    instances_of = {rid: list(view.instances_of.get(rid, ())) for rid in view.reservations}
    return {
        "position": view.position, "statuses": statuses,
        "order": list(view.reservations), "reservations": reservations, "open": list(view.open),
        "instances_of": instances_of,
        "instances": {i: typed(frozen(view.instances[i])) for ids in instances_of.values() for i in ids},
        "instances_on": {node: set(ids) for node, ids in view.instances_on.items() if ids},
        "reservations_of": {user: list(ids) for user, ids in view.reservations_of.items() if ids},
        "nodes": {name: typed(frozen(node)) for name, node in view.nodes.items()},
        "templates": {name: typed(frozen(t)) for name, t in view.templates.items()},
        "accounts": {name: typed(frozen(a)) for name, a in view.accounts.items()},
        "price_list": typed(frozen(view.price_list)) if view.price_list is not None else None,
        "rate_card": view.rate_card,
        "held": dict(view.capacity.holders()),
        "due": [dict(due._by_key) for due in (view.offers_due, view.ends_due, view.starts_due)],
        "offers_held": {user: (h.count, h.instance_ms) for user, h in view.offers_held.items() if h.count},
    }


@pytest.fixture
def opened(durable_store_env):
    yield from opener(durable_store_env, settings=Settings(offer_ttl=5 * MINUTE), origin=NOW)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_view_read_from_a_snapshot_and_the_tail_equals_the_view_rebuilt_from_the_whole_log(opened, tmp_path, seed):
    path = tmp_path / snapshots.FILE_NAME
    writer = opened()
    history = History(writer, seed)
    history.seed()
    history.run(60)
    history.now += 4 * HOUR  # all but the latest are over: settled families
    history.carry_out()
    written = snapshots.take(writer, path, STORE)
    assert written is not None and written["settled"] > 10 and written["open"] > 0
    # The tail: more negotiation, VMs of settled families reported again (a late stop, a VM
    # that reappears), a node lost and its bookings re-planned, then back.
    history.run(30)
    settled = [rid for rid, r in writer.view.reservations.items() if r.is_closed and writer.view.instances_of.get(rid)]
    late = writer.view.instances_of[settled[0]][0]
    writer.operations.record_status(str(late), "CRASHED", "seen after its end", node=writer.view.instances[late].node)
    writer.hosts.lose_node("n2", history.now)
    writer.catalogue.mark_node("n2", "UP")
    history.run(10)

    from_snapshot = opened(opening=snapshots.opening(path, STORE))
    assert from_snapshot.view.families is not None  # (read from the snapshot, not the whole log)
    assert from_snapshot.view.position == writer.view.position
    whole = opened()
    assert whole.view.families is None
    expected = state(whole.view)
    assert state(from_snapshot.view) == expected
    assert state(writer.view) == expected
    # and the capacity models answer alike (what every decision asks)
    rng = random.Random(seed)
    for _ in range(50):
        size = Resources(rng.choice([1, 2, 4]), rng.choice([768, 2048, 4096]), 10)
        start = history.now + rng.randint(-60, 240) * MINUTE
        end = start + rng.randint(1, 8) * 15 * MINUTE
        assert (from_snapshot.capacity.count_fitting(size, start, end)
                == whole.capacity.count_fitting(size, start, end))
        assert (from_snapshot.capacity.place(size, 2, start, end) == whole.capacity.place(size, 2, start, end))


def test_a_snapshot_taken_from_a_snapshot_holds_the_same_view(opened, tmp_path):
    """The next snapshot copies settled families it never brought in, and re-settles those it did."""
    path = tmp_path / snapshots.FILE_NAME
    writer = opened()
    history = History(writer, 3)
    history.seed()
    history.run(40)
    history.now += 4 * HOUR
    history.carry_out()
    snapshots.take(writer, path, STORE)
    second = opened(opening=snapshots.opening(path, STORE))
    some = [rid for rid in second.view.reservations if type(dict.get(second.view.reservations, rid)) is int]
    assert len(some) > 5
    second.read.reservation(some[0], "admin", is_admin=True)  # brought in by a read
    snapshots.take(second, path, STORE)
    third = opened(opening=snapshots.opening(path, STORE))
    assert state(third.view) == state(opened().view)


def test_a_snapshot_that_cannot_stand_for_the_log_is_refused_and_the_whole_log_read(opened, tmp_path, caplog):
    path = tmp_path / snapshots.FILE_NAME
    writer = opened()
    history = History(writer, 4)
    history.seed()
    history.run(20)
    snapshots.take(writer, path, STORE)
    good = path.read_bytes()

    with pytest.raises(snapshots.SnapshotRefused, match="another store"):
        snapshots.read(path, writer._capacity_model(), store=location("elsewhere.db"), recorder=writer.recorder)
    damaged = bytearray(good)
    damaged[-10] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(snapshots.SnapshotRefused, match="checksum"):
        snapshots.read(path, writer._capacity_model(), store=location(STORE), recorder=writer.recorder)
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(snapshots.SnapshotRefused):
        snapshots.read(path, writer._capacity_model(), store=location(STORE), recorder=writer.recorder)
    path.write_bytes(b"not a snapshot")
    reopened = opened(opening=snapshots.opening(path, STORE))
    assert reopened.view.families is None and "is not used" in caplog.text
    assert state(reopened.view) == state(writer.view)


def test_a_snapshot_of_a_log_that_no_longer_holds_its_event_is_refused(durable_store_env, tmp_path):
    """Taken of one log, offered to another at the same position (a store restored from an
    older backup, say): the event there is not the one it was taken after."""
    path = tmp_path / snapshots.FILE_NAME
    first = OpenPEX({**durable_store_env}, origin=NOW)
    History(first, 5).seed()
    snapshots.take(first, path, STORE)
    position = first.view.position
    first.close()
    other = OpenPEX({"PERSISTENCE_MODULE": "eventsourcing.popo"}, origin=NOW)
    try:
        History(other, 6).seed()
        assert other.view.position == position
        with pytest.raises(snapshots.SnapshotRefused, match="no longer holds"):
            snapshots.read(path, other._capacity_model(), store=location(STORE), recorder=other.recorder)
    finally:
        other.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    """A store as `openpex serve --database` names it: a SQLite path or a postgresql:// URL."""
    if request.param == "sqlite":
        return str(tmp_path / "events.db")
    server = request.getfixturevalue("postgres_server")
    server.reset()
    return f"postgresql://{server.user}:{server.password}@{server.host}:{server.port}/{server.dbname}"


def test_the_snapshotter_has_a_process_of_its_own_write_the_next_snapshot_once_the_log_has_grown(store_url, tmp_path):
    from pex.stores import writer_env

    path = tmp_path / snapshots.FILE_NAME
    app = OpenPEX(writer_env(store_url), settings=Settings(offer_ttl=5 * MINUTE), origin=NOW)
    try:
        history = History(app, 7)
        history.seed()
        keeper = snapshots.Snapshotter(lambda: app.view.position, path, store_url, every=100, check=3600)
        try:
            assert not keeper.consider()  # (too few events yet)
            history.run(30)
            assert keeper.consider()  # a process is started ...
            assert not keeper.consider()  # ... and no second while it runs
        finally:
            keeper.stop()
        assert keeper._child is not None and keeper._child.returncode == 0
        assert snapshots.position_of(path) == app.view.position
        history.run(5)  # the tail
        reopened = OpenPEX(writer_env(store_url), origin=NOW, opening=snapshots.opening(path, store_url))
        try:
            assert reopened.view.families is not None and state(reopened.view) == state(app.view)
        finally:
            reopened.close()
    finally:
        app.close()


def test_a_replaced_view_is_freed_by_refcounting_alone(opened, tmp_path):
    """A view and its lazy tables make no cycle: one kept out of collections (gc.freeze, as a
    large one is) and then replaced by a rebuild is freed at once, its snapshot's map with it."""
    import gc
    import weakref

    path = tmp_path / snapshots.FILE_NAME
    writer = opened()
    History(writer, 8).seed()
    History(writer, 8).run(10)
    snapshots.take(writer, path, STORE)
    app = opened(opening=snapshots.opening(path, STORE))
    old = weakref.ref(app.view)
    assert old().families is not None
    gc.disable()
    try:
        app._rebuild()
        assert old() is None, "the replaced view lingers: a cycle keeps it"
    finally:
        gc.enable()
