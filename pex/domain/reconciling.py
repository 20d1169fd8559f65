"""What a host's report of a VM means for OpenPEX's record of it: the rules of reconciling (a
running service comparing its record with a host) and of recovery (a restarted service doing
so once per host), as pure functions of the recorded and the observed state."""

from __future__ import annotations

from enum import Enum

from pex.domain.statuses import LIVE

SHUTTING_DOWN = "shutting down"  # the reason recorded while a stop waits for the guest
MISSING = "MISSING"  # what a host reports of a VM it does not have

# Why a VM is in a state OpenPEX did not put it in.
WHY = {"HALTED": "powered off from inside the guest", "CRASHED": "stopped from outside OpenPEX (crashed or destroyed)"}


def changed_behind_our_back(recorded: str, observed: str) -> bool:
    """Whether a host's report of a VM is news. A VM not yet started reads HALTED; one that
    OpenPEX stopped (HALTED) reads CRASHED if it had to be forced off: neither is a change."""
    return observed != recorded and (recorded, observed) not in {("PENDING", "HALTED"), ("HALTED", "CRASHED")}


class Recovery(str, Enum):
    """What a restarted service does about one VM that should run now."""

    BOOT = "BOOT"  # gone from its host (the host restarted, or is simulated), or never started
    STOP = "STOP"  # a stop the restart cut short: carry it on
    RECORD_HALTED = "RECORD_HALTED"  # its stop finished while the service was down
    RECORD_OBSERVED = "RECORD_OBSERVED"  # it changed while the service was down: record what is seen
    NOTHING = "NOTHING"


def recovery_step(status: str, reason: str | None, observed: str) -> Recovery:
    """The recovery decision table: the VM's recorded status and reason, and what its host
    reports now (MISSING if it has no such VM)."""
    stopping = reason == SHUTTING_DOWN
    if observed == MISSING or (observed == "HALTED" and status == "PENDING"):
        if status in ("PENDING", "RUNNING") and not stopping:
            return Recovery.BOOT
        return Recovery.RECORD_HALTED if stopping else Recovery.NOTHING
    if observed in LIVE and stopping:
        return Recovery.STOP
    if changed_behind_our_back(status, observed):
        return Recovery.RECORD_OBSERVED
    return Recovery.NOTHING
