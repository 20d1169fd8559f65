"""What every request must meet before a handler sees it, and what every answer carries:
JSON content types, cross-origin rules (CORS refused unless an origin is configured), and
security headers.

A browser that holds a user's Basic credentials sends them with any request to this host,
even one a page on another site makes it send. Such a page can only send "simple" requests
(a form or a text/plain body) without asking first: refusing every body that is not
application/json (415) and every state-changing request from a foreign `Origin` (403) leaves it
nothing to act with. Preflights are answered without credentials, as browsers send them.
(The portal's pages beside the API take forms, and refuse any without their session's CSRF
token: pex/http/portal/site.py.)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp.web_response
from aiohttp import http_exceptions, web

from pex.domain.errors import DomainError, one_line
from pex.http.typedefs import BASE, CORS_ORIGINS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SERVER = "OpenPEX"  # the Server header: no software versions for a scanner to match
PREFLIGHT_MAX_AGE = "600"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # answers hold one user's data: no cache may keep them
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}

# Answers aiohttp makes itself for requests it cannot parse never reach the app's signals.
# (a name aiohttp imports but does not export: set on purpose where aiohttp reads it)
aiohttp.web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]


class UnsupportedMediaType(DomainError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class CrossOriginRefused(DomainError):
    status = 403
    code = "CROSS_ORIGIN_REFUSED"


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


@web.middleware
async def content_type_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request to the API with a body must say it is JSON (a request without one may say
    anything: clients label even an empty body). The portal's forms are its own to read."""
    if request.method not in SAFE_METHODS and request.body_exists and request.path.startswith(BASE):
        declared = request.headers.get("Content-Type")
        if declared is None:
            raise UnsupportedMediaType("a request body must have Content-Type: application/json")
        if not is_json(declared):
            raise UnsupportedMediaType(f"the body must be application/json, not {declared[:80]!r}")
    return await handler(request)


def _own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _allowed_methods(request: web.Request) -> set[str] | None:
    """The methods the requested path serves (None: no such path)."""
    error = request.match_info.http_exception
    if isinstance(error, web.HTTPMethodNotAllowed):
        return set(error.allowed_methods)
    if error is not None:
        return None
    resource = request.match_info.route.resource
    return {route.method for route in resource} if resource is not None else {request.method}


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in request.app[CORS_ORIGINS]
    if request.method == "OPTIONS":
        methods = _allowed_methods(request)
        if methods is None:
            raise web.HTTPNotFound()
        methods |= {"OPTIONS"}
        if origin is None or request.headers.get("Access-Control-Request-Method") is None:
            return web.Response(status=204, headers={"Allow": ", ".join(sorted(methods))})
        if not allowed:
            raise CrossOriginRefused(f"requests from {origin[:200]!r} are not allowed (see --cors-origin)")
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(sorted(methods)),
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            "Vary": "Origin",
        })
    if origin is not None and not allowed and request.method not in SAFE_METHODS and origin != _own_origin(request):
        raise CrossOriginRefused(f"requests from {origin[:200]!r} are not allowed (see --cors-origin)")
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer, errors included; an allowed origin may read it (and its errors)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Server"] = SERVER
    origin = request.headers.get("Origin")
    if origin is not None and origin in request.app[CORS_ORIGINS] and request.method != "OPTIONS":
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Location, Retry-After"
        response.headers["Vary"] = "Origin"


class QuietClientErrors(logging.Filter):
    """aiohttp logs a request it cannot parse (a NUL in a header, an over-long line) as an
    ERROR with a traceback; that is the client's mistake, worth one line at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, http_exceptions.HttpProcessingError) and 400 <= (error.code or 400) < 500:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "refused a malformed request from %s: %s", (remote, _one_line(error))
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _one_line(error: BaseException) -> str:
    """aiohttp's parse errors keep what the client sent in `message` (str() adds a prefix)."""
    return one_line(getattr(error, "message", "") or error)


def quiet_client_errors() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, QuietClientErrors) for f in logger.filters):
        logger.addFilter(QuietClientErrors())
