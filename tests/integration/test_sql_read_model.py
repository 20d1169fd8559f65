"""`openpex project`: the SQL read model against the application's own projections, on SQLite
and PostgreSQL (the real server the session starts), resumed, and killed with SIGKILL."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import pytest

from pex.domain.application import OpenPEX, Settings
from pex.domain.capacity import Allocation
from pex.domain.clock import HOUR, MINUTE
from pex.domain.negotiation import TermsChange
from pex.domain.quotas import Quota
from pex.domain.sizes import Resources
from pex.sql_read_model import project

NOW = 1_900_000_000_000
READ_MODEL_SCHEMAS = ("read_model", "read_model_small", "clean")
TABLES = {"reservations": "id", "instances": "vm_id", "nodes": "name", "bookings": "reservation_id, share",
          "prices": "position, size", "events": "position"}


def proposal(fixed: int = 1, start: int = NOW + HOUR, duration: int = HOUR, type_: str = "XLARGE") -> TermsChange:
    return TermsChange(instance_type=type_, template="debian", fixed=fixed, start=start, duration=duration)


class Store:
    """An event store and a read model beside it, as a user names them, with a way to read the
    read model's tables."""

    def __init__(self, env: dict[str, str], store: str, target: str, schema: str | None) -> None:
        self.env, self.store, self.target, self.schema = env, store, target, schema

    def open(self) -> OpenPEX:
        return OpenPEX(self.env, settings=Settings(offer_ttl=5 * MINUTE, quota=Quota(10**9, 10**9, 10**9)), origin=NOW)

    def project(self, target: str | None = None, **options: Any) -> Any:
        return project(self.store, target or self.target, schema=self.schema, **options)

    def rows(self, table: str, target: str | None = None) -> list[tuple[Any, ...]]:
        order = TABLES.get(table, "1")
        if self.schema is None:  # (read only: never create the file before the projection does)
            db = sqlite3.connect(f"file:{target or self.target}?mode=ro", uri=True)
            try:
                return db.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            finally:
                db.close()
        with psycopg.connect(target or self.target) as pg:
            return pg.execute(f'SELECT * FROM "{self.schema}".{table} ORDER BY {order}').fetchall()

    def tracked(self, target: str | None = None) -> int:
        found = [row for row in self.rows("tracking" if self.schema is None else "notification_tracking", target)
                 if row[0] == "OpenPEX"]
        return found[0][1] if found else 0

    def dump(self, target: str | None = None) -> dict[str, list[tuple[Any, ...]]]:
        return {table: self.rows(table, target) for table in TABLES}


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Any) -> Store:
    if request.param == "sqlite":
        path = str(tmp_path / "events.db")
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path}
        return Store(env, path, str(tmp_path / "read-model.db"), None)
    request.applymarker(pytest.mark.postgres)
    env = request.getfixturevalue("postgres_env")  # (which empties the public schema only)
    url = (f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@{env['POSTGRES_HOST']}:"
           f"{env['POSTGRES_PORT']}/{env['POSTGRES_DBNAME']}")
    with psycopg.connect(url, autocommit=True) as pg:
        for schema in READ_MODEL_SCHEMAS:
            pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return Store(env, url, url, READ_MODEL_SCHEMAS[0])


def seeded(app: OpenPEX) -> OpenPEX:
    app.catalogue.seed_prices()  # (as `openpex serve` does on a first start)
    for name in ("n1", "n2", "n3"):
        app.catalogue.register_node(name, f"test:///{name}.xml", Resources(8, 16384, 200))  # 2 XLARGE each
    app.catalogue.register_template("debian", "Debian 12")
    for user in ("alice", "bob"):
        app.catalogue.register_account(user, "argon2-hash-placeholder", user.title(), f"{user}@example.org")
    return app


def agreed(app: OpenPEX, user: str, **terms: Any) -> UUID:
    answer = app.negotiation.propose(user, proposal(**terms), NOW)
    app.negotiation.respond(answer.reservation_id, user, "CONFIRM", NOW)
    return answer.reservation_id


def first_history(app: OpenPEX) -> dict[str, UUID]:
    """Every kind of reservation, instance and node the projection must show."""
    lapsing = app.negotiation.propose("alice", proposal(start=NOW + 9 * HOUR), NOW - 10 * MINUTE).reservation_id
    app.lifecycle.lapse_due(NOW)
    made = {"lapsing": lapsing, "confirmed": agreed(app, "alice", fixed=2)}
    made["open"] = app.negotiation.propose("bob", proposal(start=NOW + 5 * HOUR), NOW).reservation_id
    withdrawn = app.negotiation.propose("alice", proposal(start=NOW + 6 * HOUR), NOW).reservation_id
    app.negotiation.respond(withdrawn, "alice", "REJECT", NOW)
    made["refused"] = app.negotiation.propose("bob", proposal(fixed=9), NOW).reservation_id
    made["cancelled"] = agreed(app, "alice", start=NOW + 7 * HOUR)
    app.lifecycle.cancel(made["cancelled"], "alice", now=NOW)
    made["activated"] = agreed(app, "bob", start=NOW + 8 * HOUR)
    app.lifecycle.activate(made["activated"], "bob")
    made["renegotiating"] = agreed(app, "bob", start=NOW + 10 * HOUR)
    app.negotiation.respond(made["renegotiating"], "bob", "COUNTER", NOW, TermsChange(duration=2 * HOUR))
    made["full"] = agreed(app, "alice", fixed=4, start=NOW + 20 * HOUR)  # n2 and n3 also busy then
    vm = next(iter(app.read.reservation(made["confirmed"], "alice").instances))
    app.operations.record_status(vm, "RUNNING")
    app.operations.record_status(vm, "CRASHED", "the guest panicked")
    app.catalogue.mark_node("n3", "DRAINED")
    return made


def more_history(app: OpenPEX, made: dict[str, UUID]) -> None:
    """Changes to aggregates projected before: a lost node (re-planned, relocated, stranded,
    degraded), a confirmed renegotiation, a cancellation, new reservations."""
    app.negotiation.respond(made["renegotiating"], "bob", "CONFIRM", NOW)
    app.catalogue.set_prices({"SMALL": "0.075", "XLARGE": "0.30"})
    app.hosts.lose_node("n1", NOW)
    app.lifecycle.cancel(made["confirmed"], "alice", now=NOW + 90 * MINUTE)  # (after its start: charged)
    agreed(app, "bob", start=NOW + 30 * HOUR)
    app.catalogue.mark_node("n3", "UNDRAINED")


def check_matches(app: OpenPEX, stores: Store) -> None:
    """Every table says what the application's own projections say."""
    rows = {table: stores.rows(table) for table in TABLES}
    reservations = {str(r[0]): r for r in rows["reservations"]}
    shown = app.read.reservations("", is_admin=True)
    assert sorted(reservations) == sorted(str(r.id) for r in shown)
    for view in shown:
        row = reservations[str(view.id)]
        terms = view.terms
        assert row[1:13] == (view.userid, view.status.value, terms.instance_type, terms.template, terms.fixed,
                             terms.optional, terms.start, terms.end, terms.duration, view.reason,
                             view.offer.state.value if view.offer else None,
                             view.offer.hold_until if view.offer else None)
        assert (bool(row[13]), bool(row[14])) == (view.activated, view.launched)
        offered = view.offer.price if view.offer else None
        assert (amount(row[15]), row[16], amount(row[17]), row[18]) == (
            view.price.total if view.price else None,
            view.price.currency if view.price else offered.currency if offered else None,
            offered.total if offered else None, app.view.reservations[view.id].cancelled_at)
        live = {str(i[0]) for i in rows["instances"] if str(i[1]) == str(view.id) and i[5] != "DELETED"}
        assert live == {str(i) for i in view.instances}
        aggregate = app.view.reservations[view.id]
        booking = Allocation.from_list(aggregate.booking) if aggregate.is_agreed and aggregate.booking else None
        booked = [b for b in rows["bookings"] if str(b[0]) == str(view.id)]
        assert [b[2:6] for b in booked] == [tuple(share) for share in (booking.shares if booking else ())]
        assert all(b[6:9] == booking.size.as_tuple() for b in booked if booking)
    instances = {str(i[0]): i for i in rows["instances"]}
    every = app.read.instances("", is_admin=True)
    assert sorted(instances) == sorted(str(i.id) for i in every)
    for instance in every:
        assert instances[str(instance.id)][1:11] == (
            *([instance.reservation_id] if stores.schema else [str(instance.reservation_id)]),
            instance.userid, instance.name, instance.node or None, instance.status.value, instance.instance_type,
            instance.template, instance.start, instance.end, instance.reason)
    assert [n[0:8] for n in rows["nodes"]] == [
        (n.name, *([app.view.nodes[n.name].id] if stores.schema else [str(app.view.nodes[n.name].id)]), n.uri,
         n.status.value, n.capacity.cpus, n.capacity.memory_mb, n.capacity.disk_gb,
         bool(getattr(app.view.nodes[n.name], "drained", False)))
        for n in sorted(app.catalogue.nodes(), key=lambda n: n.name)]
    # Every rate card the admin set, each in force until the next; the last one is the card in force.
    cards = [e for e in app.recorder.select_notifications(1, 10**6) if e.topic.startswith("pex.domain.aggregates:PriceList.")]
    assert sorted({row[0] for row in rows["prices"]}) == [card.id for card in cards]
    in_force = {row[1]: (amount(row[2]), row[3]) for row in rows["prices"] if row[5] is None}
    assert in_force == {size: (rate, app.view.rate_card.currency) for size, rate in app.view.rate_card.rates.items()}
    starts = sorted({row[4] for row in rows["prices"]})
    assert all(row[5] == (starts[starts.index(row[4]) + 1] if row[4] != starts[-1] else None) for row in rows["prices"])
    # Every event once, in the log's order.
    notifications = app.recorder.select_notifications(1, 10**6)
    assert [e[0] for e in rows["events"]] == [n.id for n in notifications]
    assert stores.tracked() == notifications[-1].id


def amount(value: Any) -> Decimal | None:
    """An amount as the read model holds it (a decimal string in SQLite, numeric in PostgreSQL)."""
    if value is None:
        return None
    assert isinstance(value, (str, Decimal)), value  # (never a float)
    return Decimal(value)


def test_the_read_model_shows_what_the_application_shows_and_resumes(stores: Store) -> None:
    app = seeded(stores.open())
    made = first_history(app)
    outcome = stores.project()
    assert outcome.caught_up and outcome.applied == len(app.recorder.select_notifications(1, 10**6))
    check_matches(app, stores)
    statuses = {str(r[0]): r[2] for r in stores.rows("reservations")}
    assert {name: statuses[str(rid)] for name, rid in made.items()} == {
        "confirmed": "CONFIRMED", "open": "ACCEPTED", "refused": "REJECTED", "cancelled": "CANCELLED",
        "activated": "ACTIVATED", "lapsing": "OFFER_EXPIRED", "renegotiating": "CONFIRMED", "full": "CONFIRMED"}
    priced = {str(r[0]): (r[15], r[16], r[17]) for r in stores.rows("reservations")}
    assert all(priced[str(made[name])][0] is not None and priced[str(made[name])][1] == "USD"
               for name in ("confirmed", "cancelled", "activated", "renegotiating", "full"))
    assert priced[str(made["open"])][0] is None and priced[str(made["open"])][2] is not None  # offered, not agreed
    assert priced[str(made["renegotiating"])][2] is not None  # the change's price, beside the one agreed
    assert priced[str(made["refused"])] == (None, None, None)
    if stores.schema is None:  # exact decimal strings in SQLite, as the events hold them
        assert all(isinstance(p, str) and Decimal(p).as_tuple().exponent == -2 for row in priced.values() for p in row[::2] if p)
    password_hashes = [e for e in stores.rows("events") if "argon2-hash-placeholder" in str(e[-1])]
    assert password_hashes == []

    before = len(stores.rows("events"))
    more_history(app, made)
    again = stores.project()
    added = len(app.recorder.select_notifications(1, 10**6)) - before
    assert added > 0 and again.applied == added
    check_matches(app, stores)
    assert len({row[0] for row in stores.rows("prices")}) == 2  # the first card and the change
    kinds = {e[3] for e in stores.rows("events")}
    assert {"Reservation.Replanned", "Instance.Relocated", "Node.NodeWentDown", "Node.Undrained"} <= kinds
    assert stores.project().applied == 0  # nothing new: nothing written
    app.close()


def test_aggregates_read_back_from_the_source_give_the_same_rows(stores: Store, tmp_path: Any) -> None:
    """After a restart (or when dropped from memory) the projection reads an aggregate back at
    the version before the event; with room for two aggregates and batches of seven events it
    does so all the time, and must write exactly what a projection holding everything writes."""
    app = seeded(stores.open())
    more_history(app, first_history(app))
    app.close()
    whole = stores.project()
    if stores.schema is None:
        other_target, other = str(tmp_path / "small.db"), stores
    else:
        other = Store(stores.env, stores.store, stores.target, "read_model_small")
        other_target = stores.target
    small = other.project(other_target, batch_size=7, cache_size=2)
    assert small.loaded >= 10 and small.applied == whole.applied
    assert other.dump(other_target) == stores.dump()


def test_a_projection_killed_with_sigkill_carries_on_as_if_never_stopped(stores: Store, tmp_path: Any) -> None:
    app = seeded(stores.open())
    made = first_history(app)
    for hour in range(40, 440):  # enough events that the kill lands part-way
        rid = agreed(app, "alice" if hour % 2 else "bob", fixed=1 + hour % 2, start=NOW + hour * HOUR)
        if hour % 3 == 0:
            app.lifecycle.cancel(rid, "alice" if hour % 2 else "bob", now=NOW)
    head = app.recorder.max_notification_id() or 0
    command = [sys.executable, "-m", "pex.cli", "project", "--database", stores.store, "--into", stores.target,
               "--follow", "--batch-size", "3", *(["--schema", stores.schema] if stores.schema else [])]
    follower = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and follower.poll() is None:
            try:
                if stores.tracked() >= head // 3:
                    break
            except (sqlite3.Error, psycopg.Error):
                pass  # its tables are not there yet
            time.sleep(0.002)
        follower.send_signal(signal.SIGKILL)
    finally:
        _, errors = follower.communicate(timeout=30)
    assert follower.returncode == -signal.SIGKILL, errors.decode()
    killed_at = stores.tracked()
    assert 0 < killed_at < head  # part-way, and consistent: rows and tracking record agree
    assert [e[0] for e in stores.rows("events")] == [n.id for n in app.recorder.select_notifications(1, killed_at)]

    more_history(app, made)  # the store moves on while the projection is down
    resumed = stores.project()
    assert resumed.loaded > 0  # it read back what it had of aggregates changed later
    if stores.schema is None:
        clean, fresh = str(tmp_path / "clean.db"), stores
    else:
        fresh = Store(stores.env, stores.store, stores.target, "clean")
        clean = stores.target
    fresh.project(clean)
    assert stores.dump() == fresh.dump(clean)
    check_matches(app, stores)
    app.close()


def test_following_applies_new_events_as_they_come_and_stops_on_sigterm(stores: Store) -> None:
    app = seeded(stores.open())
    command = [sys.executable, "-m", "pex.cli", "project", "--database", stores.store, "--into", stores.target,
               "--follow", *(["--schema", stores.schema] if stores.schema else [])]
    follower = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for hour in range(1, 6):
            agreed(app, "alice", start=NOW + hour * HOUR)
            head = app.recorder.max_notification_id() or 0
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and follower.poll() is None:
                try:
                    if stores.tracked() == head:
                        break
                except (sqlite3.Error, psycopg.Error):
                    pass
                time.sleep(0.01)
            assert stores.tracked() == head
        follower.send_signal(signal.SIGTERM)
        out, errors = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0, errors
    assert out.startswith(f"openpex project: the read model is at position {head} ") and errors == ""
    check_matches(app, stores)
    app.close()
