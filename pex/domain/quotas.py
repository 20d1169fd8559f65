"""Quotas: how much one user may ask of OpenPEX at once, so that no account can hold the
cluster with open offers or flood the log with proposals.

Three limits per user, each with a default the admin may change per account: offers open at
once, instance-hours held by those offers, and proposals per minute. A request over a limit
is refused before anything is decided or stored (QuotaExceeded, HTTP 429) and says when to try
again. Pure rules: the application feeds them what its projections know.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from pex.domain.clock import HOUR, MINUTE, SECOND, Millis
from pex.domain.errors import DomainError, InvalidField

LARGEST_LIMIT = 1_000_000_000  # beyond this a limit means nothing


@dataclass(frozen=True, slots=True)
class Quota:
    open_offers: int = 10  # a user weighs a few alternatives at a time, not the cluster
    held_instance_hours: int = 2_000  # e.g. 20 instances for 4 days, held while deciding
    proposals_per_minute: int = 60

    @classmethod
    def from_stored(cls, stored: dict[str, int] | None, default: Quota) -> Quota:
        """The defaults with the limits an admin set for one account (asked on every proposal)."""
        return replace(default, **stored) if stored else default

    def changed(self, limits: Mapping[str, Any]) -> Quota:
        """This quota with the limits given (see limits_given); others are kept."""
        return replace(self, **limits_given(limits))


LIMITS = tuple(f.name for f in fields(Quota))


def limits_given(limits: Mapping[str, Any]) -> dict[str, int]:
    """Limits an admin sets (one or more of LIMITS), each a whole number from 0 to
    LARGEST_LIMIT, or InvalidField."""
    if not limits:
        raise InvalidField("quota", f"must set one or more of {', '.join(LIMITS)}")
    for name, value in limits.items():
        if name not in LIMITS:
            raise InvalidField(str(name)[:64], f"is not a quota; quotas are {', '.join(LIMITS)}")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= LARGEST_LIMIT:
            raise InvalidField(name, f"must be an integer from 0 to {LARGEST_LIMIT}")
    return dict(limits)


class QuotaExceeded(DomainError):
    status = 429
    code = "QUOTA_EXCEEDED"

    def __init__(self, message: str, retry_after: Millis | None) -> None:
        """`retry_after`: when the same request may succeed; None if it never can as it is."""
        super().__init__(message)
        self.retry_after = None if retry_after is None else max(SECOND, retry_after)



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
    if asking_instance_ms > quota.held_instance_hours * HOUR:
        raise QuotaExceeded(f"this proposal asks for {asking_instance_ms / HOUR:.1f} instance-hours, more than your "
                            f"quota of {quota.held_instance_hours} lets any open offer hold; ask for less, or ask "
                            "the administrator for a larger quota", None)
    if held.instance_ms + asking_instance_ms > quota.held_instance_hours * HOUR:
        raise QuotaExceeded(
            f"this proposal would make your open offers hold {(held.instance_ms + asking_instance_ms) / HOUR:.1f} "
            f"instance-hours, more than your quota of {quota.held_instance_hours}; confirm or reject an open "
            "offer, or ask for less", _until(next_lapse(), now))


def _until(instant: Millis | None, now: Millis) -> Millis:
    return instant - now if instant is not None else MINUTE


class TokenBuckets:
    """A rate per key (proposals per user a minute, registrations per address an hour) as
    token buckets: each key may spend a burst of up to its limit, refilled evenly over the
    period. Memory is one entry per key seen lately."""

    def __init__(self, period: Millis = MINUTE, what: str = "proposals") -> None:
        self.period, self.what = period, what
        self._buckets: dict[str, tuple[float, Millis]] = {}  # key -> (tokens, when counted)

    def take(self, key: str, limit: int, now: Millis) -> None:
        """Count one, or raise QuotaExceeded saying when the next one is allowed."""
        tokens, then = self._buckets.get(key, (float(limit), now))
        tokens = min(float(limit), tokens + (now - then) * limit / self.period) if now > then else tokens
        if tokens < 1:
            wait = math.ceil((1 - tokens) * self.period / limit) if limit else self.period
            raise QuotaExceeded(f"you may send {limit} {self.what} {_per(self.period)}; wait before the next", wait)
        self._buckets[key] = (tokens - 1, max(now, then))
        if len(self._buckets) > 100_000:  # forget keys whose buckets have long been full again
            self._buckets = {k: b for k, b in self._buckets.items() if now - b[1] < self.period}

    def available(self, key: str, limit: int, now: Millis) -> int:
        """How many may be spent right now (for operators and the user)."""
        if key not in self._buckets:
            return limit
        tokens, then = self._buckets[key]
        return int(min(float(limit), tokens + max(0, now - then) * limit / self.period))


def _per(period: Millis) -> str:
    return {MINUTE: "a minute", HOUR: "an hour"}.get(period, f"every {period // SECOND} s")
