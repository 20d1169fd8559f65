"""Time for the domain: instants are integer milliseconds since the Unix epoch (UTC).

The paper counts durations in milliseconds; using the same unit for instants keeps the
capacity arithmetic in plain integers. Decisions take `now` as an argument; callers get it
from a Clock, which is real in the service and manual in tests and simulations.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Protocol

Millis = int

SECOND: Millis = 1000
MINUTE: Millis = 60 * SECOND
HOUR: Millis = 60 * MINUTE
DAY: Millis = 24 * HOUR


class Clock(Protocol):
    def now(self) -> Millis: ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> Millis:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to; thread-safe so actors can share it."""

    def __init__(self, start: Millis = 0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> Millis:
        with self._lock:
            return self._now

    def set(self, instant: Millis) -> None:
        with self._lock:
            if instant < self._now:
                raise ValueError("a clock does not go backwards")
            self._now = instant

    def advance(self, delta: Millis) -> Millis:
        with self._lock:
            if delta < 0:
                raise ValueError("a clock does not go backwards")
            self._now += delta
            return self._now


def to_datetime(instant: Millis) -> datetime:
    return datetime.fromtimestamp(instant / 1000, tz=timezone.utc)


def from_datetime(moment: datetime) -> Millis:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def month_start(instant: Millis) -> Millis:
    """The first instant of the (UTC) calendar month holding `instant`."""
    return from_datetime(to_datetime(instant).replace(day=1, hour=0, minute=0, second=0, microsecond=0))
