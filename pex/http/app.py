"""The aiohttp application: factory, middlewares (errors, authentication), routes.

Handlers only translate JSON to calls on the ReservationManager and back; every call is awaited
as an asyncio future that the actor resolves, so the event loop never blocks on an actor.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pykka
from aiohttp import web

from pex.actors.calls import ask_async
from pex.domain.errors import DomainError, NotFound
from pex.drivers.base import DriverError
from pex.http.auth import PasswordCheck, Principal, Unauthorized, basic_credentials

log = logging.getLogger(__name__)

BASE = "/OpenPEX"
MANAGER = web.AppKey("manager", pykka.ActorRef)
PASSWORDS = web.AppKey("passwords", PasswordCheck)
PRINCIPAL = web.RequestKey("principal", Principal)  # who made the request

# (method, path) that need no credentials.
PUBLIC = {("POST", f"{BASE}/users"), ("GET", f"{BASE}/health")}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(manager: pykka.ActorRef[Any], passwords: PasswordCheck | None = None) -> web.Application:
    from pex.http import handlers  # the routes need the keys above

    app = web.Application(middlewares=[errors_middleware, auth_middleware], client_max_size=64 * 1024)
    app[MANAGER] = manager
    app[PASSWORDS] = passwords or PasswordCheck()
    handlers.add_routes(app)
    return app


async def call(request: web.Request, method: str, *args: Any, **kwargs: Any) -> Any:
    return await ask_async(request.app[MANAGER], method, *args, **kwargs)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    response = web.json_response({"error": code, "message": message, **extra}, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="OpenPEX", charset="UTF-8"'
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as error:
        body = error.to_dict()
        return error_response(error.status, body.pop("error"), body.pop("message"), **body)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_response(error.status, error.reason.upper().replace(" ", "_"),
                              f"{request.method} {request.path}: {error.reason}")
    except DriverError as error:
        return error_response(502, "HYPERVISOR_ERROR", str(error))
    except pykka.ActorDeadError:
        return error_response(503, "UNAVAILABLE", "the service is stopping")
    except TimeoutError:
        log.error("no answer in time for %s %s", request.method, request.path)
        return error_response(504, "TIMEOUT", "the service did not answer in time; the request may or may not have been carried out")
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(500, "INTERNAL_ERROR", "an unexpected error happened; it has been logged")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (request.method, request.path.rstrip("/")) in PUBLIC or not request.path.startswith(BASE):
        return await handler(request)
    username, password = basic_credentials(request.headers.get("Authorization"))
    passwords = request.app[PASSWORDS]
    who = passwords.remembered(username, password)
    if who is None:
        try:
            account = await call(request, "account", username)
        except NotFound:
            account = None
        candidate = Principal(username, bool(account and account["isAdmin"]))
        stored = account["passwordHash"] if account else None
        if not await passwords.verify(candidate if account else None, password, stored):
            raise Unauthorized("wrong username or password")
        who = candidate
    request[PRINCIPAL] = who
    return await handler(request)
