"""Quotas: how much one user may ask of OpenPEX at once, so that no account can hold the
cluster with open offers or flood the log with proposals.

Three limits per user, each with a default the admin may change per account: offers open at
once, instance-hours held by those offers, and proposals per minute. A request over a limit
is refused before anything is decided or stored (QuotaExceeded, HTTP 429) and says when to try
again. Pure rules: the application feeds them what its projections know.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from pex.domain.clock import HOUR, MINUTE, SECOND, Millis
from pex.domain.errors import DomainError, InvalidField

LARGEST_LIMIT = 1_000_000_000  # beyond this a limit means nothing


@dataclass(frozen=True, slots=True)
class Quota:
    open_offers: int = 10  # a user weighs a few alternatives at a time, not the cluster
    held_instance_hours: int = 2_000  # e.g. 20 instances for 4 days, held while deciding
    proposals_per_minute: int = 60

    # The paper's style of names, as the API shows them.
    NAMES = {"open_offers": "openOffers", "held_instance_hours": "heldInstanceHours",
             "proposals_per_minute": "proposalsPerMinute"}

    def to_dict(self) -> dict[str, int]:
        return {Quota.NAMES[key]: value for key, value in asdict(self).items()}

    @classmethod
    def from_stored(cls, stored: dict[str, int] | None, default: Quota) -> Quota:
        return cls(**{**asdict(default), **(stored or {})})

    def changed(self, body: Any) -> Quota:
        """This quota with the limits `body` gives (in the API's names); others are kept."""
        if not isinstance(body, dict) or not body:
            raise InvalidField("quota", f"must be an object with one or more of {', '.join(Quota.NAMES.values())}")
        by_name = {name: key for key, name in Quota.NAMES.items()}
        values = asdict(self)
        for name, value in body.items():
            if name not in by_name:
                raise InvalidField(str(name)[:64], f"is not a quota; quotas are {', '.join(Quota.NAMES.values())}")
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= LARGEST_LIMIT:
                raise InvalidField(name, f"must be an integer from 0 to {LARGEST_LIMIT}")
            values[by_name[name]] = value
        return Quota(**values)


assert set(Quota.NAMES) == {f.name for f in fields(Quota)}


class QuotaExceeded(DomainError):
    status = 429
    code = "QUOTA_EXCEEDED"

    def __init__(self, message: str, retry_after: Millis) -> None:
        super().__init__(message)
        self.retry_after = max(SECOND, retry_after)

    @property
    def retry_after_seconds(self) -> int:
        return math.ceil(self.retry_after / SECOND)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "retryAfter": self.retry_after_seconds}


@dataclass(slots=True)
class HeldOffers:
    """One user's open offers: how many, and the instance-milliseconds they hold."""

    count: int = 0
    instance_ms: int = 0


def check_offers(quota: Quota, held: HeldOffers, asking_instance_ms: int,
                 next_lapse: Callable[[], Millis | None], now: Millis) -> None:
    """Refuse a proposal that would open one offer too many, or hold too many instance-hours.
    `next_lapse` tells when the user's first open offer lapses (then there is room again); it
    is asked only on a refusal, since it looks at every open offer."""
    if held.count >= quota.open_offers:
        raise QuotaExceeded(f"you hold {held.count} open offers, your quota; confirm or reject one, or wait "
                            "for one to lapse", _until(next_lapse(), now))
    if held.instance_ms + asking_instance_ms > quota.held_instance_hours * HOUR:
        raise QuotaExceeded(
            f"this proposal would make your open offers hold {(held.instance_ms + asking_instance_ms) / HOUR:.1f} "
            f"instance-hours, more than your quota of {quota.held_instance_hours}; confirm or reject an open "
            "offer, or ask for less", _until(next_lapse(), now))


def _until(instant: Millis | None, now: Millis) -> Millis:
    return instant - now if instant is not None else MINUTE


class ProposalRate:
    """Proposals per minute per user, as token buckets: each user may send a burst of up to
    their limit, refilled evenly over a minute. Memory is one entry per user seen lately."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, Millis]] = {}  # user -> (tokens, when counted)

    def take(self, user: str, limit: int, now: Millis) -> None:
        """Count one proposal, or raise QuotaExceeded saying when the next one is allowed."""
        tokens, then = self._buckets.get(user, (float(limit), now))
        tokens = min(float(limit), tokens + (now - then) * limit / MINUTE) if now > then else tokens
        if tokens < 1:
            wait = math.ceil((1 - tokens) * MINUTE / limit) if limit else MINUTE
            raise QuotaExceeded(f"you may send {limit} proposals a minute; wait before the next", wait)
        self._buckets[user] = (tokens - 1, max(now, then))
        if len(self._buckets) > 100_000:  # forget users whose buckets have long been full again
            self._buckets = {u: b for u, b in self._buckets.items() if now - b[1] < MINUTE}

    def available(self, user: str, limit: int, now: Millis) -> int:
        """How many proposals the user may send right now (for operators and the user)."""
        if user not in self._buckets:
            return limit
        tokens, then = self._buckets[user]
        return int(min(float(limit), tokens + max(0, now - then) * limit / MINUTE))
