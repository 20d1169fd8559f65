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
    mine_after = await client.get(f"/OpenPEX/reservations?after={mine}", headers=alice)
    assert mine_after.status == 200 and await mine_after.json() == []
    admin = await client.get(f"/OpenPEX/reservations?after={bobs}", headers=ADMIN)
    assert [r["id"] for r in await admin.json()] == [mine]  # the admin's list holds everyone's
