"""The driver contract: every hypervisor driver behaves the same through the Driver interface.

TestDriverContract runs once per driver kind (the `host` fixture); a new kind is added by
extending HOST_KINDS and `host`. The kinds:

- "simulated": libvirt's test driver on a host file (instant, in-process);
- "qemu": a real libvirtd + QEMU (qemu:///system, software emulation) booting the tiny guest of
  scripts/build-guest.sh (docs/guest.md). The `libvirtd` fixture starts the daemon if needed;
  if it cannot, these tests fail with its log, they are never skipped.

Where real QEMU legitimately differs, the tests wait instead of asserting less: shutdown is an
ACPI request the guest acts on asynchronously (the tiny guest reaches userspace about 2.5 s after
start() under TCG; once up it powers off at once, and libvirt reports HALTED 1-2 s later), and a
request made before the guest listens for the power button is lost, so the shutdown test asks
again every second until the VM is halted.

The other classes cover what is particular to simulated hosts, to connecting, to the domain
XML the libvirt driver writes, and to booting the real tiny guest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
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

HOST_KINDS = ["simulated", "qemu"]

# Generous because a real guest takes seconds to act on ACPI; the test driver acts at once.
SETTLE_SECONDS = 30.0

ROOT = Path(__file__).resolve().parents[2]
GUEST_DIR = ROOT / "var" / "guest"
GUEST_MARKER = "openpex-guest: up"
# The cloud kernel does not boot in 64 MiB (it dies unpacking itself); 128 MiB is comfortable.
GUEST_MEMORY_MB = 128
# With stdio_handler = "file" libvirtd keeps one log per domain name here, forever.
QEMU_LOG_DIR = Path("/var/log/libvirt/qemu")


@dataclass(frozen=True)
class HostUnderTest:
    """A host a driver can be opened on, and what the tests may expect of it."""

    uri: str
    cpus: int
    memory_mb: int
    template: dict[str, Any] = field(default_factory=dict)
    vm_memory_mb: int = 64
    console_dir: Path | None = None  # if set, each VM's serial console is logged to a file here
    qemu_log_dir: Path | None = None  # where libvirtd writes each VM's QEMU log (removed afterwards)


def eventually(check: Callable[[], bool], timeout: float = SETTLE_SECONDS, interval: float = 0.05) -> bool:
    """Poll check until it holds or timeout passes; returns its last result."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def counts_running(driver: Driver, ours: set[str], active: set[str]) -> bool:
    """Whether node_info().running is exactly `active` (of our VMs `ours`) plus everyone else's.

    qemu:///system is machine-wide: another test session may start and stop its own VMs while
    this one runs, so the count is checked against what is listed besides ours, not against a
    count taken earlier. The two calls are not atomic, so callers retry with eventually().
    """
    others = sum(1 for name, state in driver.domains().items() if state.active and name not in ours)
    return driver.node_info().running == others + len(active)


def machine_size() -> tuple[int, int]:
    """This machine's (online CPUs, MiB) as libvirt counts them, read from the kernel directly.

    libvirt sums the NUMA nodes' MemTotal when the kernel exposes nodes (in some sandboxes that
    differs from /proc/meminfo), and only falls back to /proc/meminfo without them.
    """
    online = Path("/sys/devices/system/cpu/online").read_text().strip()
    cpus = 0
    for part in online.split(","):
        first, _, last = part.partition("-")
        cpus += int(last or first) - int(first) + 1
    node_files = sorted(Path("/sys/devices/system/node").glob("node[0-9]*/meminfo"))
    kib = 0
    for meminfo in node_files or [Path("/proc/meminfo")]:
        for line in meminfo.read_text().splitlines():
            if "MemTotal:" in line:
                kib += int(line.split("MemTotal:")[1].split()[0])
    return cpus, kib // 1024


@pytest.fixture(scope="session")
def tiny_guest() -> dict[str, Any]:
    """The tiny guest's {"kernel", "initrd", "cmdline"}, built if missing (fast if up to date)."""
    result = subprocess.run([str(ROOT / "scripts" / "build-guest.sh"), str(GUEST_DIR)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"scripts/build-guest.sh failed:\n{result.stdout}{result.stderr}"
    return json.loads((GUEST_DIR / "guest.json").read_text())


@pytest.fixture(params=HOST_KINDS)
def host(request: pytest.FixtureRequest, tmp_path: Path) -> HostUnderTest:
    if request.param == "simulated":
        uri = write_host(tmp_path / "hosts" / "h1.xml", "h1", cpus=4, memory_mb=8192)
        return HostUnderTest(uri=uri, cpus=4, memory_mb=8192, template={"kind": "simulated"})
    if request.param == "qemu":
        uri = request.getfixturevalue("libvirtd")
        guest = request.getfixturevalue("tiny_guest")
        cpus, memory_mb = machine_size()
        return HostUnderTest(uri=uri, cpus=cpus, memory_mb=memory_mb, template={"kind": "kernel", **guest},
                             vm_memory_mb=GUEST_MEMORY_MB, console_dir=tmp_path,
                             qemu_log_dir=QEMU_LOG_DIR)
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
        template = dict(host.template)
        if host.console_dir is not None:
            template["console_log"] = str(host.console_dir / f"{name}.console.log")
        return VMSpec(name=name, cpus=1, memory_mb=host.vm_memory_mb, disk_gb=1, template=template)

    yield make
    # Every VM goes, even if the test failed or its connection broke: real ones cost CPU.
    leftover: list[str] = []
    for name in made:
        try:
            driver.undefine(name)
        except DriverError:
            leftover.append(name)
    if leftover:
        with LibvirtDriver(host.uri) as fresh:
            for name in leftover:
                fresh.undefine(name)
    if host.qemu_log_dir is not None:
        for name in made:
            (host.qemu_log_dir / f"{name}.log").unlink(missing_ok=True)


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
        driver.define(spec)
        assert eventually(lambda: counts_running(driver, ours={spec.name}, active=set()), timeout=10)
        driver.start(spec.name)
        assert eventually(lambda: counts_running(driver, ours={spec.name}, active={spec.name}), timeout=10)
        driver.destroy(spec.name)
        assert eventually(lambda: counts_running(driver, ours={spec.name}, active=set()), timeout=10)

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

    # boot is define + start unless running + state; the driver's own (fewer hypervisor calls)
    # and the three steps (Driver.boot) must agree.
    BOOTS = {"driver's": lambda d, spec: d.boot(spec), "three steps": lambda d, spec: Driver.boot(d, spec)}

    @pytest.mark.parametrize("boot", BOOTS.values(), ids=BOOTS.keys())
    def test_boot_defines_and_starts_a_new_vm(self, driver: Driver, spec: VMSpec, boot) -> None:
        assert boot(driver, spec) is VMState.RUNNING
        assert driver.state(spec.name) is VMState.RUNNING
        assert list(driver.domains()).count(spec.name) == 1

    @pytest.mark.parametrize("boot", BOOTS.values(), ids=BOOTS.keys())
    def test_boot_starts_a_defined_vm_and_leaves_a_running_one_running(
        self, driver: Driver, spec: VMSpec, boot
    ) -> None:
        driver.define(spec)
        assert boot(driver, spec) is VMState.RUNNING
        assert boot(driver, spec) is VMState.RUNNING
        assert list(driver.domains()).count(spec.name) == 1

    @pytest.mark.parametrize("boot", BOOTS.values(), ids=BOOTS.keys())
    def test_boot_starts_a_vm_that_was_forced_off(self, driver: Driver, running: VMSpec, boot) -> None:
        driver.destroy(running.name)  # (as a host's restart leaves it: recovery boots it again)
        assert boot(driver, running) is VMState.RUNNING

    @pytest.mark.parametrize("boot", BOOTS.values(), ids=BOOTS.keys())
    def test_boot_leaves_a_paused_vm_paused(self, driver: Driver, running: VMSpec, boot) -> None:
        driver.suspend(running.name)
        assert boot(driver, running) is VMState.PAUSED
        assert driver.state(running.name) is VMState.PAUSED

    def test_reboot_keeps_the_vm_running(self, driver: Driver, running: VMSpec) -> None:
        driver.reboot(running.name)
        assert driver.state(running.name) is VMState.RUNNING

    def test_shutdown_halts_the_vm(self, driver: Driver, host: HostUnderTest, running: VMSpec) -> None:
        # The guest may ignore a request made before it listens for the power button (see the
        # module docstring), so ask again every second until it has halted.
        def asked_and_halted() -> bool:
            driver.shutdown(running.name)
            return driver.state(running.name) is VMState.HALTED

        console = running.template.get("console_log")
        assert eventually(asked_and_halted, interval=1.0), (
            f"still {driver.state(running.name).value} after {SETTLE_SECONDS:.0f} s of shutdown requests"
            + (f"; console:\n{read_text(Path(console))[-3000:]}" if console else "")
        )

    def test_shutting_down_a_halted_vm_does_nothing(self, driver: Driver, spec: VMSpec) -> None:
        driver.define(spec)
        driver.shutdown(spec.name)
        assert driver.state(spec.name) is VMState.HALTED

    def test_watch_reports_every_change_to_a_vm_whoever_made_it(self, driver: Driver, running: VMSpec) -> None:
        changed: list[tuple[str, VMState | None]] = []

        def callback(name: str, state: VMState | None) -> None:
            changed.append((name, state))

        def last() -> tuple[str, VMState | None] | None:
            return next((c for c in reversed(changed) if c[0] == running.name), None)

        driver.watch(callback)
        driver.destroy(running.name)
        # (the start's own event may still come first: the test driver's are delivered late)
        assert eventually(lambda: last() == (running.name, None), timeout=10), (
            f"no event for the stop of {running.name}, which leaves the state to be asked (got {changed})")
        driver.start(running.name)  # (an event that says what the VM now is)
        assert eventually(lambda: last() == (running.name, VMState.RUNNING), timeout=10), changed

    def test_destroy_forces_the_vm_off_at_once_and_it_reads_as_crashed(self, driver: Driver, running: VMSpec) -> None:
        driver.destroy(running.name)
        assert driver.state(running.name) is VMState.CRASHED

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
        ours = {running.name}
        assert eventually(lambda: counts_running(driver, ours=ours, active=ours), timeout=10)
        driver.undefine(running.name)
        assert driver.state(running.name) is VMState.MISSING
        assert running.name not in driver.domains()
        assert eventually(lambda: counts_running(driver, ours=ours, active=set()), timeout=10)

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


class TestTinyGuest:
    """The real tiny guest under qemu:///system: it boots, and one ACPI shutdown powers it off."""

    def test_the_guest_boots_to_its_marker_and_a_shutdown_powers_it_off(
        self, libvirtd: str, tiny_guest: dict[str, Any], tmp_path: Path
    ) -> None:
        console = tmp_path / "console.log"
        spec = VMSpec(
            name=f"pex-guest-{uuid.uuid4().hex[:10]}",
            cpus=1,
            memory_mb=GUEST_MEMORY_MB,
            disk_gb=1,
            template={"kind": "kernel", **tiny_guest, "console_log": str(console)},
        )
        with LibvirtDriver(libvirtd) as d:
            try:
                d.define(spec)
                d.start(spec.name)
                assert eventually(lambda: GUEST_MARKER in read_text(console), timeout=60, interval=0.1), (
                    f"no {GUEST_MARKER!r} on the console within 60 s:\n{read_text(console)[-3000:]}"
                )
                # Once the guest is up it listens for the button: a single request must do.
                d.shutdown(spec.name)
                assert eventually(lambda: d.state(spec.name) is VMState.HALTED, timeout=30, interval=0.1), (
                    f"still {d.state(spec.name).value} 30 s after shutdown:\n{read_text(console)[-3000:]}"
                )
                assert "openpex-guest: power button" in read_text(console)
            finally:
                d.undefine(spec.name)
                (QEMU_LOG_DIR / f"{spec.name}.log").unlink(missing_ok=True)

    def test_a_guest_whose_qemu_process_is_killed_reads_as_crashed(
        self, libvirtd: str, tiny_guest: dict[str, Any], tmp_path: Path
    ) -> None:
        spec = VMSpec(name=f"pex-guest-{uuid.uuid4().hex[:10]}", cpus=1, memory_mb=GUEST_MEMORY_MB, disk_gb=1,
                      template={"kind": "kernel", **tiny_guest, "console_log": str(tmp_path / "console.log")})
        with LibvirtDriver(libvirtd) as d:
            try:
                d.define(spec)
                d.start(spec.name)
                pid = int(Path(f"/run/libvirt/qemu/{spec.name}.pid").read_text().strip())
                os.kill(pid, signal.SIGKILL)  # as an operator's `kill -9`, or the OOM killer, would
                assert eventually(lambda: d.state(spec.name) is VMState.CRASHED, timeout=30, interval=0.1), (
                    f"still {d.state(spec.name).value} 30 s after its QEMU was killed")
            finally:
                d.undefine(spec.name)
                (QEMU_LOG_DIR / f"{spec.name}.log").unlink(missing_ok=True)
