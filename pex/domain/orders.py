"""Orders for the hypervisors: what the domain decided should happen to a VM.

The application decides and records (a reservation launched, expired, an instance deleted); the
service carries the orders out on the instances' nodes and reports back what each VM did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from uuid import UUID

from pex.domain.sizes import Resources


class Operation(str, Enum):
    BOOT = "boot"  # define if missing, start if not running (idempotent: safe to repeat)
    START = "start"
    STOP = "stop"  # graceful shutdown, forced after a grace period; stays defined
    END = "end"  # the reservation is over: as STOP, then undefined
    REBOOT = "reboot"
    DELETE = "delete"  # forced off and undefined


@dataclass(frozen=True)
class VMOrder:
    operation: Operation
    vm_id: str
    domain: str  # the VM's name on its host
    node: str
    resources: Resources
    template: dict[str, Any] = field(default_factory=dict)
    report: bool = True  # False for removing a stray copy: the instance's record is elsewhere


_PREFIX = "pex-"


def domain_name(vm_id: str) -> str:
    """A VM's name on its host: unique across hosts and reservations, so a VM found on a host
    can always be traced back to its instance."""
    return f"{_PREFIX}{vm_id}"


def vm_id_of(domain: str) -> UUID | None:
    """The instance a VM found on a host belongs to, or None if it is not one of ours."""
    if not domain.startswith(_PREFIX):
        return None
    try:
        return UUID(domain[len(_PREFIX):])
    except ValueError:
        return None
