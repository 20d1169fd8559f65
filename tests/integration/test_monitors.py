"""The NodeMonitor and the VMMonitor over real actors, store and libvirt test-driver hosts:
a host that stops answering is DOWN and its bookings move; VMs that change behind OpenPEX's
back are recorded; VMs that must not run are removed. Polls are driven by hand."""

from __future__ import annotations


import pytest

from pex.http.wire import proposal_in
from pex.domain.clock import HOUR, MINUTE
from pex.domain.orders import domain_name
from pex.domain.sizes import Resources
from tests.support.service import T0, Service, book, eventually


@pytest.fixture
def service(tmp_path, clock, hosts):
    running = Service(tmp_path, clock, nodes=3, connect=hosts.connect)
    yield running
    running.stop()


def by_node(service: Service, userid: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for instance in service.instances(userid):
        found.setdefault(instance.node, []).append(instance.status)
    return found


def node_status(service: Service, name: str) -> str:
    return service.ask(lambda a: a.node(name)).status


def test_a_host_that_fails_two_polls_is_down_and_comes_back_up_when_it_answers(service, hosts):
    service.poll_nodes()
    service.poll_nodes()
    assert node_status(service, "sim02") == "UP"
    hosts.unreachable.add("sim02")
    service.poll_nodes()
    assert node_status(service, "sim02") == "UP", "one failed poll is not enough"
    service.poll_nodes()
    eventually(lambda: node_status(service, "sim02") == "DOWN", what="DOWN after two failed polls")
    hosts.unreachable.clear()
    service.poll_nodes()
    eventually(lambda: node_status(service, "sim02") == "UP", what="UP once it answers")
    loads = service.system.node_monitor.proxy().loads().get()
    assert loads["sim02"].cpus == 4
    shown = eventually(lambda: service.ask(lambda a: a.node("sim02")).load, what="the load in the node's view")
    assert shown.running == 0 and shown.used_cpus == 0


def test_a_lost_hosts_running_vms_restart_elsewhere_and_its_future_bookings_move(service, hosts):
    running = book(service, "alice", start=T0 + MINUTE, duration=4 * HOUR, count=4)  # fills one host
    later = book(service, "bob", start=T0 + 2 * HOUR, duration=HOUR, count=4)
    service.advance_to(T0 + MINUTE)
    eventually(lambda: sorted(s for v in by_node(service, "alice").values() for s in v) == ["RUNNING"] * 4)
    (lost,) = by_node(service, "alice")
    hosts.unreachable.add(lost)
    service.poll_nodes()
    service.poll_nodes()
    eventually(lambda: node_status(service, lost) == "DOWN")
    eventually(lambda: lost not in by_node(service, "alice")
               and all(s == ["RUNNING"] * 4 for s in by_node(service, "alice").values()),
               what="alice's VMs restarted on another host")
    assert service.ask(lambda a: a.app.read.reservation(running, "alice")).status == "ACTIVATED"
    assert lost not in by_node(service, "bob") or service.ask(lambda a: a.app.read.reservation(later, "bob")).status == "DEGRADED"
    # Everything moved fits: three hosts of 4 CPUs, one lost, 4 + 4 instances at different times.
    assert service.ask(lambda a: a.app.read.reservation(later, "bob")).status == "ACTIVATED"
    assert service.app.capacity.within_capacity()
    running_on = {d for d, state in hosts.domains().items() if state == "RUNNING"}
    assert {domain_name(i.id) for i in service.instances("alice")} == running_on


def lost_the_full_host(service, hosts) -> tuple[str, str]:
    """Six VMs booked on two hosts of four (4 + 2), and the full host lost: the reservation
    and that host."""
    rid = book(service, "alice", start=T0 + HOUR, duration=HOUR, count=6)
    (full,) = [n for n, s in by_node(service, "alice").items() if len(s) == 4]
    hosts.unreachable.add(full)
    service.poll_nodes()
    service.poll_nodes()
    return rid, full


def test_what_cannot_be_placed_after_a_loss_degrades_the_reservation_with_a_reason(tmp_path, clock, hosts):
    service = Service(tmp_path, clock, nodes=2, node_spec=Resources(4, 8192, 100), connect=hosts.connect)
    try:
        rid, full = lost_the_full_host(service, hosts)
        reservation = eventually(lambda: (r := service.ask(lambda a: a.app.read.reservation(rid, "alice"))).status == "DEGRADED" and r,
                                 what="the reservation degraded")
        assert reservation.reason == f"node {full} was lost and 2 instances could not be placed on another node"
        placement = by_node(service, "alice")
        assert full not in placement and placement[""] == ["PENDING", "PENDING"], "two have no node at all"
        stranded = [i for i in service.instances("alice") if not i.node]
        assert {i.reason for i in stranded} == {f"node {full} was lost and no other node has room for it"}
        assert sum(len(v) for n, v in placement.items() if n) == 4
        assert service.app.capacity.within_capacity()
    finally:
        service.stop()


def test_the_vm_monitor_records_what_happened_behind_openpexs_back(service, hosts):
    book(service, "alice", start=T0 + MINUTE, duration=HOUR, count=3)
    service.advance_to(T0 + MINUTE)
    eventually(lambda: sorted(i.status for i in service.instances("alice")) == ["RUNNING"] * 3)
    halted, destroyed, vanished = service.instances("alice")
    host = lambda vm: hosts.host(vm.node)  # noqa: E731
    host(halted).shutdown(domain_name(halted.id))  # powered off from inside
    host(destroyed).destroy(domain_name(destroyed.id))  # virsh destroy
    host(vanished).undefine(domain_name(vanished.id))  # gone altogether
    service.sweep_vms()

    def recorded():
        return {i.id: (i.status, i.reason) for i in service.instances("alice")}

    eventually(lambda: recorded()[halted.id][0] == "HALTED" and recorded()[destroyed.id][0] == "CRASHED"
               and recorded()[vanished.id][0] == "CRASHED", what="all three recorded")
    assert recorded()[halted.id] == ("HALTED", "powered off from inside the guest")
    assert recorded()[destroyed.id] == ("CRASHED", "stopped from outside OpenPEX (crashed or destroyed)")
    # Removing a running VM forces it off first: libvirt's event may be judged before it is gone.
    assert recorded()[vanished.id] in (("CRASHED", "its VM vanished from the host"),
                                            ("CRASHED", "stopped from outside OpenPEX (crashed or destroyed)"))


def test_the_vm_monitor_removes_a_vm_that_runs_past_its_reservation(service, hosts):
    rid = book(service, "alice", start=T0 + MINUTE, duration=HOUR)
    service.advance_to(T0 + MINUTE)
    eventually(lambda: [i.status for i in service.instances("alice")] == ["RUNNING"])
    (vm,) = service.instances("alice")
    service.manage(lambda m: m.cancel(rid, "alice"))
    eventually(lambda: hosts.domains() == {})
    # Someone starts it again by hand on the host.
    from pex.drivers.base import NoSuchVM, VMSpec

    host = hosts.host(vm.node)
    host.define(VMSpec(domain_name(vm.id), 1, 768, 10))
    try:
        host.start(domain_name(vm.id))
    except NoSuchVM:  # libvirt's "defined" event woke the node, which removed it before it started
        pass
    service.sweep_vms()
    eventually(lambda: hosts.domains() == {}, what="the VM removed by the monitor")


def test_libvirt_events_get_a_vm_recorded_without_waiting_for_the_next_sweep(service, hosts):
    book(service, "alice", start=T0 + MINUTE, duration=HOUR)
    service.advance_to(T0 + MINUTE)
    eventually(lambda: [i.status for i in service.instances("alice")] == ["RUNNING"])
    (vm,) = service.instances("alice")
    hosts.host(vm.node).destroy(domain_name(vm.id))  # no sweep follows: the event must do
    eventually(lambda: service.instances("alice")[0].status == "CRASHED", what="the event-driven record")


def test_libvirt_events_follow_a_vm_stopped_and_started_again_behind_openpexs_back(service, hosts):
    """The second event says the VM runs, as this node last reported it before it was stopped:
    it must still be recorded, since the record has said CRASHED since."""
    book(service, "alice", start=T0 + MINUTE, duration=HOUR)
    service.advance_to(T0 + MINUTE)
    eventually(lambda: [i.status for i in service.instances("alice")] == ["RUNNING"])
    (vm,) = service.instances("alice")
    host = hosts.host(vm.node)
    host.destroy(domain_name(vm.id))
    eventually(lambda: service.instances("alice")[0].status == "CRASHED", what="the stop recorded")
    host.start(domain_name(vm.id))  # no sweep follows: the events must do
    eventually(lambda: service.instances("alice")[0].status == "RUNNING", what="the start recorded")


def test_open_offers_on_a_lost_host_are_withdrawn_with_the_reason(service, hosts):
    answer = service.ask(lambda a: a.propose("alice", proposal_in({"type": "SMALL", "template": "debian-12", "numInstancesFixed": 12,
                                          "startTime": T0 + HOUR, "duration": HOUR})))  # all three hosts
    assert answer.reply == "ACCEPT"
    rid = answer.reservation_id
    hosts.unreachable.add("sim03")
    service.poll_nodes()
    service.poll_nodes()
    reservation = eventually(lambda: (r := service.ask(lambda a: a.app.read.reservation(rid, "alice"))).status == "REJECTED" and r)
    assert reservation.reason == "node sim03 was lost after this offer was made; send the proposal again"
    assert service.app.capacity.held(rid) is None


def test_instances_without_room_never_boot_even_when_their_host_returns(tmp_path, clock, hosts):
    service = Service(tmp_path, clock, nodes=2, node_spec=Resources(4, 8192, 100), connect=hosts.connect)
    try:
        rid, full = lost_the_full_host(service, hosts)
        eventually(lambda: service.ask(lambda a: a.app.read.reservation(rid, "alice")).status == "DEGRADED")
        hosts.unreachable.clear()
        service.poll_nodes()
        eventually(lambda: node_status(service, full) == "UP")
        book(service, "carol", start=T0 + HOUR, duration=HOUR, count=4)  # the returned host, all of it
        service.advance_to(T0 + HOUR)
        eventually(lambda: by_node(service, "carol") and all(s == "RUNNING" for v in by_node(service, "carol").values()
                                                             for s in v), what="carol's VMs running")
        eventually(lambda: sorted(s for n, v in by_node(service, "alice").items() if n for s in v) == ["RUNNING"] * 4)
        per_host = {name: len(hosts.host(name).domains()) for name in ("sim01", "sim02")}
        assert per_host == {"sim01": 4, "sim02": 4}, "no host runs more than its 4 CPUs"
        assert by_node(service, "alice")[""] == ["PENDING", "PENDING"]
        stranded = next(i for i in service.instances("alice") if not i.node)
        deleted = service.operate(stranded.id, "alice", "delete")  # no VM anywhere: answered at once
        assert (deleted.id, deleted.status) == (stranded.id, "DELETED")
    finally:
        service.stop()


def test_a_degraded_reservation_can_still_be_activated_and_boots_what_was_placed(tmp_path, clock, hosts):
    service = Service(tmp_path, clock, nodes=2, node_spec=Resources(4, 8192, 100), connect=hosts.connect)
    try:
        rid = book(service, "alice", start=T0 + HOUR, duration=HOUR, count=6, activate=False)
        (full,) = [n for n, s in by_node(service, "alice").items() if len(s) == 4]
        hosts.unreachable.add(full)
        service.poll_nodes()
        service.poll_nodes()
        eventually(lambda: service.ask(lambda a: a.app.read.reservation(rid, "alice")).status == "DEGRADED")
        assert service.ask(lambda a: a.app.lifecycle.activate(rid, "alice")).status == "DEGRADED"  # activated, still degraded
        service.advance_to(T0 + HOUR)
        eventually(lambda: sorted(s for n, v in by_node(service, "alice").items() if n for s in v) == ["RUNNING"] * 4)
    finally:
        service.stop()


def test_after_a_loss_running_instances_get_the_room_first_and_stopped_ones_stay_stopped(tmp_path, clock, hosts):
    service = Service(tmp_path, clock, nodes=2, node_spec=Resources(2, 8192, 100), connect=hosts.connect)
    try:
        book(service, "alice", start=T0 + MINUTE, duration=4 * HOUR, count=2)  # fills one host
        book(service, "bob", start=T0 + MINUTE, duration=4 * HOUR, count=1)  # one CPU left on the other
        service.advance_to(T0 + MINUTE)
        eventually(lambda: [s for v in by_node(service, "alice").values() for s in v] == ["RUNNING"] * 2)
        (lost,) = by_node(service, "alice")
        first, second = service.instances("alice")
        service.operate(first.id, "alice", "stop")  # stored first, stopped by its user
        hosts.unreachable.add(lost)
        service.poll_nodes()
        service.poll_nodes()

        def status(vm):
            return next(i for i in service.instances("alice") if i.id == vm.id)

        eventually(lambda: status(second).status == "RUNNING" and status(second).node != lost,
                   what="the running one restarted elsewhere")
        assert status(first).status == "HALTED" and status(first).node == ""
    finally:
        service.stop()
