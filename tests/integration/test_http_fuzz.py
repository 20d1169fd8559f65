"""Whatever a client sends, the API answers 2xx or 4xx with a JSON error body, never 5xx, and a
refused request records nothing. Random bodies and ids (seeded, so a failure reproduces) over
the real actors and store."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from pex.domain.clock import HOUR, ManualClock
from pex.http.wire import format_time
from tests.integration.test_http import ADMIN, basic, register
from tests.support.service import ADMIN_PASSWORD, T0, Service

FIELDS = ["kind", "kernel", "initrd", "description", "duration", "numInstancesFixed", "numInstancesOption", "startTime", "endTime", "template", "type",
          "reply", "proposal", "username", "password", "fullname", "email", "name", "uri", "cpus", "memoryMB",
          "diskGB"]


def scalar(rng: random.Random) -> Any:
    return rng.choice([
        None, True, False, 0, -1, 1, 2**63, -(2**70), 1.5, float("1e308"), "", " ", "SMALL", "XLARGE", "debian-12",
        "ACCEPT", "CONFIRM", "COUNTER", "REJECT", "Mon, 17 Aug 2009 04:49:03 GMT", "2030-01-01T01:00:00Z",
        "test:///nowhere.xml", "qemu:///system", "\u0000", "é" * 300, format_time(T0 + HOUR), T0 + HOUR, HOUR,
        "00000000-0000-0000-0000-000000000000", 10**18, -(10**18), 2**64, "\ud800",
    ])


def value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 2 or roll < 0.6:
        return scalar(rng)
    if roll < 0.75:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return body(rng, depth + 1)


def body(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    good = {"duration": HOUR, "numInstancesFixed": 1, "numInstancesOption": 0, "startTime": format_time(T0 + HOUR),
            "template": "debian-12", "type": "SMALL"}
    chosen = dict(good) if rng.random() < 0.5 else {}
    for field in rng.sample(FIELDS, rng.randint(0, 5)):
        chosen[field] = value(rng, depth)
    return chosen


@pytest.fixture
def service(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENPEX_ADMIN_PASSWORD", ADMIN_PASSWORD)
    running = Service(tmp_path, ManualClock(T0))
    yield running
    running.stop()


async def test_random_requests_never_get_a_5xx_and_refusals_record_nothing(aiohttp_client, service):
    client = await aiohttp_client(service.http)
    alice = await register(client, "alice")
    accepted = await (await client.post("/OpenPEX/reservations", headers=alice, json={
        "duration": HOUR, "numInstancesFixed": 1, "startTime": format_time(T0 + HOUR), "template": "debian-12",
        "type": "SMALL"})).json()
    real_id = accepted["proposal"]["id"]
    rng = random.Random(20261125)
    ids = [real_id, "nope", "00000000-0000-0000-0000-000000000000", "%00", "a" * 300, "..", real_id.upper()]
    routes = [
        ("POST", "/OpenPEX/reservations"), ("PUT", "/OpenPEX/reservations/{id}"),
        ("DELETE", "/OpenPEX/reservations/{id}"), ("PUT", "/OpenPEX/reservations/{id}/activate"),
        ("GET", "/OpenPEX/reservations/{id}"), ("GET", "/OpenPEX/instances/{id}"),
        ("PUT", "/OpenPEX/instances/{id}/stop"), ("PUT", "/OpenPEX/instances/{id}/reboot"),
        ("DELETE", "/OpenPEX/instances/{id}"), ("POST", "/OpenPEX/users"), ("POST", "/OpenPEX/nodes"),
        ("GET", "/OpenPEX/nodes/{id}"), ("POST", "/OpenPEX/templates"), ("PUT", "/OpenPEX/nodes/{id}/drain"),
    ]
    statuses: dict[int, int] = {}
    for _ in range(600):
        method, path = rng.choice(routes)
        url = path.replace("{id}", rng.choice(ids))
        # A wrong password costs a real hash (tens of ms): rare, but there.
        headers = rng.choice([alice] * 6 + [ADMIN] * 3 + [{}, basic("alice", "wrong-password")] if rng.random() < 0.2
                             else [alice, ADMIN])
        raw = rng.random() < 0.1
        payload = (rng.choice([b"{", b"[]", b"null", b'"text"', b'{"a": }', b"\xff\xfe", b'{"type": "\xff"}']) if raw
                   else json.dumps(body(rng)).encode())
        before = service.events()
        response = await client.request(method, url, data=payload, headers={**headers, "Content-Type": "application/json"})
        statuses[response.status] = statuses.get(response.status, 0) + 1
        text = await response.text()
        assert response.status < 500, f"{method} {url} {payload!r} -> {response.status} {text}"
        if response.status >= 400:
            error = json.loads(text)
            assert error["error"] and error["message"], text
            assert service.events() == before, f"{method} {url} {payload!r} was refused but recorded events"
    assert any(400 <= status < 500 for status in statuses) and any(status < 300 for status in statuses), statuses
