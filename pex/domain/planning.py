"""Instance planning: which VMs a reservation's booking asks for on which node, as a pure rule.

On confirm, and again when a renegotiation is confirmed, a reservation's instances are matched to
its booking. An instance keeps its identity (its vmID, which users' scripts hold) wherever its
placement allows: one already on a node the booking keeps stays there; one never booked onto a
host (PENDING) moves to a node that needs one; only what is left over is discarded, and only
what is still missing is created.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PlannedInstance:
    key: Hashable  # the instance's id
    node: str
    status: str


@dataclass
class InstancePlan:
    placed: dict[Hashable, str] = field(default_factory=dict)  # instance -> its node from now on
    discarded: list[Hashable] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # the node of each instance to create


def plan_instances(wanted: Mapping[str, int], alive: Sequence[PlannedInstance]) -> InstancePlan:
    """Match the instances not deleted (`alive`, oldest first) to `wanted` (node -> count)."""
    room = dict(wanted)
    plan = InstancePlan()
    movable = []
    for instance in alive:
        if room.get(instance.node, 0) > 0:
            room[instance.node] -= 1
            plan.placed[instance.key] = instance.node
        elif instance.status == "PENDING":  # never on a host: it may go anywhere
            movable.append(instance)
        else:
            plan.discarded.append(instance.key)
    free = [node for node, count in sorted(room.items()) for _ in range(count)]
    for instance, node in zip(movable, free):
        plan.placed[instance.key] = node
    plan.discarded += [instance.key for instance in movable[len(free):]]
    plan.new = free[len(movable):]
    return plan
