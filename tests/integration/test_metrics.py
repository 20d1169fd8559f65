"""GET /metrics: Prometheus' text format, for the admin, from the real service."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_http import ADMIN, expect_error, proposal, register
from tests.support.service import T0, eventually


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_count_negotiations_requests_and_what_the_view_holds(client, service):
    alice = await register(client, "alice")
    for fixed in (1, 2):
        assert (await client.post("/OpenPEX/reservations", json=proposal(numInstancesFixed=fixed),
                                  headers=alice)).status == 201
    await client.get("/OpenPEX/reservations/00000000-0000-4000-8000-000000000000", headers=alice)  # a 404
    response = await client.get("/metrics", headers=ADMIN)
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
    found = samples(await response.text())
    assert found[("openpex_negotiations_total", (("reply", "ACCEPT"),))] == 2
    assert found[("openpex_decision_seconds_count", ())] == 2
    assert found[("openpex_commit_seconds_count", ())] >= 2
    assert found[("openpex_nodes", (("status", "UP"),))] == 2
    assert found[("openpex_log_position", ())] == service.events()
    route = (("method", "POST"), ("route", "/OpenPEX/reservations"), ("status", "201"))
    assert found[("openpex_http_requests_total", route)] == 2
    missing = (("method", "GET"), ("route", "/OpenPEX/reservations/{id}"), ("status", "404"))
    assert found[("openpex_http_requests_total", missing)] == 1, "by route pattern, never by id"


async def test_metrics_are_for_the_admin_and_the_timer_lag_is_measured(client, service):
    alice = await register(client, "alice")
    await expect_error(await client.get("/metrics"), 401)
    await expect_error(await client.get("/metrics", headers=alice), 403)
    rid = (await (await client.post("/OpenPEX/reservations", json=proposal(), headers=alice)).json())["proposal"]["id"]
    service.advance_to(T0 + 10 * 60_000)  # the offer lapses: the timer fires
    # The timer only sends the settle on its way; the lag is measured as the settle lapses the offer.
    eventually(lambda: service.ask(lambda a: a.app.read.reservation(rid, "alice")).status == "OFFER_EXPIRED",
               what="the lapse")
    found = samples(await (await client.get("/metrics", headers=ADMIN)).text())
    assert found[("openpex_timer_lag_seconds_count", ())] >= 1
