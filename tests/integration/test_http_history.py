"""The log over HTTP: the admin's `GET /OpenPEX/events` (pages, filters by type and by
reservation) and a reservation's history for its owner, each event with a line in the domain's
words; over the real actors and the SQLite store."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest

from pex.domain import reading
from pex.domain.clock import HOUR
from pex.domain.errors import NotFound
from pex.domain.event_log import EVENT_KINDS, KINDS, EventListing
from pex.domain.read_models import EventPage, EventRecord
from pex.http import presenters
from pex.http.wire import RFC1123_OUT, format_time
from tests.integration.test_application import NOW, opening, seeded
from tests.integration.test_application import proposal as app_proposal
from tests.integration.test_http import ADMIN, expect_error, proposal, register
from tests.integration.test_http_reads import pages, propose
from tests.support.service import T0

EVENT_KEYS = {"position", "time", "kind", "id", "version", "type", "text", "data"}


async def log(client, query: str = "", headers=ADMIN) -> list[dict[str, Any]]:
    """Every event the query selects, following the Links."""
    return [event for page in await pages(client, f"/OpenPEX/events{query}", headers) for event in page]


async def confirmed(client, headers, **changes) -> str:
    rid = await propose(client, headers, **changes)
    done = await client.put(f"/OpenPEX/reservations/{rid}", json={"reply": "CONFIRM"}, headers=headers)
    assert done.status == 200, await done.text()
    return rid


# ---------------------------------------------------------------------- GET /events (admin)

async def test_the_admin_reads_the_whole_log_in_pages_each_linking_the_next(client, service):
    alice = await register(client, "alice")
    for hour in range(1, 5):
        await confirmed(client, alice, startTime=format_time(T0 + hour * HOUR))
    last = service.events()
    assert last > 12
    listed = await pages(client, "/OpenPEX/events?limit=5", ADMIN)
    assert [len(page) for page in listed[:-1]] == [5] * (len(listed) - 1) and len(listed[-1]) < 5
    positions = [event["position"] for page in listed for event in page]
    assert positions == list(range(1, last + 1)), "every event once, in log order"
    every = [event for page in listed for event in page]
    assert all(set(event) == EVENT_KEYS for event in every)
    assert all(re.fullmatch(RFC1123_OUT, event["time"]) for event in every)
    assert await log(client) == every, "one page of 1,000 (the default) holds the same"
    after = await client.get(f"/OpenPEX/events?after={last - 2}", headers=ADMIN)
    assert [e["position"] for e in await after.json()] == [last - 1, last] and "Link" not in after.headers
    beyond = await client.get(f"/OpenPEX/events?after={last + 100}", headers=ADMIN)
    assert beyond.status == 200 and await beyond.json() == []

    offered = next(e for e in every if e["type"] == "Offered")
    assert offered["kind"] == "Reservation" and offered["version"] == 2
    data = offered["data"]
    assert data["reply"] == "ACCEPT" and data["holdUntil"] == format_time(T0 + 5 * 60_000)
    assert data["terms"] == {"type": "SMALL", "template": "debian-12", "numInstancesFixed": 1,
                             "numInstancesOption": 0, "startTime": format_time(T0 + HOUR), "duration": HOUR}
    assert data["allocation"]["size"] == {"cpus": 1, "memoryMB": 768, "diskGB": 10}
    [share] = data["allocation"]["shares"]
    assert share["count"] == 1 and share["startTime"] == format_time(T0 + HOUR)
    planned = next(e for e in every if e["type"] == "Planned")
    assert planned["kind"] == "Instance" and planned["data"]["reservationId"] == offered["id"]
    assert planned["data"]["startTime"] == format_time(T0 + HOUR) and planned["data"]["type"] == "SMALL"


async def test_the_log_is_filtered_by_event_type_and_the_links_keep_the_filter(client):
    alice = await register(client, "alice")
    made = [await confirmed(client, alice, startTime=format_time(T0 + hour * HOUR)) for hour in (1, 2, 3)]
    assert [e["id"] for e in await log(client, "?type=Confirmed")] == made
    assert [e["id"] for e in await log(client, "?type=Reservation.Confirmed&limit=1")] == made
    both = await log(client, "?type=Confirmed&type=Requested&limit=2")
    assert [(e["type"], e["id"]) for e in both] == [(kind, rid) for rid in made for kind in ("Requested", "Confirmed")]
    assert both == await log(client, "?type=Confirmed,Requested&limit=2")
    assert {e["kind"] for e in await log(client, "?type=Registered")} == {"Account", "Node", "PriceList", "Template"}
    accounts = await log(client, "?type=Account")
    assert {e["type"] for e in accounts} == {"Registered"} and len(accounts) == 2  # the admin and alice
    assert {e["kind"] for e in await log(client, "?type=Instance")} == {"Instance"}


async def test_the_log_is_filtered_by_reservation_its_own_events_and_its_instances(client):
    alice, bob = await register(client, "alice"), await register(client, "bob")
    mine = await confirmed(client, alice, numInstancesFixed=2)
    await confirmed(client, bob)
    vms = [vm["vmID"] for vm in await (await client.get("/OpenPEX/instances", headers=alice)).json()]
    found = await log(client, f"?reservation={mine}&limit=3")
    assert {e["id"] for e in found} == {mine, *vms}
    assert [e["type"] for e in found] == ["Requested", "Offered", "Confirmed", "Planned", "Planned"]
    assert [e["position"] for e in found] == sorted(e["position"] for e in found)
    only = await log(client, f"?reservation={mine}&type=Planned")
    assert [e["id"] for e in only] == vms
    unknown = await client.get(f"/OpenPEX/events?reservation={uuid4()}", headers=ADMIN)
    await expect_error(unknown, 404, "NOT_FOUND")


async def test_only_the_admin_reads_the_log(client):
    alice = await register(client, "alice")
    await propose(client, alice)
    for query in ("", "?limit=0", f"?reservation={uuid4()}"):
        await expect_error(await client.get(f"/OpenPEX/events{query}", headers=alice), 403, "FORBIDDEN")


async def test_bad_paging_and_filters_of_the_log_are_400_naming_the_parameter(client):
    for query, field in [
        ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"), ("after=-1", "after"),
        ("after=x", "after"), ("after=1e3", "after"), ("after=1000000000000000", "after"), ("type=Sold", "type"),
        ("type=", "type"), ("type=Confirmed,", "type"), ("type=confirmed", "type"),
        ("reservation=nonsense", "reservation"), ("reservation=", "reservation"),
    ]:
        body = await expect_error(await client.get(f"/OpenPEX/events?{query}", headers=ADMIN), 400, "INVALID_FIELD")
        assert body["field"] == field, (query, body)


async def test_password_hashes_never_appear_in_the_log(client, service):
    await register(client, "alice")
    _, stored = service.app.catalogue.password_hash("alice")
    response = await client.get("/OpenPEX/events?type=Account.Registered", headers=ADMIN)
    text = await response.text()
    assert stored not in text and "$argon2" not in text and "password" not in text.lower()
    alice = next(e for e in await response.json() if e["data"]["username"] == "alice")
    assert alice["data"] == {"username": "alice", "fullname": "Alice", "email": "alice@example.org", "isAdmin": False}


# ---------------------------------------------------------------------- a reservation's history

async def test_a_reservation_s_history_tells_its_life_in_the_domain_s_words(client, service):
    alice, bob = await register(client, "alice"), await register(client, "bob")
    await propose(client, alice, numInstancesFixed=8)  # the whole cluster from T0+1h for an hour
    countered = await (await client.post("/OpenPEX/reservations", json=proposal(), headers=bob)).json()
    assert countered["reply"] == "COUNTER"
    rid = countered["proposal"]["id"]
    for message in ("ACCEPT", "CONFIRM"):
        answered = await client.put(f"/OpenPEX/reservations/{rid}", json={"reply": message}, headers=bob)
        assert answered.status == 200, await answered.text()
    assert (await client.put(f"/OpenPEX/reservations/{rid}/activate", headers=bob)).status == 200
    service.advance_to(T0 + 2 * HOUR)
    for _ in range(250):
        [vm] = await (await client.get("/OpenPEX/instances", headers=bob)).json()
        if vm["status"] == "RUNNING":
            break
        await asyncio.sleep(0.02)
    assert vm["status"] == "RUNNING"
    for operation in ("stop", "start"):
        assert (await client.put(f"/OpenPEX/instances/{vm['vmID']}/{operation}", headers=bob)).status == 200
    assert (await client.delete(f"/OpenPEX/instances/{vm['vmID']}", headers=bob)).status == 200
    assert (await client.delete(f"/OpenPEX/reservations/{rid}", headers=bob)).status == 200

    response = await client.get(f"/OpenPEX/reservations/{rid}/history", headers=bob)
    assert response.status == 200 and "Link" not in response.headers
    history = await response.json()
    assert set(history) == {"reservationId", "events"} and history["reservationId"] == rid
    events = history["events"]
    assert all(set(event) == EVENT_KEYS for event in events)
    assert [e["position"] for e in events] == sorted(e["position"] for e in events)
    assert {e["id"] for e in events} == {rid, vm["vmID"]}
    name, node = vm["name"], vm["node"]
    one_hour = f"1 SMALL of debian-12 from {format_time(T0 + HOUR)} for 1 h"
    texts = [e["text"] for e in events]
    hold = re.escape(", held until ") + RFC1123_OUT
    expected = [
        (f"requested by bob: {re.escape(one_hour)}", "Requested"),
        (re.escape(f"countered (start moved to {format_time(T0 + 2 * HOUR)})") + r" at [0-9]+\.[0-9]{2} USD" + hold,
         "Offered"),
        ("counter offer accepted" + hold, "CounterAccepted"),
        (r"confirmed at [0-9]+\.[0-9]{2} USD", "Confirmed"),
        (re.escape(f"VM {name} planned on {node}, from {format_time(T0 + 2 * HOUR)} to {format_time(T0 + 3 * HOUR)}"),
         "Planned"),
        ("activated: its VMs start at its start time", "Activated"),
        ("launched: its VMs were sent to boot", "Launched"),
        (re.escape(f"VM {name} started on {node}"), "StatusChanged"),
        (re.escape(f"VM {name} stopped"), "StatusChanged"),
        (re.escape(f"VM {name} started on {node}"), "StatusChanged"),
        (re.escape(f"VM {name} deleted"), "Discarded"),
        ("cancelled at " + RFC1123_OUT, "Cancelled"),
    ]
    assert [e["type"] for e in events] == [kind for _, kind in expected], texts
    for (pattern, _), text in zip(expected, texts):
        assert re.fullmatch(pattern, text), (pattern, text)

    as_admin = await client.get(f"/OpenPEX/reservations/{rid}/history", headers=ADMIN)
    assert await as_admin.json() == history
    assert [e["type"] for e in await log(client, f"?reservation={rid}")] == [e["type"] for e in events]


async def test_someone_else_s_history_is_not_found_exactly_as_an_unknown_reservation(client):
    alice, bob = await register(client, "alice"), await register(client, "bob")
    rid = await propose(client, alice)
    for headers in (bob,):
        theirs = await client.get(f"/OpenPEX/reservations/{rid}/history", headers=headers)
        missing = await client.get(f"/OpenPEX/reservations/{rid}", headers=headers)
        assert await expect_error(theirs, 404, "NOT_FOUND") == await expect_error(missing, 404)
    unknown = str(uuid4())
    for path_id in (unknown, "not-an-id"):
        history = await client.get(f"/OpenPEX/reservations/{path_id}/history", headers=alice)
        reservation = await client.get(f"/OpenPEX/reservations/{path_id}", headers=alice)
        assert await expect_error(history, 404, "NOT_FOUND") == await expect_error(reservation, 404)
    mine = await client.get(f"/OpenPEX/reservations/{rid}/history", headers=alice)
    assert [e["type"] for e in (await mine.json())["events"]] == ["Requested", "Offered"]


async def test_a_long_history_comes_in_pages(client):
    alice = await register(client, "alice")
    rid = await confirmed(client, alice, numInstancesFixed=3)
    whole = await (await client.get(f"/OpenPEX/reservations/{rid}/history", headers=alice)).json()
    assert len(whole["events"]) == 6
    listed = await pages(client, f"/OpenPEX/reservations/{rid}/history?limit=4", alice)
    assert [len(page["events"]) for page in listed] == [4, 2]
    assert [e for page in listed for e in page["events"]][4:] == whole["events"][4:]
    bad = await client.get(f"/OpenPEX/reservations/{rid}/history?after=x", headers=alice)
    assert (await expect_error(bad, 400))["field"] == "after"


# ---------------------------------------------------------------------- the read side on every store

@pytest.fixture
def application(store_env):
    """The application alone on eventsourcing's in-memory store, a SQLite file and PostgreSQL."""
    opened = opening(store_env)
    yield seeded(next(opened)())
    next(opened, None)


def _every_page(read: Callable[[int], EventPage]) -> list[list[EventRecord]]:
    found, after = [], 0
    while True:
        page = read(after)
        found.append(list(page.records))
        if page.following is None:
            return found
        after = page.following


def test_a_reservation_s_events_are_found_alike_on_every_store(application, monkeypatch):
    app = application
    mine = app.negotiation.propose("alice", app_proposal(fixed=2), NOW).reservation_id
    theirs = app.negotiation.propose("bob", app_proposal(), NOW).reservation_id
    for rid, user in ((mine, "alice"), (theirs, "bob")):
        app.negotiation.respond(rid, user, "CONFIRM", NOW)
    vms = list(app.view.instances_of[mine])

    listed = _every_page(lambda after: app.read.history(EventListing(after, 3, reservation=mine), "alice"))
    assert [[r.kind.partition(".")[2] for r in page] for page in listed] == [
        ["Requested", "Offered", "Confirmed"], ["Planned", "Planned"]]
    records = [r for page in listed for r in page]
    assert [r.originator_id for r in records[3:]] == vms
    assert [r.position for r in records] == sorted(r.position for r in records)
    planned = app.read.events(EventListing(kinds=("Instance.Planned",), reservation=mine))
    assert [r.originator_id for r in planned.records] == vms and planned.following is None
    assert app.read.history(EventListing(reservation=mine), "bob", is_admin=True).records == tuple(records)
    with pytest.raises(NotFound):
        app.read.history(EventListing(reservation=mine), "bob")
    accounts = app.read.events(EventListing(kinds=("Account.Registered",)))
    assert [r.fields["username"] for r in accounts.records] == ["alice", "bob"]
    assert all("password_hash" not in r.fields for r in accounts.records), "the hash never leaves the domain"

    # A page of some kinds of the whole log looks through a bounded stretch, and says where it stopped.
    monkeypatch.setattr(reading, "SCANNED", 4)
    confirmed = _every_page(lambda after: app.read.events(EventListing(after, kinds=("Reservation.Confirmed",))))
    assert [r.originator_id for page in confirmed for r in page] == [mine, theirs]
    assert len(confirmed) > 2 and [] in confirmed, "short pages, even empty ones, link to the next"


# ---------------------------------------------------------------------- words for every event

SAMPLE_TERMS = {"instance_type": "SMALL", "template": "debian-12", "fixed": 2, "optional": 1, "start": T0,
                "duration": HOUR}
SAMPLES: dict[str, Any] = {
    "userid": "alice", "terms": SAMPLE_TERMS, "reply": "COUNTER", "hold_until": T0, "alternatives": [SAMPLE_TERMS],
    "allocation": [[1, 768, 10], [["node1", T0, T0 + HOUR, 2]]], "opened": T0, "reason": "a reason",
    "reservation_id": UUID(int=1), "name": "name", "node": "node1", "instance_type": "SMALL", "template": "debian-12",
    "start": T0, "end": T0 + HOUR, "status": "RUNNING", "uri": "test:///default", "cpus": 4, "memory_mb": 8192,
    "disk_gb": 100, "description": "", "spec": {"kind": "stand-in"}, "username": "alice",
    "password_hash": "$argon2id$v=19$secret", "fullname": "Alice", "email": "", "is_admin": False,
    "limits": {"open_offers": 3, "proposals_per_minute": 10},
    "price": {"currency": "USD", "total": "0.15", "runs": [[T0, T0 + HOUR, 3, 50_000, 10_000]]}, "at": T0 + HOUR // 2,
    "currency": "USD", "rates": {"SMALL": "0.05", "MEDIUM": "0.10", "LARGE": "0.15", "XLARGE": "0.20"},
}


def _fields_of(kind: str) -> dict[str, Any]:
    """Sample values for the fields the event class records (a new field needs a sample)."""
    from pex.domain import aggregates

    aggregate, name = kind.split(".")
    recorded: dict[str, Any] = {}
    for cls in reversed(getattr(getattr(aggregates, aggregate), name).__mro__):
        recorded.update(getattr(cls, "__annotations__", {}))
    envelope = {"originator_id", "originator_version", "timestamp", "originator_topic", "originator_id_type"}
    return {field: SAMPLES[field] for field in recorded if field not in envelope}


def test_every_event_type_has_words():
    assert set(presenters.EVENT_WORDS) == set(EVENT_KINDS), "a new event needs its words in presenters.EVENT_WORDS"
    assert set(EVENT_KINDS) == {kind for kind in KINDS if "." in kind}
    records = tuple(EventRecord(n, UUID(int=n), 1, kind, T0, _fields_of(kind)) for n, kind in enumerate(EVENT_KINDS, 1))
    page = EventPage(records, {record.originator_id: "thing" for record in records})
    for record, text in zip(records, presenters.event_texts(page)):
        assert text and text != f"{record.kind.partition('.')[2]} recorded", (record.kind, text)
        body = presenters.event(record, text)
        assert "$argon2" not in json.dumps(body), "a password hash is never shown"
    counter = presenters.event_texts(EventPage((
        EventRecord(1, UUID(int=1), 1, "Reservation.Requested", T0, {"userid": "alice", "terms": SAMPLE_TERMS}),
        EventRecord(2, UUID(int=1), 2, "Reservation.Offered", T0, {
            "reply": "COUNTER", "terms": {**SAMPLE_TERMS, "start": T0 + HOUR, "optional": 0}, "hold_until": T0})))
    )[1]
    assert counter == (f"countered (start moved to {format_time(T0 + HOUR)}; 0 of 1 optional instances), "
                       f"held until {format_time(T0)}")
    price = {"currency": "USD", "total": "0.40", "runs": []}
    on_price = presenters.event_texts(EventPage((
        EventRecord(1, UUID(int=1), 1, "Reservation.Requested", T0, {"userid": "alice", "terms": SAMPLE_TERMS}),
        EventRecord(2, UUID(int=1), 2, "Reservation.Offered", T0, {
            "reply": "COUNTER", "terms": {**SAMPLE_TERMS, "max_price": "0.30"}, "hold_until": T0, "price": price}),
        EventRecord(3, UUID(int=1), 3, "Reservation.Offered", T0, {
            "reply": "ACCEPT", "terms": SAMPLE_TERMS, "hold_until": T0, "price": price}))))
    assert on_price[1:] == [f"countered on price: 0.40 USD, more than the 0.30 asked, held until {format_time(T0)}",
                            f"offered as asked at 0.40 USD, held until {format_time(T0)}"]
