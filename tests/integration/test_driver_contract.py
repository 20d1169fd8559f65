"""The driver contract: every hypervisor driver behaves the same through the Driver interface.

TestDriverContract runs once per driver kind (the `host` fixture); a new kind is added by
extending HOST_KINDS and `host`. The other classes cover what is particular to simulated
hosts, to connecting, and to the domain XML the libvirt driver writes.
"""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pex.drivers.base import (
    ALL_CAPABILITIES,
    Driver,
    DriverError,
    NodeUnreachable,
    NoSuchVM,
    VMSpec,
    VMState,
)
from pex.drivers.libvirt import LibvirtDriver, domain_xml
from pex.drivers.simulated import SIMULATED_MODEL, host_path, simulated_uri, write_host

HOST_KINDS = ["simulated"]

# Generous because a real guest takes seconds to act on ACPI; the test driver acts at once.
SETTLE_SECONDS = 30.0


@dataclass(frozen=True)
class HostUnderTest:
    """A host a driver can be opened on, and what the tests may expect of it."""

    uri: str
    cpus: int
    memory_mb: int
    template: dict[str, Any] = field(default_factory=dict)


def eventually(check: Callable[[], bool], timeout: float = SETTLE_SECONDS) -> bool:
    """Poll check until it holds or timeout passes; returns its last result."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@pytest.fixture(params=HOST_KINDS)
def host(request: pytest.FixtureRequest, tmp_path: Path) -> HostUnderTest:
    if request.param == "simulated":
        uri = write_host(tmp_path / "hosts" / "h1.xml", "h1", cpus=4, memory_mb=8192)
        return HostUnderTest(uri=uri, cpus=4, memory_mb=8192, template={"kind": "simulated"})
    raise AssertionError(f"unknown host kind {request.param}")


@pytest.fixture
def driver(host: HostUnderTest) -> Iterator[Driver]:
    d = LibvirtDriver(host.uri)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def make_spec(driver: Driver, host: HostUnderTest) -> Iterator[Callable[[], VMSpec]]:
    """Makes small VM specs with fresh names, and undefines them after the test."""
    made: list[str] = []

    def make() -> VMSpec:
        name = f"pex-contract-{uuid.uuid4().hex[:10]}"
        made.append(name)
        return VMSpec(name=name, cpus=1, memory_mb=64, disk_gb=1, template=host.template)

    yield make
    for name in made:
        driver.undefine(name)


@pytest.fixture
def spec(make_spec: Callable[[], VMSpec]) -> VMSpec:
    return make_spec()


@pytest.fixture
def running(driver: Driver, spec: VMSpec) -> VMSpec:
    driver.define(spec)
    driver.start(spec.name)
    return spec


class TestDriverContract:
    def test_node_info_reports_the_host_size(self, driver: Driver, host: HostUnderTest) -> None:
        info = driver.node_info()
        assert (info.cpus, info.memory_mb) == (host.cpus, host.memory_mb)
        assert isinstance(info.model, str) and info.model

    def test_node_info_counts_the_running_vms(self, driver: Driver, spec: VMSpec) -> None:
        before = driver.node_info().running
        driver.define(spec)
        assert driver.node_info().running == before
        driver.start(spec.name)
        assert driver.node_info().running == before + 1
        driver.destroy(spec.name)
        assert driver.node_info().running == before

    def test_capabilities_are_named_from_the_known_set(self, driver: Driver) -> None:
        assert driver.capabilities <= ALL_CAPABILITIES
        assert {"define", "start", "destroy", "undefine"} <= driver.capabilities

    def test_a_defined_vm_is_halted(self, driver: Driver, spec: VMSpec) -> None:
        driver.define(spec)
        assert driver.state(spec.name) is VMState.HALTED

    def test_defining_a_name_twice_is_not_an_error_and_keeps_one_vm(
        self, driver: Driver, spec: VMSpec
    ) -> None:
        driver.define(spec)
        driver.define(spec)
        assert driver.state(spec.name) is VMState.HALTED
        assert list(driver.domains()).count(spec.name) == 1

    def test_defining_a_running_vm_again_leaves_it_running(self, driver: Driver, running: VMSpec) -> None:
        driver.define(running)
        assert driver.state(running.name) is VMState.RUNNING

    def test_a_started_vm_is_running(self, driver: Driver, running: VMSpec) -> None:
        assert driver.state(running.name) is VMState.RUNNING

    def test_starting_a_running_vm_is_not_an_error(self, driver: Driver, running: VMSpec) -> None:
        driver.start(running.name)
        assert driver.state(running.name) is VMState.RUNNING

    def test_suspend_pauses_and_resume_runs_again(self, driver: Driver, running: VMSpec) -> None:
        driver.suspend(running.name)
        assert driver.state(running.name) is VMState.PAUSED
        driver.resume(running.name)
        assert driver.state(running.name) is VMState.RUNNING

    def test_suspending_a_paused_vm_and_resuming_a_running_one_do_nothing(
        self, driver: Driver, running: VMSpec
    ) -> None:
        driver.resume(running.name)
        assert driver.state(running.name) is VMState.RUNNING
        driver.suspend(running.name)
        driver.suspend(running.name)
        assert driver.state(running.name) is VMState.PAUSED

    def test_starting_a_paused_vm_leaves_it_paused(self, driver: Driver, running: VMSpec) -> None:
        driver.suspend(running.name)
        driver.start(running.name)
        assert driver.state(running.name) is VMState.PAUSED

    def test_reboot_keeps_the_vm_running(self, driver: Driver, running: VMSpec) -> None:
        driver.reboot(running.name)
        assert driver.state(running.name) is VMState.RUNNING

    def test_shutdown_halts_the_vm(self, driver: Driver, running: VMSpec) -> None:
        driver.shutdown(running.name)
        assert eventually(lambda: driver.state(running.name) is VMState.HALTED)

    def test_shutting_down_a_halted_vm_does_nothing(self, driver: Driver, spec: VMSpec) -> None:
        driver.define(spec)
        driver.shutdown(spec.name)
        assert driver.state(spec.name) is VMState.HALTED

    def test_destroy_halts_the_vm_at_once(self, driver: Driver, running: VMSpec) -> None:
        driver.destroy(running.name)
        assert driver.state(running.name) is VMState.HALTED

    def test_destroying_a_halted_vm_does_nothing(self, driver: Driver, spec: VMSpec) -> None:
        driver.define(spec)
        driver.destroy(spec.name)
        assert driver.state(spec.name) is VMState.HALTED

    def test_a_halted_vm_can_be_started_again(self, driver: Driver, running: VMSpec) -> None:
        driver.destroy(running.name)
        driver.start(running.name)
        assert driver.state(running.name) is VMState.RUNNING

    @pytest.mark.parametrize("operation", ["suspend", "resume", "reboot"])
    def test_operations_that_need_a_running_vm_fail_on_a_halted_one(
        self, driver: Driver, spec: VMSpec, operation: str
    ) -> None:
        driver.define(spec)
        with pytest.raises(DriverError) as raised:
            getattr(driver, operation)(spec.name)
        assert not isinstance(raised.value, NoSuchVM)
        assert driver.state(spec.name) is VMState.HALTED

    def test_undefine_removes_the_vm(self, driver: Driver, spec: VMSpec) -> None:
        driver.define(spec)
        driver.undefine(spec.name)
        assert driver.state(spec.name) is VMState.MISSING
        assert spec.name not in driver.domains()

    def test_undefining_a_running_vm_destroys_it_first(self, driver: Driver, running: VMSpec) -> None:
        before = driver.node_info().running
        driver.undefine(running.name)
        assert driver.state(running.name) is VMState.MISSING
        assert running.name not in driver.domains()
        assert driver.node_info().running == before - 1

    def test_undefining_an_unknown_name_does_nothing(self, driver: Driver, spec: VMSpec) -> None:
        driver.undefine(spec.name)
        assert driver.state(spec.name) is VMState.MISSING

    def test_an_unknown_name_is_missing(self, driver: Driver, spec: VMSpec) -> None:
        assert driver.state(spec.name) is VMState.MISSING

    @pytest.mark.parametrize("operation", ["start", "shutdown", "destroy", "reboot", "suspend", "resume"])
    def test_operations_on_an_unknown_name_raise_no_such_vm(
        self, driver: Driver, spec: VMSpec, operation: str
    ) -> None:
        with pytest.raises(NoSuchVM) as raised:
            getattr(driver, operation)(spec.name)
        message = str(raised.value)
        assert spec.name in message
        assert "\n" not in message

    def test_domains_lists_every_defined_vm_with_its_state(
        self, driver: Driver, make_spec: Callable[[], VMSpec]
    ) -> None:
        halted, running, paused = make_spec(), make_spec(), make_spec()
        for s in (halted, running, paused):
            driver.define(s)
        driver.start(running.name)
        driver.start(paused.name)
        driver.suspend(paused.name)
        listed = driver.domains()
        assert listed[halted.name] is VMState.HALTED
        assert listed[running.name] is VMState.RUNNING
        assert listed[paused.name] is VMState.PAUSED
        assert all(isinstance(state, VMState) for state in listed.values())

    def test_closing_twice_is_fine_and_a_closed_driver_refuses_work(
        self, host: HostUnderTest, spec: VMSpec
    ) -> None:
        d = LibvirtDriver(host.uri)
        d.close()
        d.close()
        with pytest.raises(DriverError):
            d.state(spec.name)


class TestSimulatedHosts:
    def test_two_drivers_on_the_same_host_file_are_independent_hosts(self, tmp_path: Path) -> None:
        uri = write_host(tmp_path / "h.xml", "h")
        spec = VMSpec(name="only-here", cpus=1, memory_mb=64, disk_gb=1)
        with LibvirtDriver(uri) as one, LibvirtDriver(uri) as other:
            one.define(spec)
            one.start(spec.name)
            assert one.state(spec.name) is VMState.RUNNING
            assert other.state(spec.name) is VMState.MISSING
            assert other.domains() == {}
            assert other.node_info().running == 0

    def test_a_new_host_has_no_domains(self, tmp_path: Path) -> None:
        with LibvirtDriver(write_host(tmp_path / "h.xml", "h")) as d:
            assert d.domains() == {}
            assert d.node_info().running == 0

    def test_the_host_size_comes_back_as_written(self, tmp_path: Path) -> None:
        with LibvirtDriver(write_host(tmp_path / "big.xml", "big", cpus=64, memory_mb=262144)) as d:
            info = d.node_info()
        assert (info.cpus, info.memory_mb, info.model) == (64, 262144, SIMULATED_MODEL)

    def test_the_test_driver_starts_a_vm_bigger_than_the_host(self, tmp_path: Path) -> None:
        # Admission is the project's job: the simulated host does not refuse oversized VMs.
        with LibvirtDriver(write_host(tmp_path / "small.xml", "small", cpus=1, memory_mb=512)) as d:
            huge = VMSpec(name="huge", cpus=8, memory_mb=4096, disk_gb=1)
            d.define(huge)
            d.start(huge.name)
            assert d.state(huge.name) is VMState.RUNNING

    def test_write_host_leaves_an_unchanged_file_alone(self, tmp_path: Path) -> None:
        path = tmp_path / "h.xml"
        first = write_host(path, "h", cpus=2, memory_mb=1024)
        before = path.stat()
        time.sleep(0.01)
        assert write_host(path, "h", cpus=2, memory_mb=1024) == first
        after = path.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    def test_write_host_rewrites_a_file_whose_size_changed(self, tmp_path: Path) -> None:
        path = tmp_path / "h.xml"
        write_host(path, "h", cpus=2, memory_mb=1024)
        uri = write_host(path, "h", cpus=3, memory_mb=2048)
        with LibvirtDriver(uri) as d:
            info = d.node_info()
        assert (info.cpus, info.memory_mb) == (3, 2048)

    def test_hosts_live_under_the_data_dir_and_odd_paths_still_open(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "data dir with spaces %"
        path = host_path(data_dir, "h1")
        assert path == data_dir / "hosts" / "h1.xml"
        uri = write_host(path, "h1", cpus=2, memory_mb=2048)
        assert uri == simulated_uri(data_dir, "h1")
        assert uri.startswith("test:///")
        with LibvirtDriver(uri) as d:
            assert d.node_info().cpus == 2

    @pytest.mark.parametrize("name", ["", "a/b", ".."])
    def test_a_host_name_that_is_not_a_file_name_is_refused(self, tmp_path: Path, name: str) -> None:
        with pytest.raises(ValueError):
            host_path(tmp_path, name)


class TestConnecting:
    def test_a_host_file_that_does_not_exist_is_unreachable(self) -> None:
        with pytest.raises(NodeUnreachable) as raised:
            LibvirtDriver("test:///nonexistent/dir/host.xml")
        assert "\n" not in str(raised.value)

    def test_a_hypervisor_that_is_not_there_is_unreachable(self, tmp_path: Path) -> None:
        # No daemon listens on this socket, so libvirt cannot connect.
        with pytest.raises(NodeUnreachable) as raised:
            LibvirtDriver(f"qemu:///system?socket={tmp_path}/no-such.sock")
        assert "\n" not in str(raised.value)


class TestDomainXml:
    def test_a_simulated_vm_is_a_minimal_test_domain(self) -> None:
        spec = VMSpec(name="a<b&c", cpus=2, memory_mb=512, disk_gb=1, template={"kind": "simulated"})
        dom = ET.fromstring(domain_xml(spec, "test"))
        assert dom.get("type") == "test"
        assert dom.findtext("name") == "a<b&c"
        assert (dom.find("memory").get("unit"), dom.findtext("memory")) == ("KiB", "524288")
        assert dom.findtext("vcpu") == "2"
        assert dom.findtext("os/type") == "hvm"

    def test_a_kernel_template_boots_the_kernel_under_qemu_with_acpi_and_no_nic(self) -> None:
        spec = VMSpec(
            name="tiny",
            cpus=1,
            memory_mb=128,
            disk_gb=1,
            template={
                "kind": "kernel",
                "kernel": "/img/vmlinuz",
                "initrd": "/img/initrd.gz",
                "cmdline": "console=ttyS0 quiet & <x>",
            },
        )
        dom = ET.fromstring(domain_xml(spec, "qemu"))
        assert dom.get("type") == "qemu"
        os_el = dom.find("os")
        assert (os_el.find("type").get("arch"), os_el.find("type").get("machine")) == ("x86_64", "pc")
        assert os_el.findtext("kernel") == "/img/vmlinuz"
        assert os_el.findtext("initrd") == "/img/initrd.gz"
        assert os_el.findtext("cmdline") == "console=ttyS0 quiet & <x>"
        assert dom.find("features/acpi") is not None
        assert dom.findtext("on_poweroff") == "destroy"
        assert dom.find("devices/serial").get("type") == "pty"
        assert dom.find("devices/console").get("type") == "pty"
        assert dom.find("devices/interface") is None

    def test_a_console_log_sends_the_serial_port_to_a_file(self) -> None:
        spec = VMSpec(
            name="tiny",
            cpus=1,
            memory_mb=128,
            disk_gb=1,
            template={"kind": "kernel", "kernel": "/k", "console_log": "/var/log/pex/tiny.log"},
        )
        dom = ET.fromstring(domain_xml(spec, "qemu"))
        serial = dom.find("devices/serial")
        assert serial.get("type") == "file"
        assert serial.find("source").get("path") == "/var/log/pex/tiny.log"
        assert dom.find("os/initrd") is None

    def test_a_kernel_template_without_a_kernel_is_refused(self) -> None:
        spec = VMSpec(name="tiny", cpus=1, memory_mb=128, disk_gb=1, template={"kind": "kernel"})
        with pytest.raises(DriverError):
            domain_xml(spec, "qemu")
