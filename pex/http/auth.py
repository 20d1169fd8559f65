"""Accounts over HTTP: argon2id password hashes and HTTP Basic with a cache of verified
credentials.

A real hash costs 20-240 ms here, so verifying one on every request would cap the API at a
handful of requests per second. A successful verification is remembered as an HMAC of the
password under a key that lives only in this process's memory: a later request with the same
password is checked in microseconds, and the cache never holds anything that could be replayed
or cracked offline. Hashing runs in a thread pool, never on the event loop. Passwords are never
logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pex.domain.errors import DomainError

CACHE_SIZE = 10_000


class Unauthorized(DomainError):
    status = 401
    code = "UNAUTHORIZED"


@dataclass(frozen=True)
class Principal:
    username: str
    is_admin: bool


class PasswordCheck:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()  # argon2id with the library's current defaults
        self._key = secrets.token_bytes(32)
        self._verified: OrderedDict[str, tuple[bytes, Principal]] = OrderedDict()
        self._decoy = self.hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self.hasher.hash, password)

    def _mac(self, username: str, password: str) -> bytes:
        return hmac.new(self._key, f"{username}\0{password}".encode(), hashlib.sha256).digest()

    def remembered(self, username: str, password: str) -> Principal | None:
        """The principal, if these credentials were verified before (accounts never change
        their password or role today; when they can, `forget` must be called)."""
        known = self._verified.get(username)
        if known is not None and hmac.compare_digest(known[0], self._mac(username, password)):
            self._verified.move_to_end(username)
            return known[1]
        return None

    async def verify(self, principal: Principal | None, password: str, stored_hash: str | None) -> bool:
        """Check the password against the stored hash (a decoy hash for an unknown user, so
        the answer takes as long either way) and remember it if it matches."""
        try:
            ok = await asyncio.get_running_loop().run_in_executor(
                None, self.hasher.verify, stored_hash or self._decoy, password)
        except (VerificationError, InvalidHashError):
            return False
        if not ok or principal is None or stored_hash is None:
            return False
        self._verified[principal.username] = (self._mac(principal.username, password), principal)
        while len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)
        return True

    def forget(self, username: str) -> None:
        self._verified.pop(username, None)


def basic_credentials(header: str | None) -> tuple[str, str]:
    """(username, password) from an Authorization header, or Unauthorized."""
    if not header:
        raise Unauthorized("this call needs HTTP Basic authentication")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Unauthorized("only HTTP Basic authentication is supported")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("the Basic credentials are not valid base64 of UTF-8 'user:password'") from None
    username, colon, password = decoded.partition(":")
    if not colon or not username:
        raise Unauthorized("the Basic credentials must be 'user:password'")
    return username, password
