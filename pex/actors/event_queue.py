"""EventQueue: delayed messages. Each timer has a key; arming a key again moves it.

Timers live in memory only: every one of them is derived from the store by its owner (the
Allocator re-arms the next due time after each change and at start-up), so nothing is lost when
the process dies. A ticker thread sleeps until the next due instant on the clock (at most
`poll` seconds, so a manual clock moved by a test is noticed too) and tells the actor to fire.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from typing import Any

import pykka
from sortedcontainers import SortedList

from pex.actors.calls import A, Call, CallableActor, ask_sync
from pex.domain.clock import Clock, Millis

log = logging.getLogger(__name__)


class EventQueue(CallableActor):
    def __init__(self, clock: Clock, *, poll: float = 0.5) -> None:
        super().__init__()
        self.clock = clock
        self.poll = poll
        self._timers: dict[Hashable, tuple[Millis, int, pykka.ActorRef[Any], Call[Any, Any]]] = {}
        self._order: SortedList[tuple[Millis, int, Hashable]] = SortedList()  # (due, sequence, key)
        self._sequence = 0
        self._next_due: Millis | None = None  # read by the ticker thread
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="EventQueue-ticker", daemon=True)

    def on_start(self) -> None:
        self._ticker.start()

    def on_stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._ticker.join(timeout=5)

    # ------------------------------------------------------------------ commands

    def arm(self, key: Hashable, due: Millis, target: pykka.ActorRef[A], call: Call[A, object]) -> None:
        """Tell `call` to `target` at `due` (at once if it has passed), replacing any timer
        with the same key."""
        self.disarm(key)
        self._sequence += 1
        self._timers[key] = (due, self._sequence, target, call)
        self._order.add((due, self._sequence, key))
        self._changed()

    def disarm(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            self._order.remove((timer[0], timer[1], key))
            self._changed()

    def fire_due(self) -> int:
        """Send every message that has fallen due; returns how many."""
        now = self.clock.now()
        fired = 0
        while self._order and self._order[0][0] <= now:
            _, _, key = self._order.pop(0)
            _, _, target, call = self._timers.pop(key)
            try:
                target.tell(call)
            except pykka.ActorDeadError:
                pass  # its owner has stopped; at the next start it re-arms from the store
            fired += 1
        if fired:
            self._changed()
        return fired

    def pending(self) -> dict[Hashable, Millis]:
        return {key: timer[0] for key, timer in self._timers.items()}

    def _changed(self) -> None:
        self._next_due = self._order[0][0] if self._order else None
        self._wake.set()

    # ------------------------------------------------------------------ ticker thread

    def _tick(self) -> None:
        me = self.actor_ref
        while not self._stopping.is_set():
            due = self._next_due
            wait = self.poll if due is None else min(self.poll, max(0.0, (due - self.clock.now()) / 1000))
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
                continue
            try:
                ask_sync(me, lambda queue: queue.fire_due(), timeout=5)
            except pykka.ActorDeadError:
                return
            except pykka.Timeout:  # the actor is busy; the timers are still there: try again
                log.warning("the event queue did not fire within 5 s; retrying")
