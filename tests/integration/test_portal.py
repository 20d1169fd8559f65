"""The portal in-process, over the real actors and store on a manual clock: what a browser test
cannot arrange (actors that stop answering) and what it cannot see (what a live stream carries)."""

from __future__ import annotations

import asyncio
import json
import re

from pex.domain.clock import HOUR
from tests.support.service import ADMIN_PASSWORD, T0, book

PASSWORD = "correct-horse-battery-9"


async def csrf_of(client, path: str) -> str:
    text = await (await client.get(path)).text()
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found, text[:500]
    return found[1]


async def log_in(client, username: str, password: str) -> None:
    response = await client.post("/login", data={"csrf": await csrf_of(client, "/login"), "username": username,
                                                 "password": password, "next": "/"}, allow_redirects=False)
    assert response.status == 303, await response.text()


async def sign_up(client, username: str) -> None:
    response = await client.post("/OpenPEX/users", json={"username": username, "password": PASSWORD})
    assert response.status == 201


async def test_pages_say_so_when_the_service_does_not_answer(client, service):
    await log_in(client, "admin", ADMIN_PASSWORD)
    assert (await client.get("/reservations")).status == 200
    service.system.allocator.stop()
    response = await client.get("/reservations")
    assert response.status == 503
    text = await response.text()
    assert "OpenPEX is busy or down" in text and "Traceback" not in text
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


async def next_event(stream, timeout: float) -> dict | None:
    """The next `instances` event of a server-sent stream (comments skipped), or None."""
    try:
        while True:
            block = (await asyncio.wait_for(stream.content.readuntil(b"\n\n"), timeout)).decode()
            if block.startswith("event: instances"):
                return json.loads(block.split("data: ", 1)[1])
    except TimeoutError:
        return None


async def test_a_live_stream_carries_its_visitors_instances_only(client, service):
    await sign_up(client, "uma")
    await sign_up(client, "victor")
    await log_in(client, "uma", PASSWORD)
    stream = await client.get("/instances/live")
    assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
    assert await next_event(stream, 0.5) is None  # uma has none yet

    theirs = await asyncio.to_thread(book, service, "victor", start=T0 + HOUR, duration=HOUR)
    assert await next_event(stream, 1.0) is None  # victor's changed: nothing of his is sent to uma

    mine = await asyncio.to_thread(book, service, "uma", start=T0 + HOUR, duration=HOUR, count=2)
    rows = await next_event(stream, 5.0)
    assert rows is not None and {row["reservationId"] for row in rows} == {str(mine)}
    assert {row["status"] for row in rows} == {"PENDING"} and len(rows) == 2
    assert str(theirs) not in json.dumps(rows)

    await asyncio.to_thread(service.advance_to, T0 + HOUR)  # the start: uma's VMs boot
    seen: dict[str, str] = {}
    while set(seen.values()) != {"RUNNING"} or len(seen) != 2:
        rows = await next_event(stream, 10.0)
        assert rows is not None, seen
        seen.update({row["vmID"]: row["status"] for row in rows})
    stream.close()


async def test_a_session_is_refused_a_form_of_another_session(client, service, aiohttp_client):
    await sign_up(client, "wendy")
    await log_in(client, "wendy", PASSWORD)
    token = await csrf_of(client, "/reservations/new")
    other = await aiohttp_client(service.http)
    await log_in(other, "wendy", PASSWORD)
    response = await other.post("/logout", data={"csrf": token}, allow_redirects=False)
    assert response.status == 403
    response = await client.post("/logout", data={"csrf": token}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/login"
    assert (await client.get("/", allow_redirects=False)).headers["Location"].startswith("/login")
