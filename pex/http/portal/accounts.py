"""Register, log in, log out: the same accounts, password hashes, login throttle and cache of
verified passwords as the REST API (pex.http.auth)."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web
from aiohttp_session import get_session

from pex.domain.errors import AlreadyExists, InvalidField
from pex.http.auth import TooManyAttempts, Unauthorized
from pex.http.portal.forms import values_of
from pex.http.portal.sessions import Visitor, sign_in, sign_out, visitor_of
from pex.http.portal.site import form_of, page, read_form, render
from pex.http.typedefs import PASSWORDS, ask, find_account

REGISTER_FIELDS = ("username", "fullname", "email")


def _next_page(given: str) -> str:
    """Where to go after the login: a path of this site only (never another host's URL)."""
    parts = urlsplit(given)
    if not given.startswith("/") or given.startswith("//") or parts.scheme or parts.netloc or "\\" in given:
        return "/"
    return given


async def login_form(request: web.Request) -> web.Response:
    if visitor_of(request, await get_session(request)) is not None:
        raise web.HTTPSeeOther("/")
    return await render(request, "login.html", {"values": {"next": request.query.get("next", "/")[:500]}})


async def login(request: web.Request) -> web.Response:
    form = await read_form(request)
    values = values_of(form, ("username", "next"))
    username, password = values["username"].strip(), str(form.get("password", ""))
    errors = {}
    if not username:
        errors["username"] = "is required"
    if not password:
        errors["password"] = "is required"
    if not errors:
        try:
            who = await request.app[PASSWORDS].login(username, password, request.remote,
                                                     lambda name: find_account(request, name))
        except Unauthorized:
            errors["password"] = "wrong username or password"
        except TooManyAttempts as refused:
            errors["password"] = f"too many failed logins: try again in {refused.retry_after} s"
        else:
            await sign_in(request, Visitor(who.username, who.is_admin))
            raise web.HTTPSeeOther(_next_page(values["next"]))
    return await render(request, "login.html", {"values": values, "errors": errors}, status=400)


async def register_form(request: web.Request) -> web.Response:
    return await render(request, "register.html", {"values": {}})


async def register(request: web.Request) -> web.Response:
    form = await read_form(request)
    values = values_of(form, REGISTER_FIELDS)
    username = values["username"].strip()
    password, again = str(form.get("password", "")), str(form.get("password_again", ""))
    passwords = request.app[PASSWORDS]
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = "is required"
    else:
        try:
            await ask(request, lambda allocator: allocator.app.catalogue.check_username_free(username))
        except AlreadyExists:
            errors["username"] = "is taken: choose another"
    try:
        password = await passwords.judge_new(password, (username, values["fullname"], values["email"]), request.remote)
    except InvalidField as error:
        errors["password"] = error.reason
    except TooManyAttempts as refused:
        errors["username"] = f"too many accounts were made from here of late: try again in {refused.retry_after} s"
    if "password" not in errors and password != again:
        errors["password_again"] = "does not match the password"
    if not errors:
        password_hash = await passwords.hash(password, request.remote)
        try:
            account = await ask(request, lambda allocator: allocator.app.catalogue.register_account(
                username, password_hash, values["fullname"], values["email"]), alone=True)
        except InvalidField as error:
            errors[error.field] = error.reason
        except AlreadyExists:
            errors["username"] = "is taken: choose another"
        else:
            await sign_in(request, Visitor(account.username, account.is_admin))
            raise web.HTTPSeeOther("/")
    return await render(request, "register.html", {"values": values, "errors": errors}, status=400)


@page()
async def logout_form(request: web.Request) -> web.Response:
    return await render(request, "logout.html")


@page()
async def logout(request: web.Request) -> web.Response:
    form_of(request)  # (the CSRF token was checked: no other site can log anyone out)
    await sign_out(request)
    raise web.HTTPSeeOther("/login")
