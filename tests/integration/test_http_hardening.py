"""What a hostile client found (issue 8), each as a regression test over the real actors, store
and libvirt test-driver hosts: bodies that broke the parser, requests a cross-site page could
make, admin input that reached files it should not, look-alike accounts, answers that broke the
schema, and one account holding the cluster. Every refusal is a 4xx with a JSON body, and
records nothing."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pex.http.wire import proposal_in
from pex.domain.clock import HOUR, MINUTE, SECOND
from pex.drivers.simulated import write_host
from pex.http.typedefs import PASSWORDS
from pex.http.wire import format_time
from tests.integration.test_http import ADMIN, basic, expect_error, proposal, register
from tests.support.service import ADMIN_PASSWORD, T0, Service

JSON = {"Content-Type": "application/json"}
# More optional instances than the two 4-CPU hosts hold: answered COUNTER with fewer.
OVERSIZED = proposal(numInstancesFixed=2, numInstancesOption=10)


async def set_quota(client, username: str, **limits: int) -> dict[str, Any]:
    response = await client.put(f"/OpenPEX/users/{username}/quota", json=limits, headers=ADMIN)
    assert response.status == 200, await response.text()
    return await response.json()


# ---------------------------------------------------------------------- bodies

@pytest.mark.parametrize("path", ["/OpenPEX/users", "/OpenPEX/reservations", "/OpenPEX/templates", "/OpenPEX/nodes"])
async def test_deeply_nested_json_is_a_400_not_a_recursion_error(client, service, path, caplog):
    before = service.events()
    response = await client.post(path, data="[" * 10_000 + "]" * 10_000, headers={**ADMIN, **JSON})
    body = await expect_error(response, 400, "INVALID_JSON")
    assert "nests deeper" in body["message"]
    nested = {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": {"l": {"m": {"n": {"o": {"p": {"q": 1}}}}}}}}}}}}}}}}}
    await expect_error(await client.post(path, json=nested, headers=ADMIN), 400, "INVALID_JSON")
    assert service.events() == before
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


@pytest.mark.parametrize("text", ['{"duration": NaN}', '{"duration": Infinity}', '{"duration": ' + "9" * 5000 + "}"])
async def test_numbers_json_does_not_have_or_python_will_not_read_are_a_400(client, service, text):
    alice = await register(client, "alice")
    before = service.events()
    await expect_error(await client.post("/OpenPEX/reservations", data=text, headers={**alice, **JSON}), 400, "INVALID_JSON")
    assert service.events() == before


# ---------------------------------------------------------------------- what a cross-site page could make a browser send

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
async def test_a_body_that_is_not_json_is_refused_415_and_nothing_is_stored(client, service, content_type):
    alice = await register(client, "alice")
    before = service.events()
    import json

    for path, headers, body in (("/OpenPEX/reservations", alice, proposal()), ("/OpenPEX/templates", ADMIN, {"name": "t"}),
                                ("/OpenPEX/users", {}, {"username": "mallory", "password": "correct-horse-battery-9"})):
        response = await client.post(path, data=json.dumps(body), headers={**headers, "Content-Type": content_type})
        await expect_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    no_type = await client.post("/OpenPEX/reservations", data=b'{"a": 1}', headers={**alice, "Content-Type": ""})
    assert no_type.status == 415
    assert service.events() == before
    charset = await client.post("/OpenPEX/reservations", data=json.dumps(proposal()),
                                headers={**alice, "Content-Type": "application/json; charset=utf-8"})
    assert charset.status == 201


async def test_a_state_changing_request_from_a_foreign_origin_is_refused_and_a_same_origin_one_is_not(client, service):
    alice = await register(client, "alice")
    before = service.events()
    foreign = await client.post("/OpenPEX/reservations", json=proposal(), headers={**alice, "Origin": "https://evil.example"})
    await expect_error(foreign, 403, "CROSS_ORIGIN_REFUSED")
    assert "Access-Control-Allow-Origin" not in foreign.headers
    assert service.events() == before
    own = f"http://{client.server.host}:{client.server.port}"
    assert (await client.post("/OpenPEX/reservations", json=proposal(), headers={**alice, "Origin": own})).status == 201
    reading = await client.get("/OpenPEX/types", headers={**alice, "Origin": "https://evil.example"})
    assert reading.status == 200 and "Access-Control-Allow-Origin" not in reading.headers


async def test_a_preflight_needs_no_credentials_and_cors_is_refused_unless_the_origin_is_configured(client):
    ask = {"Origin": "https://portal.example", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}
    refused = await client.options("/OpenPEX/reservations", headers=ask)
    await expect_error(refused, 403, "CROSS_ORIGIN_REFUSED")
    assert "Access-Control-Allow-Origin" not in refused.headers
    plain = await client.options("/OpenPEX/reservations")
    assert plain.status == 204 and set(plain.headers["Allow"].split(", ")) == {"GET", "POST", "OPTIONS", "HEAD"}
    assert (await client.options("/OpenPEX/nowhere")).status == 404


async def test_a_configured_origin_gets_its_preflight_and_may_read_the_answers(aiohttp_client, tmp_path, clock, monkeypatch):
    from pex.http.app import create_app

    monkeypatch.setenv("OPENPEX_ADMIN_PASSWORD", ADMIN_PASSWORD)
    service = Service(tmp_path, clock)
    try:
        client = await aiohttp_client(create_app(service.system, cors_origins=["https://portal.example"]))
        ask = {"Origin": "https://portal.example", "Access-Control-Request-Method": "POST"}
        preflight = await client.options("/OpenPEX/reservations", headers=ask)
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://portal.example"
        assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        answer = await client.get("/OpenPEX/types", headers={**ADMIN, "Origin": "https://portal.example"})
        assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == "https://portal.example"
        assert answer.headers["Vary"] == "Origin"
        refused = await client.get("/OpenPEX/nodes/nowhere", headers={**ADMIN, "Origin": "https://portal.example"})
        assert refused.status == 404 and refused.headers["Access-Control-Allow-Origin"] == "https://portal.example"
        other = await client.options("/OpenPEX/reservations", headers={**ask, "Origin": "https://other.example"})
        assert other.status == 403
    finally:
        service.stop()


async def test_every_answer_carries_security_headers_and_names_no_software_version(client):
    alice = await register(client, "alice")
    for response in (await client.get("/OpenPEX/types", headers=alice), await client.get("/OpenPEX/health"),
                     await client.get("/OpenPEX/reservations"), await client.get("/OpenPEX/nowhere", headers=alice)):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Server"] == "OpenPEX"


# ---------------------------------------------------------------------- admin input

async def test_template_files_must_be_files_in_the_image_directory(client, service, tmp_path):
    images = tmp_path / "images"
    (images / "vmlinuz").write_bytes(b"kernel")
    (images / "sub").mkdir()
    (images / "escape").symlink_to("/etc/passwd")
    before = service.events()
    template = {"name": "evil", "kind": "kernel", "cmdline": "quiet"}
    for fields, field in (({"kernel": "/etc/shadow"}, "kernel"), ({"kernel": "vmlinuz", "initrd": "/etc/passwd"}, "initrd"),
                          ({"kernel": "../events.db"}, "kernel"), ({"kernel": str(images / "escape")}, "kernel"),
                          ({"kernel": "sub"}, "kernel"), ({"kernel": str(images)}, "kernel")):
        response = await client.post("/OpenPEX/templates", json={**template, **fields}, headers=ADMIN)
        assert (await expect_error(response, 400))["field"] == field, fields
    assert service.events() == before
    relative = await client.post("/OpenPEX/templates", json={**template, "name": "mine", "kernel": "vmlinuz"}, headers=ADMIN)
    assert relative.status == 201 and (await relative.json())["kernel"] == str((images / "vmlinuz").resolve())


async def test_a_template_may_not_say_where_consoles_are_written(client, service):
    before = service.events()
    for key, path in (("console_log", "/etc/shadow"), ("console_dir", "/tmp/made-by-a-template")):
        response = await client.post("/OpenPEX/templates", json={"name": "t", "kind": "simulated", key: path},
                                     headers=ADMIN)
        assert (await expect_error(response, 400))["field"] == key
    assert service.events() == before


async def test_a_node_is_checked_before_anything_connects_to_it(client, service, tmp_path, caplog):
    before = service.events()
    for body, field in (({"name": "evil\nERROR forged line", "uri": "test:///default"}, "name"),
                        ({"name": ".hidden", "uri": "test:///default"}, "name"),
                        ({"name": "passwd", "uri": "test:///etc/passwd"}, "uri"),
                        ({"name": "far", "uri": "test:///../../etc/passwd"}, "uri"),
                        ({"name": "vbox", "uri": "vbox:///session"}, "uri"),
                        ({"name": "space", "uri": "qemu:///system extra"}, "uri"),
                        ({"name": "nl", "uri": "qemu:///system\nforged"}, "uri")):
        response = await client.post("/OpenPEX/nodes", json=body, headers=ADMIN)
        assert (await expect_error(response, 400))["field"] == field, body
    assert service.events() == before
    assert "forged" not in caplog.text and "root:" not in caplog.text
    assert set(service.system.dispatcher.proxy().node_refs().get()) == {"sim01", "sim02"}, "no host was connected"


async def test_a_uri_already_used_by_another_node_is_a_conflict(client, service, tmp_path):
    taken = (await (await client.get("/OpenPEX/nodes/sim01", headers=ADMIN)).json())["uri"]
    (tmp_path / "hosts" / "alias.xml").symlink_to(tmp_path / "hosts" / "sim01.xml")
    before = service.events()
    for uri in (taken, taken.replace("/hosts/", "/hosts/./"), taken.replace("/hosts/", "//hosts/"),
                f"test://{tmp_path / 'hosts' / 'alias.xml'}"):
        response = await client.post("/OpenPEX/nodes", json={"name": "twin", "uri": uri}, headers=ADMIN)
        body = await expect_error(response, 409)
        assert "sim01" in body["message"], uri
    assert (await client.post("/OpenPEX/nodes", json={"name": "shared", "uri": "test:///default"}, headers=ADMIN)).status == 201
    for uri in ("test:///default?x=1", "test:///default#", "TEST:///default", "test://localhost:1/default",
                "qemu+unix:///system?socket=/tmp/x", "qemu+ssh://h/system?keyfile=/etc/shadow"):
        response = await client.post("/OpenPEX/nodes", json={"name": "again", "uri": uri}, headers=ADMIN)
        assert response.status in (400, 409), uri
    assert service.events() == before + 1


async def test_a_host_that_does_not_answer_is_down_even_when_its_size_is_given(client, tmp_path):
    response = await client.post("/OpenPEX/nodes", json={"name": "ghost", "uri": "qemu+tcp://127.0.0.1:1/system",
                                                         "cpus": 64, "memoryMB": 262144}, headers=ADMIN)
    assert response.status == 201
    assert (await response.json())["status"] == "DOWN", "not UP until a poll has an answer"
    uri = write_host(tmp_path / "hosts" / "real.xml", "real", 8, 16384)
    answering = await client.post("/OpenPEX/nodes", json={"name": "real", "uri": uri, "cpus": 4}, headers=ADMIN)
    assert (await answering.json())["status"] == "UP" and (await answering.json())["cpus"] == 4


async def test_a_drained_node_can_be_put_back_into_service(client):
    alice = await register(client, "alice")
    for name in ("sim01", "sim02"):
        assert (await (await client.put(f"/OpenPEX/nodes/{name}/drain", headers=ADMIN)).json())["status"] == "DRAINED"
    none = await (await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)).json()
    assert none["reply"] == "REJECT"
    back = await client.put("/OpenPEX/nodes/sim01/undrain", headers=ADMIN)
    assert back.status == 200 and (await back.json())["status"] == "UP"
    again = await (await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)).json()
    assert again["reply"] == "ACCEPT"
    await expect_error(await client.put("/OpenPEX/nodes/sim01/undrain", headers=alice), 403)
    await expect_error(await client.put("/OpenPEX/nodes/nowhere/undrain", headers=ADMIN), 404)


# ---------------------------------------------------------------------- accounts

async def test_usernames_are_unique_whatever_their_case_and_reserved_names_are_refused(client, service):
    await register(client, "alice")
    before = service.events()
    for name in ("Alice", "ALICE", "Admin", "ADMIN"):
        response = await client.post("/OpenPEX/users", json={"username": name, "password": "correct-horse-battery-9"})
        await expect_error(response, 409, "ALREADY_EXISTS")
    for name in (".", "..", ".hidden", "-dash", "root", "Root", "administrator", "openpex"):
        response = await client.post("/OpenPEX/users", json={"username": name, "password": "correct-horse-battery-9"})
        assert (await expect_error(response, 400))["field"] == "username", name
    assert service.events() == before


async def test_one_address_may_register_only_so_many_accounts_an_hour(client, service):
    passwords = service.http[PASSWORDS]
    passwords.registrations_per_hour = 3
    for name in ("ann", "ben", "cat"):
        await register(client, name)
    before = service.events()
    fourth = await client.post("/OpenPEX/users", json={"username": "dan", "password": "correct-horse-battery-9"})
    await expect_error(fourth, 429, "TOO_MANY_ATTEMPTS")
    assert int(fourth.headers["Retry-After"]) == 1200, "one more every 60/3 minutes"
    assert service.events() == before


async def test_a_username_typed_in_another_case_logs_in_as_the_account_itself(client):
    alice = await register(client, "alice")
    rid = (await (await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)).json())["proposal"]["id"]
    shouting = basic("ALICE", "correct-horse-battery-9")
    for _ in range(2):  # the second from the cache of verified credentials
        mine = await (await client.get("/OpenPEX/reservations", headers=shouting)).json()
        assert [r["id"] for r in mine] == [rid] and mine[0]["userid"] == "alice"
    answer = await (await client.post("/OpenPEX/reservations", json=proposal(), headers=shouting)).json()
    assert answer["proposal"]["userid"] == "alice"


async def test_an_account_is_shown_to_itself_and_the_admin_only(client):
    alice, bob = await register(client, "alice"), await register(client, "bob")
    mine = await (await client.get("/OpenPEX/users/alice", headers=alice)).json()
    assert mine["username"] == "alice" and mine["quota"]["openOffers"] == 10 and "passwordHash" not in mine
    await expect_error(await client.get("/OpenPEX/users/alice", headers=bob), 404)
    await expect_error(await client.get("/OpenPEX/users", headers=bob), 403)
    listed = await (await client.get("/OpenPEX/users", headers=ADMIN)).json()
    assert {a["username"] for a in listed} == {"admin", "alice", "bob"}
    assert all("passwordHash" not in a for a in listed)


# ---------------------------------------------------------------------- protocol conformance

async def test_a_wrong_method_says_which_are_allowed(client):
    alice = await register(client, "alice")
    response = await client.patch("/OpenPEX/reservations", headers=alice)
    await expect_error(response, 405)
    assert set(response.headers["Allow"].split(",")) >= {"GET", "POST"}


async def test_sizes_are_answered_in_the_papers_spelling_and_unknown_ones_are_a_400(client, service):
    alice = await register(client, "alice")
    answer = await (await client.post("/OpenPEX/reservations", json=proposal(type="small"), headers=alice)).json()
    assert answer["proposal"]["type"] == "SMALL"
    before = service.events()
    huge = await client.post("/OpenPEX/reservations", json=proposal(type="HUGE"), headers=alice)
    assert (await expect_error(huge, 400))["field"] == "type"
    assert service.events() == before


async def test_a_start_so_late_its_end_could_not_be_written_is_refused(client, service):
    alice = await register(client, "alice")
    before = service.events()
    late = await client.post("/OpenPEX/reservations", json=proposal(startTime="Fri, 31 Dec 9999 00:00:00 GMT"),
                             headers=alice)
    assert (await expect_error(late, 400))["field"] == "startTime"
    assert service.events() == before


async def test_the_openapi_document_is_served_without_credentials(client):
    response = await client.get("/OpenPEX/openapi.json")
    assert response.status == 200 and (await response.json())["openapi"].startswith("3.")


# ---------------------------------------------------------------------- quotas

async def test_open_offers_over_the_quota_are_refused_429_and_nothing_is_stored(client, service):
    alice, bob = await register(client, "alice"), await register(client, "bob")
    for _ in range(10):
        assert (await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)).status == 201
    before = service.events()
    over = await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)
    body = await expect_error(over, 429, "QUOTA_EXCEEDED")
    assert 1 <= int(over.headers["Retry-After"]) <= 300 and body["retryAfter"] == int(over.headers["Retry-After"])
    assert service.events() == before
    assert (await client.post("/OpenPEX/reservations", json=proposal(), headers=bob)).status == 201, "others go on"
    mine = await (await client.get("/OpenPEX/users", headers=ADMIN)).json()
    seen = {a["username"]: a for a in mine}
    assert seen["alice"]["refusedOverQuota"] == 1 and seen["alice"]["usage"]["openOffers"] == 10
    assert seen["bob"]["refusedOverQuota"] == 0


async def test_an_offer_that_lapses_or_is_answered_makes_room_again(client, service):
    alice = await register(client, "alice")
    await set_quota(client, "alice", openOffers=2)
    first = await (await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)).json()
    await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)
    assert (await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)).status == 429
    rid = first["proposal"]["id"]
    assert (await client.put(f"/OpenPEX/reservations/{rid}", json={"reply": "CONFIRM"}, headers=alice)).status == 200
    assert (await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)).status == 201
    service.advance_to(T0 + 301 * SECOND)  # both open offers lapse
    assert (await client.post("/OpenPEX/reservations", json=proposal(startTime=format_time(T0 + 2 * HOUR)),
                              headers=alice)).status == 201


async def test_capacity_held_by_open_offers_is_bounded_in_instance_hours(client, service):
    alice = await register(client, "alice")
    await set_quota(client, "alice", heldInstanceHours=10)
    before = service.events()
    big = await client.post("/OpenPEX/reservations", json=proposal(numInstancesFixed=3, duration=4 * HOUR), headers=alice)
    assert "instance-hours" in (await expect_error(big, 429, "QUOTA_EXCEEDED"))["message"]
    assert "Retry-After" not in big.headers, "waiting would not help: it asks for more than the whole quota"
    assert service.events() == before
    assert (await client.post("/OpenPEX/reservations", json=proposal(numInstancesFixed=2, duration=4 * HOUR),
                              headers=alice)).status == 201
    second = await client.post("/OpenPEX/reservations", json=proposal(numInstancesFixed=1, duration=3 * HOUR), headers=alice)
    assert second.status == 429


async def test_proposals_per_minute_are_limited_and_refill_over_the_minute(client, service):
    alice = await register(client, "alice")
    await set_quota(client, "alice", proposalsPerMinute=5, openOffers=100)
    for _ in range(5):
        assert (await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)).status == 201
    over = await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)
    await expect_error(over, 429, "QUOTA_EXCEEDED")
    assert int(over.headers["Retry-After"]) == 12, "one proposal comes back every 60/5 s"
    service.advance_to(T0 + 12 * SECOND)
    assert (await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)).status == 201
    assert (await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)).status == 429


async def test_a_counter_counts_as_a_proposal_but_does_not_hold_a_second_offer(client, service):
    alice = await register(client, "alice")
    await set_quota(client, "alice", openOffers=1, proposalsPerMinute=3)
    rid = await (await client.post("/OpenPEX/reservations", json=OVERSIZED, headers=alice)).json()
    assert rid["reply"] == "COUNTER"
    path = f"/OpenPEX/reservations/{rid['proposal']['id']}"
    countered = await client.put(path, json={"reply": "COUNTER", "proposal": {"numInstancesOption": 9}}, headers=alice)
    assert countered.status == 200, "the counter replaces the open offer: still one"
    third = await client.put(path, json={"reply": "COUNTER", "proposal": {"numInstancesOption": 8}}, headers=alice)
    assert third.status == 200
    await expect_error(await client.put(path, json={"reply": "COUNTER", "proposal": {"numInstancesOption": 9}},
                                        headers=alice), 429, "QUOTA_EXCEEDED")


async def test_only_the_admin_sets_quotas_and_bad_ones_are_a_400(client, service):
    alice = await register(client, "alice")
    await expect_error(await client.put("/OpenPEX/users/alice/quota", json={"openOffers": 50}, headers=alice), 403)
    before = service.events()
    for body, field in (({}, "quota"), ({"openOffers": -1}, "openOffers"), ({"openOffers": True}, "openOffers"),
                        ({"offers": 3}, "offers"), ({"open_offers": 3}, "open_offers"),
                        ({"heldInstanceHours": 10**10}, "heldInstanceHours")):
        refused = await expect_error(await client.put("/OpenPEX/users/alice/quota", json=body, headers=ADMIN), 400)
        assert refused["field"] == field and refused["message"].startswith(f"{field}: "), refused
    await expect_error(await client.put("/OpenPEX/users/nobody/quota", json={"openOffers": 1}, headers=ADMIN), 404)
    assert service.events() == before
    changed = await set_quota(client, "ALICE", openOffers=50)
    assert changed["quota"] == {"openOffers": 50, "heldInstanceHours": 2000, "proposalsPerMinute": 60}
    assert service.app.view.account("alice").quota == {"open_offers": 50}, "the others still follow the defaults"


async def test_a_quota_set_by_the_admin_survives_a_restart(tmp_path, clock, monkeypatch, aiohttp_client):
    monkeypatch.setenv("OPENPEX_ADMIN_PASSWORD", ADMIN_PASSWORD)
    first = Service(tmp_path, clock)
    try:
        client = await aiohttp_client(first.http)
        await register(client, "alice")
        await set_quota(client, "alice", openOffers=3)
    finally:
        first.stop()
    second = Service(tmp_path, clock)
    try:
        assert second.app.catalogue.quota_of("alice").open_offers == 3
    finally:
        second.stop()


# ---------------------------------------------------------------------- the store

def test_the_data_dir_and_store_are_private_to_their_owner(tmp_path, clock, monkeypatch):
    monkeypatch.setenv("OPENPEX_ADMIN_PASSWORD", ADMIN_PASSWORD)
    data = tmp_path / "data"
    service = Service(data, clock)
    try:
        service.ask(lambda a: a.propose("alice", proposal_in({"type": "SMALL", "template": "debian-12", "numInstancesFixed": 1,
                                     "startTime": T0 + HOUR, "duration": HOUR})))
        assert os.stat(data).st_mode & 0o777 == 0o700
        for name in ("events.db", "events.db-wal", "events.db-shm"):
            if (data / name).exists() or name == "events.db":
                assert os.stat(data / name).st_mode & 0o077 == 0, name
    finally:
        service.stop()


def test_a_store_left_readable_by_an_older_version_is_tightened_at_start(tmp_path, clock, monkeypatch, caplog):
    monkeypatch.setenv("OPENPEX_ADMIN_PASSWORD", ADMIN_PASSWORD)
    data = tmp_path / "data"
    Service(data, clock).stop()
    os.chmod(data, 0o755)
    os.chmod(data / "events.db", 0o644)
    service = Service(data, clock)
    try:
        assert os.stat(data).st_mode & 0o777 == 0o700 and os.stat(data / "events.db").st_mode & 0o777 == 0o600
        assert "private to their owner" in caplog.text
    finally:
        service.stop()


async def test_a_negotiation_holds_capacity_for_a_bounded_time_however_often_it_counters(client, service):
    alice = await register(client, "alice")
    await set_quota(client, "alice", proposalsPerMinute=1000)
    answer = await (await client.post("/OpenPEX/reservations", json=OVERSIZED, headers=alice)).json()
    assert answer["reply"] == "COUNTER"
    path = f"/OpenPEX/reservations/{answer['proposal']['id']}"
    holds = []
    now = T0
    for count in (8, 9, 8, 9, 8, 9):
        now += 4 * MINUTE
        service.advance_to(now)
        countered = await client.put(path, json={"reply": "COUNTER", "proposal": {"numInstancesOption": count}},
                                     headers=alice)
        if countered.status != 200:
            break
        holds.append((await countered.json()).get("holdUntil"))
    reservation = await (await client.get(path, headers=alice)).json()
    assert reservation["status"] == "OFFER_EXPIRED", "the offer lapsed 15 min (3 TTLs) after the first one"
    assert len(holds) == 3, holds
    assert holds[-1] == format_time(T0 + 15 * MINUTE)


async def test_an_agreed_reservation_keeps_its_size_and_a_counter_changing_it_is_rejected(client, service, caplog):
    alice = await register(client, "alice")
    rid = (await (await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)).json())["proposal"]["id"]
    await client.put(f"/OpenPEX/reservations/{rid}", json={"reply": "CONFIRM"}, headers=alice)
    bigger = await client.put(f"/OpenPEX/reservations/{rid}", json={"reply": "COUNTER", "proposal": {"type": "LARGE"}},
                              headers=alice)
    body = await bigger.json()
    assert bigger.status == 200 and body["reply"] == "REJECT" and "keeps its size" in body["reason"]
    shown = await (await client.get(f"/OpenPEX/reservations/{rid}", headers=alice)).json()
    assert shown["status"] == "CONFIRMED" and shown["type"] == "SMALL" and "offer" not in shown
    assert "Traceback" not in caplog.text
    service.stop()
    reopened = Service(service.config.data_dir, service.clock)  # the store still opens
    try:
        assert reopened.app.read.reservation(rid, "alice").terms.instance_type == "SMALL"
    finally:
        reopened.stop()
