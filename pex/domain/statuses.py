"""What an instance and a node can be (a reservation's statuses are the protocol's, in
pex.domain.negotiation). Both are `str` enums, so a status read back from a stored event
(a plain string) compares equal to its member."""

from __future__ import annotations

from enum import StrEnum


class InstanceStatus(StrEnum):
    PENDING = "PENDING"  # planned, not yet booted (or moved, to boot again elsewhere)
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    SUSPENDED = "SUSPENDED"
    HALTED = "HALTED"  # shut down, by its user or its guest
    CRASHED = "CRASHED"
    DELETED = "DELETED"  # final: its user deleted it, or its reservation is over or cancelled


# A VM that holds its host's resources.
LIVE = frozenset({InstanceStatus.RUNNING, InstanceStatus.PAUSED, InstanceStatus.SUSPENDED})
# What a hypervisor can report of a VM (PENDING and DELETED are OpenPEX's own).
REPORTED = frozenset(InstanceStatus) - {InstanceStatus.PENDING, InstanceStatus.DELETED}


class NodeStatus(StrEnum):
    UP = "UP"  # takes new bookings
    DOWN = "DOWN"  # stopped answering: its bookings were re-planned elsewhere
    DRAINED = "DRAINED"  # keeps its bookings, takes no new ones
