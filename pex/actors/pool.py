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
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pykka

if TYPE_CHECKING:
    from pykka._envelope import Envelope

log = logging.getLogger(__name__)

TURN = 16  # messages an actor handles before the others queued get their turn
LAG = 0.005  # seconds a queued turn may wait before another thread is woken for it
BUSY = 2  # threads woken for turns that wait, whatever they do (the cores: 2 in the figures measured)
STALL = 0.02  # seconds in one turn after which a thread counts as waiting on its host


class Workers:
    """A fixed number of threads that run the actors' turns, first queued first run.

    A queued turn wakes a sleeping thread only when the awake ones will not get to it soon:
    none is awake; or the oldest queued turn has waited more than LAG and fewer than BUSY
    threads are awake, or every awake one has been in its turn for more than STALL (waiting on
    its host, a stuck hypervisor). So turns of a few microseconds (polls) are run by one
    thread, turns that only use the CPU (boots on simulated hosts) by BUSY, and turns that wait
    on hosts by as many as wait, up to all of them. Waking a thread for every turn, as a
    ThreadPoolExecutor does, had at ten thousand hosts all 32 threads contending for the GIL:
    two thirds of the idle service's CPU, most of it in the kernel, and a third of a boot
    storm's. A watch thread does the waking when turns wait and no new turn comes to do it.
    Not a ThreadPoolExecutor for a second reason: a turn needs no future (nobody waits on it);
    the executor's future, work item and condition per turn were a fifth of the Python work."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._turns: deque[tuple[float, Callable[[], None]]] = deque()  # (queued at, turn)
        self._gates = [threading.Lock() for _ in range(size)]  # a sleeping thread waits on its own
        for gate in self._gates:
            gate.acquire()
        self._sleeping = list(range(size))  # the last to sleep is the first woken
        self._awake = 0
        self._began: dict[int, float] = {}  # awake threads: when their turn began (0.0: between turns)
        self._closed = False
        self._watching = threading.Condition(self._lock)
        self._watch_armed = False
        self._threads = [threading.Thread(target=self._work, args=(i,), name=f"{name}_{i}", daemon=True)
                         for i in range(size)]
        self._watch = threading.Thread(target=self._watch_lag, name=f"{name}-watch", daemon=True)
        for thread in (*self._threads, self._watch):
            thread.start()

    def run(self, turn: Callable[[], None]) -> None:
        now = time.monotonic()
        with self._lock:
            if self._closed:  # shut down: every actor on it has stopped, and the message with it
                log.debug("a turn came after the workers stopped")
                return
            self._turns.append((now, turn))
            self._wake_if_lagging(now)
            self._arm_watch()

    def _arm_watch(self) -> None:
        """(Holding the lock.) Turns wait: have the watch thread see that they do not wait long."""
        if self._sleeping and not self._watch_armed:
            self._watch_armed = True
            self._watching.notify()

    def _wake_if_lagging(self, now: float) -> None:
        """(Holding the lock.) Wake a sleeping thread if the queued turns need one."""
        if not self._sleeping or not self._turns:
            return
        if self._awake == 0 or now - self._turns[0][0] > LAG and (
                self._awake < BUSY or all(began and now - began > STALL for began in self._began.values())):
            self._awake += 1
            self._gates[self._sleeping.pop()].release()

    def _work(self, i: int) -> None:
        gate, lock, turns = self._gates[i], self._lock, self._turns
        while True:
            gate.acquire()  # (released by whoever woke this thread)
            while True:
                with lock:
                    if not turns:
                        self._awake -= 1
                        self._began.pop(i, None)
                        if self._closed:
                            return
                        self._sleeping.append(i)
                        break
                    _, turn = turns.popleft()
                    self._began[i] = time.monotonic()
                    if turns:
                        self._arm_watch()
                try:
                    turn()
                except BaseException:  # (a turn handles its actor's failures: this is a bug)
                    log.exception("a turn failed")
                self._began[i] = 0.0

    def _watch_lag(self) -> None:
        with self._lock:
            while not self._closed:
                if not self._watch_armed:
                    self._watching.wait()
                    continue
                self._watching.wait(LAG)
                self._wake_if_lagging(time.monotonic())
                self._watch_armed = bool(self._turns) and bool(self._sleeping)

    def shutdown(self) -> None:
        """Let the queued turns finish and the threads end (after every actor has stopped)."""
        with self._lock:
            self._closed = True
            sleeping, self._sleeping = self._sleeping, []
            self._awake += len(sleeping)
            for i in sleeping:
                self._gates[i].release()
            self._watching.notify()
        for thread in (*self._threads, self._watch):
            thread.join()


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
