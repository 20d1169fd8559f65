"""Reads that scale: lists in pages (limit, after, a Link to the next), filtered by status
and period, over the real actors and store."""

from __future__ import annotations

from pex.domain.clock import HOUR
from pex.http.wire import format_time
from tests.integration.test_http import ADMIN, expect_error, proposal, register
from tests.support.service import T0


async def propose(client, headers, **changes) -> str:
    response = await client.post("/OpenPEX/reservations", json=proposal(**changes), headers=headers)
    assert response.status == 201
    return (await response.json())["proposal"]["id"]


async def pages(client, path: str, headers) -> list[list[dict]]:
    """Every page of a list, following its Link headers."""
    found = []
    while path:
        response = await client.get(path, headers=headers)
        assert response.status == 200, await response.text()
        found.append(await response.json())
        link = response.headers.get("Link", "")
        path = link[1:link.index(">")] if link else ""
        assert not link or link.endswith('rel="next"')
    return found


async def test_a_list_comes_in_pages_in_the_order_it_was_made_each_linking_the_next(client):
    alice = await register(client, "alice")
    made = [await propose(client, alice, startTime=format_time(T0 + (1 + i) * HOUR)) for i in range(7)]
    listed = await pages(client, "/OpenPEX/reservations?limit=3", alice)
    assert [len(page) for page in listed] == [3, 3, 1]
    assert [r["id"] for page in listed for r in page] == made
    whole = await (await client.get("/OpenPEX/reservations", headers=alice)).json()
    assert [r["id"] for r in whole] == made and "Link" not in (await client.get("/OpenPEX/reservations",
                                                                               headers=alice)).headers


async def test_lists_filter_by_status_and_by_the_period_they_meet(client):
    alice = await register(client, "alice")
    early = await propose(client, alice, startTime=format_time(T0 + HOUR))
    late = await propose(client, alice, startTime=format_time(T0 + 10 * HOUR))
    confirmed = await client.put(f"/OpenPEX/reservations/{early}", json={"reply": "CONFIRM"}, headers=alice)
    assert confirmed.status == 200

    async def ids(query: str, path: str = "/OpenPEX/reservations") -> list[str]:
        response = await client.get(f"{path}?{query}", headers=alice)
        assert response.status == 200, await response.text()
        return [r.get("id") or r.get("reservationId") for r in await response.json()]

    assert await ids("status=CONFIRMED") == [early]
    assert await ids("status=ACCEPTED") == [late]
    assert await ids("status=CONFIRMED,ACCEPTED") == [early, late]
    assert await ids("status=CONFIRMED&status=ACCEPTED") == [early, late]
    # Periods meet [from, to): the early one runs T0+1h..T0+2h.
    assert await ids(f"from={format_time(T0 + 2 * HOUR)}") == [late]
    assert await ids(f"to={format_time(T0 + HOUR)}") == []
    assert await ids(f"from={format_time(T0 + HOUR)}&to={format_time(T0 + 90 * 60_000)}") == [early]
    assert await ids("status=PENDING", "/OpenPEX/instances") == [early]
    assert await ids("status=RUNNING", "/OpenPEX/instances") == []


async def test_bad_paging_and_filters_are_400_naming_the_parameter(client):
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    bobs = await propose(client, bob)
    mine = await propose(client, alice)
    for query, field in [
        ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"), ("limit=-1", "limit"),
        ("after=nonsense", "after"), ("after=00000000-0000-4000-8000-000000000000", "after"),
        (f"after={bobs}", "after"),  # someone else's: not in this list, and not told apart from missing
        ("status=SOLD", "status"), ("status=confirmed", "status"), ("from=yesterday", "from"),
        (f"from={format_time(T0 + HOUR)}&to={format_time(T0)}", "to"),
    ]:
        body = await expect_error(await client.get(f"/OpenPEX/reservations?{query}", headers=alice), 400)
        assert body["field"] == field, (query, body)
    for bobs_vm in await (await client.get("/OpenPEX/instances", headers=ADMIN)).json():
        if bobs_vm["reservationId"] == bobs:  # none yet: bob's offer is not confirmed
            raise AssertionError("an unconfirmed offer has instances")
    confirmed = await client.put(f"/OpenPEX/reservations/{bobs}", json={"reply": "CONFIRM"}, headers=bob)
    assert confirmed.status == 200
    bobs_vm = (await (await client.get("/OpenPEX/instances", headers=bob)).json())[0]["vmID"]
    leak = await client.get(f"/OpenPEX/instances?after={bobs_vm}", headers=alice)
    assert (await expect_error(leak, 400))["field"] == "after", "someone else's vmID is no cursor of mine"
    mine_after = await client.get(f"/OpenPEX/reservations?after={mine}", headers=alice)
    assert mine_after.status == 200 and await mine_after.json() == []
    admin = await client.get(f"/OpenPEX/reservations?after={bobs}", headers=ADMIN)
    assert [r["id"] for r in await admin.json()] == [mine]  # the admin's list holds everyone's


# ---------------------------------------------------------------------- capacity over time

async def test_a_user_sees_the_clusters_capacity_per_step_counting_offers_and_bookings(client):
    alice = await register(client, "alice")
    held = await propose(client, alice, numInstancesFixed=3)  # SMALL: 1 CPU, 768 MB, 10 GB; T0+1h for 1h
    response = await client.get(f"/OpenPEX/capacity?from={T0}&to={T0 + 3 * HOUR}&step={HOUR}", headers=alice)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert set(body) == {"from", "to", "step", "cluster"}, "a user sees the cluster, not its nodes"
    assert body["cluster"]["size"] == {"cpus": 8, "memoryMB": 16384, "diskGB": 200}  # two hosts of 4 CPUs
    steps = body["cluster"]["steps"]
    assert [s["from"] for s in steps] == [format_time(T0 + h * HOUR) for h in range(3)]
    assert [s["used"]["cpus"] for s in steps] == [0, 3, 0], "the open offer holds its capacity"
    assert steps[1]["used"] == {"cpus": 3, "memoryMB": 3 * 768, "diskGB": 30}
    assert steps[1]["free"] == {"cpus": 5, "memoryMB": 16384 - 3 * 768, "diskGB": 170}
    # A step that only touches the booking counts it; a shorter last step ends at `to`.
    part = await (await client.get(f"/OpenPEX/capacity?from={T0 + HOUR // 2}&to={T0 + HOUR + 1}&step={HOUR // 2}",
                                   headers=alice)).json()
    assert [s["used"]["cpus"] for s in part["cluster"]["steps"]] == [0, 3]
    assert part["cluster"]["steps"][-1]["to"] == format_time(T0 + HOUR + 1)
    cancelled = await client.delete(f"/OpenPEX/reservations/{held}", headers=alice)
    assert cancelled.status == 200
    again = await (await client.get(f"/OpenPEX/capacity?from={T0}&to={T0 + 3 * HOUR}", headers=alice)).json()
    assert [s["used"]["cpus"] for s in again["cluster"]["steps"]] == [0, 0, 0]


async def test_the_admin_may_also_ask_for_nodes_and_defaults_are_now_a_day_an_hour(client):
    alice = await register(client, "alice")
    await propose(client, alice, numInstancesFixed=3)
    cluster = await (await client.get(f"/OpenPEX/capacity?from={T0}&to={T0 + 3 * HOUR}", headers=ADMIN)).json()
    assert "nodes" not in cluster, "nodes only when asked: a cluster of thousands would not fit one answer"
    every = await (await client.get(f"/OpenPEX/capacity?from={T0}&to={T0 + 3 * HOUR}&node=*", headers=ADMIN)).json()
    assert set(every["nodes"]) == {"sim01", "sim02"}
    per_node = [sum(s["used"]["cpus"] for s in node["steps"]) for node in every["nodes"].values()]
    assert sum(per_node) == 3 and every["nodes"]["sim01"]["size"]["cpus"] == 4
    one = await (await client.get(f"/OpenPEX/capacity?from={T0}&to={T0 + HOUR}&node=sim02", headers=ADMIN)).json()
    assert set(one["nodes"]) == {"sim02"}
    two = await (await client.get(f"/OpenPEX/capacity?from={T0}&to={T0 + HOUR}&node=sim02,sim01", headers=ADMIN)).json()
    assert set(two["nodes"]) == {"sim01", "sim02"}
    plain = await (await client.get("/OpenPEX/capacity", headers=alice)).json()
    assert plain["from"] == format_time(T0) and plain["to"] == format_time(T0 + 24 * HOUR) and plain["step"] == HOUR
    assert len(plain["cluster"]["steps"]) == 24


async def test_bad_capacity_questions_are_a_400_403_or_404_naming_what_is_wrong(client):
    alice = await register(client, "alice")
    for query, field in [
        ("step=0", "step"), ("step=59999", "step"), ("step=hour", "step"), ("from=soon", "from"),
        (f"from={T0 + HOUR}&to={T0}", "to"), (f"to={T0 - HOUR}", "to"), ("from=9" + "9" * 14, "from"),
        (f"from={T0}&to={T0 + 400 * 24 * HOUR}&step=60000", "step"),  # 576,000 steps
    ]:
        body = await expect_error(await client.get(f"/OpenPEX/capacity?{query}", headers=alice), 400)
        assert body["field"] == field, (query, body)
    await expect_error(await client.get("/OpenPEX/capacity?node=sim01", headers=alice), 403, "FORBIDDEN")
    await expect_error(await client.get("/OpenPEX/capacity?node=sim09", headers=ADMIN), 404)
    await expect_error(await client.get("/OpenPEX/capacity"), 401)


async def test_a_field_the_client_named_is_reported_as_it_was_sent(client):
    for body, field in (({"name": "t1", "start": 1.5}, "start"), ({"name": "t2", "memory_mb": []}, "memory_mb")):
        refused = await expect_error(await client.post("/OpenPEX/templates", json=body, headers=ADMIN), 400)
        assert refused["field"] == field and refused["message"].startswith(f"{field}: "), refused
    refused = await expect_error(await client.post("/OpenPEX/nodes", json={"name": "n9", "uri": "qemu:///system",
                                                                            "memoryMB": 0}, headers=ADMIN), 400)
    assert refused["field"] == "memoryMB", "a domain name (memory_mb) shown in the API's words"

