"""What goes wrong in a running service, and how it recovers: a store write that fails while a
timer settles, a host that cannot be reached, a stop that never happened, a restart with VMs
left behind. Real actors, SQLite store and libvirt test-driver hosts, manual clock."""

from __future__ import annotations

import pytest

from pex.actors.calls import ask_sync
from pex.domain.clock import HOUR, MINUTE, SECOND
from pex.domain.orders import domain_name
from pex.drivers.base import DriverError
from pex.drivers.libvirt import LibvirtDriver
from tests.support.service import T0, Service, book, eventually


def statuses(service: Service, userid: str) -> list[str]:
    return sorted(i.status for i in service.instances(userid))


def settle_fails_once_at_the_start(service: Service, monkeypatch) -> None:
    """One VM booked for T0 + 1 h, and the store's first save at its start fails ("disk full")."""
    book(service, "alice", start=T0 + HOUR, duration=HOUR)
    original, failures = service.app.save, []

    def failing_once(*objs):
        if not failures:
            failures.append(1)
            raise OSError("disk full")
        return original(*objs)

    monkeypatch.setattr(service.app, "save", failing_once)
    service.advance_to(T0 + HOUR)
    eventually(lambda: failures, what="the failing save")


def test_a_settle_whose_save_fails_is_retried_and_the_vms_still_start(tmp_path, clock, monkeypatch):
    service = Service(tmp_path, clock)
    try:
        settle_fails_once_at_the_start(service, monkeypatch)
        assert statuses(service, "alice") == ["PENDING"]
        pending = eventually(lambda: ask_sync(service.system.event_queue, lambda queue: queue.pending()), what="a new timer")
        assert T0 + HOUR < pending["settle"] <= T0 + HOUR + SECOND, "retried a second later, not lost"
        service.advance_to(T0 + HOUR + SECOND)
        eventually(lambda: statuses(service, "alice") == ["RUNNING"], what="the retried start")
    finally:
        service.stop()


def test_a_failed_settle_is_retried_on_time_under_steady_traffic(tmp_path, clock, monkeypatch):
    """Every batch re-arms the timer: the retry's instant is fixed when the settle fails, or
    steady traffic would keep pushing it a second further away."""
    service = Service(tmp_path, clock)
    try:
        settle_fails_once_at_the_start(service, monkeypatch)
        retry = eventually(lambda: ask_sync(service.system.event_queue, lambda queue: queue.pending()).get("settle"))
        for tick in range(1, 4):  # a request every 400 ms meanwhile
            clock.set(T0 + HOUR + tick * 400)
            service.ask(lambda a: a.app.read.reservations("alice"))
            pending = ask_sync(service.system.event_queue, lambda queue: queue.pending())
            assert pending.get("settle", retry) <= retry, "the retry was pushed back"
        service.fire()
        eventually(lambda: statuses(service, "alice") == ["RUNNING"], what="the retried start")
    finally:
        service.stop()


def test_an_unreachable_host_fails_only_its_own_orders(tmp_path, clock, hosts):
    hosts.unreachable.add("sim01")
    service = Service(tmp_path, clock, connect=hosts.connect)
    try:
        book(service, "alice", start=T0 + MINUTE, duration=HOUR, count=8)  # 4 on each host
        service.advance_to(T0 + MINUTE)
        eventually(lambda: statuses(service, "alice").count("RUNNING") == 4, what="sim02's VMs running")
        eventually(lambda: statuses(service, "alice").count("CRASHED") == 4, what="sim01's VMs recorded failed")
        failed = [i for i in service.instances("alice") if i.status == "CRASHED"]
        assert all(i.node == "sim01" and "could not boot on sim01" in i.reason for i in failed)
        with pytest.raises(DriverError):
            service.operate(failed[0].id, "alice", "start")  # answered, not left hanging
    finally:
        service.stop()


def test_a_vm_whose_delete_failed_is_removed_at_the_next_start(tmp_path, clock, hosts):
    first = Service(tmp_path, clock, connect=hosts.connect)
    try:
        rid = book(first, "alice", start=T0 + MINUTE, duration=HOUR, count=1)
        first.advance_to(T0 + MINUTE)
        eventually(lambda: statuses(first, "alice") == ["RUNNING"])
        hosts.failing_undefine = 1
        first.manage(lambda m: m.cancel(rid, "alice"))
        eventually(lambda: statuses(first, "alice") == ["DELETED"])
        (vm,) = first.instances("alice")
        assert domain_name(vm.id) in hosts.domains(), "the host kept the VM: the delete failed"
    finally:
        first.stop()
    second = Service(tmp_path, clock, connect=hosts.connect)
    try:
        eventually(lambda: hosts.domains() == {}, what="the stray VM removed by the restart")
        assert statuses(second, "alice") == ["DELETED"]
    finally:
        second.stop()


def ran_one_vm_then_stopped(tmp_path, clock, hosts) -> str:
    """A service that booked one VM for an hour, saw it RUNNING, and stopped; its reservation."""
    first = Service(tmp_path, clock, connect=hosts.connect)
    try:
        rid = book(first, "alice", start=T0 + MINUTE, duration=HOUR)
        first.advance_to(T0 + MINUTE)
        eventually(lambda: statuses(first, "alice") == ["RUNNING"])
    finally:
        first.stop()
    return rid


def test_a_restart_after_the_end_does_not_boot_what_has_ended(tmp_path, clock, hosts, monkeypatch):
    rid = ran_one_vm_then_stopped(tmp_path, clock, hosts)
    for driver in hosts.drivers.values():  # the hosts lost their VMs while openpex was down
        for name in driver.domains():
            driver.undefine(name)
    booted = []
    original_start, original_boot = LibvirtDriver.start, LibvirtDriver.boot

    def watch_start(self, name):
        booted.append(name)
        return original_start(self, name)

    def watch_boot(self, spec):
        booted.append(spec.name)
        return original_boot(self, spec)

    monkeypatch.setattr(LibvirtDriver, "start", watch_start)
    monkeypatch.setattr(LibvirtDriver, "boot", watch_boot)
    clock.set(T0 + 2 * HOUR)
    second = Service(tmp_path, clock, connect=hosts.connect)
    try:
        eventually(lambda: second.ask(lambda a: a.app.read.reservation(rid, "alice")).status == "EXPIRED")
        assert booted == [] and hosts.domains() == {}
    finally:
        second.stop()


def test_after_a_restart_vms_that_kept_running_are_left_alone_and_one_that_died_is_recorded(tmp_path, clock, hosts):
    first = Service(tmp_path, clock, connect=hosts.connect)
    try:
        book(first, "alice", start=T0 + MINUTE, duration=HOUR, count=2)
        first.advance_to(T0 + MINUTE)
        eventually(lambda: statuses(first, "alice") == ["RUNNING", "RUNNING"])
        kept, died = first.instances("alice")
    finally:
        first.stop()
    hosts.host(died.node).destroy(domain_name(died.id))  # its QEMU was killed while openpex was down
    second = Service(tmp_path, clock, connect=hosts.connect)
    try:
        eventually(lambda: {i.id: i.status for i in second.instances("alice")}
                   == {kept.id: "RUNNING", died.id: "CRASHED"}, what="the dead VM recorded")
        assert hosts.domains() == {domain_name(kept.id): "RUNNING", domain_name(died.id): "CRASHED"}
    finally:
        second.stop()


def test_a_vm_that_outlived_its_reservation_while_openpex_was_down_is_stopped_at_the_restart(tmp_path, clock, hosts):
    rid = ran_one_vm_then_stopped(tmp_path, clock, hosts)
    assert list(hosts.domains().values()) == ["RUNNING"], "the VM runs on while openpex is down"
    clock.set(T0 + 2 * HOUR)
    second = Service(tmp_path, clock, connect=hosts.connect)
    try:
        eventually(lambda: hosts.domains() == {}, what="the VM stopped and removed at the restart")
        # The node removes the VM first and then reports it stopped: the record follows shortly.
        eventually(lambda: statuses(second, "alice") == ["HALTED"], what="the stop recorded")
        assert second.ask(lambda a: a.app.read.reservation(rid, "alice")).status == "EXPIRED"
    finally:
        second.stop()


def test_a_stop_cut_short_by_a_restart_is_carried_on(tmp_path, clock, hosts, monkeypatch):
    first = Service(tmp_path, clock, connect=hosts.connect, grace=600.0)
    try:
        book(first, "alice", start=T0 + MINUTE, duration=HOUR)
        first.advance_to(T0 + MINUTE)
        eventually(lambda: statuses(first, "alice") == ["RUNNING"])
        (vm,) = first.instances("alice")
        monkeypatch.setattr(LibvirtDriver, "shutdown", lambda self, name: None)  # the guest ignores it
        first.operate(vm.id, "alice", "stop")
        assert first.instances("alice")[0].reason == "shutting down"
    finally:
        first.stop()
    monkeypatch.undo()  # after the restart the guest listens
    second = Service(tmp_path, clock, connect=hosts.connect)
    try:
        eventually(lambda: second.instances("alice")[0].status == "HALTED", what="the stop carried on")
        assert hosts.domains() == {domain_name(vm.id): "HALTED"}
    finally:
        second.stop()
