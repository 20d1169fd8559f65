"""What the HTTP modules share, and nothing of them: the application's and the request's keys,
and the two things every handler does with them (ask the actors, know who asks). Kept apart so
that the app and its handlers do not import each other (aiohttp-demos keep them so)."""

from __future__ import annotations

from typing import Any

import pykka
from aiohttp import web

from pex.actors.calls import ask_async
from pex.http.auth import PasswordCheck, Principal

BASE = "/OpenPEX"
MANAGER = web.AppKey("manager", pykka.ActorRef)
PASSWORDS = web.AppKey("passwords", PasswordCheck)
CORS_ORIGINS = web.AppKey("cors_origins", frozenset)  # origins allowed to call the API from a browser
PRINCIPAL = web.RequestKey("principal", Principal)  # who made the request


async def call(request: web.Request, method: str, *args: Any, **kwargs: Any) -> Any:
    """Run `method` on the ReservationManager and await its answer (the loop never blocks)."""
    return await ask_async(request.app[MANAGER], method, *args, **kwargs)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
