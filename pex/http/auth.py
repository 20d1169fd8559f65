"""Accounts over HTTP: who is logging in, checked at a bounded cost. argon2id password hashes in
a thread pool of their own, HTTP Basic with a cache of verified credentials, and a throttle on
failed logins.

A real hash costs 20-240 ms here, so verifying one on every request would cap the API at a
handful of requests per second. A successful verification is remembered as an HMAC of the
password under a key that lives only in this process's memory: a later request with the same
password is checked in microseconds, and the cache never holds anything that could be replayed
or cracked offline. Passwords are never logged.

Hashing runs in two threads of its own, never on the event loop nor in the loop's default
executor, which other work shares. One client address hashes one password at a time, so a
flood from one address holds one thread at most and everyone else's first login goes through
on the other; an address that has failed lately may have at most a few logins in flight.
Failed logins are counted per username and per client address; past a few, further attempts
are refused (429, Retry-After) for a window that doubles with each failure, without spending a
hash, and a login queued behind an address's others looks again when its turn comes. Unknown
usernames are counted and hashed (against a decoy) exactly like known ones, so neither the
answer nor its timing tells whether an account exists.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar, TypeVarTuple, Unpack

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pex.domain.clock import HOUR
from pex.domain.errors import DomainError
from pex.domain.quotas import QuotaExceeded, TokenBuckets
from pex.domain.read_models import AccountView
from pex.http import passwords as policy

T = TypeVar("T")
_Args = TypeVarTuple("_Args")

CACHE_SIZE = 10_000
HASHING_THREADS = 2
# Logins from one address waiting for, or being given, a hash: few once it has failed lately;
# more while it has not, so a burst of people behind one NAT (or one test client) gets in.
IN_FLIGHT_PER_ADDRESS = 4
IN_FLIGHT_PER_CLEAN_ADDRESS = 64
REGISTRATIONS_PER_HOUR = 20  # new accounts per client address (a burst, then one every 3 min)


class Unauthorized(DomainError):
    status = 401
    code = "UNAUTHORIZED"


class TooManyAttempts(DomainError):
    """Refused before any password is checked; `retry_after` is whole seconds, at least 1."""

    status = 429
    code = "TOO_MANY_ATTEMPTS"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass(frozen=True)
class Principal:
    username: str
    is_admin: bool


# ---------------------------------------------------------------------- throttling failures

@dataclass
class _Failures:
    count: int
    last: float  # when the latest failure happened
    blocked_until: float


class BackoffWindows(TypedDict, total=False):
    """The windows of a Backoff that a LoginThrottle passes on to both of its own."""

    first: float
    longest: float
    forget_after: float
    capacity: int


class Backoff:
    """Failed logins of one kind of key (usernames, or client addresses): the first `allowed`
    are free; the one that reaches `allowed` and each later one closes the door for a window
    that starts at `first` seconds and doubles, up to `longest`.

    Memory is bounded: a key is forgotten `forget_after` seconds after its latest failure, and
    beyond `capacity` keys the one that failed least recently is dropped."""

    def __init__(self, allowed: int, *, clock: Callable[[], float] = time.monotonic, first: float = 1.0,
                 longest: float = 300.0, forget_after: float = 900.0, capacity: int = 10_000) -> None:
        if allowed < 1 or first <= 0 or longest < first or capacity < 1:
            raise ValueError("a back-off needs allowed >= 1, 0 < first <= longest and capacity >= 1")
        if forget_after < longest:
            raise ValueError("forget_after must be at least the longest window, or a key would be "
                             "forgotten while its door is still closed")
        self.allowed, self.first, self.longest = allowed, first, longest
        self.forget_after, self.capacity, self.clock = forget_after, capacity, clock
        # In order of latest failure (moved to the end on each one), so the stale ones are first.
        self._failures: OrderedDict[Hashable, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def failures(self, key: Hashable) -> int:
        """How many failures `key` has on record (those not yet forgotten)."""
        self._forget_stale(self.clock())
        record = self._failures.get(key)
        return record.count if record else 0

    def wait(self, key: Hashable) -> float:
        """Seconds until `key` may try again; 0 if it may now."""
        now = self.clock()
        self._forget_stale(now)
        record = self._failures.get(key)
        return max(0.0, record.blocked_until - now) if record else 0.0

    def failed(self, key: Hashable) -> None:
        now = self.clock()
        self._forget_stale(now)
        record = self._failures.pop(key, None) or _Failures(0, now, now)
        record.count += 1
        record.last = now
        beyond = record.count - self.allowed
        if beyond >= 0:
            record.blocked_until = now + min(self.longest, self.first * 2.0 ** min(beyond, 64))
        self._failures[key] = record
        while len(self._failures) > self.capacity:
            self._failures.popitem(last=False)

    def succeeded(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def _forget_stale(self, now: float) -> None:
        while self._failures:
            key, record = next(iter(self._failures.items()))
            if now - record.last < self.forget_after:
                return
            del self._failures[key]


class LoginThrottle:
    """Failed logins per username (strict: they guess one account's password) and per client
    address (lenient: many people may share one address). A success clears the username, never
    the address: else one account of its own would let an attacker guess others' passwords
    without limit."""

    def __init__(self, *, per_username: int = 5, per_address: int = 20, clock: Callable[[], float] = time.monotonic,
                 **backoff: Unpack[BackoffWindows]) -> None:
        self.usernames = Backoff(per_username, clock=clock, **backoff)
        self.addresses = Backoff(per_address, clock=clock, **backoff)

    def wait(self, username: str, address: str | None) -> float:
        """Seconds before this username, from this address, may try a password again."""
        return max(self.usernames.wait(_name_key(username)), self.addresses.wait(address or ""))

    def failed(self, username: str, address: str | None) -> None:
        self.usernames.failed(_name_key(username))
        self.addresses.failed(address or "")

    def succeeded(self, username: str) -> None:
        self.usernames.succeeded(_name_key(username))

    def clean(self, address: str | None) -> bool:
        """Whether no login from this address has failed lately."""
        return not self.addresses.failures(address or "")


def _name_key(username: str) -> bytes:
    # A digest of fixed size: made-up names of kilobytes each cannot grow memory past the cap.
    return hashlib.blake2b(username.encode("utf-8", "surrogatepass"), digest_size=16).digest()


# ---------------------------------------------------------------------- hashing

@dataclass
class _Caller:
    """One client address's logins and registrations in progress."""

    in_flight: int = 0
    hashing: asyncio.Lock = field(default_factory=asyncio.Lock)  # its one hash at a time


class PasswordCheck:
    """Passwords checked at a bounded cost: new ones judged and hashed, logins verified (or
    remembered, or refused by the throttle), all hashing in a pool of its own, shared fairly
    between client addresses."""

    def __init__(self, hasher: PasswordHasher | None = None, throttle: LoginThrottle | None = None, *,
                 in_flight_per_address: int = IN_FLIGHT_PER_ADDRESS,
                 in_flight_per_clean_address: int = IN_FLIGHT_PER_CLEAN_ADDRESS) -> None:
        self.hasher = hasher or PasswordHasher()  # argon2id with the library's current defaults
        self.throttle = throttle or LoginThrottle()
        self.in_flight_per_address = max(1, in_flight_per_address)
        self.in_flight_per_clean_address = max(self.in_flight_per_address, in_flight_per_clean_address)
        self._key = secrets.token_bytes(32)
        self._verified: OrderedDict[str, tuple[bytes, Principal]] = OrderedDict()
        self._decoy = self.hasher.hash(secrets.token_urlsafe(16))
        self._callers: dict[str, _Caller] = {}
        self._threads: ThreadPoolExecutor | None = None
        # New accounts per client address: each would come with a fresh quota of its own.
        self.registrations_per_hour = REGISTRATIONS_PER_HOUR
        self._registrations = TokenBuckets(HOUR, "new accounts")
        self._clock = time.monotonic

    # -- the pool

    def _pool(self) -> ThreadPoolExecutor:
        if self._threads is None:  # made again if used after close (an app started twice)
            self._threads = ThreadPoolExecutor(HASHING_THREADS, thread_name_prefix="openpex-password")
        return self._threads

    def close(self) -> None:
        """Stop the hashing threads (the app's cleanup); a hash under way finishes on its own."""
        threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)

    @asynccontextmanager
    async def _caller(self, address: str | None, *, limit: int | None = None) -> AsyncIterator[_Caller]:
        key = address or ""
        caller = self._callers.setdefault(key, _Caller())
        if limit is not None and caller.in_flight >= limit:
            raise TooManyAttempts("too many logins at once from this address; try again in a second", 1)
        caller.in_flight += 1
        try:
            yield caller
        finally:
            caller.in_flight -= 1
            if not caller.in_flight:
                del self._callers[key]

    async def _in_pool(self, caller: _Caller, work: Callable[[*_Args], T], *args: *_Args) -> T:
        """`work` in the pool, at this caller's turn."""
        async with caller.hashing:
            return await asyncio.get_running_loop().run_in_executor(self._pool(), work, *args)

    # -- new passwords

    async def judge_new(self, password: Any, about: Iterable[Any], address: str | None = None) -> str:
        """The password, or refuse one an account may not have (pex.http.passwords), judged in the pool:
        the estimate takes up to tens of milliseconds of pure Python. First, refuse an address
        that has registered too many accounts of late (TooManyAttempts)."""
        try:
            self._registrations.take(address or "", self.registrations_per_hour, int(self._clock() * 1000))
        except QuotaExceeded as refused:
            raise TooManyAttempts(refused.message, (refused.retry_after or HOUR) / 1000) from None
        async with self._caller(address) as caller:
            return await self._in_pool(caller, policy.judge, password, tuple(about))

    async def hash(self, password: str, address: str | None = None) -> str:
        async with self._caller(address) as caller:
            return await self._in_pool(caller, self.hasher.hash, password)

    # -- logins

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

    def _remember(self, username: str, who: Principal, password: str) -> None:
        """Remember credentials as they were typed ('ALICE' is remembered apart from 'alice')."""
        self._verified[username] = (self._mac(username, password), who)
        while len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)

    def _matches(self, stored_hash: str, password: str) -> bool:
        try:
            return bool(self.hasher.verify(stored_hash, password))
        except (VerificationError, InvalidHashError):
            return False

    async def login(self, username: str, password: str, address: str | None,
                    find_account: Callable[[str], Awaitable[tuple[AccountView, str] | None]]) -> Principal:
        """Who these credentials belong to; Unauthorized if they are wrong, TooManyAttempts (no
        hash spent) if this username or this address has failed too often of late, or has too
        many logins in flight. `find_account` gives the stored account and its password hash,
        or None."""
        self._may_try(username, address)  # before the cache: else a right guess would stand out
        who = self.remembered(username, password)
        if who is None:
            limit = self.in_flight_per_clean_address if self.throttle.clean(address) else self.in_flight_per_address
            async with self._caller(address, limit=limit) as caller:
                account = await find_account(username)
                # An unknown user is checked against a decoy hash, so the answer takes as long.
                stored = account[1] if account else self._decoy
                async with caller.hashing:
                    # Looked at again at its turn: the logins queued ahead of this one may have
                    # closed the door, or verified these very credentials.
                    self._may_try(username, address)
                    who = self.remembered(username, password)
                    matches = who is not None or await asyncio.get_running_loop().run_in_executor(
                        self._pool(), self._matches, stored, password)
            if who is None:
                if not (matches and account):
                    self.throttle.failed(username.casefold(), address)
                    raise Unauthorized("wrong username or password")
                # The account's own spelling: 'ALICE' logs in as alice, and sees alice's things.
                who = Principal(account[0].username, account[0].is_admin)
                self._remember(username, who, password)
        self.throttle.succeeded(username.casefold())
        return who

    def _may_try(self, username: str, address: str | None) -> None:
        wait = self.throttle.wait(username.casefold(), address)  # 'Alice' and 'alice' are one account
        if wait > 0:
            raise TooManyAttempts("too many failed logins for this username or from this address", wait)

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
