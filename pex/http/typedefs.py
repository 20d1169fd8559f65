"""What the HTTP modules share, and nothing of them: the application's and the request's keys,
and the two things every handler does with them (ask the actors, know who asks). Kept apart so
that the app and its handlers do not import each other (aiohttp-demos keep them so)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pykka
from aiohttp import web

from pex.actors.allocator import Allocator
from pex.actors.calls import Later, ask_async, ask_passed_on
from pex.actors.reservation_manager import ReservationManager
from pex.actors.system import System
from pex.domain.errors import NotFound
from pex.fencing import Standby
from pex.domain.read_models import AccountView
from pex.http.auth import PasswordCheck, Principal
from pex.metrics import Metrics

T = TypeVar("T")

BASE = "/OpenPEX"
SYSTEM = web.AppKey("system", System)  # the actors (a standby's have no manager until it takes over)
METRICS = web.AppKey("metrics", Metrics)
METRICS_PATH = "/metrics"  # where Prometheus looks by default (the admin's credentials)
PASSWORDS = web.AppKey("passwords", PasswordCheck)
CORS_ORIGINS = web.AppKey("cors_origins", frozenset[str])  # origins allowed to call the API from a browser
PRINCIPAL = web.RequestKey("principal", Principal)  # who made the request


async def ask(request: web.Request, run: Callable[[Allocator], T], *, alone: bool = False) -> T:
    """Run `run` on the Allocator (negotiation, queries, the catalogue) and await its answer;
    the loop never blocks."""
    return await ask_async(request.app[SYSTEM].allocator, run, alone=alone)


def manager(request: web.Request) -> pykka.ActorRef[ReservationManager]:
    found = request.app[SYSTEM].manager
    if found is None:
        raise Standby("this OpenPEX is a standby: it answers reads; the writer does this")
    return found


async def ask_manager(request: web.Request, run: Callable[[ReservationManager], T]) -> T:
    """Run `run` on the ReservationManager (what also needs the hypervisors)."""
    return await ask_async(manager(request), run)


async def ask_manager_later(request: web.Request, run: Callable[[ReservationManager], T | Later[T]]) -> T:
    """As ask_manager, for a command a NodeActor answers once its VM's outcome is recorded."""
    return await ask_passed_on(manager(request), run)


async def find_account(request: web.Request, name: str) -> tuple[AccountView, str] | None:
    """The account called `name` and its password hash, or None (what PasswordCheck.login asks)."""
    try:
        return await ask(request, lambda allocator: allocator.app.catalogue.password_hash(name))
    except NotFound:
        return None


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
