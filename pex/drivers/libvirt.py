"""The libvirt driver: one connection to one host, simulated (test:///) or real (qemu://).

This is the only module that imports libvirt. Raw domain states, domain objects and
libvirtError never leave it: states are normalised to VMState and every libvirtError becomes
a DriverError subclass with a one-line message.

State mapping (libvirt state / shut-off reason -> VMState):

- RUNNING, BLOCKED, and SHUTDOWN (a shutdown in progress) -> RUNNING
- PAUSED -> PAUSED; PMSUSPENDED -> SUSPENDED; CRASHED -> CRASHED
- SHUTOFF with reason CRASHED, FAILED (it failed to start) or DESTROYED (forced off: `virsh
  destroy`, or its QEMU process killed) -> CRASHED. Our own destroy() gives DESTROYED too: the
  caller that forced a VM off knows it did, and records the stop as such; only the driver
  cannot tell the two apart.
- any other SHUTOFF (the guest powered off, or was never started) -> HALTED.
- NOSTATE (seen briefly during a qemu start) -> RUNNING if the domain is active, else HALTED.

A driver opens its connection once and keeps it for its whole life: for test:///path URIs
each open() is an independent fresh copy of the host, so reopening would lose every domain.
"""

from __future__ import annotations

import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

import libvirt

from pex.drivers.base import (
    Driver,
    DriverError,
    NodeInfo,
    NodeUnreachable,
    NoSuchVM,
    Unsupported,
    VMSpec,
    VMState,
)

# libvirt prints every error to stderr by default; we report them through exceptions instead.
libvirt.registerErrorHandler(lambda *_: None, None)

_NO_DOMAIN = libvirt.VIR_ERR_NO_DOMAIN
_UNSUPPORTED = frozenset({libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED})
_CONNECTION_LOST = frozenset(
    {
        libvirt.VIR_ERR_NO_CONNECT,
        libvirt.VIR_ERR_INVALID_CONN,
        libvirt.VIR_ERR_RPC,
        libvirt.VIR_ERR_AUTH_FAILED,
        libvirt.VIR_ERR_AUTH_CANCELLED,
        libvirt.VIR_ERR_AUTH_UNAVAILABLE,
    }
)

_RUNNING_STATES = frozenset({libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_SHUTDOWN})
_CRASHED_SHUTOFF_REASONS = frozenset({libvirt.VIR_DOMAIN_SHUTOFF_CRASHED, libvirt.VIR_DOMAIN_SHUTOFF_FAILED,
                                      libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED})

# Also drop managed-save images and snapshot metadata, which would otherwise block undefine.
_UNDEFINE_FLAGS = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA

_VIRT_TYPES = {"TEST": "test", "QEMU": "qemu"}


_event_loop_lock = threading.Lock()
_event_loop: threading.Thread | None = None


# Lifecycle events after which a VM runs, whatever their detail (booted, restored, migrated,
# woken; unpaused, ...): a later event says so if it does not stay that way.
_RUNNING_EVENTS = frozenset({libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_RESUMED})


def _start_event_loop() -> None:
    """libvirt delivers VM events from its default event loop, run here on one daemon thread
    for the whole process."""
    global _event_loop
    with _event_loop_lock:
        if _event_loop is not None:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        _event_loop = threading.Thread(target=run, name="libvirt-events", daemon=True)
        _event_loop.start()


def normalise_state(state: int, reason: int, active: bool) -> VMState:
    """Map libvirt's (state, reason) pair to a VMState (see the module docstring)."""
    if state in _RUNNING_STATES:
        return VMState.RUNNING
    if state == libvirt.VIR_DOMAIN_PAUSED:
        return VMState.PAUSED
    if state == libvirt.VIR_DOMAIN_PMSUSPENDED:
        return VMState.SUSPENDED
    if state == libvirt.VIR_DOMAIN_CRASHED:
        return VMState.CRASHED
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        return VMState.CRASHED if reason in _CRASHED_SHUTOFF_REASONS else VMState.HALTED
    return VMState.RUNNING if active else VMState.HALTED


def domain_xml(spec: VMSpec, virt_type: str) -> str:
    """The domain XML for spec on a hypervisor of virt_type ("test" or "qemu").

    The test driver gets a minimal domain. qemu gets a disk-less, NIC-less guest with ACPI and a
    serial console; template kind "kernel" boots the given kernel/initrd/cmdline directly, any
    other kind gives a bare guest that only runs the firmware. disk_gb is not used yet.
    """
    dom = ET.Element("domain", type=virt_type)
    ET.SubElement(dom, "name").text = spec.name
    ET.SubElement(dom, "memory", unit="KiB").text = str(spec.memory_mb * 1024)
    ET.SubElement(dom, "vcpu").text = str(spec.cpus)
    os_el = ET.SubElement(dom, "os")
    if virt_type == "test":
        ET.SubElement(os_el, "type").text = "hvm"
        return ET.tostring(dom, encoding="unicode")

    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    template = spec.template
    if template.get("kind") == "kernel":
        if not template.get("kernel"):
            raise DriverError(f"define {spec.name!r}: template kind 'kernel' needs a 'kernel' path")
        ET.SubElement(os_el, "kernel").text = str(template["kernel"])
        if template.get("initrd"):
            ET.SubElement(os_el, "initrd").text = str(template["initrd"])
        if template.get("cmdline"):
            ET.SubElement(os_el, "cmdline").text = str(template["cmdline"])
    features = ET.SubElement(dom, "features")
    ET.SubElement(features, "acpi")
    # The guest powering itself off must end the domain, not restart it.
    ET.SubElement(dom, "on_poweroff").text = "destroy"
    ET.SubElement(dom, "on_reboot").text = "restart"
    ET.SubElement(dom, "on_crash").text = "destroy"
    devices = ET.SubElement(dom, "devices")
    if template.get("console_log"):
        serial = ET.SubElement(devices, "serial", type="file")
        ET.SubElement(serial, "source", path=str(template["console_log"]))
    else:
        ET.SubElement(devices, "serial", type="pty")
        ET.SubElement(devices, "console", type="pty")
    return ET.tostring(dom, encoding="unicode")


def _message(e: libvirt.libvirtError) -> str:
    text = e.get_error_message() or str(e) or "unknown libvirt error"
    return " ".join(text.split())


def _host_file(uri: str) -> str | None:
    """The file of a test:///path URI (else None)."""
    parts = urlsplit(uri)
    if parts.scheme != "test" or parts.netloc or parts.path in ("", "/", "/default"):
        return None
    return unquote(parts.path)


def _missing_host_file(uri: str) -> str | None:
    """For a test:///path URI whose file does not exist, that path (else None).

    Checked before open() because libxml2 prints its own warning to stderr for a missing file.
    """
    path = _host_file(uri)
    return None if path is None or os.path.isfile(path) else path


class LibvirtDriver(Driver):
    """A Driver over one libvirt connection (see pex.drivers.base for the behaviour)."""

    capabilities = frozenset(
        {"define", "start", "shutdown", "destroy", "reboot", "suspend", "resume", "undefine", "events"}
    )

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._conn: libvirt.virConnect | None = None
        self._watches: list[int] = []
        self._cpu_times: tuple[int, int] | None = None  # (busy, total) at the last _cpu_busy
        _start_event_loop()  # must run before the connection opens, or it gets no events
        missing = _missing_host_file(uri)
        if missing is not None:
            raise NodeUnreachable(f"cannot connect to {uri}: no host file at {missing}")
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as e:
            raise NodeUnreachable(f"cannot connect to {uri}: {_message(e)}") from e
        try:
            self._virt_type = _VIRT_TYPES.get(conn.getType())
        except libvirt.libvirtError as e:
            conn.close()
            raise NodeUnreachable(f"cannot connect to {uri}: {_message(e)}") from e
        self._conn = conn
        # A simulated host whose file is taken away answers nothing until it is back, as a
        # host pulled from the network would (the way to lose one in a running service).
        self._host_file = _host_file(uri)

    # -- plumbing ---------------------------------------------------------------------------

    def _connection(self) -> libvirt.virConnect:
        if self._conn is None:
            raise DriverError(f"the driver for {self.uri} is closed")
        if self._host_file is not None and not os.path.exists(self._host_file):
            raise NodeUnreachable(f"{self.uri} does not answer: its host file is gone")
        return self._conn

    def _alive(self) -> bool:
        try:
            return self._conn is not None and self._conn.isAlive() == 1
        except libvirt.libvirtError:
            return False

    def _error(self, action: str, name: str | None, e: libvirt.libvirtError) -> DriverError:
        subject = f"{action} {name!r}" if name is not None else action
        text = f"{subject} on {self.uri}: {_message(e)}"
        code = e.get_error_code()
        if code == _NO_DOMAIN:
            return NoSuchVM(text)
        if code in _UNSUPPORTED:
            return Unsupported(text)
        if code in _CONNECTION_LOST or not self._alive():
            return NodeUnreachable(text)
        return DriverError(text)

    @contextmanager
    def _translated(self, action: str, name: str | None = None) -> Iterator[libvirt.virConnect]:
        """Run a block against the connection, turning libvirtError into DriverError."""
        conn = self._connection()
        try:
            yield conn
        except libvirt.libvirtError as e:
            raise self._error(action, name, e) from e

    def _not_running(self, action: str, name: str, state: VMState) -> DriverError:
        return DriverError(f"{action} {name!r} on {self.uri}: the VM is not running ({state.value})")

    @staticmethod
    def _find(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
        try:
            return conn.lookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == _NO_DOMAIN:
                return None
            raise

    @staticmethod
    def _state_of(dom: libvirt.virDomain) -> VMState:
        state, reason = dom.state()
        active = dom.isActive() == 1 if state == libvirt.VIR_DOMAIN_NOSTATE else False
        return normalise_state(state, reason, active)

    # -- operations -------------------------------------------------------------------------

    def define(self, spec: VMSpec) -> None:
        with self._translated("define", spec.name) as conn:
            if self._find(conn, spec.name) is not None:
                return
            if self._virt_type is None:
                raise Unsupported(f"define {spec.name!r} on {self.uri}: unsupported hypervisor type")
            xml = domain_xml(spec, self._virt_type)
            try:
                conn.defineXML(xml)
            except libvirt.libvirtError:
                if self._find(conn, spec.name) is not None:  # defined meanwhile by someone else
                    return
                raise

    def boot(self, spec: VMSpec) -> VMState:
        # The three steps in as few libvirt calls as can be (a boot storm makes thousands, each
        # giving up the GIL and waiting to take it back): a new VM is defined without a lookup
        # first and is not looked up again to start it or read its state, three calls rather
        # than nine. An existing name is not redefined: the XML names no UUID, so libvirt
        # refuses it as a name another domain holds, and the VM is looked up then.
        with self._translated("boot", spec.name) as conn:
            if self._virt_type is None:
                raise Unsupported(f"define {spec.name!r} on {self.uri}: unsupported hypervisor type")
            try:
                dom = conn.defineXML(domain_xml(spec, self._virt_type))
            except libvirt.libvirtError:
                found = self._find(conn, spec.name)
                if found is None:
                    raise
                dom = found
                state = self._state_of(dom)
                if state.active:  # (a paused one is left paused, as start leaves it)
                    return state
            try:
                dom.create()
            except libvirt.libvirtError:
                if not dom.isActive():  # (started meanwhile by someone else)
                    raise
            return self._state_or_missing(dom)

    def start(self, name: str) -> None:
        with self._translated("start", name) as conn:
            dom = conn.lookupByName(name)
            if dom.isActive():
                return
            try:
                dom.create()
            except libvirt.libvirtError:
                if dom.isActive():
                    return
                raise

    def shutdown(self, name: str) -> None:
        with self._translated("shutdown", name) as conn:
            dom = conn.lookupByName(name)
            if not dom.isActive():
                return
            try:
                dom.shutdown()
            except libvirt.libvirtError:
                if not dom.isActive():  # it went down on its own meanwhile
                    return
                raise

    def destroy(self, name: str) -> None:
        with self._translated("destroy", name) as conn:
            self._destroy(conn.lookupByName(name))

    @staticmethod
    def _destroy(dom: libvirt.virDomain) -> None:
        if not dom.isActive():
            return
        try:
            dom.destroy()
        except libvirt.libvirtError:
            if not dom.isActive():
                return
            raise

    def reboot(self, name: str) -> None:
        with self._translated("reboot", name) as conn:
            dom = conn.lookupByName(name)
            state = self._state_of(dom)
            if not state.active:
                raise self._not_running("reboot", name, state)
            dom.reboot(0)

    def suspend(self, name: str) -> None:
        with self._translated("suspend", name) as conn:
            dom = conn.lookupByName(name)
            state = self._state_of(dom)
            if state is VMState.PAUSED:
                return
            if not state.active:
                raise self._not_running("suspend", name, state)
            dom.suspend()

    def resume(self, name: str) -> None:
        with self._translated("resume", name) as conn:
            dom = conn.lookupByName(name)
            state = self._state_of(dom)
            if state is VMState.RUNNING:
                return
            if not state.active:
                raise self._not_running("resume", name, state)
            if state is VMState.SUSPENDED:
                dom.pMWakeup(0)  # a guest suspended to RAM is woken, not unpaused
            else:
                dom.resume()

    def undefine(self, name: str) -> None:
        with self._translated("undefine", name) as conn:
            dom = self._find(conn, name)
            if dom is None:
                return
            try:
                # Destroy first: undefining an active domain would only make it transient.
                self._destroy(dom)
                dom.undefineFlags(_UNDEFINE_FLAGS)
            except libvirt.libvirtError as e:
                if e.get_error_code() == _NO_DOMAIN:
                    return
                raise

    def state(self, name: str) -> VMState:
        with self._translated("state of", name) as conn:
            dom = self._find(conn, name)
            return VMState.MISSING if dom is None else self._state_or_missing(dom)

    def _state_or_missing(self, dom: libvirt.virDomain) -> VMState:
        try:
            return self._state_of(dom)
        except libvirt.libvirtError as e:
            if e.get_error_code() == _NO_DOMAIN:  # gone since the lookup
                return VMState.MISSING
            raise

    def domains(self) -> dict[str, VMState]:
        with self._translated("list domains") as conn:
            result: dict[str, VMState] = {}
            for dom in conn.listAllDomains(0):
                try:
                    result[dom.name()] = self._state_of(dom)
                except libvirt.libvirtError as e:
                    # A domain undefined since the listing is simply left out.
                    if e.get_error_code() != _NO_DOMAIN:
                        raise
            return result

    def node_info(self) -> NodeInfo:
        with self._translated("node info") as conn:
            model, memory_mb, cpus, *_ = conn.getInfo()
            used_cpus = used_kib = 0
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                try:
                    _, max_kib, _, vcpus, _ = dom.info()
                except libvirt.libvirtError:
                    continue  # it went away between the listing and now
                used_cpus += vcpus
                used_kib += max_kib
            return NodeInfo(cpus=cpus, memory_mb=memory_mb, model=model, running=conn.numOfDomains(),
                            used_cpus=used_cpus, used_memory_mb=used_kib // 1024,
                            free_memory_mb=self._free_memory_mb(conn), cpu_busy=self._cpu_busy(conn))

    @staticmethod
    def _free_memory_mb(conn: libvirt.virConnect) -> int | None:
        try:
            stats: dict[str, int] = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
        except libvirt.libvirtError:
            return None  # the test driver keeps no such figures
        return (stats.get("free", 0) + stats.get("buffers", 0) + stats.get("cached", 0)) // 1024

    def _cpu_busy(self, conn: libvirt.virConnect) -> float | None:
        try:
            stats: dict[str, int] = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS)
        except libvirt.libvirtError:
            return None
        busy, total = stats.get("kernel", 0) + stats.get("user", 0), sum(stats.values())
        previous, self._cpu_times = self._cpu_times, (busy, total)
        if previous is None or total <= previous[1]:
            return None  # the first call has nothing to compare with
        return round((busy - previous[0]) / (total - previous[1]), 3)

    def watch(self, callback: Callable[[str, VMState | None], None]) -> None:
        def lifecycle(_conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, _detail: int,
                      _opaque: None) -> None:
            try:
                callback(dom.name(), VMState.RUNNING if event in _RUNNING_EVENTS else None)
            except Exception:  # never let a listener's failure reach libvirt's loop
                pass

        with self._translated("watch the VMs") as conn:
            self._watches.append(
                conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:  # (watches are only ever made on an open connection)
            for watch in self._watches:
                try:
                    conn.domainEventDeregisterAny(watch)
                except libvirt.libvirtError:
                    pass
        self._watches.clear()
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass  # the connection is being dropped anyway
