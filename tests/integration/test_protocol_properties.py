"""Random sessions of propose / accept / counter / confirm / reject / cancel / activate / lapse /
expire, with nodes failing, against the real application on a SQLite file: no node is ever over
capacity at any instant, the capacity model always equals what the reservations hold, and a
restart rebuilds exactly the same state."""

from __future__ import annotations

import os
import tempfile

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
              st.integers(1, 6), st.integers(0, 3), st.integers(0, 48), st.integers(1, 12)),
    st.tuples(st.sampled_from(["ACCEPT", "CONFIRM", "REJECT", "COUNTER", "cancel", "activate"]), st.integers(0, 50),
              st.integers(0, 24), st.integers(1, 12)),
    st.tuples(st.sampled_from(["CONFIRM", "ACCEPT", "next"]), st.integers(0, 50), st.integers(0, 24), st.integers(1, 12)),
    st.tuples(st.just("wait"), st.integers(1, 90) | st.integers(1, 24 * 60)),  # minutes
    st.tuples(st.sampled_from(["DOWN", "UP", "DRAINED"]), st.sampled_from(sorted(NODES))),
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
            for number, s in enumerate(steps):
                if batch_every:
                    if number % batch_every == 0:
                        app.end_batch()
                    app.begin_batch()
                kind = s[0]
                try:
                    if kind == "propose":
                        _, user, type_, fixed, optional, start_h, hours = s
                        reply = app.negotiation.propose(user, TermsChange(
                            instance_type=type_, template="debian", fixed=fixed, optional=optional,
                            start=now + start_h * HOUR, duration=hours * HOUR), now)
                        ids.append(reply.reservation_id)
                    elif kind == "wait":
                        now += s[1] * MINUTE
                        app.lifecycle.lapse_due(now)
                        app.lifecycle.expire_due(now)
                    elif kind == "DOWN":  # lost: recorded DOWN and its bookings re-planned
                        app.hosts.lose_node(s[1], now)
                    elif kind in ("UP", "DRAINED"):
                        app.catalogue.mark_node(s[1], kind)
                    elif ids:
                        _, pick, start_h, hours = s
                        rid = ids[pick % len(ids)]
                        owner = app.view.reservations[rid].userid
                        if kind == "cancel":
                            app.lifecycle.cancel(rid, owner)
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
                            app.negotiation.respond(rid, owner, kind, now, TermsChange(start=now + start_h * HOUR,
                                                                                      duration=hours * HOUR))
                        else:
                            app.negotiation.respond(rid, owner, kind, now)
                except DomainError:
                    pass  # illegal steps are refused; what matters is that nothing overbooks
                check(app)
            app.end_batch()
            assert not app.in_batch
            snapshot = (held_by_reservations(app), app.read.reservations("x", is_admin=True),
                        [app.read.capacity_timeline(n, NOW, now + 100 * HOUR) for n in NODES])
        finally:
            app.close()
        reopened = OpenPEX(env, settings=Settings(offer_ttl=60 * MINUTE), origin=NOW)
        try:
            check(reopened)
            assert (held_by_reservations(reopened), reopened.read.reservations("x", is_admin=True),
                    [reopened.read.capacity_timeline(n, NOW, now + 100 * HOUR) for n in NODES]) == snapshot
        finally:
            reopened.close()
