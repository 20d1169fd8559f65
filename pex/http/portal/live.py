"""Live pages: the service's own saved events wake the portal's open streams (server-sent
events), which then read what their visitor may see and send what changed.

The application calls its listeners on the Allocator's thread right after each save; the hub
only notes that instances changed and wakes the event loop, so the writer never waits on a
browser. A stream reads its visitor's instances through the same visibility rule as every
other read: a wake-up reveals nothing of anyone else's.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

# Events after which an instance's row may read differently.
INSTANCE_EVENTS = ("Instance.", "Reservation.Confirmed", "Reservation.Cancelled", "Reservation.Expired",
                   "Reservation.Replanned")


class Hub:
    """Wakes every open stream when instances changed. A counter, not a queue: a stream that
    was busy reading when two changes came reads once, and misses nothing."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Condition | None = None
        self.generation = 0  # how many times instances have changed
        self.closed = False
        self._pending = False  # a wake is on its way to the loop
        self._open: Counter[str] = Counter()  # streams open per user

    @contextmanager
    def streaming(self, username: str, most: int) -> Iterator[bool]:
        """Count a stream of `username`'s while it is open; False if they have `most` already."""
        if self._open[username] >= most:
            yield False
            return
        self._open[username] += 1
        try:
            yield True
        finally:
            self._open[username] -= 1
            if not self._open[username]:
                del self._open[username]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._changed = loop, asyncio.Condition()

    def saved(self, events: Sequence[Any]) -> None:
        """The application's listener (any thread)."""
        if self._loop is None or self._loop.is_closed():
            return
        if not self._pending and any(type(event).__qualname__.startswith(INSTANCE_EVENTS) for event in events):
            self._pending = True  # (saves in a burst wake the streams once; a race costs one more wake)
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._wake()))

    async def _wake(self) -> None:
        assert self._changed is not None
        self._pending = False
        async with self._changed:
            self.generation += 1
            self._changed.notify_all()

    async def wait(self, seen: int, timeout: float) -> int:
        """The generation once it is past `seen`, or after `timeout` seconds (or at close)."""
        assert self._changed is not None
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.generation != seen or self.closed),
                                       timeout)
            except TimeoutError:
                pass
            return self.generation

    async def close(self) -> None:
        """Let every stream end (the server is stopping)."""
        self.closed = True
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()
