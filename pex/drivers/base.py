"""The hypervisor driver interface: what the rest of OpenPEX may ask of a host.

Everything above this layer speaks in VM names, VMSpec and normalised VMState; platform ids,
raw state codes and platform exceptions stay inside the concrete drivers. A driver instance
is used from one thread at a time (its node's actor), so drivers need no locking.

Behaviour every driver keeps (the contract tests check it):

- define is idempotent: if a domain with that name exists it is kept as it is.
- boot is define, then start unless running, then state, in one call.
- start on a VM that is already active (running or paused) does nothing.
- shutdown and destroy on a defined VM that is not active do nothing.
- undefine destroys an active VM first; undefining an unknown name does nothing.
- start, shutdown, destroy, reboot, suspend and resume on an unknown name raise NoSuchVM.
- suspend on a paused VM and resume on a running VM do nothing; suspend, resume and reboot on
  a VM that is not active raise DriverError.
- state of an unknown name is MISSING (not an error).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Mapping

ALL_CAPABILITIES: frozenset[str] = frozenset(
    {"define", "start", "shutdown", "destroy", "reboot", "suspend", "resume", "undefine", "events"}
)


class VMState(enum.Enum):
    """Normalised domain states; raw hypervisor codes never leave a driver."""

    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    SUSPENDED = "SUSPENDED"  # suspended to RAM by the guest's power management
    HALTED = "HALTED"  # defined, shut off normally (or never started)
    CRASHED = "CRASHED"  # shut off by a crash or a failure to start, or crashed in place
    MISSING = "MISSING"  # no such domain on this host

    @property
    def active(self) -> bool:
        """True while the VM holds the host's resources (it has a running process)."""
        return self in (VMState.RUNNING, VMState.PAUSED, VMState.SUSPENDED)


@dataclass(frozen=True)
class VMSpec:
    """What to define: size plus a template saying how the guest boots.

    template examples: {"kind": "simulated"}, or {"kind": "kernel", "kernel": path,
    "initrd": path, "cmdline": "console=ttyS0", "console_log": path}.
    """

    name: str
    cpus: int
    memory_mb: int
    disk_gb: int
    template: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeInfo:
    """The host's size as the hypervisor reports it."""

    cpus: int
    memory_mb: int
    model: str
    running: int  # number of active domains
    used_cpus: int = 0  # vCPUs of the active domains
    used_memory_mb: int = 0  # memory of the active domains
    free_memory_mb: int | None = None  # as the host's kernel sees it, where the driver can tell
    cpu_busy: float | None = None  # share of the host's CPU time busy since the previous call


class DriverError(Exception):
    """A hypervisor failure; the message is one human-readable line."""


class NodeUnreachable(DriverError):
    """The host cannot be connected to, or the connection was lost."""


class NoSuchVM(DriverError):
    """The operation named a VM the host does not know."""


class Unsupported(DriverError):
    """The driver or its hypervisor cannot do this operation."""


class Driver(abc.ABC):
    """One connection to one host. See the module docstring for the shared behaviour."""

    uri: str
    capabilities: frozenset[str]

    @abc.abstractmethod
    def define(self, spec: VMSpec) -> None:
        """Make a persistent (halted) VM from spec; an existing name is left untouched."""

    @abc.abstractmethod
    def start(self, name: str) -> None:
        """Boot a defined VM; an active VM is left as it is."""

    def boot(self, spec: VMSpec) -> VMState:
        """Define the VM (unless defined) and start it unless it is running; its state after.
        A driver may do it in fewer hypervisor calls than the three steps (a boot storm's
        thousands of VMs each take this path)."""
        self.define(spec)
        if self.state(spec.name) is not VMState.RUNNING:
            self.start(spec.name)
        return self.state(spec.name)

    @abc.abstractmethod
    def shutdown(self, name: str) -> None:
        """Ask the guest to power off (ACPI); returns before it has. Not active: no-op."""

    @abc.abstractmethod
    def destroy(self, name: str) -> None:
        """Power the VM off at once. Not active: no-op."""

    @abc.abstractmethod
    def reboot(self, name: str) -> None:
        """Ask the guest to reboot; it stays active."""

    @abc.abstractmethod
    def suspend(self, name: str) -> None:
        """Pause the VM's CPUs (it keeps its memory); already paused: no-op."""

    @abc.abstractmethod
    def resume(self, name: str) -> None:
        """Unpause the VM; already running: no-op."""

    @abc.abstractmethod
    def undefine(self, name: str) -> None:
        """Remove the VM, destroying it first if active; unknown name: no-op."""

    @abc.abstractmethod
    def state(self, name: str) -> VMState:
        """The VM's state, MISSING if the host does not know the name."""

    @abc.abstractmethod
    def domains(self) -> dict[str, VMState]:
        """Every domain on the host, by name."""

    @abc.abstractmethod
    def node_info(self) -> NodeInfo:
        """The host's size and how many domains are active on it."""

    @abc.abstractmethod
    def watch(self, callback: Callable[[str, VMState | None], None]) -> None:
        """Call `callback(vm_name, state)` (from another thread) whenever a VM on the host
        changes state: started, stopped, paused, crashed, defined or removed, whoever caused
        it. `state` is the state the change left the VM in when the event says so for certain
        (it started or resumed: RUNNING), else None (ask `state`). Drivers without "events"
        in their capabilities raise Unsupported."""
        raise Unsupported(f"{type(self).__name__} cannot report VM events")

    def close(self) -> None:
        """Release the connection; calling it again does nothing."""

    def __enter__(self) -> Driver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
