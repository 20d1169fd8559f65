"""pex.query on stores the real application wrote (SQLite files and the PostgreSQL server):
what it answers, the past it shows, a live writer it follows, capacity against brute force,
inputs it refuses with one clear error, and stores it never creates nor changes."""

from __future__ import annotations

import hashlib
import re
import socket
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import numpy as np
import psycopg
import pytest

from pex.domain.application import OpenPEX, Settings
from pex.domain.clock import HOUR, MINUTE
from pex.domain.negotiation import Status, TermsChange
from pex.domain.pricing import RateCard
from pex.domain.read_models import CapacityStep
from pex.domain.sizes import Resources
from pex.domain.statuses import InstanceStatus
from pex.query import NotFoundError, Query, QueryError
from pex.stores import POSTGRES_TABLE as EVENTS_TABLE
from pex.stores import StoreError
from tests.unit.reference import BruteForceCluster

NOW = 1_900_000_000_000  # a fixed "now" in 2030; the application is told the time
NODE = Resources(8, 16384, 200)  # two XLARGE
DOCS = Path(__file__).resolve().parents[2] / "docs" / "querying.md"


def proposal(fixed: int, type_: str, start: int, duration: int) -> TermsChange:
    return TermsChange(instance_type=type_, template="debian", fixed=fixed, optional=0, start=start, duration=duration)


def store_name(env: dict[str, str]) -> str:
    """The store as a user names it: the SQLite file, or a postgresql:// URL."""
    if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
        return (f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@{env['POSTGRES_HOST']}:"
                f"{env['POSTGRES_PORT']}/{env['POSTGRES_DBNAME']}")
    return env["SQLITE_DBNAME"]


def last_position(app: OpenPEX) -> int:
    return app.recorder.max_notification_id() or 0


def open_writer(env: dict[str, str]) -> OpenPEX:
    app = OpenPEX(env, settings=Settings(offer_ttl=5 * MINUTE), origin=NOW)
    for name in ("n1", "n2"):
        app.catalogue.register_node(name, f"test:///{name}.xml", NODE)
    app.catalogue.register_template("debian", "Debian 12")
    for user in ("alice", "bob"):
        app.catalogue.register_account(user, "argon2-hash-placeholder", user.title(), f"{user}@example.org")
    return app


@dataclass
class History:
    """What the writer did, and where in the log."""

    agreed: UUID  # alice's: 3 XLARGE, confirmed and activated
    offered: UUID  # bob's: 1 SMALL, offered at `offer_position`, confirmed later
    withdrawn: UUID  # alice's: offered, then rejected by her
    still_open: UUID  # bob's: an offer left open
    offer_position: int
    between: datetime  # after the offer was recorded, before its confirmation


def record_history(app: OpenPEX) -> History:
    agreed = app.negotiation.propose("alice", proposal(3, "XLARGE", NOW + HOUR, HOUR), NOW).reservation_id
    app.negotiation.respond(agreed, "alice", "CONFIRM", NOW)
    app.lifecycle.activate(agreed, "alice")
    offered = app.negotiation.propose("bob", proposal(1, "SMALL", NOW + HOUR, 2 * HOUR), NOW).reservation_id
    offer_position = last_position(app)
    time.sleep(0.01)  # event timestamps are the wall clock's, to the microsecond
    between = datetime.now(timezone.utc)
    time.sleep(0.01)
    app.negotiation.respond(offered, "bob", "CONFIRM", NOW + MINUTE)
    withdrawn = app.negotiation.propose("alice", proposal(1, "MEDIUM", NOW + 5 * HOUR, HOUR), NOW).reservation_id
    app.negotiation.respond(withdrawn, "alice", "REJECT", NOW)
    still_open = app.negotiation.propose("bob", proposal(2, "LARGE", NOW + 4 * HOUR, 3 * HOUR), NOW).reservation_id
    return History(agreed, offered, withdrawn, still_open, offer_position, between)


@pytest.fixture
def writer(durable_store_env):
    app = open_writer(durable_store_env)
    yield app
    app.close()


@pytest.fixture
def history(writer):
    return record_history(writer)


@pytest.fixture
def store(durable_store_env, history):
    return store_name(durable_store_env)


@pytest.fixture
def query(store):
    with Query.open(store) as opened:
        yield opened


# ---------------------------------------------------------------------- what it answers

def test_it_answers_what_the_writer_itself_shows(query, writer):
    assert query.position == last_position(writer)
    assert query.reservations() == writer.read.reservations("admin", is_admin=True)
    assert query.instances() == writer.read.instances("admin", is_admin=True)
    assert query.nodes() == writer.catalogue.nodes()


def test_reservations_by_user_status_period_and_node(query, history):
    def ids(**filters):
        return [r.id for r in query.reservations(**filters)]

    assert ids() == [history.agreed, history.offered, history.withdrawn, history.still_open]  # in the order made
    assert ids(user="alice") == ids(user="ALICE") == [history.agreed, history.withdrawn]
    assert ids(user="carol") == []
    assert ids(status="CONFIRMED") == ids(status=Status.CONFIRMED) == [history.offered]
    assert ids(status=["ACTIVATED", Status.WITHDRAWN]) == [history.agreed, history.withdrawn]
    assert ids(user="bob", status="ACCEPTED") == [history.still_open]
    # terms in force that meet [start, end): the agreed run from NOW+1h to +2h, the offered to +3h
    assert ids(start=NOW + 2 * HOUR, end=NOW + 4 * HOUR) == [history.offered]
    assert ids(start=NOW + 6 * HOUR) == [history.still_open]
    assert ids(end=NOW + HOUR) == []
    as_datetimes = {"start": datetime.fromtimestamp((NOW + 2 * HOUR) / 1000, timezone.utc),
                    "end": datetime.fromtimestamp((NOW + 4 * HOUR) / 1000, timezone.utc)}
    assert ids(**as_datetimes) == [history.offered]
    for node in ("n1", "n2"):  # a booking share on the node: where their instances were planned
        assert set(ids(node=node)) == {i.reservation_id for i in query.instances(node=node)}
    assert set(ids(node="n1")) | set(ids(node="n2")) == {history.agreed, history.offered}


def test_one_reservation_and_its_instances(query, history):
    agreed = query.reservation(history.agreed)
    assert agreed == query.reservation(str(history.agreed))
    assert (agreed.userid, agreed.status, agreed.activated, agreed.terms.fixed) == ("alice", Status.ACTIVATED, True, 3)
    vms = query.instances(reservation=history.agreed)
    assert [vm.id for vm in vms] == list(agreed.instances)
    assert {vm.node for vm in vms} == {"n1", "n2"} and all(vm.status == InstanceStatus.PENDING for vm in vms)
    assert query.instances(user="bob", status="PENDING") == query.instances(reservation=history.offered)
    assert query.instances(status=[InstanceStatus.RUNNING, "HALTED"]) == []
    assert query.instances(node="") == []  # none without a node


def test_a_reservation_not_in_the_store_is_not_found(query):
    missing = uuid4()
    with pytest.raises(NotFoundError, match=str(missing)) as raised:
        query.reservation(missing)
    assert isinstance(raised.value, LookupError) and isinstance(raised.value, QueryError)
    with pytest.raises(NotFoundError):
        query.instances(reservation=missing)


def test_open_offers_the_first_to_lapse_first(query, history):
    open_offers = query.offers_open()
    assert [r.id for r in open_offers] == [history.still_open]
    offer = open_offers[0].offer
    assert offer is not None and offer.state == "ACCEPTED" and offer.hold_until == NOW + 5 * MINUTE
    assert query.offers_open(at=NOW + 5 * MINUTE) == []  # its hold is over then
    assert query.offers_open(at=NOW) == open_offers


def test_events_of_the_log_of_one_aggregate_and_of_some_kinds(query, history, writer):
    everything = query.events()
    assert [e.position for e in everything] == list(range(1, last_position(writer) + 1))
    assert [e.kind for e in query.events(originator=history.agreed)] == [
        "Reservation.Requested", "Reservation.Offered", "Reservation.Confirmed", "Reservation.Activated"]
    assert query.events(originator=str(history.agreed), after=everything[8].position, limit=1) == [
        e for e in everything if e.originator_id == history.agreed and e.position > everything[8].position][:1]
    assert [e.kind for e in query.events(kind="Node")] == ["Node.Registered"] * 2
    offers = query.events(kind=["Reservation.Offered", "Reservation.Withdrawn"])
    assert [e.kind for e in offers] == ["Reservation.Offered"] * 3 + ["Reservation.Withdrawn", "Reservation.Offered"]
    assert query.events(after=5, limit=3) == everything[5:8]
    assert query.events(after=len(everything)) == []
    offered = query.events(originator=history.offered, kind="Reservation.Offered")[0]
    assert offered.position == history.offer_position and offered.version == 2
    assert offered.fields["reply"] == "ACCEPT" and offered.fields["hold_until"] == NOW + 5 * MINUTE
    assert offered.timestamp < history.between.timestamp() * 1000 < everything[-1].timestamp


def test_reservations_carry_their_prices_and_the_rate_card_in_force(store, history, writer):
    with Query.open(store) as query:
        agreed, still_open = query.reservation(history.agreed), query.reservation(history.still_open)
        assert agreed.price is not None and agreed.price == writer.read.view_of(writer.view.reservations[history.agreed]).price
        assert (agreed.price.currency, agreed.price.instance_hours) == ("USD", 3)  # 3 XLARGE for an hour
        assert still_open.price is None and still_open.offer is not None and still_open.offer.price is not None
        assert query.prices() == writer.view.rate_card == RateCard.default()  # (no card recorded: the default)
        before = query.position
    with Query.open(store, position=history.offer_position) as then:  # the offer's price is the one bound
        offered = then.reservation(history.offered)
        assert offered.price is None and offered.offer is not None
        assert offered.offer.price == writer.read.view_of(writer.view.reservations[history.offered]).price
    writer.catalogue.set_prices({"LARGE": "0.4"})
    writer.catalogue.set_prices({"SMALL": "0.055"}, currency="USD")
    with Query.open(store) as query:
        assert query.prices() == writer.view.rate_card == RateCard("USD", {**RateCard.default().rates,
                                                                            "LARGE": Decimal("0.4"),
                                                                            "SMALL": Decimal("0.055")})
        assert query.reservation(history.agreed).price == agreed.price  # a rate change never alters an agreed price
        assert [e.kind for e in query.events(kind="PriceList")] == ["PriceList.Registered", "PriceList.Changed"]
    with Query.open(store, position=before + 1) as then:
        assert then.prices().rates["LARGE"] == Decimal("0.4") and then.prices().rates["SMALL"] == Decimal("0.05")


# ---------------------------------------------------------------------- the past

def test_a_position_or_an_instant_shows_the_store_as_it_was(store, history):
    for past in ({"position": history.offer_position}, {"as_of": history.between},
                 {"as_of": int(history.between.timestamp() * 1000)}):
        with Query.open(store, **past) as then:
            assert then.position == history.offer_position, past
            offered = then.reservation(history.offered)
            assert offered.status == Status.ACCEPTED and offered.offer is not None
            assert [r.id for r in then.offers_open()] == [history.offered]
            assert then.instances(reservation=history.offered) == []
            assert [r.id for r in then.reservations()] == [history.agreed, history.offered]
            assert then.events()[-1].position == history.offer_position
            assert then.refresh() == 0 and then.position == history.offer_position  # the past stays put
    with Query.open(store, position=0) as before_anything:
        assert before_anything.nodes() == [] and before_anything.events() == []
    with Query.open(store) as now:
        assert now.reservation(history.offered).status == Status.CONFIRMED


def test_refresh_takes_in_what_a_live_writer_records(store, history, writer):
    with Query.open(store) as query:
        before = query.position
        writer.lifecycle.cancel(history.agreed, "alice", now=NOW)
        writer.negotiation.respond(history.still_open, "bob", "CONFIRM", NOW)
        applied = query.refresh()
        assert applied == last_position(writer) - before > 0
        assert query.position == last_position(writer)
        assert query.reservation(history.agreed).status == Status.CANCELLED
        assert query.reservation(history.still_open).status == Status.CONFIRMED
        assert query.instances(reservation=history.agreed, status="DELETED") != []
        assert query.offers_open() == []
        assert query.events()[-1].position == query.position
        assert query.refresh() == 0


def test_it_opens_and_reads_while_the_writer_holds_the_store(durable_store_env, store, history, writer):
    """The writer is open and in the middle of a write transaction that locks the events."""
    if durable_store_env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        holder: sqlite3.Connection | psycopg.Connection[tuple[object, ...]] = sqlite3.connect(
            durable_store_env["SQLITE_DBNAME"], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as a save holds it
    else:
        holder = psycopg.connect(**_connection(durable_store_env))
        holder.execute(f"LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE")  # as eventsourcing's insert does
    try:
        with Query.open(store) as query:
            assert query.position == last_position(writer)
            assert len(query.reservations()) == 4 and query.refresh() == 0
    finally:
        holder.rollback()
        holder.close()


# ---------------------------------------------------------------------- capacity

def brute_force_steps(app: OpenPEX, nodes: list[str], start: int, end: int, step: int) -> list[CapacityStep]:
    """From every reservation's held allocation (booking, open offer), instant by instant."""
    held = {rid: r.held_allocation() for rid, r in app.view.reservations.items() if r.held_allocation()}
    reference = BruteForceCluster({n: NODE for n in nodes}, held)
    capacity = Resources(*(len(nodes) * x for x in NODE.as_tuple()))
    steps = []
    for a in range(start, end, step):
        b = min(a + step, end)
        instants = sorted(set().union(*(reference.instants(n, a, b) for n in nodes)))
        free = [sum((reference.free_at(n, t) for n in nodes), Resources(0, 0, 0)).as_tuple() for t in instants]
        least = Resources(*np.min(np.array(free), axis=0).tolist())
        steps.append(CapacityStep(a, b, least, capacity - least))
    return steps


def test_capacity_of_a_node_and_of_the_cluster_agrees_with_brute_force(store, history, writer):
    start, end, step = NOW + 17 * MINUTE, NOW + 9 * HOUR, 50 * MINUTE  # edges inside steps, a short last one
    with Query.open(store) as query:
        for changed in (False, True):  # as stored; then after the writer changed holds and bookings
            if changed:
                writer.lifecycle.cancel(history.offered, "bob", now=NOW)
                writer.negotiation.propose("alice", proposal(2, "MEDIUM", NOW + 2 * HOUR + 5 * MINUTE, 90 * MINUTE), NOW)
                assert query.refresh() > 0
            for node in ("n1", "n2"):
                assert query.capacity(node, start=start, end=end, step=step) == \
                    brute_force_steps(writer, [node], start, end, step)
            cluster = query.capacity(start=start, end=end, step=timedelta(minutes=50))
            assert cluster == brute_force_steps(writer, ["n1", "n2"], start, end, step)
            assert cluster[-1].end == end and cluster[-1].end - cluster[-1].start < step
    busy = brute_force_steps(writer, ["n1", "n2"], NOW + HOUR, NOW + 2 * HOUR, HOUR)[0]
    assert busy.used.cpus > 0 and busy.free + busy.used == Resources(16, 32768, 400)


def test_what_is_in_use_at_an_instant_is_what_capacity_counts_then(store, history, writer):
    """used_at (what openpex replay shows) is counted from the reservations without the capacity
    model: the same as capacity() for an instant, also while a renegotiation holds the old terms
    and the new ones at once (their envelope) and an offer holds its own."""
    moved = writer.negotiation.respond(history.offered, "bob", "COUNTER", NOW + 2 * MINUTE,
                                       TermsChange(start=NOW + 2 * HOUR))
    assert moved.reply == "ACCEPT"
    held = [r.held_allocation() for r in writer.view.reservations.values()]
    instants = sorted({NOW, *(t + d for a in held if a for s in a.shares for t in (s.start, s.end) for d in (-1, 0, 1))})
    with Query.open(store) as query:
        assert query.reservation(history.offered).offer is not None  # (booked, and offered anew)
        for at in instants:
            used = query.used_at(at)
            assert list(used) == ["n1", "n2"], at
            for node in ("n1", "n2"):
                assert used[node] == query.capacity(node, start=at, end=at + 1, step=1)[0].used, (at, node)
            assert sum(used.values(), Resources(0, 0, 0)) == query.capacity(start=at, end=at + 1, step=1)[0].used
        assert any(use.cpus for use in query.used_at(NOW + HOUR).values())
        assert query.used_at(datetime.fromtimestamp((NOW + HOUR) / 1000, timezone.utc)) == query.used_at(NOW + HOUR)
        with pytest.raises(QueryError, match="at: expected an aware datetime"):
            query.used_at("noon")  # type: ignore[arg-type]


def test_events_are_made_as_the_stores_own_mapper_makes_them(store, history):
    """The reader decodes most rows itself, past the mapper's cost per row: the events are the
    mapper's own, class and fields."""
    with Query.open(store) as query:
        log, decoding = query._log, query._reading._decoding  # (the reader's own path, and the mapper's)
        notifications = log.recorder.select_notifications(1, 1000)
        assert len(notifications) == query.position
        for notification in notifications:
            mine = decoding.event(notification.id, notification.originator_id, notification.originator_version,
                                  notification.topic, notification.state)
            theirs = log.mapper.to_domain_event(notification)
            assert (type(mine), vars(mine)) == (type(theirs), vars(theirs)), notification.id


def test_capacity_in_datetimes_and_timedeltas(query):
    begin = datetime.fromtimestamp(NOW / 1000, timezone.utc)
    steps = query.capacity("n1", start=begin, end=begin + timedelta(hours=3), step=timedelta(hours=1))
    assert [s.start for s in steps] == [NOW, NOW + HOUR, NOW + 2 * HOUR]
    assert steps[0].used == Resources(0, 0, 0) and steps[1].free.cpus == 0  # alice's two XLARGE there
    assert steps == query.capacity("n1", start=NOW, end=NOW + 3 * HOUR)  # an hour is the default step


# ---------------------------------------------------------------------- refusing

@pytest.mark.parametrize(("ask", "named"), [
    (lambda q: q.reservations(status="CONFIRMD"), "status: 'CONFIRMD' is not one of INITIATED, ACCEPTED,"),
    (lambda q: q.reservations(status=["CONFIRMED", 3]), "status: 3 is not one of"),
    (lambda q: q.reservations(status=7), "status: expected one of"),
    (lambda q: q.instances(status="RUNING"), "status: 'RUNING' is not one of PENDING, RUNNING,"),
    (lambda q: q.reservations(start=NOW + HOUR, end=NOW), "end: must be after start"),
    (lambda q: q.reservations(start=NOW, end=NOW), "end: must be after start"),
    (lambda q: q.reservations(start="2030-03-17"), "start: expected an aware datetime or epoch milliseconds"),
    (lambda q: q.reservations(end=datetime(2030, 3, 17)), "end: 2030-03-17T00:00:00 has no time zone"),
    (lambda q: q.reservations(start=1.5), "start: expected an aware datetime"),
    (lambda q: q.reservations(start=-1), "start: -1 is not between 1970 and 9999"),
    (lambda q: q.capacity(start=NOW, end=NOW + HOUR, step=-MINUTE), "step: must be at least a millisecond"),
    (lambda q: q.capacity(start=NOW, end=NOW + HOUR, step=timedelta(0)), "step: must be at least a millisecond"),
    (lambda q: q.capacity(start=NOW, end=NOW + HOUR, step="1h"), "step: expected a timedelta or milliseconds"),
    (lambda q: q.capacity(start=NOW, end=NOW + 365 * 24 * HOUR, step=1), "step: 31536000000 steps"),
    (lambda q: q.capacity(start=NOW, end=NOW - HOUR), "end: must be after start"),
    (lambda q: q.capacity(start=None, end=NOW), "start: required"),
    (lambda q: q.capacity("n9", start=NOW, end=NOW + HOUR), "no node 'n9'"),
    (lambda q: q.reservations(node="n9"), "no node 'n9'"),
    (lambda q: q.reservation("not-an-id"), "reservation: 'not-an-id' is not an id"),
    (lambda q: q.events(kind="Reservation.Offerd"), "kind: 'Reservation.Offerd' is not a kind of event"),
    (lambda q: q.events(limit=0), "limit: expected a positive int"),
    (lambda q: q.events(after=-1), "after: expected a position"),
    (lambda q: q.events(originator="x"), "originator: 'x' is not an id"),
])
def test_an_input_that_cannot_be_used_is_one_error_naming_it(query, ask, named):
    with pytest.raises(QueryError) as raised:
        ask(query)
    assert named in str(raised.value) and "\n" not in str(raised.value)
    assert raised.value.__cause__ is None and (raised.value.__context__ is None or raised.value.__suppress_context__)


@pytest.mark.parametrize(("arguments", "named"), [
    ({"as_of": "yesterday"}, "as_of: expected an aware datetime"),
    ({"as_of": datetime(2030, 1, 1)}, "as_of: 2030-01-01T00:00:00 has no time zone"),
    ({"position": -1}, "position: expected a notification id"),
    ({"position": "12"}, "position: expected a notification id"),
])
def test_a_past_that_cannot_be_used_is_refused_before_the_store_is_opened(tmp_path, arguments, named):
    with pytest.raises(QueryError, match=re.escape(named)):
        Query.open(tmp_path / "not-even-there.db", **arguments)


def test_a_closed_query_answers_nothing(store):
    query = Query.open(store)
    query.close()
    query.close()
    with pytest.raises(QueryError, match="closed"):
        query.reservations()


# ---------------------------------------------------------------------- stores

def test_a_missing_or_foreign_sqlite_store_is_refused_and_never_created(tmp_path):
    missing = tmp_path / "nowhere" / "events.db"
    with pytest.raises(StoreError, match="no such file"):
        Query.open(missing)
    with pytest.raises(StoreError, match="no such file"):
        Query.open(str(tmp_path / "events.db"))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StoreError, match="directory"):
        Query.open(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    with pytest.raises(StoreError, match="not an event store"):
        Query.open(text)
    assert text.read_text() == "not a database"
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="no stored_events table"):
        Query.open(tmp_path / "other.db")
    with pytest.raises(StoreError, match="SQLite file's path or a postgresql:// URL"):
        Query.open(42)  # type: ignore[arg-type]


def _connection(env: dict[str, str], **changes: str) -> dict[str, object]:
    return {"host": env["POSTGRES_HOST"], "port": int(env["POSTGRES_PORT"]), "dbname": env["POSTGRES_DBNAME"],
            "user": env["POSTGRES_USER"], "password": env["POSTGRES_PASSWORD"], **changes}


@pytest.mark.postgres
def test_an_unreachable_or_empty_postgres_store_is_refused(postgres_env):
    url = store_name(postgres_env)
    with pytest.raises(StoreError, match=f"not an OpenPEX event store .it has no {EVENTS_TABLE} table"):
        Query.open(url)  # the database is there, empty
    with psycopg.connect(**_connection(postgres_env)) as db:
        assert db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(StoreError, match="cannot reach the event store at postgresql://127.0.0.1:"):
        Query.open(url.replace(f":{postgres_env['POSTGRES_PORT']}/", f":{closed_port}/"))
    with pytest.raises(StoreError, match='cannot reach the event store.*role "nobody" does not exist'):
        Query.open(url.replace(f"//{postgres_env['POSTGRES_USER']}:", "//nobody:"))  # (the server trusts passwords)


def _sqlite_files(path: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in path.parent.iterdir()}


def _ask_everything(query: Query, history: History) -> None:
    query.reservations(status="CONFIRMED", start=NOW, end=NOW + HOUR, node="n1")
    query.reservation(history.agreed)
    query.instances(user="alice")
    query.nodes()
    query.offers_open()
    query.capacity(start=NOW, end=NOW + 9 * HOUR)
    query.capacity("n2", start=NOW, end=NOW + 9 * HOUR, step=MINUTE)
    query.events(originator=history.agreed)
    query.events(after=3, limit=5, kind="Reservation")
    query.refresh()


def test_reading_a_sqlite_store_changes_none_of_its_bytes(sqlite_env):
    writer = open_writer(sqlite_env)
    history = record_history(writer)
    writer.close()
    path = Path(sqlite_env["SQLITE_DBNAME"])
    before = _sqlite_files(path)
    with Query.open(path) as query:
        _ask_everything(query, history)
    after = _sqlite_files(path)
    assert after[path.name] == before[path.name]
    # Reading a WAL database makes SQLite keep its shared-memory index beside it; nothing is logged.
    assert set(after) - set(before) <= {f"{path.name}-wal", f"{path.name}-shm"}
    assert not (path.parent / f"{path.name}-wal").exists() or (path.parent / f"{path.name}-wal").stat().st_size == 0


@pytest.mark.postgres
def test_a_postgres_store_is_read_with_nothing_but_select(postgres_env):
    """A role that may only SELECT the events table can ask everything."""
    writer = open_writer(postgres_env)
    history = record_history(writer)
    writer.close()
    with psycopg.connect(**_connection(postgres_env, user="postgres", password=""), autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'query_reader'").fetchone():
            admin.execute("CREATE ROLE query_reader LOGIN PASSWORD 'reader-only'")
        admin.execute(f"GRANT CONNECT ON DATABASE {postgres_env['POSTGRES_DBNAME']} TO query_reader")
        admin.execute("GRANT USAGE ON SCHEMA public TO query_reader")
        admin.execute(f"GRANT SELECT ON {EVENTS_TABLE} TO query_reader")
    url = store_name({**postgres_env, "POSTGRES_USER": "query_reader", "POSTGRES_PASSWORD": "reader-only"})
    with psycopg.connect(**_connection(postgres_env)) as db:
        tables = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    with Query.open(url) as query:
        _ask_everything(query, history)
        assert query.reservation(history.agreed).status == Status.ACTIVATED
    with psycopg.connect(**_connection(postgres_env)) as db:
        assert db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall() == tables


# ---------------------------------------------------------------------- the docs

def test_the_examples_in_docs_querying_run_as_written(sqlite_env, capsys):
    """Every ```python block of docs/querying.md, in order, in one namespace, on a store like
    the one the docs describe (STORE names it)."""
    writer = open_writer(sqlite_env)
    record_history(writer)
    writer.close()
    blocks = re.findall(r"^```python\n(.*?)^```", DOCS.read_text(), flags=re.DOTALL | re.MULTILINE)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {"STORE": sqlite_env["SQLITE_DBNAME"]}
    try:
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"{DOCS.name} block {number}", "exec"), namespace)
    finally:
        for value in namespace.values():
            if isinstance(value, Query):
                value.close()
    assert capsys.readouterr().out  # the examples show what they found
