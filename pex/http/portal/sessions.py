"""Who is using the portal: an encrypted session cookie (aiohttp-session's Fernet storage:
authenticated, unreadable to the browser, lapsing 12 h after login), the signed-in visitor it
names, a CSRF token per session that every state-changing form must carry, and one-line
notices ("flash") carried to the next page.

The key lives in the data dir (0600), so a restart keeps everyone signed in; without one (an
app made in a test) each process makes its own.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from aiohttp_session import Session, get_session, new_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from pex.domain.errors import DomainError

# aiohttp-session 2.12 keeps its session under a str key of the request (its own choice).
warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_session")

log = logging.getLogger(__name__)

KEY_FILE = "portal-session.key"
SIGNED_OUT_FILE = "portal-signed-out.json"
COOKIE = "openpex_session"
LIFETIME = 12 * 3600  # seconds a login lasts


class CsrfRefused(DomainError):
    status = 403
    code = "CSRF_REFUSED"


@dataclass(frozen=True)
class Visitor:
    username: str
    is_admin: bool


VISITOR = web.RequestKey("visitor", Visitor)

Tone = Literal["ok", "error"]


def session_key(data_dir: Path | None) -> bytes:
    """The 32-byte key sessions are encrypted with: read from DATA_DIR/portal-session.key, made
    there first (0600) if missing; a fresh one for this process if there is no data dir."""
    if data_dir is None:
        return secrets.token_bytes(32)
    path = data_dir / KEY_FILE
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != 32:
            raise ValueError(f"{path} is not a portal session key (32 bytes); delete it to make a new one") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(descriptor, "wb") as file:
        file.write(key)
    return key


def storage(key: bytes, *, secure: bool) -> EncryptedCookieStorage:
    """HttpOnly, SameSite=Lax, and Secure when the portal is served over TLS."""
    return EncryptedCookieStorage(key, cookie_name=COOKIE, max_age=LIFETIME, httponly=True, samesite="Lax",
                                  secure=secure or None)


class SignedOut:
    """Sessions logged out before they lapsed. A cookie session lives in the browser, so
    clearing it there is not enough: a copy kept elsewhere would still be good. Each session has
    an id; a logout records it here until the session would have lapsed anyway, in a file of the
    data dir (so a restart does not bring it back), or in memory for an app without one."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._until: dict[str, float] = {}  # session id -> when it would have lapsed
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text())
                self._until = {str(sid): float(until) for sid, until in loaded.items()}
            except (ValueError, AttributeError, TypeError, OSError):
                log.warning("%s could not be read: sessions logged out before this start may be good again", path)

    def __contains__(self, sid: object) -> bool:
        return sid in self._until

    def add(self, sid: str, lapses: float) -> None:
        now = time.time()
        self._until = {known: until for known, until in self._until.items() if until > now}
        self._until[sid] = lapses
        if self.path is not None:
            written = self.path.with_suffix(".tmp")
            descriptor = os.open(written, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
            with os.fdopen(descriptor, "w") as file:
                json.dump(self._until, file)
            os.replace(written, self.path)


SIGNED_OUT = web.AppKey("portal_signed_out", SignedOut)


def visitor_of(request: web.Request, session: Session) -> Visitor | None:
    username = session.get("user")
    if not isinstance(username, str) or session.get("sid") in request.app[SIGNED_OUT]:
        return None
    return Visitor(username, bool(session.get("admin")))


async def sign_in(request: web.Request, visitor: Visitor) -> None:
    """A new session for the visitor (never the one from before the login: fixation)."""
    session = await new_session(request)
    session["user"], session["admin"] = visitor.username, visitor.is_admin
    session["csrf"] = secrets.token_urlsafe(32)
    session["sid"] = secrets.token_urlsafe(16)


async def sign_out(request: web.Request) -> None:
    """Forget the session in the browser, and refuse it from anywhere else until it lapses."""
    session = await get_session(request)
    sid = session.get("sid")
    if isinstance(sid, str):
        request.app[SIGNED_OUT].add(sid, (session.created or time.time()) + LIFETIME)
    session.invalidate()


async def csrf_token(request: web.Request) -> str:
    """This session's token, made with the session if it has none yet (a visitor who has not
    logged in has one too: the login and register forms carry it)."""
    session = await get_session(request)
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


async def check_csrf(request: web.Request, form: Any) -> None:
    """Refuse (403) a form that does not carry this session's token."""
    session = await get_session(request)
    expected, given = session.get("csrf"), form.get("csrf")
    if not (isinstance(expected, str) and isinstance(given, str)
            and hmac.compare_digest(expected.encode(), given.encode())):
        raise CsrfRefused("this form was not sent from a page of this session (it may have expired): "
                          "reload the page and send it again")


async def flash(request: web.Request, message: str, tone: Tone = "ok") -> None:
    session = await get_session(request)
    session["flash"] = [*session.get("flash", []), [tone, message[:500]]][-5:]


async def flashes(request: web.Request) -> list[tuple[str, str]]:
    session = await get_session(request)
    found = session.pop("flash", [])
    return [(str(tone), str(message)) for tone, message in found]
