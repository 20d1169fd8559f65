"""Issue 12, point 4: "The statement is a projection of the events: a replay gives the same
numbers." A store with priced reservations of every kind (completed, cancelled before and after
their start, still running, renegotiated, on a node lost with instances no other node had room
for, open and withdrawn offers, a rate change in between) is asked for statements by the
application that wrote it, by pex.query (now, and at positions of its past), and by a fresh
application rebuilt from the store: the numbers are the same, and each statement's total is the
sum of its lines' charges less their refunds. On SQLite and on the real PostgreSQL server; and
once through the running service (actors, manual clock), whose cancellations take the clock's
instant."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from uuid import UUID

import pytest

from pex.domain.application import OpenPEX, Settings
from pex.domain.billing import Statements
from pex.domain.clock import DAY, HOUR, MINUTE
from pex.domain.negotiation import Status, TermsChange
from pex.domain.pricing import Quote, RateCard, money
from pex.domain.quotas import Quota
from pex.domain.sizes import Resources
from pex.query import Query, QueryError
from tests.integration.test_query import store_name
from tests.support.service import T0, book, eventually

NOW = 1_900_000_000_000
NODE = Resources(8, 16384, 200)  # two XLARGE each
USERS = ("alice", "bob", "carol")  # carol holds nothing
# (period, now) pairs asked at every point: whole days and slices, before, during and after.
QUESTIONS = [((NOW, NOW + 3 * DAY), now) for now in (NOW, NOW + 2 * HOUR, NOW + 25 * HOUR, NOW + 4 * DAY)] + [
    ((NOW + 2 * HOUR, NOW + 11 * HOUR), NOW + 4 * DAY), ((NOW + 12 * HOUR, NOW + 13 * HOUR), NOW + 12 * HOUR + 30 * MINUTE),
    ((NOW + 41 * HOUR, NOW + 42 * HOUR + 30 * MINUTE), NOW + 4 * DAY)]


def proposal(fixed: int, size: str, start: int, duration: int) -> TermsChange:
    return TermsChange(instance_type=size, template="debian", fixed=fixed, optional=0, start=start, duration=duration)


Answers = dict[tuple[str | None, tuple[int, int], int], Statements]


def statements_of(app: OpenPEX) -> Answers:
    """Every question, asked of the application: each user's statement, and every user's (admin)."""
    answers: Answers = {}
    for (start, end), now in QUESTIONS:
        for user in USERS:
            answers[(user, (start, end), now)] = app.read.usage(user, start, end, now)
        answers[(None, (start, end), now)] = app.read.usage("admin", start, end, now, is_admin=True)
    return answers


def statements_queried(query: Query) -> Answers:
    answers: Answers = {}
    for (start, end), now in QUESTIONS:
        for user in USERS:
            answers[(user, (start, end), now)] = query.usage(start, end, userid=user, now=now)
        answers[(None, (start, end), now)] = query.usage(start, end, now=now)
    return answers


@dataclass
class Priced:
    made: dict[str, UUID] = field(default_factory=dict)
    points: list[tuple[int, Answers, RateCard]] = field(default_factory=list)  # (position, answers then, card then)
    final: Answers = field(default_factory=dict)

    def note(self, app: OpenPEX) -> None:
        self.points.append((app.recorder.max_notification_id() or 0, statements_of(app), app.view.rate_card))


def agreed(app: OpenPEX, user: str, fixed: int, size: str, start: int, duration: int) -> UUID:
    answer = app.negotiation.propose(user, proposal(fixed, size, start, duration), NOW)
    assert answer.reply == "ACCEPT", answer
    assert app.negotiation.respond(answer.reservation_id, user, "CONFIRM", NOW).reply == "REQUEST_SUCCESS"
    return answer.reservation_id


def record_priced_history(app: OpenPEX) -> Priced:
    for name in ("n1", "n2"):
        app.catalogue.register_node(name, f"test:///{name}.xml", NODE)
    app.catalogue.register_template("debian", "Debian 12")
    for user in USERS:
        app.catalogue.register_account(user, "argon2-hash-placeholder", user.title(), f"{user}@example.org")
    app.catalogue.seed_prices()
    history = Priced()
    made = history.made
    made["completed"] = agreed(app, "alice", 2, "SMALL", NOW + HOUR, 2 * HOUR)
    app.lifecycle.activate(made["completed"], "alice")
    made["cancelled_after"] = agreed(app, "alice", 1, "LARGE", NOW + HOUR, 4 * HOUR)
    made["cancelled_before"] = agreed(app, "bob", 1, "MEDIUM", NOW + 6 * HOUR, HOUR)
    made["lost"] = agreed(app, "bob", 4, "XLARGE", NOW + 10 * HOUR, 6 * HOUR)  # fills both nodes
    history.note(app)
    bound = {name: app.view.reservations[rid].price for name, rid in made.items()}
    app.catalogue.set_prices({"SMALL": "0.08", "XLARGE": "0.35"})  # agreed prices stay as they were
    assert {name: app.view.reservations[rid].price for name, rid in made.items()} == bound
    made["running"] = agreed(app, "alice", 1, "SMALL", NOW + 20 * HOUR, 10 * HOUR)
    made["renegotiated"] = agreed(app, "bob", 1, "SMALL", NOW + 40 * HOUR, 2 * HOUR)
    longer = app.negotiation.respond(made["renegotiated"], "bob", "COUNTER", NOW, TermsChange(duration=3 * HOUR))
    assert longer.reply == "ACCEPT"
    history.note(app)  # (a renegotiation open: the old price still bound)
    app.negotiation.respond(made["renegotiated"], "bob", "CONFIRM", NOW)
    withdrawn = app.negotiation.propose("bob", proposal(1, "MEDIUM", NOW + 50 * HOUR, HOUR), NOW).reservation_id
    app.negotiation.respond(withdrawn, "bob", "REJECT", NOW)
    made["open"] = app.negotiation.propose("alice", proposal(1, "SMALL", NOW + 50 * HOUR, HOUR), NOW).reservation_id
    history.note(app)
    app.lifecycle.cancel(made["cancelled_before"], "bob", now=NOW + 2 * HOUR)
    app.lifecycle.cancel(made["cancelled_after"], "alice", now=NOW + 150 * MINUTE)
    app.lifecycle.expire_due(NOW + 3 * HOUR)
    history.note(app)
    app.hosts.lose_node("n1", NOW + 12 * HOUR)  # n2 is full: two XLARGE are placed nowhere
    assert app.view.reservations[made["lost"]].status is Status.DEGRADED
    history.note(app)
    history.final = statements_of(app)
    return history


def price_of(app: OpenPEX, rid: UUID) -> Decimal:
    stored = app.view.reservations[rid].price
    assert stored is not None
    return Quote.from_dict(stored).total


def check_sums(answers: Answers) -> None:
    for key, found in answers.items():
        for one in found.users:
            assert one.total == sum((l.charged for l in one.lines), Decimal(0)) - sum(
                (l.refunded for l in one.lines), Decimal(0)), key
            assert all(l.charged >= l.refunded >= 0 for l in one.lines), key
            assert one.currency == found.currency
        assert found.total == sum((one.total for one in found.users), Decimal(0)), key


@pytest.fixture
def writer(durable_store_env):
    app = OpenPEX(durable_store_env, settings=Settings(quota=Quota(10**9, 10**9, 10**9)), origin=NOW)
    yield app
    app.close()


def test_a_replay_gives_the_same_statements(durable_store_env, writer):
    history = record_priced_history(writer)
    store = store_name(durable_store_env)
    check_sums(history.final)
    made = history.made
    whole = (NOW, NOW + 3 * DAY)
    everyone = history.final[(None, whole, NOW + 4 * DAY)]
    lines = {line.reservation_id: line for one in everyone.users for line in one.lines}
    prices = {name: price_of(writer, rid) for name, rid in made.items() if name != "open"}
    # What each kind of reservation is charged, worked out by hand from its bound price.
    assert made["cancelled_before"] not in lines and made["open"] not in lines
    assert (lines[made["completed"]].charged, lines[made["completed"]].refunded) == (prices["completed"], 0)
    cancelled = lines[made["cancelled_after"]]  # 90 of its 240 minutes
    assert (cancelled.charged, cancelled.refunded) == (money(Fraction(prices["cancelled_after"]) * Fraction(3, 8)), 0)
    assert cancelled.instance_hours == Fraction(3, 2)
    lost = lines[made["lost"]]  # two of four instances could not run its last four of six hours
    assert (lost.charged, lost.refunded) == (prices["lost"], money(Fraction(prices["lost"]) / 3))
    assert lost.instance_hours == 4 * 6 - 2 * 4
    [running] = history.final[("alice", whole, NOW + 25 * HOUR)].users  # half of its ten hours by then
    assert {line.reservation_id: line.charged for line in running.lines}[made["running"]] == \
        money(Fraction(prices["running"]) / 2)
    renegotiated = lines[made["renegotiated"]]
    assert renegotiated.price == prices["renegotiated"] and renegotiated.instance_hours == 3
    assert [one.userid for one in everyone.users] == ["alice", "bob"] and everyone.total > 0
    assert [one.lines for one in history.final[("carol", whole, NOW + 4 * DAY)].users] == [()]
    assert [one.lines for one in history.final[("alice", whole, NOW)].users] == [()]  # nothing has run yet

    # The query API, now and at each point of the past the writer was asked at.
    with Query.open(store) as query:
        assert statements_queried(query) == history.final
        assert query.usage(whole[0], whole[1], userid="ALICE", now=NOW + 4 * DAY) == \
            history.final[("alice", whole, NOW + 4 * DAY)]
        assert query.prices() == writer.view.rate_card
        assert query.reservation(made["lost"]).price == writer.read.view_of(writer.view.reservations[made["lost"]]).price
    for position, answers, card in history.points:
        check_sums(answers)
        with Query.open(store, position=position) as then:
            assert statements_queried(then) == answers, position
            assert then.prices() == card
    assert history.points[0][2] == RateCard.default() != history.points[1][2]

    # A fresh application rebuilt from the store.
    writer.close()
    rebuilt = OpenPEX(durable_store_env, settings=Settings(quota=Quota(10**9, 10**9, 10**9)), origin=NOW)
    try:
        assert statements_of(rebuilt) == history.final
    finally:
        rebuilt.close()


def test_usage_defaults_and_refusals(sqlite_env):
    app = OpenPEX(sqlite_env, settings=Settings(quota=Quota(10**9, 10**9, 10**9)), origin=NOW)
    try:
        history = record_priced_history(app)
    finally:
        app.close()
    store = sqlite_env["SQLITE_DBNAME"]
    position = history.points[-2][0]  # before the node was lost
    with Query.open(store, position=position) as then:
        recorded = then.events(after=position - 1, limit=1)[0].timestamp  # (the wall clock's, after NOW's year)
        assert then.usage(NOW, NOW + 3 * DAY) == then.usage(NOW, NOW + 3 * DAY, now=recorded)
        with Query.open(store, as_of=recorded) as as_of:
            assert as_of.usage(NOW, NOW + 3 * DAY) == as_of.usage(NOW, NOW + 3 * DAY, now=recorded)
    with Query.open(store) as query:
        now = int(time.time() * 1000)  # (a query of the present: the current time; every charge is in 2030)
        assert query.usage(NOW, NOW + 3 * DAY) == query.usage(NOW, NOW + 3 * DAY, now=now)
        for ask, named in [
            (lambda: query.usage(NOW + HOUR, NOW), "end: must be after start"),
            (lambda: query.usage(NOW, None), "end: required"),  # type: ignore[arg-type]
            (lambda: query.usage(NOW, NOW + HOUR, now="later"), "now: expected an aware datetime"),  # type: ignore[arg-type]
            (lambda: query.usage(NOW, NOW + HOUR, userid=7), "userid: expected a username"),  # type: ignore[arg-type]
        ]:
            with pytest.raises(QueryError, match=named):
                ask()


def test_the_running_service_and_a_query_give_the_same_statements(service, clock):
    """Through the actors on the manual clock: a cancellation is at the clock's instant, and a
    node lost mid-run strands one of two XLARGE (two nodes of 4 CPUs), refunded."""
    nodes = [node.name for node in service.ask(lambda a: a.nodes())]
    cancelled = book(service, "alice", start=T0 + HOUR, duration=4 * HOUR, count=2)
    stranded = book(service, "bob", start=T0 + 5 * HOUR, duration=4 * HOUR, count=2, size="XLARGE")
    service.advance_to(T0 + 2 * HOUR)
    service.manage(lambda manager: manager.cancel(cancelled, "alice"))
    service.advance_to(T0 + 6 * HOUR)
    service.manage(lambda manager: manager.node_down(nodes[0], "the test pulled its cable"))
    service.advance_to(T0 + 10 * HOUR)
    eventually(lambda: service.ask(lambda a: a.app.view.reservations[stranded].status) is Status.EXPIRED,
               what="bob's reservation expired")  # (the timers' work is recorded by the actors in their time)
    period = (T0, T0 + DAY)
    expected = service.ask(lambda a: a.usage("admin", *period, is_admin=True))
    check_sums({(None, period, clock.now()): expected})
    with Query.open(service.config.data_dir / "events.db") as query:
        assert query.usage(*period, now=clock.now()) == expected
        assert query.usage(*period, userid="bob", now=clock.now()) == service.ask(lambda a: a.usage("bob", *period))
        lines = {line.reservation_id: line for one in expected.users for line in one.lines}
        alice = query.reservation(cancelled)
        assert alice.price is not None and alice.status is Status.CANCELLED
        assert (lines[alice.id].charged, lines[alice.id].refunded) == (money(Fraction(alice.price.total) / 4), 0)
        bob = query.reservation(stranded)
        assert bob.price is not None and bob.status is Status.EXPIRED  # (degraded at the loss; ended since)
        assert (lines[bob.id].charged, lines[bob.id].refunded) == (bob.price.total,
                                                                   money(Fraction(bob.price.total) * 3 / 8))
