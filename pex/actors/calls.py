"""Calls that carry their own answer address, so no one waits on an actor's thread.

An HTTP handler must not block the event loop, and an actor must not block on an actor that may
call it back. Both are met by sending a `Call` with `tell`: the receiving actor applies the
call's function to itself and hands the result (or the exception) to `call.reply`, or passes
the reply on to the actor that will finish the work. `ask_async` makes such a call from asyncio and awaits the answer as a plain
asyncio future, resolved from the actor's thread with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pykka

log = logging.getLogger(__name__)

Reply = Callable[[Any, "BaseException | None"], None]
A = TypeVar("A", bound=pykka.Actor)  # the actor a call runs on
T = TypeVar("T")  # what the call answers


class Later(Generic[T]):
    """What a command returns when it passed its caller's reply on: another actor answers
    (with a T) once the work is done."""


LATER: Later[Any] = Later()


@dataclass(frozen=True)
class Call(Generic[A, T]):
    """`run` applied to the receiving actor, typed: a renamed or mistyped command is a type
    error at the caller, not a message nobody serves. `alone`: the Allocator runs it outside
    any batch (it relies on the store to refuse a taken name)."""

    run: Callable[[A], T]
    reply: Reply | None = None
    alone: bool = False

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.reply is not None:
            try:
                self.reply(result, error)
            except Exception:  # a listener's failure must not kill the actor answering it
                log.exception("answering %s failed", self)
        elif error is not None:
            log.error("%s failed and nobody was waiting for it: %s", self, error, exc_info=error)


class CallServing(pykka.Actor):
    """Serving `Call` messages as well as pykka's own, on whatever runs the actor (its own
    thread, or a turn on a pool: `pex.actors.pool`). Subclasses may override `route` to batch
    calls; a command that passes its caller's reply on reads it from `answering` and returns
    LATER."""

    answering: Call[Any, Any] | None = None  # the call being served

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Call):
            self.route(message)
            return None
        return super().on_receive(message)

    def route(self, call: Call[Any, Any]) -> None:
        self.run(call)

    def run(self, call: Call[Any, Any]) -> None:
        self.answering = call
        try:
            result = call.run(self)
        except Exception as error:  # handed to whoever waits; the actor lives on
            call.answer(error=error)
        else:
            if not isinstance(result, Later):
                call.answer(result)
        finally:
            self.answering = None


class CallableActor(CallServing, pykka.ThreadingActor):
    """An actor with a thread of its own that serves `Call` messages."""


class LoopReply:
    """Resolves an asyncio future from another thread. Answers for one loop can be handed
    over together (`answer_all`): one wake-up of the loop instead of one each."""

    __slots__ = ("loop", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.loop, self.future = loop, future

    def __call__(self, result: Any, error: BaseException | None) -> None:
        _hand_over(self.loop, [(self.future, result, error)])


def _settle(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in answers:
        if future.done():
            continue  # the caller gave up waiting
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _hand_over(loop: asyncio.AbstractEventLoop, answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    try:
        loop.call_soon_threadsafe(_settle, answers)
    except RuntimeError:  # the loop closed while the actor worked: nobody is waiting
        pass


def answer_all(answers: list[tuple[Call[Any, Any], Any, BaseException | None]]) -> None:
    """Answer many calls, grouping those awaited on the same event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
    for call, result, error in answers:
        if isinstance(call.reply, LoopReply):
            by_loop.setdefault(call.reply.loop, []).append((call.reply.future, result, error))
        else:
            call.answer(result, error)
    for loop, grouped in by_loop.items():
        _hand_over(loop, grouped)


ASK_TIMEOUT = 60.0  # seconds an HTTP request waits for the actors before giving up


def tell(ref: pykka.ActorRef[A], run: Callable[[A], object]) -> None:
    """Have the actor run `run`, answering nobody."""
    ref.tell(Call(run))


async def ask_async(ref: pykka.ActorRef[A], run: Callable[[A], T], *, alone: bool = False) -> T:
    """Run `run` on the actor and await its result without blocking the event loop.
    Raises TimeoutError if no answer comes within ASK_TIMEOUT (a bug, or a stuck hypervisor)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    ref.tell(Call(run, LoopReply(loop, future), alone))
    return await asyncio.wait_for(future, ASK_TIMEOUT)


async def ask_passed_on(ref: pykka.ActorRef[A], run: Callable[[A], T | Later[T]]) -> T:
    """As ask_async, for a command whose answer another actor may send (it returns LATER)."""
    answer: Any = await ask_async(ref, run)
    return answer  # type: ignore[no-any-return]  # (the T of Later[T], sent by whoever finished it)


def ask_future(ref: pykka.ActorRef[A], run: Callable[[A], T], *, alone: bool = False) -> pykka.Future[T]:
    """Send `run` to the actor and hand back the future of its answer (fan out first, then
    gather: pykka.get_all)."""
    future: pykka.ThreadingFuture[T] = pykka.ThreadingFuture()

    def reply(result: Any, error: BaseException | None) -> None:
        if error is not None:
            future.set_exception((type(error), error, error.__traceback__))
        else:
            future.set(result)

    ref.tell(Call(run, reply, alone))
    return future


def ask_sync(ref: pykka.ActorRef[A], run: Callable[[A], T], *, timeout: float | None = 30, alone: bool = False) -> T:
    """Run `run` on the actor and wait for its result on this thread. Only for actors that
    never call back into the waiting one."""
    answer: T = ask_future(ref, run, alone=alone).get(timeout=timeout)
    return answer
