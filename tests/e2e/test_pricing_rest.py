"""Price over REST against `openpex serve` as a process (issue 12), as a user and an admin would
use it with curl: the rate card, a busy hour countered on price, a later start traded for a
lower price, the price bound at CONFIRM through a rate change and a restart, bad amounts
refused with 400 naming the field, and the statement."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tests.support.server import ADMIN_PASSWORD, rfc1123

ALICE = ("alice", "correct-horse-battery-9")
BOB = ("bob", "correct-horse-battery-8")
ADMIN = ("admin", ADMIN_PASSWORD)


def hour_ahead(hours: int) -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=hours)


def proposal(start: datetime, fixed: int, **more):
    return {"type": "SMALL", "template": "debian-12", "numInstancesFixed": fixed, "startTime": rfc1123(start),
            "duration": 3_600_000, **more}


def test_a_user_trades_a_later_start_for_a_lower_price(servers):
    # One host of 4 CPUs: 4 SMALL fill it.
    first = servers("--simulated-nodes", "1", "--node-spec", "cpus=4,memory=8192,disk=100")
    for user in (ALICE, BOB):
        assert first.request("POST", "/OpenPEX/users", {"username": user[0], "password": user[1]})[0] == 201
    status, card = first.request("GET", "/OpenPEX/prices", auth=ALICE)
    assert status == 200 and card["currency"] == "USD" and card["rates"]["SMALL"] == "0.05"
    assert card["policy"]["policy"] == "demand" and "3" in card["policy"]["multiplier"]

    busy = hour_ahead(3)
    status, taken = first.request("POST", "/OpenPEX/reservations", proposal(busy, 3), auth=BOB)
    assert (status, taken["reply"], taken["price"]) == (201, "ACCEPT", "0.15")
    first.request("PUT", f"/OpenPEX/reservations/{taken['proposal']['id']}", {"reply": "CONFIRM"}, auth=BOB)

    # The busy hour is 75 % committed: twice the card's price. Alice will pay 0.06 at most.
    status, answer = first.request("POST", "/OpenPEX/reservations", proposal(busy, 1, maxPrice="0.06"), auth=ALICE)
    assert status == 201 and answer["reply"] == "COUNTER", answer
    assert (answer["price"], answer["currency"], answer["proposal"]["startTime"]) == ("0.10", "USD", rfc1123(busy))
    assert answer["proposal"]["maxPrice"] == "0.06"
    assert answer["priceDetail"]["hours"] == [{
        "from": rfc1123(busy), "to": rfc1123(busy + timedelta(hours=1)), "instances": 1, "instanceHours": "1",
        "rate": "0.1", "multiplier": "2", "amount": "0.10"}]
    cheaper = answer["alternatives"][0]
    assert (cheaper["startTime"], cheaper["price"]) == (rfc1123(busy + timedelta(hours=1)), "0.05")
    rid = answer["proposal"]["id"]

    # She proposes the later start as it is offered, and confirms it at its price.
    later = {key: cheaper[key] for key in ("type", "template", "numInstancesFixed", "startTime", "duration", "maxPrice")}
    status, accepted = first.request("PUT", f"/OpenPEX/reservations/{rid}", {"reply": "COUNTER", "proposal": later},
                                     auth=ALICE)
    assert (status, accepted["reply"], accepted["price"]) == (200, "ACCEPT", "0.05"), accepted
    status, done = first.request("PUT", f"/OpenPEX/reservations/{rid}", {"reply": "CONFIRM"}, auth=ALICE)
    assert (done["reply"], done["price"]) == ("REQUEST_SUCCESS", "0.05")

    # The admin raises the rates; the agreed price does not move, now or after a restart.
    status, changed = first.request("PUT", "/OpenPEX/prices", {"rates": {"SMALL": "1.25"}}, auth=ADMIN)
    assert status == 200 and changed["rates"]["SMALL"] == "1.25"
    assert first.request("PUT", "/OpenPEX/prices", {"rates": {"SMALL": "2"}}, auth=ALICE)[0] == 403
    assert first.request("GET", f"/OpenPEX/reservations/{rid}", auth=ALICE)[1]["price"] == "0.05"
    assert first.kill(signal.SIGTERM) == 0
    second = servers("--simulated-nodes", "1", "--node-spec", "cpus=4,memory=8192,disk=100")
    reservation = second.request("GET", f"/OpenPEX/reservations/{rid}", auth=ALICE)[1]
    assert (reservation["status"], reservation["price"], reservation["currency"]) == ("CONFIRMED", "0.05", "USD")
    assert second.request("GET", "/OpenPEX/prices", auth=BOB)[1]["rates"]["SMALL"] == "1.25"
    assert second.request("GET", f"/OpenPEX/reservations/{rid}", auth=BOB)[0] == 404

    # Nothing is charged before the hours are used; the statements say so.
    status, mine = second.request("GET", "/OpenPEX/usage", auth=ALICE)
    assert status == 200 and (mine["userid"], mine["total"], mine["reservations"]) == ("alice", "0.00", [])
    status, everyone = second.request("GET", "/OpenPEX/usage", auth=ADMIN)
    assert status == 200 and everyone["total"] == "0.00" and everyone["users"] == []


def test_bad_amounts_are_refused_naming_the_field_and_record_nothing(servers):
    server = servers("--simulated-nodes", "1")
    server.request("POST", "/OpenPEX/users", {"username": "alice", "password": ALICE[1]})
    start = hour_ahead(2)
    before = server.request("GET", "/OpenPEX/events", auth=ADMIN)[1]
    for bad in ("-1", "0", "abc", "NaN", "Infinity", "1e3", "1000000000", "12.345", -1, 0, 1e300, 12.345, True, [],
                {"amount": 1}):
        status, body = server.request("POST", "/OpenPEX/reservations", proposal(start, 1, maxPrice=bad), auth=ALICE)
        assert (status, body["error"], body["field"]) == (400, "INVALID_FIELD", "maxPrice"), (bad, body)
    for bad, field in [({"rates": {"SMALL": "-0.05"}}, "rates.SMALL"), ({"rates": {"SMALL": 0}}, "rates.SMALL"),
                       ({"rates": {"SMALL": "NaN"}}, "rates.SMALL"), ({"rates": {"HUGE": "1"}}, "rates.HUGE"),
                       ({"rates": {"LARGE": 1e-9}}, "rates.LARGE"), ({"rates": {}}, "rates"), ({"rates": "1"}, "rates"),
                       ({"rates": {"SMALL": "1"}, "currency": "EUR"}, "currency"), ({"price": 1}, "price")]:
        status, body = server.request("PUT", "/OpenPEX/prices", bad, auth=ADMIN)
        assert (status, body["field"]) == (400, field), (bad, body)
    for query, field in [("?from=yesterday", "from"), ("?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z", "to")]:
        status, body = server.request("GET", f"/OpenPEX/usage{query}", auth=ALICE)
        assert (status, body["field"]) == (400, field), body
    assert server.request("GET", "/OpenPEX/events", auth=ADMIN)[1] == before, "a refusal records nothing"
    assert server.request("GET", "/OpenPEX/prices", auth=ALICE)[1]["rates"]["SMALL"] == "0.05"
    status, fine = server.request("POST", "/OpenPEX/reservations", proposal(start, 1, maxPrice=12.5), auth=ALICE)
    assert (status, fine["reply"], fine["proposal"]["maxPrice"]) == (201, "ACCEPT", "12.5")
    assert Decimal(fine["price"]) == Decimal("0.05")


def test_a_list_carries_prices_and_one_reservation_how_its_price_is_made_up(servers):
    server = servers("--simulated-nodes", "1")
    server.request("POST", "/OpenPEX/users", {"username": "alice", "password": ALICE[1]})
    status, answer = server.request("POST", "/OpenPEX/reservations", proposal(hour_ahead(2), 2), auth=ALICE)
    rid = answer["proposal"]["id"]
    server.request("PUT", f"/OpenPEX/reservations/{rid}", {"reply": "CONFIRM"}, auth=ALICE)
    (listed,) = server.request("GET", "/OpenPEX/reservations", auth=ALICE)[1]
    assert (listed["price"], listed["currency"]) == ("0.10", "USD") and "priceDetail" not in listed
    one = server.request("GET", f"/OpenPEX/reservations/{rid}", auth=ALICE)[1]
    assert one["price"] == "0.10" and one["priceDetail"]["instanceHours"] == "2"
