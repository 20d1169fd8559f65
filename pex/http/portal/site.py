"""What every page of the portal shares: rendering with the visitor, the CSRF token and the
notices; the rule of who may see a page; and errors as pages (never JSON, never a traceback),
with a Content-Security-Policy that lets no inline script run."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp_jinja2
import pykka
from aiohttp import web
from aiohttp_session import get_session
from multidict import MultiDictProxy

from pex.domain.errors import DomainError
from pex.drivers.base import DriverError
from pex.http.portal.sessions import VISITOR, Tone, Visitor, check_csrf, csrf_token, flash, flashes, visitor_of
from pex.http.typedefs import BASE, METRICS_PATH

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# A browser sends `Origin: null` with a form from a page that sends no referrer; the API's
# cross-origin rule would refuse it, so pages send their origin to their own site only.
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "same-origin"}
FORM = web.RequestKey("form", MultiDictProxy[str | bytes | Any])


def is_portal(request: web.Request) -> bool:
    return not (request.path.startswith(BASE) or request.path == METRICS_PATH)


async def render(request: web.Request, template: str, context: Mapping[str, Any] | None = None, *,
                 status: int = 200) -> web.Response:
    page = {"visitor": request.get(VISITOR), "csrf": await csrf_token(request), "flashes": await flashes(request),
            "path": request.path, **(context or {})}
    return aiohttp_jinja2.render_template(template, request, page, status=status)


def page(*, admin: bool = False) -> Callable[[Handler], Handler]:
    """A page for signed-in visitors (the admin's, with `admin`): others are sent to the login
    (403 for a signed-in non-admin). A POST must carry the session's CSRF token (403)."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            visitor = visitor_of(request, await get_session(request))
            if visitor is None:
                if request.method == "GET":
                    raise web.HTTPSeeOther(f"/login?next={quote(str(request.rel_url), safe='')}")
                raise web.HTTPSeeOther("/login")
            request[VISITOR] = visitor
            if admin and not visitor.is_admin:
                raise PageRefused(403, "Only the administrator may see this page.")
            if request.method == "POST":
                await read_form(request)
            return await handler(request)
        return run
    return wrap


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """The posted form, once its CSRF token is checked; a body that is no readable form is
    refused (400), as is one of another type (415)."""
    if request.content_type not in FORM_TYPES:
        raise PageRefused(415, "This page takes a form (application/x-www-form-urlencoded).")
    try:
        form = await request.post()
    except (UnicodeDecodeError, LookupError, ValueError, AssertionError):
        raise PageRefused(400, "The form could not be read (its encoding or its parts are not what a browser "
                               "sends). Reload the page and send it again.") from None
    await check_csrf(request, form)
    request[FORM] = form
    return form


def form_of(request: web.Request) -> MultiDictProxy[Any]:
    return request[FORM]


def visitor(request: web.Request) -> Visitor:
    return request[VISITOR]


class PageRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


TITLES = {400: "That cannot be done", 403: "Not allowed", 404: "Not found", 405: "Not allowed",
          409: "That cannot be done now", 413: "Too large", 415: "Not a form", 429: "Too many requests",
          502: "A host did not answer", 503: "OpenPEX is busy or down", 504: "OpenPEX is busy"}


@web.middleware
async def portal_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Portal answers: the page CSP on every one, and errors rendered as pages."""
    if not is_portal(request):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            error.headers.update(PAGE_HEADERS)
            raise
        response = await _error_page(request, error.status, error.reason)
        if "Allow" in error.headers:  # (a 405 says what the path does allow)
            response.headers["Allow"] = error.headers["Allow"]
    except PageRefused as refused:
        response = await _error_page(request, refused.status, refused.message)
    except DomainError as error:
        response = await _error_page(request, error.status, error.message, retry_after=getattr(error, "retry_after", None))
    except DriverError as error:
        response = await _error_page(request, 502, f"A hypervisor did not do what was asked: {error}")
    except (pykka.ActorDeadError, TimeoutError):
        response = await _error_page(request, 503, "OpenPEX did not answer in time. It may be busy or stopping; "
                                                    "wait a moment and try again. What you sent may or may not have "
                                                    "been carried out: check before sending it again.")
    except Exception:
        log.exception("unexpected error in %s %r", request.method, request.path[:200])
        response = await _error_page(request, 500, "Something went wrong on our side; it has been logged.")
    response.headers.update(PAGE_HEADERS)
    return response


async def _error_page(request: web.Request, status: int, message: str, retry_after: Any = None) -> web.Response:
    if status == 404 and message in ("Not Found", ""):
        message = "There is no such page here."
    try:
        response = await render(request, "error.html", {"status": status, "title": TITLES.get(status, "Error"),
                                                        "message": message}, status=status)
    except Exception:  # (the session or the templates failed too: a plain page, still no traceback)
        log.exception("the error page for %s could not be rendered", request.path[:200])
        response = web.Response(status=status, text=f"{status}: {message}", content_type="text/plain")
    if isinstance(retry_after, (int, float)):
        response.headers["Retry-After"] = str(int(retry_after))
    return response


async def act(request: web.Request, action: Awaitable[T], said: Callable[[T], tuple[str, Tone]]) -> None:
    """Carry out a button's action and say how it went in a notice on the next page: a refusal
    (409, 429, ...) is said there too; something not found (someone else's) stays a 404 page."""
    try:
        result = await action
    except DomainError as refused:
        if refused.status == 404:
            raise
        await flash(request, refused.message, "error")
    else:
        await flash(request, *said(result))
