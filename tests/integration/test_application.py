"""The OpenPEX application on a real event store (SQLite file and PostgreSQL server)."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID


import pytest
from eventsourcing.persistence import IntegrityError

from pex.domain.application import Settings
from pex.domain.clock import DAY, HOUR, MINUTE
from pex.domain.negotiation import TermsChange
from pex.domain.errors import AlreadyExists, InvalidField, NotFound, OfferExpired, ProtocolViolation
from pex.domain.sizes import Resources
from tests.support.apps import opener

NOW = 1_900_000_000_000  # a fixed "now" in 2030; the tests pass time explicitly


def proposal(fixed=1, optional=0, start=NOW + HOUR, duration=HOUR, type_="XLARGE", template="debian"):
    return TermsChange(instance_type=type_, template=template, fixed=fixed, optional=optional, start=start,
                       duration=duration)


def opening(env):
    yield from opener(env, settings=Settings(offer_ttl=5 * MINUTE), origin=NOW)


def seeded(app):
    for name in ("n1", "n2"):
        app.catalogue.register_node(name, f"test:///{name}.xml", Resources(8, 16384, 200))  # 2 XLARGE each
    app.catalogue.register_template("debian", "Debian 12")
    for user in ("alice", "bob"):
        app.catalogue.register_account(user, "argon2-hash-placeholder", user.title(), f"{user}@example.org")
    return app


@pytest.fixture
def open_app(store_env):
    yield from opening(store_env)


@pytest.fixture
def app(open_app):
    return seeded(open_app())


@pytest.fixture
def open_durable_app(durable_store_env):
    """Applications on one store that outlives them (a second process, a restart)."""
    yield from opening(durable_store_env)


@pytest.fixture
def durable_app(open_durable_app):
    return seeded(open_durable_app())


def last_position(app):
    return app.recorder.max_notification_id() or 0


def free_cpus(app, node, at):
    return app.capacity.free_at(node, at).cpus


def test_accept_then_confirm_books_the_capacity_and_plans_instances(app):
    reply = app.negotiation.propose("alice", proposal(fixed=3), NOW)
    assert reply.reply == "ACCEPT"
    assert reply.userid == "alice" and reply.hold_until == NOW + 5 * MINUTE
    rid = reply.reservation_id
    assert app.read.reservation(rid, "alice").status == "ACCEPTED"
    assert free_cpus(app, "n1", NOW + HOUR) + free_cpus(app, "n2", NOW + HOUR) == 4  # held

    confirmed = app.negotiation.respond(rid, "alice", "CONFIRM", NOW + MINUTE)
    assert confirmed.reply == "REQUEST_SUCCESS"
    reservation = app.read.reservation(rid, "alice")
    assert reservation.status == "CONFIRMED" and len(reservation.instances) == 3
    assert {i.node for i in app.read.instances("alice")} == {"n1", "n2"}
    assert all(i.status == "PENDING" for i in app.read.instances("alice"))


def test_counter_accept_confirm_request_confirm(app):
    first = app.negotiation.propose("alice", proposal(fixed=4), NOW)
    app.negotiation.respond(first.reservation_id, "alice", "CONFIRM", NOW)
    counter = app.negotiation.propose("bob", proposal(fixed=1), NOW)
    assert counter.reply == "COUNTER"
    assert counter.terms.start == NOW + 2 * HOUR  # when alice's instances end
    rid = counter.reservation_id
    with pytest.raises(ProtocolViolation, match="must be ACCEPTed"):
        app.negotiation.respond(rid, "bob", "CONFIRM", NOW)
    assert app.negotiation.respond(rid, "bob", "ACCEPT", NOW).reply == "CONFIRM_REQUEST"
    assert app.read.reservation(rid, "bob").status == "ACCEPTED"
    assert app.negotiation.respond(rid, "bob", "CONFIRM", NOW).reply == "REQUEST_SUCCESS"
    assert app.read.reservation(rid, "bob").terms.start == NOW + 2 * HOUR


def test_a_counter_to_a_counter_is_negotiated_afresh(app):
    app.negotiation.respond(app.negotiation.propose("alice", proposal(fixed=4), NOW).reservation_id, "alice", "CONFIRM", NOW)
    counter = app.negotiation.propose("bob", proposal(fixed=1), NOW)
    rid = counter.reservation_id
    again = app.negotiation.respond(rid, "bob", "COUNTER", NOW, TermsChange(start=NOW + 3 * HOUR))
    assert again.reply == "ACCEPT" and again.terms.start == NOW + 3 * HOUR
    assert again.reservation_id == rid


def test_rejecting_an_offer_releases_its_hold(app):
    rid = app.negotiation.propose("alice", proposal(fixed=4), NOW).reservation_id
    assert free_cpus(app, "n1", NOW + HOUR) == 0
    assert app.negotiation.respond(rid, "alice", "REJECT", NOW).reply == "REQUEST_SUCCESS"
    assert app.read.reservation(rid, "alice").status == "WITHDRAWN"  # the user's, not OpenPEX's refusal
    assert free_cpus(app, "n1", NOW + HOUR) == 8
    assert app.negotiation.propose("bob", proposal(fixed=4), NOW).reply == "ACCEPT"


def test_cancelling_an_open_offer_reads_withdrawn_not_refused(app):
    rid = app.negotiation.propose("alice", proposal(fixed=4), NOW).reservation_id
    cancelled = app.lifecycle.cancel(rid, "alice", now=NOW)
    assert cancelled.status == "WITHDRAWN" and cancelled.reason is None
    assert free_cpus(app, "n1", NOW + HOUR) == 8
    refused = app.negotiation.propose("alice", proposal(fixed=9), NOW)  # more than the cluster holds
    assert app.read.reservation(refused.reservation_id, "alice").status == "REJECTED"


def test_an_offer_lapses_after_its_hold_time_and_cannot_be_confirmed(app):
    rid = app.negotiation.propose("alice", proposal(fixed=4), NOW).reservation_id
    assert app.lifecycle.lapse_due(NOW + 5 * MINUTE - 1) == []
    with pytest.raises(ProtocolViolation, match="offer expired"):
        app.negotiation.respond(rid, "alice", "CONFIRM", NOW + 5 * MINUTE)
    assert app.read.reservation(rid, "alice").status == "OFFER_EXPIRED"
    assert free_cpus(app, "n1", NOW + HOUR) == 8


def test_a_confirm_at_the_deadline_is_refused_even_before_the_timer_ran(app):
    rid = app.negotiation.propose("alice", proposal(), NOW).reservation_id
    reservation = app.repository.get(app.view.reservations[next(iter(app.view.reservations))].id)
    with pytest.raises(OfferExpired):
        reservation.confirm(NOW + 5 * MINUTE)
    assert app.read.reservation(rid, "alice").status == "ACCEPTED"


def test_cancel_frees_capacity_and_deletes_instances(app):
    rid = app.negotiation.propose("alice", proposal(fixed=2), NOW).reservation_id
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    assert app.lifecycle.cancel(rid, "alice", now=NOW).status == "CANCELLED"
    assert app.read.reservation(rid, "alice").instances == ()
    assert free_cpus(app, "n1", NOW + HOUR) == 8


def test_a_reservation_expires_at_its_end_and_frees_its_capacity(app):
    rid = app.negotiation.propose("alice", proposal(fixed=4), NOW).reservation_id
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    app.lifecycle.activate(rid, "alice")
    assert app.read.reservation(rid, "alice").status == "ACTIVATED"
    assert app.lifecycle.expire_due(NOW + 2 * HOUR - 1) == []
    assert app.lifecycle.expire_due(NOW + 2 * HOUR) == [rid]
    assert app.read.reservation(rid, "alice").status == "EXPIRED"
    assert app.capacity.held(app.view.reservations[next(iter(app.view.reservations))].id) is None


def test_renegotiation_keeps_the_old_terms_until_the_new_ones_are_confirmed(app):
    rid = app.negotiation.propose("alice", proposal(fixed=2, duration=HOUR), NOW).reservation_id
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    offer = app.negotiation.respond(rid, "alice", "COUNTER", NOW, TermsChange(duration=3 * HOUR))
    assert offer.reply == "ACCEPT" and offer.terms.duration == 3 * HOUR
    shown = app.read.reservation(rid, "alice")
    assert shown.status == "CONFIRMED" and shown.terms.duration == HOUR  # old terms in force
    assert shown.offer.terms.duration == 3 * HOUR
    # While open, the union of both is held: nobody else gets the extension's slot.
    assert app.negotiation.propose("bob", proposal(fixed=4, start=NOW + 2 * HOUR), NOW).reply == "COUNTER"
    assert app.negotiation.respond(rid, "alice", "CONFIRM", NOW).reply == "REQUEST_SUCCESS"
    shown = app.read.reservation(rid, "alice")
    assert shown.terms.duration == 3 * HOUR and shown.offer is None
    assert {i.end for i in app.read.instances("alice")} == {NOW + 4 * HOUR}


def test_a_confirmed_renegotiation_keeps_every_instance_id_its_placement_allows(app):
    rid = app.negotiation.propose("alice", proposal(fixed=3), NOW).reservation_id
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    before = app.read.reservation(rid, "alice").instances
    for change in (TermsChange(duration=2 * HOUR), TermsChange(start=NOW + 3 * HOUR), TermsChange(fixed=4)):
        app.negotiation.respond(rid, "alice", "COUNTER", NOW, change)
        app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
        now = app.read.reservation(rid, "alice").instances
        assert now[:3] == before, change
        assert all(i.status != "DELETED" for i in app.read.instances("alice"))
    assert len(now) == 4 and len({i.node for i in app.read.instances("alice")}) == 2


def test_a_rejected_renegotiation_leaves_the_booking_as_it_was(app):
    rid = app.negotiation.propose("alice", proposal(fixed=2), NOW).reservation_id
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    before = app.capacity.held(app.view.reservations[next(iter(app.view.reservations))].id)
    assert app.negotiation.respond(rid, "alice", "COUNTER", NOW, TermsChange(fixed=9)).reply == "REJECT"
    app.negotiation.respond(rid, "alice", "COUNTER", NOW, TermsChange(start=NOW + 5 * HOUR))
    assert app.negotiation.respond(rid, "alice", "REJECT", NOW).reply == "REQUEST_SUCCESS"
    shown = app.read.reservation(rid, "alice")
    assert shown.status == "CONFIRMED" and shown.terms.start == NOW + HOUR
    assert app.capacity.held(app.view.reservations[next(iter(app.view.reservations))].id) == before


def test_a_started_reservation_may_only_change_its_end(app):
    rid = app.negotiation.propose("alice", proposal(fixed=1, start=NOW + HOUR), NOW).reservation_id
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    later = NOW + HOUR + MINUTE
    assert app.negotiation.respond(rid, "alice", "COUNTER", later, TermsChange(start=NOW + 5 * HOUR)).reply == "REJECT"
    extended = app.negotiation.respond(rid, "alice", "COUNTER", later, TermsChange(duration=2 * HOUR))
    assert extended.reply == "ACCEPT"
    app.negotiation.respond(rid, "alice", "CONFIRM", later)
    assert app.read.reservation(rid, "alice").terms.end == NOW + 3 * HOUR


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (proposal(start=NOW - 1), "startTime is in the past"),
        (proposal(template="windows"), "unknown template"),
        (proposal(fixed=5), "more than the cluster can ever hold"),
        (proposal(start=NOW + 400 * DAY), "days ahead"),
    ],
)
def test_unacceptable_terms_are_rejected_with_a_reason(app, body, reason):
    reply = app.negotiation.propose("alice", body, NOW)
    assert reply.reply == "REJECT" and reason in reply.reason
    assert app.read.reservation(reply.reservation_id, "alice").status == "REJECTED"


def test_a_command_that_fails_appends_no_event(app):
    rid = app.negotiation.propose("alice", proposal(), NOW).reservation_id
    before = last_position(app)
    failures = [
        (InvalidField, lambda: app.negotiation.propose("alice", replace(proposal(), duration=-1), NOW)),
        (InvalidField, lambda: app.negotiation.propose("alice", TermsChange(template="debian"), NOW)),
        (InvalidField, lambda: app.negotiation.propose("alice", proposal(type_="HUGE"), NOW)),
        (InvalidField, lambda: app.negotiation.respond(rid, "alice", "MAYBE", NOW)),
        (InvalidField, lambda: app.negotiation.respond(rid, "alice", "COUNTER", NOW, TermsChange(duration="long"))),
        (InvalidField, lambda: app.negotiation.respond(rid, "alice", "COUNTER", NOW + 6 * MINUTE, TermsChange(duration=0))),
        (ProtocolViolation, lambda: app.negotiation.respond(rid, "alice", "ACCEPT", NOW)),
        (ProtocolViolation, lambda: app.lifecycle.activate(rid, "alice")),
        (NotFound, lambda: app.negotiation.respond(rid, "bob", "CONFIRM", NOW)),
        (NotFound, lambda: app.negotiation.respond("not-an-id", "alice", "CONFIRM", NOW)),
        (AlreadyExists, lambda: app.catalogue.register_account("alice", "h", "A", "a@example.org")),
        (AlreadyExists, lambda: app.catalogue.register_node("n1", "test:///x", Resources(1, 1024, 10))),
        (InvalidField, lambda: app.catalogue.register_node("n9", "nonsense", Resources(1, 1024, 10))),
        (InvalidField, lambda: app.catalogue.register_account("", "h")),
    ]
    for error, call in failures:
        with pytest.raises(error):
            call()
    assert last_position(app) == before
    assert app.read.reservation(rid, "alice").status == "ACCEPTED"


def test_users_see_only_their_own_reservations(app):
    rid = app.negotiation.propose("alice", proposal(), NOW).reservation_id
    app.negotiation.propose("bob", proposal(), NOW)
    assert [r.id for r in app.read.reservations("alice")] == [rid]
    with pytest.raises(NotFound):
        app.read.reservation(rid, "bob")
    with pytest.raises(NotFound):
        app.lifecycle.cancel(rid, "bob", now=NOW)
    assert len(app.read.reservations("admin", is_admin=True)) == 2
    assert app.read.reservation(rid, "admin", is_admin=True).userid == "alice"


def test_a_taken_username_is_refused_by_the_store_even_from_a_second_process(durable_app, open_durable_app):
    app, open_app = durable_app, open_durable_app
    other = open_app()  # a second application on the same store, built before the name is taken
    app.catalogue.register_account("carol", "h", "Carol", "c@example.org")
    with pytest.raises(AlreadyExists):
        other.catalogue.register_account("carol", "h2", "Carol Two", "c2@example.org")


def test_after_a_restart_everything_is_rebuilt_and_decides_the_same(durable_app, open_durable_app):
    app, open_app = durable_app, open_durable_app
    confirmed = app.negotiation.propose("alice", proposal(fixed=3), NOW).reservation_id
    app.negotiation.respond(confirmed, "alice", "CONFIRM", NOW)
    held = app.negotiation.propose("bob", proposal(fixed=1, start=NOW + 3 * HOUR), NOW).reservation_id
    renegotiating = app.negotiation.propose("bob", proposal(fixed=1, start=NOW + 5 * HOUR), NOW).reservation_id
    app.negotiation.respond(renegotiating, "bob", "CONFIRM", NOW)
    app.negotiation.respond(renegotiating, "bob", "COUNTER", NOW, TermsChange(duration=2 * HOUR))
    app.negotiation.propose("alice", proposal(start=NOW - 5), NOW)  # a REJECT is history too

    probes = [proposal(fixed=f, start=NOW + h * HOUR) for f in (1, 2, 4) for h in (1, 3, 5)]

    def answers(application):
        replies = []
        for body in probes:
            reply = application.negotiation.propose("alice", body, NOW)
            replies.append((reply.reply, reply.reason, reply.terms, reply.hold_until, reply.alternatives))
            if reply.reply in ("ACCEPT", "COUNTER"):
                application.negotiation.respond(reply.reservation_id, "alice", "REJECT", NOW)
        return replies

    snapshot = {
        "reservations": app.read.reservations("admin", is_admin=True),
        "instances": app.read.instances("admin", is_admin=True),
        "nodes": app.catalogue.nodes(),
        "held": dict(app.capacity.holders()),
        "timeline": [app.read.capacity_timeline(n, NOW, NOW + DAY) for n in ("n1", "n2")],
        "due": (app.view.offers_due.due(NOW + DAY), app.view.ends_due.due(NOW + DAY)),
    }
    before = answers(app)
    app.close()

    reopened = open_app()
    assert reopened.read.reservations("admin", is_admin=True)[: len(snapshot["reservations"])] == snapshot["reservations"]
    assert reopened.read.instances("admin", is_admin=True) == snapshot["instances"]
    assert reopened.catalogue.nodes() == snapshot["nodes"]
    assert dict(reopened.capacity.holders()) == snapshot["held"]
    assert [reopened.read.capacity_timeline(n, NOW, NOW + DAY) for n in ("n1", "n2")] == snapshot["timeline"]
    assert answers(reopened) == before
    # Open holds survive too: bob's offer still lapses on time after the restart.
    assert held in reopened.lifecycle.lapse_due(NOW + 5 * MINUTE)


def test_a_batch_is_saved_in_one_transaction_and_later_commands_see_earlier_ones(durable_app, open_durable_app):
    app, open_app = durable_app, open_durable_app
    app.begin_batch()
    first = app.negotiation.propose("alice", proposal(fixed=2), NOW)
    rid = first.reservation_id
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)  # the reservation changed earlier in the batch
    second = app.negotiation.propose("bob", proposal(fixed=2), NOW)  # sees alice's booking
    before = last_position(app)
    app.end_batch()
    assert last_position(app) > before
    reopened = open_app()
    try:
        assert reopened.read.reservation(rid, "alice").status == "CONFIRMED"
        assert reopened.read.reservation(second.reservation_id, "bob").status == app.read.reservation(
            second.reservation_id, "bob").status
        assert dict(reopened.capacity.holders()) == dict(app.capacity.holders())
    finally:
        reopened.close()


def test_a_registration_refuses_to_run_inside_a_batch(app):
    """Its refusal of a taken name would come at the batch's end, for every caller in it."""
    app.begin_batch()
    with pytest.raises(RuntimeError, match="alone"):
        app.catalogue.register_template("inside", "a batch")
    app.end_batch()
    assert app.catalogue.register_template("outside", "a batch").name == "outside"


def test_a_batch_that_cannot_be_saved_leaves_nothing_behind(app, monkeypatch):
    held_before = dict(app.capacity.holders())
    app.begin_batch()
    rid = app.negotiation.propose("alice", proposal(fixed=2), NOW).reservation_id
    assert app.capacity.held(rid) is not None  # decided and visible inside the batch

    def broken(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(app, "save", broken)
    with pytest.raises(OSError):
        app.end_batch()
    monkeypatch.undo()
    assert not app.in_batch
    assert dict(app.capacity.holders()) == held_before
    with pytest.raises(NotFound):
        app.read.reservation(rid, "alice")
    assert app.negotiation.propose("bob", proposal(fixed=2), NOW).reply == "ACCEPT"


def test_after_a_restart_a_vm_defined_but_never_started_is_booted(app):
    rid = app.negotiation.propose("alice", proposal(start=NOW + MINUTE), NOW).reservation_id
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    app.lifecycle.activate(rid, "alice")
    (boot,) = app.lifecycle.settle(NOW + MINUTE)  # launched: its VM is ordered to boot
    # The process died after `define` and before `start`: the host has it, shut off.
    orders = app.hosts.recover_node(boot.node, {boot.domain: "HALTED"}, NOW + 2 * MINUTE)
    assert [(o.operation.value, o.domain) for o in orders] == [("boot", boot.domain)]


@pytest.mark.parametrize("how", ["recover", "reconcile"])
def test_a_vm_whose_end_was_recorded_but_not_its_stop_is_recorded_halted_when_its_host_lacks_it(app, how):
    """The writer died between recording a reservation's end and hearing its VMs stop: the
    next one's recovery (or any reconciliation) records them HALTED, not RUNNING for ever."""
    rid = app.negotiation.propose("alice", proposal(fixed=2, start=NOW + MINUTE), NOW).reservation_id
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    app.lifecycle.activate(rid, "alice")
    boots = app.lifecycle.settle(NOW + MINUTE)
    for order in boots:
        app.operations.record_status(order.vm_id, "RUNNING", None, node=order.node)
    ends = app.lifecycle.settle(NOW + MINUTE + HOUR)  # expired; its END orders die with the process
    assert {o.operation.value for o in ends} == {"end"} and app.read.reservation(rid, "alice").status == "EXPIRED"
    kept = boots[0]  # one host still has its VM: a stray to remove, not yet halted
    for node in {order.node for order in boots}:
        observed = {kept.domain: "RUNNING"} if node == kept.node else {}
        if how == "recover":
            orders = app.hosts.recover_node(node, observed, NOW + 2 * HOUR)
        else:
            orders = app.hosts.reconcile(node, observed)
        assert [(o.operation.value, o.domain) for o in orders] == ([("end", kept.domain)] if node == kept.node else [])
    statuses = {str(i.id): i.status for i in app.read.instances("alice")}
    assert statuses == {o.vm_id: "RUNNING" if o is kept else "HALTED" for o in boots}
    # A stop under way on its node (busy) is left to that node.
    if how == "reconcile":
        app.hosts.reconcile(kept.node, {}, busy=[kept.domain])
        assert app.read.instance(kept.vm_id, "alice").status == "RUNNING"
        app.hosts.reconcile(kept.node, {})
        assert app.read.instance(kept.vm_id, "alice").status == "HALTED"


def test_an_instance_is_changed_from_a_copy_of_the_views_and_the_store_agrees(durable_app, open_durable_app, monkeypatch):
    """What a host reports is recorded without reading the instance from the store (a boot
    storm's thousands of reports): the view's copy is the store's, and stays so."""
    app = durable_app
    rid = app.negotiation.propose("alice", proposal(fixed=3, type_="SMALL", start=NOW + MINUTE), NOW).reservation_id
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    app.lifecycle.activate(rid, "alice")
    boots = app.lifecycle.settle(NOW + MINUTE)
    ids = [UUID(order.vm_id) for order in boots]
    read: list[UUID] = []
    get = app.repository.get
    monkeypatch.setattr(app.repository, "get", lambda aggregate_id, **kw: read.append(aggregate_id) or get(aggregate_id, **kw))

    kept = app.view.instances[ids[0]]
    changing = app.load(ids[0])
    assert changing is not kept and changing == kept
    changing.record_status("RUNNING")
    assert kept.status == "PENDING" and not kept.pending_events, "the view's changes only when it is saved"

    for order in boots:
        app.operations.record_status(order.vm_id, "RUNNING", None, node=order.node)
    app.begin_batch()  # twice in one batch: the second change builds on the first
    app.operations.record_status(boots[1].vm_id, "PAUSED", None)
    app.operations.record_status(boots[1].vm_id, "RUNNING", None)
    app.operations.record_status(boots[2].vm_id, "CRASHED", "it died")
    app.end_batch()
    assert read == [], "no instance read from the store"

    monkeypatch.undo()
    for iid in ids:
        assert app.repository.get(iid) == app.view.instances[iid]
    assert [app.view.instances[i].status for i in ids] == ["RUNNING", "RUNNING", "CRASHED"]
    assert app.view.instances[ids[1]].version == 4  # planned, RUNNING, PAUSED, RUNNING
    reopened = open_durable_app()
    try:
        assert [reopened.view.instances[i] for i in ids] == [app.view.instances[i] for i in ids]
    finally:
        reopened.close()


def test_a_save_that_raised_but_was_stored_is_read_on_so_the_next_change_builds_on_it(app, monkeypatch):
    """PostgreSQL: a commit whose acknowledgement was lost with the connection is retried and
    refused as a duplicate, though stored. The view must not stay behind the store, since
    instances are changed from it."""
    rid = app.negotiation.propose("alice", proposal(start=NOW + MINUTE), NOW).reservation_id
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    app.lifecycle.activate(rid, "alice")
    (boot,) = app.lifecycle.settle(NOW + MINUTE)
    save = app.save

    def stored_then_refused(*aggregates):
        save(*aggregates)
        raise IntegrityError("duplicate key: the retry of a commit that was stored")

    monkeypatch.setattr(app, "save", stored_then_refused)
    with pytest.raises(IntegrityError):
        app.operations.record_status(boot.vm_id, "RUNNING", None, node=boot.node)
    monkeypatch.undo()
    iid = UUID(boot.vm_id)
    assert app.view.instances[iid].status == "RUNNING", "read on from the store"
    assert app.view.position == last_position(app)
    app.operations.record_status(boot.vm_id, "PAUSED", None, node=boot.node)  # no version conflict
    assert app.repository.get(iid) == app.view.instances[iid] and app.view.instances[iid].status == "PAUSED"


def test_listeners_hear_every_save_once_it_is_done_and_cannot_undo_it(app, caplog):
    heard: list[list[str]] = []

    def broken(events):
        raise RuntimeError("a listener that fails")

    app.saved_listeners.extend([lambda events: heard.append([type(e).__qualname__ for e in events]), broken])
    answer = app.negotiation.propose("alice", proposal(), NOW)  # one save
    assert heard == [["Reservation.Requested", "Reservation.Offered"]]
    app.begin_batch()  # a group commit: heard once, at its end
    app.negotiation.respond(answer.reservation_id, "alice", "CONFIRM", NOW)
    app.negotiation.propose("bob", proposal(), NOW)
    assert len(heard) == 1
    app.end_batch()
    assert heard[1][0] == "Reservation.Confirmed" and "Instance.Planned" in heard[1]
    assert heard[1][-2:] == ["Reservation.Requested", "Reservation.Offered"]
    assert app.read.reservation(answer.reservation_id, "alice").status == "CONFIRMED"  # saved all the same
    assert "a listener of saved events failed" in caplog.text
