"""Random sessions of propose / accept / counter / confirm / reject / cancel / activate / lapse /
expire, with nodes failing, prices asked for (maxPrice) and the rate card changing, against the
real application on a SQLite file: no node is ever over capacity at any instant (priced offers
and price counters included), the capacity model always equals what the reservations hold, a
bound price never changes (whatever the rates do, and across a restart), every statement is the
sum of its lines, and a restart rebuilds exactly the same state and statements."""

from __future__ import annotations

import os
import tempfile
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pex.domain.application import OpenPEX, Settings
from pex.domain.negotiation import TermsChange
from pex.domain.clock import HOUR, MINUTE
from pex.domain.errors import DomainError
from pex.domain.sizes import Resources

from tests.unit.reference import BruteForceCluster

NOW = 1_900_000_000_000
NODES = {"n1": Resources(8, 16384, 200), "n2": Resources(6, 8192, 100), "n3": Resources(4, 16384, 400)}
USERS = ("alice", "bob")

step = st.one_of(
    st.tuples(st.just("propose"), st.sampled_from(USERS), st.sampled_from(["SMALL", "MEDIUM", "LARGE", "XLARGE"]),
              st.integers(1, 6), st.integers(0, 3), st.integers(0, 48), st.integers(1, 12),
              st.none() | st.integers(1, 1000)),  # maxPrice in cents
    st.tuples(st.sampled_from(["ACCEPT", "CONFIRM", "REJECT", "COUNTER", "cancel", "activate"]), st.integers(0, 50),
              st.integers(0, 24), st.integers(1, 12)),
    st.tuples(st.sampled_from(["CONFIRM", "ACCEPT", "next"]), st.integers(0, 50), st.integers(0, 24), st.integers(1, 12)),
    st.tuples(st.just("wait"), st.integers(1, 90) | st.integers(1, 24 * 60)),  # minutes
    st.tuples(st.sampled_from(["DOWN", "UP", "DRAINED"]), st.sampled_from(sorted(NODES))),
    st.tuples(st.just("rates"), st.sampled_from(["SMALL", "MEDIUM", "LARGE", "XLARGE"]), st.integers(1, 100)),
    st.tuples(st.just("maxPrice"), st.integers(0, 50), st.integers(0, 1), st.integers(1, 1000)),  # a new maxPrice
)


def held_by_reservations(app):
    return {rid: r.held_allocation() for rid, r in app.view.reservations.items() if r.held_allocation()}


def check(app):
    held = held_by_reservations(app)
    assert dict(app.capacity.holders()) == held
    assert BruteForceCluster(NODES, held).over_capacity() == []
    assert app.capacity.within_capacity()
    # Every instance that can run has a share of its reservation's booking on its node.
    for instance in app.view.instances.values():
        reservation = app.view.reservations[instance.reservation_id]
        if instance.status != "DELETED" and instance.node and reservation.booking and reservation.is_agreed:
            nodes = {share[0] for share in reservation.booking[1]}
            assert instance.node in nodes, (instance.node, reservation.booking)


def check_priced(answer):
    """Every offer carries its price; one within the user's maxPrice is an ACCEPT only if it
    costs at most that; each alternative found on price costs at most it."""
    if answer.reply.value in ("ACCEPT", "COUNTER"):
        assert answer.price is not None and answer.price.total > 0
        ceiling = answer.terms.max_price
        if answer.reply.value == "ACCEPT" and ceiling is not None:
            assert answer.price.total <= ceiling
        assert len(answer.alternative_prices) == len(answer.alternatives)
    else:
        assert answer.price is None or answer.reply.value == "REQUEST_SUCCESS"


def check_statements(statements):
    """A statement's figures are the exact sums of its lines; nothing is charged beyond the
    price bound, nor refunded beyond what was charged."""
    for one in statements.users:
        assert one.charges == sum((line.charged for line in one.lines), Decimal(0))
        assert one.refunds == sum((line.refunded for line in one.lines), Decimal(0))
        assert one.total == one.charges - one.refunds
        for line in one.lines:
            assert 0 <= line.refunded <= line.charged <= line.price
    assert statements.total == sum((one.total for one in statements.users), Decimal(0))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=10, max_size=60))
def test_no_sequence_of_messages_overbooks_a_node(steps):
    run_session(steps, batch_every=0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=10, max_size=60), batch_every=st.integers(1, 8))
def test_group_commit_keeps_every_guarantee_and_saves_exactly_what_was_decided(steps, batch_every):
    """The same sessions with the commands staged and saved a batch at a time (as the Allocator
    does under load): each decision sees all before it, and the store ends up holding exactly
    the state the application had in memory."""
    run_session(steps, batch_every=batch_every)


def run_session(steps, *, batch_every: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": os.path.join(folder, "e.db")}
        app = OpenPEX(env, settings=Settings(offer_ttl=60 * MINUTE), origin=NOW)
        try:
            for name, capacity in NODES.items():
                app.catalogue.register_node(name, f"test:///{name}.xml", capacity)
            app.catalogue.register_template("debian")
            now = NOW
            ids: list[str] = []
            bound: dict[str, Decimal] = {}  # the price each confirmation bound, as its answer said
            for number, s in enumerate(steps):
                if batch_every:
                    if number % batch_every == 0:
                        app.end_batch()
                    app.begin_batch()
                kind = s[0]
                try:
                    if kind == "propose":
                        _, user, type_, fixed, optional, start_h, hours, cents = s
                        ceiling = Decimal(cents) / 100 if cents is not None else None
                        reply = app.negotiation.propose(user, TermsChange(
                            instance_type=type_, template="debian", fixed=fixed, optional=optional,
                            start=now + start_h * HOUR, duration=hours * HOUR, max_price=ceiling), now)
                        ids.append(reply.reservation_id)
                        check_priced(reply)
                    elif kind == "rates":
                        app.catalogue.set_prices({s[1]: Decimal(s[2]) / 100})
                    elif kind == "wait":
                        now += s[1] * MINUTE
                        app.lifecycle.lapse_due(now)
                        app.lifecycle.expire_due(now)
                    elif kind == "DOWN":  # lost: recorded DOWN and its bookings re-planned
                        app.hosts.lose_node(s[1], now)
                    elif kind in ("UP", "DRAINED"):
                        app.catalogue.mark_node(s[1], kind)
                    elif ids:
                        _, pick, start_h, hours = s[:4]
                        rid = ids[pick % len(ids)]
                        owner = app.view.reservations[rid].userid
                        if kind == "cancel":
                            app.lifecycle.cancel(rid, owner, now=now)
                        elif kind == "next":  # whatever moves this reservation on
                            status = app.read.reservation(rid, owner).status
                            message = {"ACCEPTED": "CONFIRM", "COUNTERED": "ACCEPT"}.get(status)
                            if message:
                                app.negotiation.respond(rid, owner, message, now)
                            elif status == "CONFIRMED":
                                app.lifecycle.activate(rid, owner)
                        elif kind == "activate":
                            app.lifecycle.activate(rid, owner)
                        elif kind == "COUNTER":
                            check_priced(app.negotiation.respond(rid, owner, kind, now, TermsChange(
                                start=now + start_h * HOUR, duration=hours * HOUR)))
                        elif kind == "maxPrice":
                            check_priced(app.negotiation.respond(rid, owner, "COUNTER", now, TermsChange(
                                max_price=Decimal(s[3]) / 100)))
                        else:
                            answer = app.negotiation.respond(rid, owner, kind, now)
                            if kind == "CONFIRM":
                                assert answer.price is not None
                                bound[rid] = answer.price.total
                except DomainError:
                    pass  # illegal steps are refused; what matters is that nothing overbooks
                check(app)
                for rid, price in bound.items():  # no rate change or later event alters a bound price
                    assert app.read.reservation(rid, "x", is_admin=True).price.total == price
            app.end_batch()
            assert not app.in_batch
            statements = app.read.usage("x", NOW, now + 200 * HOUR, now, is_admin=True)
            check_statements(statements)
            snapshot = (held_by_reservations(app), app.read.reservations("x", is_admin=True),
                        [app.read.capacity_timeline(n, NOW, now + 100 * HOUR) for n in NODES], statements)
        finally:
            app.close()
        reopened = OpenPEX(env, settings=Settings(offer_ttl=60 * MINUTE), origin=NOW)
        try:
            check(reopened)
            assert (held_by_reservations(reopened), reopened.read.reservations("x", is_admin=True),
                    [reopened.read.capacity_timeline(n, NOW, now + 100 * HOUR) for n in NODES],
                    reopened.read.usage("x", NOW, now + 200 * HOUR, now, is_admin=True)) == snapshot
        finally:
            reopened.close()
