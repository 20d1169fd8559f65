"""The real actors over a real SQLite store and libvirt test-driver hosts, on a manual clock:
reservations start and end, offers lapse, users operate their VMs, and timers survive a
restart, all without real waiting."""

from __future__ import annotations

import pytest

from pex.http.wire import proposal_in
from pex.domain.clock import HOUR, MINUTE, SECOND
from pex.domain.errors import NotFound, ProtocolViolation
from pex.domain.orders import domain_name
from pex.drivers.libvirt import LibvirtDriver
from tests.support.service import T0, Service, book, eventually


@pytest.fixture(params=["sqlite", "postgres"])
def database(request):
    """The service's --database: its SQLite default, or a URL of the real PostgreSQL server."""
    if request.param == "sqlite":
        return None
    request.applymarker(pytest.mark.postgres)
    server = request.getfixturevalue("postgres_server")
    server.reset()
    return f"postgresql://{server.user}:{server.password}@{server.host}:{server.port}/{server.dbname}"


@pytest.fixture
def service(tmp_path, clock, database):
    running = Service(tmp_path, clock, database=database)
    yield running
    running.stop()


def statuses(service: Service, userid: str) -> list[str]:
    return sorted(i.status for i in service.instances(userid))


def test_an_activated_reservation_boots_its_vms_at_its_start_and_stops_them_at_its_end(service):
    rid = book(service, "alice", start=T0 + HOUR, duration=2 * HOUR, count=3)
    vms = [i.id for i in service.instances("alice")]
    assert statuses(service, "alice") == ["PENDING"] * 3

    service.advance_to(T0 + HOUR - SECOND)
    assert service.all_domains() == {}, "nothing boots before the start"

    service.advance_to(T0 + HOUR)
    eventually(lambda: statuses(service, "alice") == ["RUNNING"] * 3, what="all three VMs running")
    assert {domain_name(v) for v in vms} == {d for d, state in service.all_domains().items() if state == "RUNNING"}

    service.advance_to(T0 + 3 * HOUR)
    eventually(lambda: statuses(service, "alice") == ["HALTED"] * 3, what="all three VMs halted")
    assert service.ask(lambda a: a.app.read.reservation(rid, "alice")).status == "EXPIRED"
    assert service.all_domains() == {}, "an ended reservation leaves nothing on its hosts"
    assert service.app.capacity.held(rid) is None


def test_an_offer_lapses_when_its_hold_runs_out_and_frees_its_capacity(service):
    answer = service.ask(lambda a: a.propose("alice", proposal_in({"type": "SMALL", "template": "debian-12", "numInstancesFixed": 8,
                                          "startTime": T0 + HOUR, "duration": HOUR})))
    assert answer.reply == "ACCEPT"
    rid = answer.reservation_id
    # Both 4-CPU hosts are held for alice, so bob is countered to after her slot.
    other = service.ask(lambda a: a.propose("bob", proposal_in({"type": "SMALL", "template": "debian-12", "numInstancesFixed": 1,
                                       "startTime": T0 + HOUR, "duration": HOUR})))
    assert other.reply == "COUNTER" and other.terms.start == T0 + 2 * HOUR

    service.advance_to(T0 + 5 * MINUTE)
    eventually(lambda: service.ask(lambda a: a.app.read.reservation(rid, "alice")).status == "OFFER_EXPIRED", what="the lapse")
    with pytest.raises(ProtocolViolation):
        service.ask(lambda a: a.respond(rid, "alice", "CONFIRM"))
    again = service.ask(lambda a: a.propose("carol", proposal_in({"type": "SMALL", "template": "debian-12", "numInstancesFixed": 1,
                                         "startTime": T0 + HOUR, "duration": HOUR})))
    assert again.reply == "ACCEPT"


def test_activating_after_the_start_has_passed_boots_at_once(service, clock):
    rid = book(service, "alice", start=T0 + MINUTE, duration=HOUR, activate=False)
    service.advance_to(T0 + 10 * MINUTE)
    assert statuses(service, "alice") == ["PENDING"], "a confirmed but not activated reservation does not boot"
    service.ask(lambda a: a.app.lifecycle.activate(rid, "alice"))
    eventually(lambda: statuses(service, "alice") == ["RUNNING"], what="the late boot")


def test_cancelling_a_running_reservation_removes_its_vms_and_frees_its_capacity(service):
    rid = book(service, "alice", start=T0 + MINUTE, duration=HOUR, count=2)
    service.advance_to(T0 + MINUTE)
    eventually(lambda: statuses(service, "alice") == ["RUNNING"] * 2)
    assert service.manage(lambda m: m.cancel(rid, "alice")).status == "CANCELLED"
    eventually(lambda: service.all_domains() == {}, what="the VMs removed")
    assert service.instances("alice") and all(i.status == "DELETED" for i in service.instances("alice"))
    assert service.app.capacity.held(rid) is None


def test_users_stop_start_reboot_and_delete_only_their_own_instances(service):
    book(service, "alice", start=T0 + MINUTE, duration=HOUR, count=2)
    service.advance_to(T0 + MINUTE)
    eventually(lambda: statuses(service, "alice") == ["RUNNING"] * 2)
    first, second = (i.id for i in service.instances("alice"))

    assert service.operate(first, "alice", "stop").status == "HALTED"
    with pytest.raises(ProtocolViolation):
        service.operate(first, "alice", "reboot")  # not running
    assert service.operate(first, "alice", "start").status == "RUNNING"
    assert service.operate(first, "alice", "reboot").status == "RUNNING"
    with pytest.raises(NotFound):
        service.operate(first, "mallory", "stop")
    with pytest.raises(NotFound):
        service.ask(lambda a: a.app.read.instance(first, "mallory"))
    assert service.ask(lambda a: a.app.read.instance(first, "admin", is_admin=True)).id == first

    assert service.operate(second, "alice", "delete").status == "DELETED"
    assert domain_name(second) not in service.all_domains()
    assert domain_name(first) in service.all_domains()
    with pytest.raises(ProtocolViolation):
        service.operate(second, "alice", "start")


def test_instances_cannot_be_operated_before_their_reservation_starts(service):
    book(service, "alice", start=T0 + HOUR, duration=HOUR)
    (vm,) = service.instances("alice")
    with pytest.raises(ProtocolViolation, match="only while its reservation runs"):
        service.operate(vm.id, "alice", "start")
    assert service.all_domains() == {}


def test_timers_are_rearmed_from_the_store_after_a_restart_and_missed_ones_fire_at_once(tmp_path, clock, database):
    first = Service(tmp_path, clock, database=database)
    try:
        started = book(first, "alice", start=T0 + HOUR, duration=HOUR)
        ends_while_down = book(first, "bob", start=T0 + MINUTE, duration=30 * MINUTE, count=1)
        first.advance_to(T0 + MINUTE)
        eventually(lambda: statuses(first, "bob") == ["RUNNING"])
        held = first.ask(lambda a: a.propose("carol", proposal_in({"type": "SMALL", "template": "debian-12", "numInstancesFixed": 1,
                                          "startTime": T0 + 2 * HOUR, "duration": HOUR}))).reservation_id
    finally:
        first.stop()  # as good as a crash for timers: they lived only in memory

    clock.set(T0 + HOUR + 10 * SECOND)  # alice's start, bob's end and carol's hold passed while down
    second = Service(tmp_path, clock, database=database)
    try:
        eventually(lambda: statuses(second, "alice") == ["RUNNING"], what="alice's VM booted after the restart")
        assert second.ask(lambda a: a.app.read.reservation(ends_while_down, "bob")).status == "EXPIRED"
        assert second.ask(lambda a: a.app.read.reservation(held, "carol")).status == "OFFER_EXPIRED"
        assert second.ask(lambda a: a.app.read.reservation(started, "alice")).status == "ACTIVATED"
        # The simulated hosts lost their VMs with the process; what should run was booted again.
        assert set(second.all_domains().values()) == {"RUNNING"}
        assert len(second.all_domains()) == 1
        pending = second.system.event_queue.proxy().pending().get()
        assert pending == {"settle": T0 + 2 * HOUR}, "the next timer is alice's end"
    finally:
        second.stop()


class StubbornGuest(LibvirtDriver):
    """A real test-driver host whose guests ignore the ACPI button (as a hung guest does)."""

    def shutdown(self, name: str) -> None:
        if self.state(name).value not in ("RUNNING", "PAUSED", "SUSPENDED"):
            super().shutdown(name)


def test_a_guest_that_ignores_shutdown_is_forced_off_after_the_grace_period(tmp_path, clock):
    service = Service(tmp_path, clock, grace=30.0, connect=StubbornGuest)
    try:
        rid = book(service, "alice", start=T0 + MINUTE, duration=HOUR)
        service.advance_to(T0 + MINUTE)
        eventually(lambda: statuses(service, "alice") == ["RUNNING"])
        service.advance_to(T0 + MINUTE + HOUR)
        assert eventually(lambda: service.ask(lambda a: a.app.read.reservation(rid, "alice")).status == "EXPIRED")
        eventually(lambda: service.instances("alice")[0].reason == "shutting down", what="the shutdown sent")
        assert set(service.all_domains().values()) == {"RUNNING"}, "still in its grace period"

        service.advance_to(T0 + MINUTE + HOUR + 31 * SECOND)
        service.advance_to(T0 + MINUTE + HOUR + 32 * SECOND)  # the next check after the grace period
        eventually(lambda: statuses(service, "alice") == ["HALTED"], what="the forced stop")
        assert service.instances("alice")[0].reason == "forced off after the grace period"
        assert service.all_domains() == {}
    finally:
        service.stop()


def test_the_next_reservation_on_a_node_forces_off_vms_still_in_their_grace_period(tmp_path, clock):
    one_host = Service(tmp_path, clock, nodes=1, grace=600.0, connect=StubbornGuest)
    try:
        book(one_host, "alice", start=T0 + MINUTE, duration=HOUR, count=4)
        book(one_host, "bob", start=T0 + MINUTE + HOUR, duration=HOUR, count=4)
        one_host.advance_to(T0 + MINUTE)
        eventually(lambda: statuses(one_host, "alice") == ["RUNNING"] * 4)
        one_host.advance_to(T0 + MINUTE + HOUR)
        eventually(lambda: statuses(one_host, "bob") == ["RUNNING"] * 4, what="bob's VMs booted")
        assert statuses(one_host, "alice") == ["HALTED"] * 4
        assert {i.reason for i in one_host.instances("alice")} == {"forced off: the next reservation starts"}
        assert len(one_host.all_domains()) == 4, "only bob's VMs are on the host"
    finally:
        one_host.stop()


def test_a_user_stop_that_had_to_be_forced_stays_recorded_as_a_stop(tmp_path, clock):
    service = Service(tmp_path, clock, grace=30.0, connect=StubbornGuest)
    try:
        book(service, "alice", start=T0 + MINUTE, duration=HOUR)
        service.advance_to(T0 + MINUTE)
        eventually(lambda: statuses(service, "alice") == ["RUNNING"])
        (vm,) = service.instances("alice")
        service.operate(vm.id, "alice", "stop")
        service.advance_to(T0 + MINUTE + 31 * SECOND)
        service.advance_to(T0 + MINUTE + 32 * SECOND)
        eventually(lambda: service.instances("alice")[0].reason == "forced off after the grace period")
        service.sweep_vms()  # the host now says the VM was destroyed: that was us
        service.sweep_vms()
        assert service.instances("alice")[0].status == "HALTED"
    finally:
        service.stop()
