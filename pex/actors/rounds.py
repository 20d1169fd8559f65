"""Rounds: every host visited once per interval, the visits spread evenly over it.

Ten thousand hosts polled at one instant would be ten thousand messages at once every
interval: a burst on the node workers and on the Allocator, and a queue in front of whatever
else waits (a VM's boot). The monitors tick TICKS times an interval instead, and at each tick
`Rounds.due` hands out the hosts whose turn has come. A round lasts one interval and each host
keeps its place in it (the order of the list), so each is visited once an interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

TICKS = 50  # ticks a round is spread over


class Rounds(Generic[T]):
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._round: list[T] = []
        self._given = 0  # how many of this round have been handed out
        self._started = float("-inf")

    def due(self, now: float, everyone: Callable[[], list[T]]) -> list[T]:
        """What has come due by `now` (seconds, monotonic). `everyone` gives the next round's
        hosts, asked once a round, when it begins."""
        if self._given >= len(self._round):
            if now - self._started < self.interval:
                return []  # this round is done; the next begins an interval after it began
            # (on time, not a tick late each round, unless the monitor fell behind)
            self._started = self._started + self.interval if now - self._started < 2 * self.interval else now
            self._round, self._given = everyone(), 0
        share = min(1.0, (now - self._started) / self.interval)
        until = max(self._given, math.ceil(round(share * len(self._round), 6)))  # (0.3 * 10 is not 3.0000000000000004)
        due, self._given = self._round[self._given:until], until
        return due
