"""The REST API through aiohttp's test client, over the real actors, the SQLite store and
libvirt test-driver hosts, on a manual clock."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from argon2 import PasswordHasher

from pex.domain.clock import HOUR
from pex.domain.sizes import Resources
from pex.http import openapi
from pex.http.typedefs import PASSWORDS
from pex.http.wire import format_time
from tests.support.service import ADMIN_PASSWORD, T0, Service


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ADMIN = basic("admin", ADMIN_PASSWORD)


async def register(client, username: str, password: str = "correct-horse-battery-9") -> dict[str, str]:
    response = await client.post("/OpenPEX/users", json={"username": username, "password": password,
                                                         "fullname": username.title(), "email": f"{username}@example.org"})
    assert response.status == 201, await response.text()
    return basic(username, password)


def proposal(**changes: Any) -> dict[str, Any]:
    body = {"duration": HOUR, "numInstancesFixed": 1, "numInstancesOption": 0,
            "startTime": format_time(T0 + HOUR), "template": "debian-12", "type": "SMALL"}
    body.update(changes)
    return body


async def expect_error(response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) >= {"error", "message"} and body["message"]
    if code:
        assert body["error"] == code, body
    return body


# ---------------------------------------------------------------------- accounts

async def test_registration_is_open_and_a_taken_username_is_a_conflict(client):
    await register(client, "alice")
    again = await client.post("/OpenPEX/users", json={"username": "alice", "password": "another-pass"})
    await expect_error(again, 409, "ALREADY_EXISTS")
    short = await client.post("/OpenPEX/users", json={"username": "bob", "password": "short"})
    assert (await expect_error(short, 400))["field"] == "password"
    bad_name = await client.post("/OpenPEX/users", json={"username": "b b", "password": "correct-horse-battery-9"})
    assert (await expect_error(bad_name, 400))["field"] == "username"


async def test_every_call_but_registration_and_health_needs_valid_credentials(client, service):
    assert (await client.get("/OpenPEX/health")).status == 200
    for headers in ({}, basic("alice", "wrong-password"), basic("nobody", "correct-horse-battery-9"),
                    {"Authorization": "Basic !!!"}, {"Authorization": "Bearer x"}):
        response = await client.get("/OpenPEX/reservations", headers=headers)
        await expect_error(response, 401, "UNAUTHORIZED")
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    alice = await register(client, "alice")
    assert (await client.get("/OpenPEX/reservations", headers=alice)).status == 200
    _, stored = service.app.catalogue.password_hash("alice")
    assert stored.startswith("$argon2id$") and "correct-horse-battery-9" not in stored


class CountingHasher(PasswordHasher):
    def __init__(self, calls: list[int]) -> None:
        super().__init__()
        self.calls = calls

    def verify(self, hash: str, password: str) -> bool:
        self.calls.append(1)
        return super().verify(hash, password)


async def test_verified_credentials_are_cached_so_the_hash_is_not_recomputed(client, service, monkeypatch):
    alice = await register(client, "alice")
    assert (await client.get("/OpenPEX/types", headers=alice)).status == 200
    calls: list[int] = []
    monkeypatch.setattr(service.http[PASSWORDS], "hasher", CountingHasher(calls))
    for _ in range(5):
        assert (await client.get("/OpenPEX/types", headers=alice)).status == 200
    assert calls == []
    assert (await client.get("/OpenPEX/types", headers=basic("alice", "not-her-password"))).status == 401
    assert calls == [1], "a different password is verified against the hash, and refused"


# ---------------------------------------------------------------------- negotiation

async def test_the_whole_protocol_in_the_papers_json(client, service):
    alice = await register(client, "alice")
    response = await client.post("/OpenPEX/reservations", json=proposal(numInstancesFixed=2), headers=alice)
    assert response.status == 201
    body = await response.json()
    assert body["reply"] == "ACCEPT"
    assert set(body["proposal"]) == {"duration", "numInstancesFixed", "numInstancesOption", "startTime",
                                     "template", "type", "id", "userid"}
    assert body["proposal"]["startTime"] == format_time(T0 + HOUR) and body["proposal"]["userid"] == "alice"
    rid = body["proposal"]["id"]
    assert response.headers["Location"] == f"/OpenPEX/reservations/{rid}"

    confirmed = await client.put(f"/OpenPEX/reservations/{rid}", json={"reply": "CONFIRM"}, headers=alice)
    assert (await confirmed.json())["reply"] == "REQUEST_SUCCESS"
    activated = await client.put(f"/OpenPEX/reservations/{rid}/activate", headers=alice)
    reservation = await activated.json()
    assert set(reservation) >= {"id", "userid", "status", "template", "type", "numInstancesFixed",
                                "numInstancesOption", "startTime", "endTime", "duration", "instances"}
    assert reservation["status"] == "ACTIVATED"
    assert reservation["endTime"] == format_time(T0 + 2 * HOUR) and len(reservation["instances"]) == 2

    service.advance_to(T0 + HOUR)

    async def running() -> list[dict[str, Any]]:
        return await (await client.get("/OpenPEX/instances", headers=alice)).json()

    for _ in range(200):
        instances = await running()
        if all(i["status"] == "RUNNING" for i in instances):
            break
        await asyncio.sleep(0.02)
    assert [i["status"] for i in instances] == ["RUNNING", "RUNNING"]
    assert set(instances[0]) == {"vmID", "name", "status", "reservationId", "node", "startTime", "endTime", "ipAddress"}

    vm = instances[0]["vmID"]
    stopped = await client.put(f"/OpenPEX/instances/{vm}/stop", headers=alice)
    assert (await stopped.json())["status"] == "HALTED"
    started = await client.put(f"/OpenPEX/instances/{vm}/start", headers=alice)
    assert (await started.json())["status"] == "RUNNING"
    rebooted = await client.put(f"/OpenPEX/instances/{vm}/reboot", headers=alice)
    assert (await rebooted.json())["status"] == "RUNNING"
    deleted = await client.delete(f"/OpenPEX/instances/{vm}", headers=alice)
    assert (await deleted.json())["status"] == "DELETED"

    cancelled = await client.delete(f"/OpenPEX/reservations/{rid}", headers=alice)
    assert (await cancelled.json())["status"] == "CANCELLED"


async def test_a_counter_is_accepted_then_confirmed_and_confirming_it_early_is_a_conflict(client, service):
    alice, bob = await register(client, "alice"), await register(client, "bob")
    full = await client.post("/OpenPEX/reservations", json=proposal(numInstancesFixed=8), headers=alice)
    assert (await full.json())["reply"] == "ACCEPT"
    countered = await (await client.post("/OpenPEX/reservations", json=proposal(), headers=bob)).json()
    assert countered["reply"] == "COUNTER" and countered["proposal"]["startTime"] == format_time(T0 + 2 * HOUR)
    rid = countered["proposal"]["id"]

    before = service.events()
    early = await client.put(f"/OpenPEX/reservations/{rid}", json={"reply": "CONFIRM"}, headers=bob)
    await expect_error(early, 409, "PROTOCOL_VIOLATION")
    assert service.events() == before, "a refused step records nothing"

    accepted = await (await client.put(f"/OpenPEX/reservations/{rid}", json={"reply": "ACCEPT"}, headers=bob)).json()
    assert accepted["reply"] == "CONFIRM_REQUEST"
    done = await (await client.put(f"/OpenPEX/reservations/{rid}", json={"reply": "CONFIRM"}, headers=bob)).json()
    assert done["reply"] == "REQUEST_SUCCESS"


async def test_a_counter_proposal_from_the_user_renegotiates_with_iso_times(client):
    alice, bob = await register(client, "alice"), await register(client, "bob")
    await client.post("/OpenPEX/reservations", json=proposal(numInstancesFixed=8), headers=alice)
    countered = await (await client.post("/OpenPEX/reservations", json=proposal(), headers=bob)).json()
    rid = countered["proposal"]["id"]
    iso = "2030-01-01T05:00:00Z"
    answer = await client.put(f"/OpenPEX/reservations/{rid}", headers=bob,
                              json={"reply": "COUNTER", "proposal": {"startTime": iso}})
    body = await answer.json()
    assert body["reply"] == "ACCEPT" and body["proposal"]["startTime"] == format_time(T0 + 5 * HOUR)


async def test_rejects_carry_a_reason(client):
    alice = await register(client, "alice")
    past = await (await client.post("/OpenPEX/reservations", headers=alice,
                                    json=proposal(startTime=format_time(T0 - HOUR)))).json()
    assert past["reply"] == "REJECT" and "past" in past["reason"]
    huge = await (await client.post("/OpenPEX/reservations", headers=alice, json=proposal(numInstancesFixed=99))).json()
    assert huge["reply"] == "REJECT" and huge["reason"]
    unknown = await (await client.post("/OpenPEX/reservations", headers=alice, json=proposal(template="nope"))).json()
    assert unknown["reply"] == "REJECT" and "template" in unknown["reason"]


@pytest.mark.parametrize("body, field", [
    (proposal(numInstancesFixed="two"), "numInstancesFixed"),
    (proposal(numInstancesFixed=0), "numInstancesFixed"),
    (proposal(duration=-5), "duration"),
    (proposal(startTime="next tuesday"), "startTime"),
    (proposal(startTime=True), "startTime"),
    (proposal(type=None), "type"),
    ({k: v for k, v in proposal().items() if k != "template"}, "template"),
    (["not", "an", "object"], "body"),
])
async def test_a_malformed_proposal_is_a_400_naming_the_field_and_records_nothing(client, service, body, field):
    alice = await register(client, "alice")
    before = service.events()
    response = await client.post("/OpenPEX/reservations", json=body, headers=alice)
    assert (await expect_error(response, 400))["field"] == field
    assert service.events() == before


async def test_bad_bodies_unknown_ids_and_wrong_methods_get_json_errors(client, service):
    alice = await register(client, "alice")
    before = service.events()
    broken = await client.post("/OpenPEX/reservations", data="{not json",
                               headers={**alice, "Content-Type": "application/json"})
    await expect_error(broken, 400, "INVALID_JSON")
    for path in ("/OpenPEX/reservations/not-a-uuid", "/OpenPEX/reservations/00000000-0000-0000-0000-000000000000",
                 "/OpenPEX/instances/nope", "/OpenPEX/nowhere"):
        await expect_error(await client.get(path, headers=alice), 404)
    dance = await client.put("/OpenPEX/reservations/x", json={"reply": "DANCE"}, headers=alice)
    assert (await expect_error(dance, 400))["field"] == "reply"
    await expect_error(await client.put("/OpenPEX/reservations/x", json={"reply": "CONFIRM"}, headers=alice), 404)
    await expect_error(await client.patch("/OpenPEX/reservations", headers=alice), 405)
    no_reply = await client.put("/OpenPEX/reservations/x", json={}, headers=alice)
    assert (await expect_error(no_reply, 400))["field"] == "reply"
    assert service.events() == before


async def test_users_see_and_touch_only_their_own_reservations_and_the_admin_sees_all(client):
    alice, bob = await register(client, "alice"), await register(client, "bob")
    rid = (await (await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)).json())["proposal"]["id"]
    for method, path in (("GET", f"/OpenPEX/reservations/{rid}"), ("PUT", f"/OpenPEX/reservations/{rid}/activate"),
                         ("DELETE", f"/OpenPEX/reservations/{rid}")):
        await expect_error(await client.request(method, path, headers=bob), 404)
    await expect_error(await client.put(f"/OpenPEX/reservations/{rid}", json={"reply": "CONFIRM"}, headers=bob), 404)
    assert await (await client.get("/OpenPEX/reservations", headers=bob)).json() == []
    everyone = await (await client.get("/OpenPEX/reservations", headers=ADMIN)).json()
    assert [r["id"] for r in everyone] == [rid]
    mine = await (await client.get(f"/OpenPEX/reservations/{rid}", headers=alice)).json()
    assert mine["status"] == "ACCEPTED" and mine["userid"] == "alice"


# ---------------------------------------------------------------------- catalogue and nodes

async def test_types_templates_and_nodes(client, tmp_path):
    alice = await register(client, "alice")
    types = await (await client.get("/OpenPEX/types", headers=alice)).json()
    assert {"type": "SMALL", "cpus": 1, "memoryMB": 768, "diskGB": 10} in types and len(types) == 4
    templates = await (await client.get("/OpenPEX/templates", headers=alice)).json()
    assert "debian-12" in {t["name"] for t in templates}

    await expect_error(await client.get("/OpenPEX/nodes", headers=alice), 403, "FORBIDDEN")
    nodes = await (await client.get("/OpenPEX/nodes", headers=ADMIN)).json()
    assert [n["name"] for n in nodes] == ["sim01", "sim02"]
    assert set(nodes[0]) == {"name", "uri", "status", "cpus", "memoryMB", "diskGB"} and nodes[0]["status"] == "UP"
    one = await (await client.get("/OpenPEX/nodes/sim02", headers=ADMIN)).json()
    assert one["cpus"] == 4 and one["memoryMB"] == 8192

    from pex.drivers.simulated import write_host

    uri = write_host(tmp_path / "hosts" / "extra.xml", "extra", 16, 32768)  # (the service's data dir)
    added = await client.post("/OpenPEX/nodes", json={"name": "extra", "uri": uri}, headers=ADMIN)
    assert added.status == 201
    assert (await added.json())["cpus"] == 16 and (await added.json())["memoryMB"] == 32768
    assert (await added.json())["diskGB"] == 100, "libvirt reports no disk: the service's default host disk"
    await expect_error(await client.post("/OpenPEX/nodes", json={"name": "extra", "uri": uri}, headers=ADMIN), 409)
    bad = await client.post("/OpenPEX/nodes", json={"name": "x", "uri": "not a uri"}, headers=ADMIN)
    assert (await expect_error(bad, 400))["field"] == "uri"
    await expect_error(await client.post("/OpenPEX/nodes", json={"name": "y", "uri": uri}, headers=alice), 403)
    # The new host takes bookings at once: 10 more SMALL instances (its 100 GB of disk).
    big = await (await client.post("/OpenPEX/reservations", json=proposal(numInstancesFixed=18), headers=alice)).json()
    assert big["reply"] == "ACCEPT"


def is_api(path: str) -> bool:
    """The API's paths (the portal's pages beside them are HTML, not in the description)."""
    return path.startswith("/OpenPEX/") or path == "/metrics"


async def test_the_openapi_description_covers_every_route(client):
    alice = await register(client, "alice")
    spec = await (await client.get("/OpenPEX/openapi.json", headers=alice)).json()
    assert spec["openapi"].startswith("3.")
    routes = {(r.method.lower(), r.resource.canonical.replace("{operation}", verb))
              for r in client.app.router.routes() if r.method != "HEAD" and is_api(r.resource.canonical)
              for verb in (("stop", "start", "reboot") if "{operation}" in r.resource.canonical else ("",))}
    described = {(method, path) for path, item in spec["paths"].items() for method in item if method != "parameters"}
    assert routes == described
    assert spec == openapi.SPEC


async def test_thirty_two_clients_racing_for_the_last_slots_get_exactly_the_capacity(aiohttp_client, tmp_path, clock,
                                                                                     monkeypatch):
    monkeypatch.setenv("OPENPEX_ADMIN_PASSWORD", ADMIN_PASSWORD)
    one_host = Service(tmp_path, clock, nodes=1, node_spec=Resources(8, 65536, 1000))
    try:
        client = await aiohttp_client(one_host.http)
        one_host.http[PASSWORDS].registrations_per_hour = 40  # 32 people behind one address
        users = [await register(client, f"user{i:02d}") for i in range(32)]
        # Half the host is booked already: 4 SMALL slots are left in the hour everyone wants.
        rid = (await (await client.post("/OpenPEX/reservations", json=proposal(numInstancesFixed=4),
                                        headers=users[0])).json())["proposal"]["id"]
        await client.put(f"/OpenPEX/reservations/{rid}", json={"reply": "CONFIRM"}, headers=users[0])

        async def race(headers):
            answer = await (await client.post("/OpenPEX/reservations", json=proposal(), headers=headers)).json()
            if answer["reply"] != "ACCEPT":
                return answer["reply"]
            confirm = await client.put(f"/OpenPEX/reservations/{answer['proposal']['id']}",
                                       json={"reply": "CONFIRM"}, headers=headers)
            return (await confirm.json())["reply"]

        replies = await asyncio.gather(*(race(headers) for headers in users))
        assert replies.count("REQUEST_SUCCESS") == 4
        assert replies.count("COUNTER") == 28
        timeline = one_host.app.read.capacity_timeline("sim01", T0, T0 + 3 * HOUR)
        assert min(free.cpus for _, free in timeline) == 0, "the host is full in the contested hour, never over"
        assert all(free.cpus >= 0 for _, free in timeline)
    finally:
        one_host.stop()


@pytest.mark.parametrize("changes, field", [
    ({"startTime": 10**18}, "startTime"), ({"startTime": -(10**18)}, "startTime"),
    ({"duration": 2**63}, "duration"), ({"numInstancesFixed": 2**64}, "numInstancesFixed"),
    ({"template": "\ud800"}, "template"), ({"endTime": 10**18, "duration": None}, "endTime"),
])
async def test_numbers_and_text_the_store_cannot_hold_are_refused_and_listing_still_works(client, service,
                                                                                        changes, field):
    alice = await register(client, "alice")
    before = service.events()
    body = {k: v for k, v in {**proposal(), **changes}.items() if v is not None}
    response = await client.post("/OpenPEX/reservations", data=json.dumps(body),
                                 headers={**alice, "Content-Type": "application/json"})
    assert (await expect_error(response, 400))["field"] == field
    assert service.events() == before
    assert (await client.get("/OpenPEX/reservations", headers=alice)).status == 200


async def test_a_bad_request_among_concurrent_ones_fails_alone(client, service):
    alice, bob = await register(client, "alice"), await register(client, "bob")
    good = [client.post("/OpenPEX/reservations", json=proposal(), headers=bob) for _ in range(10)]
    bad = client.post("/OpenPEX/reservations", json=proposal(numInstancesFixed=2**64), headers=alice)
    responses = await asyncio.gather(*good, bad)
    assert [r.status for r in responses] == [201] * 10 + [400]


async def test_a_node_that_cannot_be_reached_is_added_down_and_a_drained_one_takes_no_bookings(client):
    response = await client.post("/OpenPEX/nodes", json={"name": "ghost", "uri": "qemu+tcp://127.0.0.1:1/system"},
                                 headers=ADMIN)
    assert response.status == 201
    ghost = await response.json()
    assert ghost["status"] == "DOWN" and ghost["cpus"] == 4  # the service's default host size
    alice = await register(client, "alice")
    full = await (await client.post("/OpenPEX/reservations", json=proposal(numInstancesFixed=9), headers=alice)).json()
    assert full["reply"] == "REJECT", "a DOWN host's CPUs are not offered"

    drained = await client.put("/OpenPEX/nodes/sim02/drain", headers=ADMIN)
    assert (await drained.json())["status"] == "DRAINED"
    await expect_error(await client.put("/OpenPEX/nodes/sim02/drain", headers=alice), 403)
    await expect_error(await client.put("/OpenPEX/nodes/nope/drain", headers=ADMIN), 404)
    four = await (await client.post("/OpenPEX/reservations", json=proposal(numInstancesFixed=5), headers=alice)).json()
    assert four["reply"] == "REJECT", "only sim01's 4 CPUs take new bookings"


async def test_the_admin_adds_templates_and_one_whose_files_are_missing_is_refused(client, tmp_path):
    kernel = tmp_path / "images" / "vmlinuz"  # the image directory: the data dir's images/
    kernel.write_bytes(b"not really a kernel")
    good = {"name": "my-kernel", "description": "mine", "kind": "kernel", "kernel": str(kernel), "cmdline": "quiet"}
    added = await client.post("/OpenPEX/templates", json=good, headers=ADMIN)
    assert added.status == 201 and (await added.json())["kind"] == "kernel"
    missing = await client.post("/OpenPEX/templates", headers=ADMIN,
                                json={**good, "name": "broken", "initrd": str(tmp_path / "images" / "nope.gz")})
    body = await expect_error(missing, 400)
    assert body["field"] == "initrd" and "nope.gz" in body["message"]
    await expect_error(await client.post("/OpenPEX/templates", json=good, headers=ADMIN), 409)
    alice = await register(client, "alice")
    await expect_error(await client.post("/OpenPEX/templates", json={**good, "name": "x"}, headers=alice), 403)
    names = {t["name"] for t in await (await client.get("/OpenPEX/templates", headers=alice)).json()}
    assert "my-kernel" in names and "broken" not in names
