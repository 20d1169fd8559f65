"""Logins and new passwords over the REST API, on the real actors and store: failed logins are
throttled per username and per address (429 + Retry-After, no hash spent), hashing has a pool
of its own shared fairly between addresses, and weak passwords are refused at registration."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import aiohttp
from argon2 import PasswordHasher

from pex.http.typedefs import PASSWORDS
from pex.http.auth import LoginThrottle
from tests.integration.test_http import basic, expect_error, register
from tests.unit.test_login_throttle import Stopwatch

STRONG = "correct-horse-battery-9"


class CountingHasher(PasswordHasher):
    """argon2id as configured, counting verifications and noting the threads that run them."""

    def __init__(self) -> None:
        super().__init__()
        self.verified = 0
        self.threads: set[threading.Thread] = set()

    def verify(self, hash: str, password: str) -> bool:
        self.verified += 1
        self.threads.add(threading.current_thread())
        return super().verify(hash, password)


class GatedHasher(CountingHasher):
    """Verifications wait until the test opens the gate, so what is in flight can be counted."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def verify(self, hash: str, password: str) -> bool:
        assert self.gate.wait(10), "the test never opened the gate"
        return super().verify(hash, password)


def throttled(service, **limits) -> tuple[Stopwatch, CountingHasher]:
    """The service's password check on a fake clock and a counting hasher."""
    clock, hasher = Stopwatch(), CountingHasher()
    passwords = service.http[PASSWORDS]
    passwords.throttle = LoginThrottle(clock=clock, **limits)
    passwords.hasher = hasher
    return clock, hasher


async def until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.001)


async def expect_too_many(response, retry_after: str) -> None:
    body = await expect_error(response, 429, "TOO_MANY_ATTEMPTS")
    assert set(body) == {"error", "message", "retryAfter"}
    assert response.headers["Retry-After"] == retry_after == str(body["retryAfter"])


# ---------------------------------------------------------------------- throttling

async def test_after_five_wrong_passwords_a_username_waits_a_doubling_window_and_no_hash_is_spent(client, service):
    alice = await register(client, "alice", STRONG)
    clock, hasher = throttled(service)
    wrong = basic("alice", "not-her-password")
    for _ in range(5):
        await expect_error(await client.get("/OpenPEX/types", headers=wrong), 401, "UNAUTHORIZED")
    assert hasher.verified == 5
    await expect_too_many(await client.get("/OpenPEX/types", headers=wrong), "1")
    await expect_too_many(await client.get("/OpenPEX/types", headers=alice), "1")  # right or wrong alike
    clock.advance(0.5)
    await expect_too_many(await client.get("/OpenPEX/types", headers=wrong), "1")
    assert hasher.verified == 5, "a refused attempt costs no hash"

    clock.advance(0.5)
    await expect_error(await client.get("/OpenPEX/types", headers=wrong), 401)
    await expect_too_many(await client.get("/OpenPEX/types", headers=wrong), "2")
    clock.advance(2)
    assert (await client.get("/OpenPEX/types", headers=alice)).status == 200

    # The success started her count again: four more failures are free.
    for _ in range(4):
        await expect_error(await client.get("/OpenPEX/types", headers=wrong), 401)


async def test_unknown_usernames_are_counted_and_closed_like_known_ones(client, service):
    _, hasher = throttled(service)
    nobody = basic("nobody", STRONG)
    for _ in range(5):
        await expect_error(await client.get("/OpenPEX/reservations", headers=nobody), 401)
    await expect_too_many(await client.get("/OpenPEX/reservations", headers=nobody), "1")
    assert hasher.verified == 5, "each unknown name was checked against the decoy hash, then refused unchecked"


async def test_failures_from_one_address_close_it_for_every_username_but_not_other_addresses(client, service):
    alice = await register(client, "alice", STRONG)
    throttled(service, per_address=3)
    for name in ("mallory", "trudy", "eve"):
        await expect_error(await client.get("/OpenPEX/types", headers=basic(name, "guess-guess-1")), 401)
    await expect_too_many(await client.get("/OpenPEX/types", headers=alice), "1")
    async with from_address("127.0.0.2") as elsewhere:
        async with elsewhere.get(client.make_url("/OpenPEX/types"), headers=alice) as response:
            assert response.status == 200


async def test_successful_logins_are_not_failures(client, service):
    users = [await register(client, name, STRONG) for name in ("alice", "bob", "carol", "dave")]
    throttled(service, per_address=3)
    for _ in range(3):
        for headers in users:
            assert (await client.get("/OpenPEX/types", headers=headers)).status == 200
    for _ in range(2):
        await expect_error(await client.get("/OpenPEX/types", headers=basic("alice", "oops-wrong-1")), 401)
    assert (await client.get("/OpenPEX/types", headers=users[1])).status == 200


# ---------------------------------------------------------------------- the hashing pool

def from_address(address: str) -> aiohttp.ClientSession:
    """A client whose connections come from another loopback address (the test client's are
    all 127.0.0.1)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def test_a_flood_of_wrong_passwords_from_one_address_barely_delays_another_users_first_login(client, service):
    await register(client, "alice", STRONG)
    bob = await register(client, "bob", STRONG)
    hasher = CountingHasher()
    service.http[PASSWORDS].hasher = hasher
    wrong = basic("alice", "not-her-password")

    async def flood() -> tuple[float, list[int]]:
        started = time.perf_counter()
        responses = await asyncio.gather(*(client.get("/OpenPEX/types", headers=wrong) for _ in range(16)))
        return time.perf_counter() - started, [response.status for response in responses]

    flooding = asyncio.create_task(flood())
    await until(lambda: hasher.verified > 0)  # bob comes once the flood is being hashed
    async with from_address("127.0.0.2") as elsewhere:
        started = time.perf_counter()
        async with elsewhere.get(client.make_url("/OpenPEX/types"), headers=bob) as response:
            assert response.status == 200
        bobs_login = time.perf_counter() - started
    floods_time, statuses = await flooding
    assert set(statuses) <= {401, 429} and 401 in statuses
    assert bobs_login < floods_time / 2, f"bob's first login took {bobs_login:.3f} s, the flood {floods_time:.3f} s"
    assert all(thread.name.startswith("openpex-password") for thread in hasher.threads)


async def test_an_address_that_has_failed_may_have_only_four_logins_in_flight(client, service):
    throttled(service, per_address=100)
    hasher = GatedHasher()
    service.http[PASSWORDS].hasher = hasher
    hasher.gate.set()
    await expect_error(await client.get("/OpenPEX/types", headers=basic("eve", "guess-guess-1")), 401)
    hasher.gate.clear()

    tasks = [asyncio.create_task(client.get("/OpenPEX/types", headers=basic(f"user{i}", "guess-guess-1")))
             for i in range(16)]
    await until(lambda: sum(task.done() for task in tasks) == 12)
    hasher.gate.set()
    responses = await asyncio.gather(*tasks)
    refused = [response for response in responses if response.status == 429]
    assert len(refused) == 12 and sum(response.status == 401 for response in responses) == 4
    for response in refused:
        await expect_too_many(response, "1")
    assert hasher.verified == 1 + 4


async def test_hashing_runs_in_named_threads_of_its_own_that_stop_with_the_app(aiohttp_client, service):
    client = await aiohttp_client(service.http)
    hasher = CountingHasher()
    service.http[PASSWORDS].hasher = hasher
    alice = await register(client, "alice", STRONG)
    assert (await client.get("/OpenPEX/types", headers=alice)).status == 200
    assert hasher.threads and all(thread.name.startswith("openpex-password") for thread in hasher.threads)
    await client.close()
    await until(lambda: not any(thread.is_alive() for thread in hasher.threads))


# ---------------------------------------------------------------------- new passwords

async def test_weak_passwords_are_refused_at_registration_with_advice_and_never_quoted(client, service, caplog):
    caplog.set_level(logging.DEBUG)
    before = service.events()
    for username, password in [("alice", "password"), ("alice", "12345678"), ("alice", " " * 8),
                               ("alice", "alice2024"), ("bob", "bob@example.org")]:
        response = await client.post("/OpenPEX/users", json={"username": username, "password": password,
                                                             "fullname": username.title(),
                                                             "email": f"{username}@example.org"})
        body = await expect_error(response, 400, "INVALID_FIELD")
        assert body["field"] == "password" and body["message"].startswith("password: ")
        if password.strip() and password != "password":  # "password" is also a word of the advice
            assert password not in body["message"]
    assert service.events() == before
    assert not any(password in caplog.text for password in ("12345678", "alice2024", "bob@example.org"))

    too_long = await client.post("/OpenPEX/users", json={"username": "carol", "password": STRONG + "x" * 1002})
    assert (await expect_error(too_long, 400, "INVALID_FIELD"))["field"] == "password"
    await register(client, "carol", STRONG + "x" * 1001)  # 1024 characters: the longest
    await register(client, "dave", "Alice-in-Wonderland-1865")
