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


async def test_what_a_client_sends_is_never_a_crash(client, service):
    """Bodies no browser sends, and values out of every range: a 4xx page, never a 500."""
    token = await csrf_of(client, "/login")
    for headers, body in [
        ({"Content-Type": "application/x-www-form-urlencoded; charset=nope"}, f"csrf={token}"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, f"csrf={token}&username=\xff".encode("latin-1")),
        ({"Content-Type": "multipart/form-data; boundary=zz"}, b"garbage"),
        ({"Content-Type": "application/json"}, b'{"csrf": "x"}'),
    ]:
        response = await client.post("/login", data=body, headers=headers, allow_redirects=False)
        assert response.status in (400, 415), (headers, response.status)
        assert "Traceback" not in await response.text()
    await log_in(client, "admin", ADMIN_PASSWORD)
    token = await csrf_of(client, "/admin/nodes")
    response = await client.post("/admin/nodes", data={"csrf": token, "name": "n", "uri": "test:///default",
                                                       "cpus": "²"})
    assert response.status == 400 and "whole number" in await response.text()
    for given in ("0001-01-01T00:00", "9999-12-31T23:00", "1969-12-31T00:00"):
        response = await client.get("/admin/capacity", params={"from": given})
        assert response.status == 400 and "from 1970 to 9999" in await response.text(), given
    rid = await asyncio.to_thread(book, service, "admin", start=T0 + HOUR, duration=HOUR, activate=False)
    for chosen in ("7", "-1", "x", "", "²"):
        response = await client.post(f"/reservations/{rid}/reply", data={"csrf": token, "reply": "TAKE",
                                                                          "alternative": chosen})
        assert response.status == 200 and "no longer on offer" in await response.text(), chosen


async def test_a_logged_out_session_is_refused_even_from_a_copy(client, service, aiohttp_client):
    await sign_up(client, "xavier")
    await log_in(client, "xavier", PASSWORD)
    kept = {cookie.key: cookie.value for cookie in client.session.cookie_jar}
    assert (await client.get("/", allow_redirects=False)).status == 200
    response = await client.post("/logout", data={"csrf": await csrf_of(client, "/")}, allow_redirects=False)
    assert response.status == 303
    copy = await aiohttp_client(service.http, cookies=kept)
    response = await copy.get("/", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/login")
    assert (service.config.data_dir / "portal-signed-out.json").stat().st_mode & 0o777 == 0o600


async def test_usage_shows_what_was_used_to_its_user_and_to_the_admin_only(client, service, aiohttp_client):
    """A statement on the service's clock: half of an agreed hour used is half its price charged
    (0.05 USD x 1/2, rounded half up: 0.03); the page of another user has none of it."""
    await sign_up(client, "yara")
    await sign_up(client, "zeno")
    rid = await asyncio.to_thread(book, service, "yara", start=T0 + HOUR, duration=HOUR)
    await asyncio.to_thread(service.advance_to, T0 + HOUR + HOUR // 2)
    await log_in(client, "yara", PASSWORD)
    response = await client.get("/usage")
    text = await response.text()
    assert response.status == 200, text
    line = re.search(rf'<tr data-reservation="{rid}">(.*?)</tr>', text, re.S)
    assert line, text
    cells = re.findall(r'<td data-label="([^"]+)">(.*?)</td>', line[1], re.S)
    shown = {label: re.sub(r"<[^>]+>", "", value).strip() for label, value in cells}
    assert shown["Price agreed"] == "0.05 USD" and shown["Instance-hours"] == "0.5"
    assert shown["Charged"] == "0.03 USD" and shown["Refunded"] == "0.00 USD"
    assert 'data-total="total">0.03 USD<' in text
    # the period: an end before the start, a time that is none, one out of range; each by its field
    for query, field, said in [({"from": "2030-01-03T00:00", "to": "2030-01-02T00:00"}, "to", "must be after from"),
                               ({"from": "soon"}, "from", "must be a date and time"),
                               ({"to": "0001-01-01T00:00"}, "to", "must be from 1970 to 9999"),
                               ({"from": "2030-02-30T00:00"}, "from", "is not a date on the calendar")]:
        response = await client.get("/usage", params=query)
        text = await response.text()
        assert response.status == 400 and f'id="{field}-error">{said}' in text, (query, text[:3000])
        assert 'aria-invalid="true"' in text
    response = await client.get("/usage", params={"from": "2030-01-01T01:00", "to": "2030-01-01T01:15"})
    assert response.status == 200 and ">0.01 USD<" in await response.text()  # (a quarter of 0.05: 0.0125)

    other = await aiohttp_client(service.http)
    await log_in(other, "zeno", PASSWORD)
    text = await (await other.get("/usage")).text()
    assert str(rid) not in text and "No charges in this period." in text
    assert (await other.get(f"/reservations/{rid}")).status == 404

    admin = await aiohttp_client(service.http)
    await log_in(admin, "admin", ADMIN_PASSWORD)
    text = await (await admin.get("/usage")).text()
    assert 'data-user="yara"' in text and 'data-user="zeno"' not in text and str(rid) in text
    assert 'data-total="all">0.03 USD<' in text
