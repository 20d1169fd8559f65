"""Price as a term of the negotiation, in a real browser (issue 12): the most a user will pay on
the form (judged by the domain's rule, with the message by the field), a COUNTER on price with
its price and a cheaper alternative with its own, taking it and confirming it, the agreed price
on the reservation and in the list, a counter with a new maxPrice, and the usage statements."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from tests.portal.conftest import ADMIN, TEMPLATE, register, reservations_of, reserve, now
from tests.support.browser import NARROW, local_input
from tests.support.server import Server


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One node of 4 CPUs: three SMALL instances commit 75 % of it, which demand pricing (the
    default: x1 up to 50 %, rising to x3 at 100 %) prices at x2, and a fourth still fits."""
    server = Server(tmp_path_factory.mktemp("prices"), "--simulated-nodes", "1", "--node-spec",
                    "cpus=4,memory=8192,disk=200", "--monitor-interval", "1")
    yield server
    server.close()


@pytest.fixture(scope="module")
def busy(portal: Server) -> datetime:
    """A clock hour at least an hour ahead, with the cluster 75 % committed for three hours
    from it (a SMALL instance-hour costs 0.10 USD then, 0.05 USD after)."""
    hour = (now() + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    reserve(portal, register(portal, "filler"), hour, timedelta(hours=3), count=3)
    return hour


def fill_terms(page, start: datetime, max_price: str) -> None:
    page.get_by_label("Size", exact=True).select_option("SMALL")
    page.get_by_label("Template (operating system)").select_option(TEMPLATE)
    page.get_by_label("Instances you need").fill("1")
    page.get_by_label("Start (date and time)").fill(local_input(start))
    page.get_by_label("Duration", exact=True).fill("1")
    page.get_by_label("Unit", exact=True).select_option("hours")
    page.get_by_label("Most I will pay (USD)").fill(max_price)


def period_path(start: datetime, end: datetime) -> str:
    """The address the usage page's form goes to for a period typed in the visitor's zone (the
    script adds each instant in UTC)."""
    def utc(moment: datetime) -> str:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:00.000Z")
    return "/usage?" + urlencode([("from", local_input(start)), ("from_utc", utc(start)), ("to", local_input(end)),
                                  ("to_utc", utc(end))])


def test_a_price_counter_a_cheaper_alternative_taken_and_its_price_agreed(tabs, portal: Server, busy: datetime) -> None:
    who = register(portal, "petra")
    tab = tabs.open()
    page = tab.page
    tab.login(*who)
    tab.go("/reservations/new")
    sizes = page.locator("table.sizes")  # the rate card beside the sizes
    expect(sizes.locator("thead")).to_contain_text("USD per instance-hour")
    expect(sizes.locator("tbody tr").first).to_contain_text("0.05")
    fill_terms(page, busy, "0.06")
    tab.submit("Send the proposal")

    # The COUNTER on price: the window asked, at its price, said plainly and marked as changed.
    expect(page.get_by_role("heading", name="OpenPEX countered on price")).to_be_visible()
    expect(page.locator("#over-price")).to_contain_text(
        "These terms cost 0.10 USD, more than the 0.06 USD you said you would pay.")
    counter = page.locator("table.compare").first
    expect(counter.locator("tr.changed")).to_have_count(1)
    expect(counter.locator('tr[data-changed="price"] mark')).to_have_text("0.10 USD")
    expect(counter.locator('tr[data-changed="price"] td').first).to_have_text("at most 0.06 USD")
    expect(page.locator("[data-offer-price]")).to_have_text("0.10 USD")
    detail = page.locator(".negotiation > details.price-detail")
    detail.locator("summary").click()
    expect(detail.locator("tbody tr")).to_have_count(1)
    expect(detail.locator('td[data-label="Multiplier"]')).to_have_text("×2")
    expect(detail.locator('td[data-label="Rate per instance-hour"]')).to_have_text("0.1 USD")
    expect(detail.locator('td[data-label="Instance-hours"]')).to_have_text("1")

    # The cheaper alternative first: the nearest later window within the price, with its price.
    cheaper = page.locator(".alternative").first
    expect(cheaper).to_have_attribute("data-price", "0.05")
    expect(cheaper.locator(".price-line")).to_contain_text("0.05 USD: within the 0.06 USD")
    expect(cheaper.locator('tr[data-changed="start"]')).to_be_visible()
    expect(cheaper.locator('tr[data-changed="price"]')).to_have_count(0)
    later = cheaper.locator('tr[data-changed="start"] td').nth(1).locator("time").get_attribute("datetime")
    assert later == (busy + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    tab.shot("negotiation-price-counter")
    rid = page.url.rsplit("/", 1)[1]

    narrow = tabs.open(width=NARROW)  # the same screen on a phone: nothing scrolls sideways
    narrow.login(*who)
    narrow.go(f"/reservations/{rid}")
    narrow.page.locator(".negotiation > details.price-detail summary").click()
    narrow.shot("negotiation-price-counter")
    assert narrow.overflow() <= 0

    # Take it: proposed as it is (with the same maxPrice), accepted at its price; then confirm.
    with page.expect_navigation():
        cheaper.get_by_role("button", name="Propose these terms").click()
    expect(page.locator(".notice")).to_contain_text("OpenPEX answered ACCEPT")
    expect(page.get_by_role("heading", name="OpenPEX accepts")).to_be_visible()
    expect(page.locator(".price-line").first).to_contain_text("0.05 USD")
    expect(page.locator(".price-line").first).to_contain_text("within the 0.06 USD you said you would pay")
    tab.submit("Confirm")
    expect(page.locator("h1 .status")).to_have_text("CONFIRMED")
    expect(page.locator("[data-agreed-price]")).to_have_text("0.05 USD")
    tab.shot("reservation-priced")
    [made] = reservations_of(portal, who)
    assert made["id"] == rid and made["price"] == "0.05" and made["currency"] == "USD"

    tab.go("/reservations")
    expect(page.locator(f'tr[data-reservation="{rid}"] td[data-field="price"]')).to_have_text("0.05 USD")

    # Its hours are still to come: this month's statement has no charge yet, and says so.
    tab.go("/usage")
    expect(page.get_by_role("heading", level=1)).to_have_text("Usage: your statement")
    expect(page.locator(".empty")).to_have_text("No charges in this period.")
    expect(page.locator('[data-total="total"]')).to_have_text("0.00 USD")


def test_a_counter_with_a_new_max_price(tabs, portal: Server, busy: datetime) -> None:
    who = register(portal, "quinn")
    tab = tabs.open()
    page = tab.page
    tab.login(*who)
    tab.go("/reservations/new")
    fill_terms(page, busy, "0.06")
    tab.submit("Send the proposal")
    expect(page.get_by_role("heading", name="OpenPEX countered on price")).to_be_visible()
    rid = page.url.rsplit("/", 1)[1]

    page.get_by_role("link", name="Counter with changed terms").click()
    field = page.get_by_label("Most I will pay (USD)")
    expect(field).to_have_value("0.06")  # the terms countered, with the maxPrice given
    expect(page.locator("#max_price-hint")).to_contain_text("the 0.06 USD you gave before stays")
    tab.refusing(f"/reservations/{rid}/change")
    field.fill("1.234")
    tab.submit("Send the counter offer")
    expect(page.locator("#max_price-error")).to_contain_text("at most 2 decimal places")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_value("1.234")
    assert reservations_of(portal, who)[0]["offer"]["proposal"]["maxPrice"] == "0.06"  # nothing sent

    field.fill("0.12")
    tab.submit("Send the counter offer")
    expect(page.locator(".notice")).to_contain_text("OpenPEX answered ACCEPT")
    expect(page.get_by_role("heading", name="OpenPEX accepts")).to_be_visible()
    expect(page.locator("[data-offer-price]")).to_have_text("0.10 USD")
    expect(page.locator(".price-line").first).to_contain_text("within the 0.12 USD you said you would pay")


@pytest.mark.parametrize("given", ["abc", "-1", "0", "12,50", "1000000000"])
def test_a_wrong_max_price_comes_back_with_its_message_and_nothing_is_recorded(tabs, portal: Server,
                                                                               given: str) -> None:
    who = register(portal, f"ria-{abs(hash(given)) % 100_000}")
    tab = tabs.open()
    page = tab.page
    tab.login(*who)
    tab.go("/reservations/new")
    tab.refusing("/reservations/new")
    fill_terms(page, now() + timedelta(hours=5), given)
    page.get_by_label("Optional instances").fill("2")
    tab.submit("Send the proposal")
    expect(page.locator("#max_price-error")).to_contain_text("more than 0 and less than 1,000,000,000")
    expect(page.locator("#max_price")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#max_price")).to_have_attribute("aria-describedby", "max_price-hint max_price-error")
    expect(page.locator(".form-errors")).to_contain_text("nothing was sent")
    expect(page.get_by_label("Most I will pay (USD)")).to_have_value(given)  # kept as typed
    expect(page.get_by_label("Optional instances")).to_have_value("2")
    assert reservations_of(portal, who) == []


def test_usage_a_users_statement_and_the_admins(tabs, portal: Server) -> None:
    who = register(portal, "rosa")
    rid = reserve(portal, who, now() + timedelta(seconds=3), timedelta(minutes=10))  # 0.05 x 1/6 h: 0.01
    deadline = time.monotonic() + 30
    while True:  # its first seconds used (and so in this month's statement)
        _, statement = portal.request("GET", "/OpenPEX/usage", auth=who)
        if statement["reservations"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert statement["reservations"], statement

    tab = tabs.open()
    page = tab.page
    tab.login(*who)
    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Usage: your statement")
    line = page.locator(f'table.statement tr[data-reservation="{rid}"]')
    expect(line.locator('td[data-label="Price agreed"]')).to_have_text("0.01 USD")
    expect(line.locator('td[data-label="Refunded"]')).to_have_text("0.00 USD")
    expect(line.locator('td[data-label="Instance-hours"]')).to_have_text(re.compile(r"^0\.\d+$"))
    expect(page.locator('[data-total="total"]')).to_have_text(re.compile(r"^0\.0[01] USD$"))
    # the form's period is this month up to now, in the visitor's zone
    expect(page.get_by_label("From", exact=True)).to_have_value(re.compile(r"^\d{4}-\d{2}-01T0[0-2]:00$"))
    tab.shot("usage-statement")
    narrow = tabs.open(width=NARROW)
    narrow.login(*who)
    narrow.go("/usage")
    expect(narrow.page.locator(f'tr[data-reservation="{rid}"]')).to_be_visible()
    narrow.shot("usage-statement")
    assert narrow.overflow() <= 0
    # a period that ends before it starts: the message by the field, the default period below it
    start, end = now() + timedelta(days=2), now() + timedelta(days=1)
    tab.refusing(period_path(start, end))
    page.get_by_label("From", exact=True).fill(local_input(start))
    page.get_by_label("To", exact=True).fill(local_input(end))
    tab.submit("Show")
    expect(page.locator("#to-error")).to_have_text("must be after from")
    expect(page.locator("#to")).to_have_attribute("aria-invalid", "true")
    # a period with nothing in it
    page.get_by_label("From", exact=True).fill(local_input(now() + timedelta(days=1)))
    page.get_by_label("To", exact=True).fill(local_input(now() + timedelta(days=2)))
    tab.submit("Show")
    expect(page.locator(".empty")).to_have_text("No charges in this period.")
    expect(page.locator('[data-total="charges"]')).to_have_text("0.00 USD")

    admin = tabs.open()
    admin.login(*ADMIN)
    admin.go("/usage")
    expect(admin.page.get_by_role("heading", level=1)).to_have_text("Usage: every user's statement")
    expect(admin.page.locator(f'section[data-user="rosa"] tr[data-reservation="{rid}"]')).to_be_visible()
    expect(admin.page.locator('[data-total="all"]')).to_have_text(re.compile(r"^\d+\.\d\d USD$"))
    admin.shot("usage-admin-statements")
    # rosa sees her own statement only, never the admin's view of everyone's
    tab.go("/usage")
    expect(page.locator("section[data-user]")).to_have_count(0)
    expect(page.locator("table.statement tbody tr")).to_have_count(1)
