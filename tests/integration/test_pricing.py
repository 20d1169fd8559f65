"""Price as a term of the negotiation (issue 12), on the real application and store (SQLite file
and PostgreSQL): ACCEPT / price COUNTER / time COUNTER / REJECT with and without maxPrice, the
price bound at CONFIRM through rate changes and restarts, renegotiations priced as the change,
and statements (free before the start, hours used after, refunds for lost instances)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pex.domain.application import OpenPEX, Settings
from pex.domain.clock import HOUR, MINUTE
from pex.domain.errors import InvalidField
from pex.domain.negotiation import Reply, TermsChange
from pex.domain.pricing import FlatPricing
from pex.domain.sizes import Resources

NOW = 1_900_000_000_000
START = (NOW // HOUR + 2) * HOUR  # on a clock hour, two hours ahead
XL = "XLARGE"  # 4 CPUs: two nodes of 8 hold 4 of them; 0.20 an instance-hour on the default card


@pytest.fixture
def opened(durable_store_env):
    apps = []

    def open_app(pricing=None):
        settings = Settings(offer_ttl=30 * MINUTE) if pricing is None else Settings(offer_ttl=30 * MINUTE, pricing=pricing)
        app = OpenPEX(durable_store_env, settings=settings, origin=NOW)
        apps.append(app)
        return app

    yield open_app
    for app in apps:
        app.close()


@pytest.fixture
def app(opened):
    return seeded(opened())


def seeded(app):
    for name in ("n1", "n2"):
        app.catalogue.register_node(name, f"test:///{name}.xml", Resources(8, 16384, 200))
    app.catalogue.register_template("debian", "Debian 12")
    for user in ("alice", "bob"):
        app.catalogue.register_account(user, "argon2-hash-placeholder", user.title(), "")
    app.catalogue.seed_prices()
    return app


def propose(app, fixed=1, *, start=START, hours=1, max_price=None, user="alice", type_=XL, template="debian",
            optional=0, now=NOW):
    return app.negotiation.propose(user, TermsChange(instance_type=type_, template=template, fixed=fixed,
                                                     optional=optional, start=start, duration=hours * HOUR,
                                                     max_price=max_price), now)


def book(app, fixed, *, start=START, hours=1, user="bob", now=NOW):
    """Someone else's booking: confirmed, so it commits capacity."""
    answer = propose(app, fixed, start=start, hours=hours, user=user, now=now)
    assert answer.reply is Reply.ACCEPT
    return app.negotiation.respond(answer.reservation_id, user, "CONFIRM", now)


def money(text):
    return Decimal(text)


# ---------------------------------------------------------------------- the table

# (instances already booked over [START, START+1h), maxPrice) -> reply, its start, its price, the
# first alternative's (start, price) or None. The cluster is 4 XLARGE; its utilisation is what
# is committed then (3 of 4: 75 %, demand x2; a hold counts as committed too).
TABLE = [
    # an empty cluster: the card's price, whatever the maxPrice allows
    (0, None, Reply.ACCEPT, START, "0.20", None),
    (0, "0.20", Reply.ACCEPT, START, "0.20", None),
    (0, "0.19", Reply.COUNTER, START, "0.20", None),  # nowhere cheaper: the COUNTER at its price alone
    # busy (75 % committed): twice the price; a tight maxPrice gets the same window at its price
    # and, first among the alternatives, the next hour at the card's price
    (3, None, Reply.ACCEPT, START, "0.40", None),
    (3, "0.40", Reply.ACCEPT, START, "0.40", None),
    (3, "0.39", Reply.COUNTER, START, "0.40", (START + HOUR, "0.20")),
    (3, 0.25, Reply.COUNTER, START, "0.40", (START + HOUR, "0.20")),  # a JSON number
    # full: no room as asked; the time COUNTER, priced (maxPrice or not)
    (4, None, Reply.COUNTER, START + HOUR, "0.20", None),
    (4, "1", Reply.COUNTER, START + HOUR, "0.20", None),
]


@pytest.mark.parametrize("booked, ceiling, reply, start, price, alternative", TABLE)
def test_a_proposal_is_answered_at_its_price(app, booked, ceiling, reply, start, price, alternative):
    if booked:
        book(app, booked)
    answer = propose(app, max_price=ceiling)
    assert (answer.reply, answer.terms.start, answer.price.total) == (reply, start, money(price))
    assert answer.price.currency == "USD" and answer.terms.max_price == (None if ceiling is None else Decimal(str(ceiling)))
    found = list(zip(answer.alternatives, answer.alternative_prices))
    if alternative is None:
        assert not found
    else:
        terms, alternative_price = found[0]
        assert (terms.start, alternative_price.total) == (alternative[0], money(alternative[1]))
        assert alternative_price.total <= Decimal(str(ceiling))
    # The offer holds the capacity of its window, at its price.
    held = app.read.reservation(answer.reservation_id, "alice")
    assert held.offer.price == answer.price and held.offer.terms.start == start


def test_what_can_never_fit_is_rejected_without_a_price(app):
    for ceiling in (None, "5.00"):
        refused = propose(app, 5, max_price=ceiling)  # more than the cluster ever holds
        assert refused.reply is Reply.REJECT and refused.price is None and "more than the cluster" in refused.reason
        unknown = propose(app, template="no-such", max_price=ceiling)
        assert unknown.reply is Reply.REJECT and unknown.price is None


def test_the_flat_policy_charges_the_card_whatever_the_demand(opened):
    app = seeded(opened(FlatPricing()))
    book(app, 3)
    answer = propose(app, max_price="0.20")
    assert (answer.reply, answer.price.total) == (Reply.ACCEPT, money("0.20"))
    assert answer.price.spans[0].multiplier == 1


def test_a_price_detail_is_each_run_of_hours_at_its_rate(app):
    book(app, 2, start=START + HOUR)  # 50 %: still calm
    book(app, 1, start=START + 2 * HOUR)  # 25 %
    book(app, 3, start=START + 3 * HOUR)  # 75 %: x2
    answer = propose(app, start=START + 30 * MINUTE, hours=4)  # from half past, cut at each clock hour
    spans = [(s.start, s.end, s.rate, s.multiplier) for s in answer.price.spans]
    assert spans == [(START + 30 * MINUTE, START + 3 * HOUR, Decimal("0.20"), 1),
                     (START + 3 * HOUR, START + 4 * HOUR, Decimal("0.40"), 2),
                     (START + 4 * HOUR, START + 4 * HOUR + 30 * MINUTE, Decimal("0.20"), 1)]
    assert answer.price.total == money("1.00")  # 3 h x 0.20 + 1 h x 0.40
    assert answer.price.instance_hours == 4


def test_a_user_counters_with_a_new_max_price_and_gets_an_accept(app):
    book(app, 3)
    countered = propose(app, max_price="0.30")
    assert countered.reply is Reply.COUNTER and countered.price.total == money("0.40")
    raised = app.negotiation.respond(countered.reservation_id, "alice", "COUNTER", NOW,
                                     TermsChange(max_price="0.40"))
    assert (raised.reply, raised.terms.start, raised.price.total) == (Reply.ACCEPT, START, money("0.40"))
    confirmed = app.negotiation.respond(countered.reservation_id, "alice", "CONFIRM", NOW)
    assert confirmed.reply is Reply.REQUEST_SUCCESS and confirmed.price.total == money("0.40")


def test_a_user_trades_a_later_start_for_a_lower_price(app):
    book(app, 3)
    countered = propose(app, max_price="0.25")
    later, later_price = countered.alternatives[0], countered.alternative_prices[0]
    taken = app.negotiation.respond(countered.reservation_id, "alice", "COUNTER", NOW, TermsChange.of(later))
    assert (taken.reply, taken.terms.start, taken.price.total) == (Reply.ACCEPT, START + HOUR, later_price.total)
    app.negotiation.respond(countered.reservation_id, "alice", "CONFIRM", NOW)
    assert app.read.reservation(countered.reservation_id, "alice").price.total == money("0.20")


def test_accepting_a_price_counter_binds_its_price(app):
    book(app, 3)
    countered = propose(app, max_price="0.10")
    rid = countered.reservation_id
    assert app.negotiation.respond(rid, "alice", "ACCEPT", NOW).reply is Reply.CONFIRM_REQUEST
    assert app.negotiation.respond(rid, "alice", "CONFIRM", NOW).price.total == money("0.40")


@pytest.mark.parametrize("ceiling", ["-1", "0", "0.00", "abc", "NaN", "1e3", "1000000000", "12.345", -5, 0,
                                     float("nan"), float("inf"), 10**12, True, [1]])
def test_a_max_price_that_is_no_amount_is_refused_naming_the_field_and_records_nothing(app, ceiling):
    before = app.view.position
    with pytest.raises(InvalidField) as refused:
        propose(app, max_price=ceiling)
    assert refused.value.field == "max_price"
    assert app.view.position == before


# ---------------------------------------------------------------------- bound at CONFIRM

def test_the_bound_price_survives_rate_changes_demand_and_a_restart(durable_store_env, opened):
    app = seeded(opened())
    answer = propose(app, 2, max_price="0.40")
    rid = answer.reservation_id
    held_price = answer.price.total
    app.catalogue.set_prices({XL: "5"})  # while the offer is held: its price is held with it
    confirmed = app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    assert confirmed.price.total == held_price == money("0.40")
    book(app, 2)  # demand rises
    app.catalogue.set_prices({XL: "0.01", "SMALL": "7"})
    assert app.read.reservation(rid, "alice").price.total == held_price
    events = [e for e in app.events.get(rid) if type(e).__name__ == "Confirmed"]
    assert events and events[-1].price["total"] == "0.40", "the confirmation records the price it binds"
    app.close()
    reopened = opened()
    assert reopened.read.reservation(rid, "alice").price.total == held_price
    assert reopened.view.rate_card.rate(XL) == Decimal("0.01") and reopened.view.rate_card.rate("SMALL") == 7
    # New offers use the new card; the bound one does not move.
    assert propose(reopened, start=START + 5 * HOUR).price.total == money("0.01")


def test_a_rate_change_is_refused_for_bad_amounts_and_changes_nothing(app):
    for rates, field in [({XL: "-1"}, "rates.XLARGE"), ({XL: 0}, "rates.XLARGE"), ({"HUGE": "1"}, "rates.HUGE"),
                         ({XL: "1.0000001"}, "rates.XLARGE"), ({XL: float("inf")}, "rates.XLARGE"), ({}, "rates")]:
        with pytest.raises(InvalidField) as refused:
            app.catalogue.set_prices(rates)
        assert refused.value.field == field
    with pytest.raises(InvalidField) as refused:
        app.catalogue.set_prices({XL: "1"}, currency="EUR")
    assert refused.value.field == "currency"
    assert app.catalogue.prices().rates[XL] == Decimal("0.20")


# ---------------------------------------------------------------------- renegotiation

def test_a_renegotiation_prices_only_the_change(app):
    answer = propose(app)
    rid = answer.reservation_id
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)  # 1 h at 0.20
    app.catalogue.set_prices({XL: "0.30"})
    longer = app.negotiation.respond(rid, "alice", "COUNTER", NOW, TermsChange(duration=2 * HOUR))
    # the hour added at today's rate; the agreed hour keeps its price
    assert (longer.reply, longer.price.total, longer.price.agreed, longer.price.credit) == (
        Reply.ACCEPT, money("0.50"), money("0.20"), money("0.00"))
    # the schedule: the agreed hour as it was priced, the new one at today's rate
    assert [(s.start, s.end, s.rate) for s in longer.price.spans] == [
        (START, START + HOUR, Decimal("0.20")), (START + HOUR, START + 2 * HOUR, Decimal("0.30"))]
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    assert app.read.reservation(rid, "alice").price.total == money("0.50")
    # Giving an hour back takes it out exactly as it was priced (the last added first): no
    # shrinking and growing again can make the hours cheaper than they were sold.
    shorter = app.negotiation.respond(rid, "alice", "COUNTER", NOW, TermsChange(duration=HOUR))
    assert (shorter.price.total, shorter.price.credit) == (money("0.20"), money("0.30"))
    app.negotiation.respond(rid, "alice", "REJECT", NOW)  # (not taken: 0.50 stays agreed)
    assert app.read.reservation(rid, "alice").price.total == money("0.50")
    # A renegotiation over maxPrice is countered at its price (the same terms).
    more = app.negotiation.respond(rid, "alice", "COUNTER", NOW, TermsChange(fixed=2, max_price="0.30"))
    assert more.reply is Reply.COUNTER and more.price.total == money("1.10")  # 0.50 + a second instance, 2 h at 0.30


# ---------------------------------------------------------------------- statements

def lines(app, user, start, end, now):
    found = app.read.usage(user, start, end, now)
    (mine,) = found.users
    return {line.reservation_id: (line.charged, line.refunded) for line in mine.lines}, mine


def confirmed(app, fixed=1, *, start=START, hours=2, user="alice"):
    answer = propose(app, fixed, start=start, hours=hours, user=user)
    app.negotiation.respond(answer.reservation_id, user, "CONFIRM", NOW)
    return answer.reservation_id, answer.price.total


def test_cancelled_before_its_start_a_reservation_costs_nothing(app):
    rid, _ = confirmed(app)
    app.lifecycle.cancel(rid, "alice", now=START - MINUTE)
    found, mine = lines(app, "alice", NOW, START + 10 * HOUR, START + 10 * HOUR)
    assert found == {} and mine.total == 0


def test_after_its_start_the_hours_used_are_charged(app):
    whole, price = confirmed(app, hours=2)  # 2 instance-hours at 0.20
    half, _ = confirmed(app, hours=2, start=START + 4 * HOUR)
    app.lifecycle.expire_due(START + 2 * HOUR)
    app.lifecycle.cancel(half, "alice", now=START + 5 * HOUR)  # one of its two hours used
    found, mine = lines(app, "alice", NOW, START + 10 * HOUR, START + 10 * HOUR)
    assert found == {whole: (price, 0), half: (money("0.20"), 0)}
    assert (mine.charges, mine.refunds, mine.total, mine.instance_hours) == (money("0.60"), 0, money("0.60"), 3)
    # A period sees only its own hours; hours still to come are not charged yet.
    assert lines(app, "alice", START + HOUR, START + 10 * HOUR, START + 10 * HOUR)[0][whole] == (money("0.20"), 0)
    assert lines(app, "alice", NOW, START + 10 * HOUR, START + HOUR // 2)[0] == {whole: (money("0.10"), 0)}


def test_instances_lost_with_a_node_and_placed_nowhere_are_refunded(app):
    rid, price = confirmed(app, 4, hours=2)  # the whole cluster: 8 instance-hours at 0.20 = 1.60
    assert price == money("1.60")
    app.hosts.lose_node("n1", START + HOUR)  # its two instances find no room for the last hour
    assert app.read.reservation(rid, "alice").status.value == "DEGRADED"
    app.lifecycle.expire_due(START + 2 * HOUR)
    found, mine = lines(app, "alice", NOW, START + 3 * HOUR, START + 3 * HOUR)
    assert found == {rid: (money("1.60"), money("0.40"))}  # 2 instance-hours not run
    assert (mine.total, mine.instance_hours) == (money("1.20"), 6)


def test_the_admin_sees_every_user_s_statement_and_the_total(app):
    confirmed(app, user="alice")
    confirmed(app, user="bob", start=START + 3 * HOUR)
    app.lifecycle.expire_due(START + 6 * HOUR)
    everyone = app.read.usage("admin", NOW, START + 6 * HOUR, START + 6 * HOUR, is_admin=True)
    assert [one.userid for one in everyone.users] == ["alice", "bob"]
    assert everyone.total == money("0.80")
    alice = app.read.usage("alice", NOW, START + 6 * HOUR, START + 6 * HOUR)
    assert [one.userid for one in alice.users] == ["alice"] and alice.total == money("0.40")


def test_a_statement_is_the_same_after_a_restart(durable_store_env, opened):
    app = seeded(opened())
    confirmed(app)
    rid, _ = confirmed(app, start=START + 3 * HOUR)
    app.lifecycle.cancel(rid, "alice", now=START + 4 * HOUR)
    before = app.read.usage("admin", NOW, START + 9 * HOUR, START + 9 * HOUR, is_admin=True)
    app.close()
    assert opened().read.usage("admin", NOW, START + 9 * HOUR, START + 9 * HOUR, is_admin=True) == before
    assert before.total == money("0.60")


# ---------------------------------------------------------------------- what a change cannot do

def test_a_running_reservation_cannot_end_in_the_past_nor_unpay_its_hours(app):
    rid, price = confirmed(app, 2, hours=10)  # 20 instance-hours at 0.20 = 4.00
    assert price == money("4.00")
    during = START + 5 * HOUR
    used = app.read.usage("alice", NOW, during, during).total
    assert used == money("2.00")
    refused = app.negotiation.respond(rid, "alice", "COUNTER", during, TermsChange(duration=1))
    assert refused.reply is Reply.REJECT and "endTime is in the past" in refused.reason
    # Shortening to end soon gives back only the hours still ahead; those used stay charged,
    # whatever the rates do since.
    app.catalogue.set_prices({XL: "9"})
    shorter = app.negotiation.respond(rid, "alice", "COUNTER", during, TermsChange(duration=5 * HOUR + 30 * MINUTE))
    assert (shorter.reply, shorter.price.total, shorter.price.credit) == (Reply.ACCEPT, money("2.20"), money("1.80"))
    app.negotiation.respond(rid, "alice", "CONFIRM", during)
    assert app.read.usage("alice", NOW, during, during).total == used
    app.lifecycle.expire_due(START + 6 * HOUR)
    assert app.read.usage("alice", NOW, START + 9 * HOUR, START + 9 * HOUR).total == money("2.20")


def test_hours_are_charged_at_what_they_were_priced_not_at_the_average(app):
    book(app, 3)  # the first hour is busy: x2
    answer = propose(app, hours=10)  # the busy hour at 0.40, nine quiet ones at 0.20
    assert answer.price.total == money("2.20")
    app.negotiation.respond(answer.reservation_id, "alice", "CONFIRM", NOW)
    app.lifecycle.cancel(answer.reservation_id, "alice", now=START + HOUR)
    assert app.read.usage("alice", NOW, START + 10 * HOUR, START + 10 * HOUR).total == money("0.40")


def test_adjacent_statements_add_up_to_the_whole_to_the_cent(app):
    propose_small = app.negotiation.propose("alice", TermsChange(instance_type="SMALL", template="debian", fixed=1,
                                                                 start=START, duration=3 * HOUR), NOW)
    app.negotiation.respond(propose_small.reservation_id, "alice", "CONFIRM", NOW)
    later = START + 4 * HOUR
    thirds = [app.read.usage("alice", START + k * 20 * MINUTE, START + (k + 1) * 20 * MINUTE, later).total
              for k in range(9)]
    assert sum(thirds) == app.read.usage("alice", NOW, later, later).total == money("0.15")


def test_many_small_extensions_cost_what_the_whole_would(app):
    answer = app.negotiation.propose("alice", TermsChange(instance_type="SMALL", template="debian", fixed=1,
                                                          start=START, duration=HOUR), NOW)
    rid = answer.reservation_id
    app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    duration = HOUR
    for _ in range(20):
        duration += 359_000
        app.negotiation.respond(rid, "alice", "COUNTER", NOW, TermsChange(duration=duration))
        app.negotiation.respond(rid, "alice", "CONFIRM", NOW)
    fresh = propose(app, type_="SMALL", start=START + 48 * HOUR, hours=1)  # (to read the card's price)
    assert fresh.price.total == money("0.05")
    assert app.read.reservation(rid, "alice").price.total == money("0.15")  # 1 h + 7,180 s at 0.05 = 0.1497


def test_withdrawing_a_change_answers_the_withdrawn_terms_without_a_price(app):
    rid, _ = confirmed(app)
    app.negotiation.respond(rid, "alice", "COUNTER", NOW, TermsChange(duration=3 * HOUR))
    withdrawn = app.negotiation.respond(rid, "alice", "REJECT", NOW)
    assert withdrawn.reply is Reply.REQUEST_SUCCESS and withdrawn.terms.duration == 3 * HOUR
    assert withdrawn.price is None


def test_an_offer_made_before_prices_is_priced_when_confirmed(app):
    from pex.domain.aggregates import Reservation
    from pex.domain.capacity import Allocation
    from pex.domain.negotiation import Terms
    from pex.domain.sizes import InstanceType

    terms = Terms(XL, "debian", 1, 0, START, HOUR)
    old = Reservation("alice", terms.to_dict())
    old.answer(Reply.ACCEPT, terms=terms, allocation=Allocation.uniform(InstanceType.XLARGE.resources, [("n1", 1)],
                                                                         START, START + HOUR),
               hold_until=NOW + 10 * MINUTE, opened=NOW)  # (no price: as recorded before 2026-11-26)
    app.commit(old)
    assert app.read.reservation(old.id, "alice").offer.price is None
    confirmed_answer = app.negotiation.respond(old.id, "alice", "CONFIRM", NOW)
    assert confirmed_answer.price.total == money("0.20")
    assert app.read.reservation(old.id, "alice").price.total == money("0.20")


def test_a_change_confirmed_after_its_end_has_passed_is_refused(app):
    rid, _ = confirmed(app, hours=10)
    during = START + 5 * HOUR
    soon = app.negotiation.respond(rid, "alice", "COUNTER", during, TermsChange(duration=5 * HOUR + MINUTE))
    assert soon.reply is Reply.ACCEPT
    from pex.domain.errors import ProtocolViolation
    with pytest.raises(ProtocolViolation, match="before now"):
        app.negotiation.respond(rid, "alice", "CONFIRM", during + 2 * MINUTE)
    assert app.read.reservation(rid, "alice").terms.duration == 10 * HOUR
