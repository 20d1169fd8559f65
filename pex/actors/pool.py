"""Actors that take turns on a shared, bounded pool of threads instead of owning one each.

A pykka ThreadingActor holds a thread for life: ten thousand hosts would be ten thousand
threads, nearly all asleep. A PooledActor keeps pykka's contract (an ActorRef and its inbox,
one message at a time in the order sent, `on_start` before the first message and `on_stop`
after the last, tell, ask, proxies, stop, the registry) and runs on `Workers`: a message for an
idle actor queues the actor's turn; a worker handles up to TURN of its messages and queues it
again at the back if more wait, so a busy actor never starves the others and one actor never
runs on two threads at once. pykka leaves room for actor types of this kind: they supply their
inbox, future and loop (`_create_actor_inbox`, `_create_future`, `_start_actor_loop`), as its
gevent and eventlet actors once did.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pykka

if TYPE_CHECKING:
    from pykka._envelope import Envelope

log = logging.getLogger(__name__)

TURN = 16  # messages an actor handles before the others queued get their turn


class Workers:
    """A fixed number of threads that run the actors' turns, first queued first run."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)

    def run(self, turn: Callable[[], None]) -> None:
        try:
            self._executor.submit(turn)
        except RuntimeError:  # shut down: every actor on it has stopped, and the message with it
            log.debug("a turn came after the workers stopped")

    def shutdown(self) -> None:
        """Let the queued turns finish and the threads end (after every actor has stopped)."""
        self._executor.shutdown(wait=True)


class _Inbox:
    """An actor's messages. Putting one in while the actor is idle queues its turn."""

    def __init__(self) -> None:
        self._messages: deque[Envelope[Any]] = deque()
        self._lock = threading.Lock()
        self._queued = True  # until the actor starts: its first turn runs `on_start` first
        self.wake: Callable[[], None] = lambda: None

    def put(self, envelope: Envelope[Any], /) -> None:
        with self._lock:
            self._messages.append(envelope)
            if self._queued:
                return
            self._queued = True
        self.wake()

    def get(self) -> Envelope[Any]:
        """The next message (pykka's teardown reads the rest this way; it never blocks)."""
        with self._lock:
            return self._messages.popleft()

    def empty(self) -> bool:
        return not self._messages

    def next_or_idle(self) -> Envelope[Any] | None:
        """The next message, or None: the actor is idle, and the next `put` queues its turn."""
        with self._lock:
            if self._messages:
                return self._messages.popleft()
            self._queued = False
            return None


class PooledActor(pykka.Actor):
    """An actor whose messages are handled on `workers` (give them to `__init__`)."""

    def __init__(self, workers: Workers) -> None:
        super().__init__()
        self.workers = workers
        self._started = False

    @staticmethod
    def _create_actor_inbox() -> _Inbox:
        return _Inbox()

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return pykka.ThreadingFuture()

    @property
    def _inbox(self) -> _Inbox:
        inbox = self.actor_inbox
        assert isinstance(inbox, _Inbox)
        return inbox

    def _start_actor_loop(self) -> None:
        self._inbox.wake = lambda: self.workers.run(self._turn)
        self.workers.run(self._turn)

    def _turn(self) -> None:
        if not self._started:
            self._started = True
            self._actor_loop_setup()  # on_start (an actor that failed in it is stopped)
        for _ in range(TURN):
            if self.actor_stopped.is_set():
                self._actor_loop_teardown()  # those waiting on what is left hear it died
                return
            envelope = self._inbox.next_or_idle()
            if envelope is None:
                return
            self._handle(envelope)
        if self.actor_stopped.is_set():
            self._actor_loop_teardown()
        else:
            self.workers.run(self._turn)  # more may wait: at the back of the queue

    def _handle(self, envelope: Envelope[Any]) -> None:
        """One message, as pykka's own loop handles it."""
        try:
            response = self._handle_receive(envelope.message)
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)
        except Exception:
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception()
            else:
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:
                    self._handle_failure(*sys.exc_info())
        except BaseException:  # (pykka stops every actor then; here the process is going down)
            log.exception("%s stopped", self)
            self._stop()
