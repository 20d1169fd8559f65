"""Calls that carry their own answer address, so no one waits on an actor's thread.

An HTTP handler must not block the event loop, and an actor must not block on an actor that may
call it back. Both are met by sending a `Call` with `tell`: the receiving actor runs the method
and hands the result (or the exception) to `call.reply`, or passes the call on to the actor that
will finish it. `ask_async` makes such a call from asyncio and awaits the answer as a plain
asyncio future, resolved from the actor's thread with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka

log = logging.getLogger(__name__)

Reply = Callable[[Any, "BaseException | None"], None]


@dataclass(frozen=True)
class Call:
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    reply: Reply | None = None

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.reply is not None:
            try:
                self.reply(result, error)
            except Exception:  # a listener's failure must not kill the actor answering it
                log.exception("answering %s failed", self.method)
        elif error is not None:
            log.error("%s failed and nobody was waiting for it: %s", self.method, error, exc_info=error)


class CallableActor(pykka.ThreadingActor):
    """An actor whose public methods may be invoked with `Call` messages as well as through
    a proxy. Subclasses may override `route` to pass some calls on instead of running them."""

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Call):
            self.route(message)
            return None
        return super().on_receive(message)

    def route(self, call: Call) -> None:
        self.run(call)

    def handler(self, method: str) -> Callable[..., Any]:
        """The callable that serves `method`: by default this actor's public method."""
        if method.startswith("_") or not callable(getattr(self, method, None)):
            raise AttributeError(f"{type(self).__name__} has no command {method!r}")
        return getattr(self, method)

    def run(self, call: Call) -> None:
        try:
            result = self.handler(call.method)(*call.args, **call.kwargs)
        except Exception as error:  # handed to whoever waits; the actor lives on
            call.answer(error=error)
        else:
            call.answer(result)


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


def answer_all(answers: list[tuple[Call, Any, BaseException | None]]) -> None:
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


async def ask_async(ref: pykka.ActorRef[Any], method: str, *args: Any, **kwargs: Any) -> Any:
    """Run `method` on the actor and await its result without blocking the event loop.
    Raises TimeoutError if no answer comes within ASK_TIMEOUT (a bug, or a stuck hypervisor)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    ref.tell(Call(method, args, kwargs, LoopReply(loop, future)))
    return await asyncio.wait_for(future, ASK_TIMEOUT)


def ask_sync(ref: pykka.ActorRef[Any], method: str, *args: Any, timeout: float | None = 30, **kwargs: Any) -> Any:
    """Run `method` on the actor and wait for its result on this thread. Only for actors that
    never call back into the waiting one."""
    future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()

    def reply(result: Any, error: BaseException | None) -> None:
        if error is not None:
            future.set_exception((type(error), error, error.__traceback__))
        else:
            future.set(result)

    ref.tell(Call(method, args, kwargs, reply))
    return future.get(timeout=timeout)
