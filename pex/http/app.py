"""The aiohttp application: factory, middlewares (errors, cross-origin rules, content types,
authentication), routes.

Handlers only translate JSON to calls on the ReservationManager and back; every call is awaited
as an asyncio future that the actor resolves, so the event loop never blocks on an actor.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

import pykka
from aiohttp import web
from aiohttp_session import session_middleware

from pex.actors.system import System
from pex.domain.errors import DomainError
from pex.drivers.base import DriverError
from pex.http import handlers, presenters
from pex.http.portal import add_portal
from pex.http.portal import sessions as portal_sessions
from pex.fencing import Standby
from pex.http.portal.site import portal_middleware
from pex.http.auth import PasswordCheck, basic_credentials
from pex.http.protection import content_type_middleware, cors_middleware, quiet_client_errors, security_headers
from pex.http.typedefs import (BASE, CORS_ORIGINS, METRICS, METRICS_PATH, PASSWORDS, PRINCIPAL, SYSTEM,
                               find_account)
from pex.logs import about

log = logging.getLogger(__name__)

# (method, path) that need no credentials.
PUBLIC = {("POST", f"{BASE}/users"), ("GET", f"{BASE}/health"), ("GET", f"{BASE}/openapi.json")}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(system: System, passwords: PasswordCheck | None = None, *,
               cors_origins: Collection[str] = (), session_key: bytes | None = None,
               secure_cookies: bool = False, data_dir: Path | None = None) -> web.Application:
    """The REST API under /OpenPEX and the portal beside it. `session_key` encrypts the
    portal's session cookies (default: one made for this process); `secure_cookies` marks
    them Secure (the portal is served over TLS); the data dir keeps the sessions logged out."""
    quiet_client_errors()
    sessions = session_middleware(portal_sessions.storage(session_key or portal_sessions.session_key(None),
                                                          secure=secure_cookies))
    # (the portal's errors are pages rendered inside the sessions': what they change is saved)
    app = web.Application(middlewares=[metrics_middleware, errors_middleware, sessions, portal_middleware,
                                       cors_middleware, standby_middleware, content_type_middleware, auth_middleware],
                          client_max_size=64 * 1024)
    app[METRICS] = system.metrics
    app[SYSTEM] = system
    app[PASSWORDS] = passwords or PasswordCheck()
    app.on_cleanup.append(stop_hashing)
    app[CORS_ORIGINS] = frozenset(cors_origins)
    app.on_response_prepare.append(security_headers)
    handlers.add_routes(app)
    add_portal(app, system.app, data_dir)
    return app


async def stop_hashing(app: web.Application) -> None:
    app[PASSWORDS].close()


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    response = web.json_response({"error": code, "message": message, **extra}, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="OpenPEX", charset="UTF-8"'
    return response


SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


@web.middleware
async def standby_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A standby answers reads from its own view and refuses every write (503, Retry-After: 1)."""
    if request.method not in SAFE and not request.app[SYSTEM].writing:
        raise Standby("this OpenPEX is a standby: it answers reads; writes go to the writer (try again in a "
                      "second: this one takes over if the writer is gone)")
    return await handler(request)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request by its route's pattern (never the path itself: ids would make a
    series each), method and the status it was finally answered."""
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        route = request.match_info.route.resource
        pattern = route.canonical if route is not None else "unmatched"
        request.app[METRICS].http_requests.labels(route=pattern, method=request.method, status=str(status)).inc()


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as error:
        body, retry_after = presenters.error(error)
        response = error_response(error.status, body.pop("error"), body.pop("message"), **body)
        if retry_after is not None:  # 429 says when to come back
            response.headers["Retry-After"] = str(retry_after)
        return response
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = error_response(error.status, error.reason.upper().replace(" ", "_"),
                                  f"{request.method} {request.path[:200]}: {error.reason}")
        if "Allow" in error.headers:  # a 405 says what the path does allow
            response.headers["Allow"] = error.headers["Allow"]
        return response
    except DriverError as error:
        return error_response(502, "HYPERVISOR_ERROR", str(error))
    except pykka.ActorDeadError:
        return error_response(503, "UNAVAILABLE", "the service is stopping")
    except TimeoutError:
        log.error("no answer in time for %s %r", request.method, request.path[:200],  # (repr: no forged lines)
                  extra=_about(request))
        return error_response(504, "TIMEOUT", "the service did not answer in time; the request may or may not have been carried out")
    except Exception:
        log.exception("unexpected error in %s %r", request.method, request.path[:200], extra=_about(request))
        return error_response(500, "INTERNAL_ERROR", "an unexpected error happened; it has been logged")


def _about(request: web.Request) -> dict[str, str]:
    """What a request's log line is about: the reservation or VM its path names, who asked."""
    principal = request.get(PRINCIPAL)
    return about(reservation=request.match_info.get("id", "")[:64], vm=request.match_info.get("vm_id", "")[:64],
                 user=principal.username if principal is not None else None)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    protected = request.path.startswith(BASE) or request.path == METRICS_PATH
    if (request.method, request.path.rstrip("/")) in PUBLIC or not protected:
        return await handler(request)
    username, password = basic_credentials(request.headers.get("Authorization"))
    request[PRINCIPAL] = await request.app[PASSWORDS].login(username, password, request.remote,
                                                            lambda name: find_account(request, name))
    return await handler(request)
