"""Quoting on the real capacity model (pex.domain.quoting): prices read off what is committed,
never falling as more is committed; the cheaper window is the nearest that fits and costs at
most the ceiling; a change of agreed terms costs only the change."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import event, given, settings
from hypothesis import strategies as st

from pex.domain.capacity import Allocation, CapacityModel
from pex.domain.clock import HOUR, MINUTE
from pex.domain.negotiation import Terms
from pex.domain.pricing import DemandPricing, RateCard
from pex.domain.quoting import Pricing
from pex.domain.sizes import InstanceType, Resources

NODES = {"a": Resources(8, 16384, 200), "b": Resources(4, 8192, 100)}
SIZE = InstanceType.SMALL.resources
CARD = RateCard.default()


def model_with(holds):
    model = CapacityModel(origin=0, horizon=10 * 24 * HOUR)
    for name, capacity in NODES.items():
        model.add_node(name, capacity)
    for key, (node, start_q, quarters, count) in enumerate(holds):
        start, end = start_q * 15 * MINUTE, (start_q + quarters) * 15 * MINUTE
        fits = model.fit_on(node, SIZE, start, end)
        if fits:
            model.hold(key, Allocation.uniform(SIZE, [(node, min(count, fits))], start, end))
    return model


holds = st.lists(st.tuples(st.sampled_from(sorted(NODES)), st.integers(0, 200), st.integers(1, 40), st.integers(1, 6)),
                 max_size=25)
terms = st.builds(lambda q, quarters, count: Terms("SMALL", "t", count, 0, q * 15 * MINUTE + 7 * MINUTE,
                                                   quarters * 15 * MINUTE),
                  st.integers(0, 150), st.integers(1, 60), st.integers(1, 12))


@settings(max_examples=150, deadline=None)
@given(holds, st.tuples(st.sampled_from(sorted(NODES)), st.integers(0, 200), st.integers(1, 40), st.integers(1, 6)),
       terms)
def test_a_price_never_falls_as_the_cluster_commits_more(before, more, asked):
    model = model_with(before)
    pricing = Pricing(CARD, DemandPricing(), model, 0)
    low = pricing.of(asked)
    busier = model_with([*before, more])
    high = Pricing(CARD, DemandPricing(), busier, 0).of(asked)
    assert high.total >= low.total
    assert (busier.committed(0, 60) >= model.committed(0, 60) - 1e-12).all()


@settings(max_examples=150, deadline=None)
@given(holds, terms, st.integers(1, 400))
def test_the_cheaper_window_is_the_nearest_that_fits_within_the_ceiling(before, asked, cents):
    model = model_with(before)
    pricing = Pricing(CARD, DemandPricing(), model, 0)
    ceiling = Decimal(cents) / 100
    latest = asked.start + 3 * 24 * HOUR
    found = pricing.cheaper_window(asked, ceiling, latest)
    first = -(-asked.start // HOUR) * HOUR + (HOUR if asked.start % HOUR == 0 else 0)
    candidates = range(first, latest + 1, HOUR)

    def fits_within(start):
        shifted = Terms("SMALL", "t", asked.fixed, 0, start, asked.duration)
        return (model.has_room(SIZE, start, start + asked.duration, asked.count)
                and pricing.of(shifted).total <= ceiling)

    event("a window found" if found else "none")
    if found is None:
        assert not any(fits_within(start) for start in candidates)
    else:
        assert found.start in candidates and fits_within(found.start)
        assert not any(fits_within(start) for start in candidates if start < found.start)
        assert (found.duration, found.count) == (asked.duration, asked.count)


@settings(max_examples=150, deadline=None)
@given(holds, terms, st.integers(-8, 8), st.integers(-4, 8), st.integers(-3, 4))
def test_a_change_costs_the_hours_added_and_gives_back_exactly_those_given_up(before, agreed, move_q, longer_q, more):
    model = model_with(before)
    pricing = Pricing(CARD, DemandPricing(), model, 0)
    bound = pricing.of(agreed)
    start = max(0, agreed.start + move_q * 15 * MINUTE)
    new = Terms("SMALL", "t", max(1, agreed.fixed + more), 0, start,
                max(15 * MINUTE, agreed.duration + longer_q * 15 * MINUTE))
    change = pricing.of_change(agreed, bound, new)
    assert change.agreed == bound.total and 0 <= change.credit <= bound.total
    # The schedule is the new terms' exactly: every instant of them, and nothing else.
    assert change.instance_hours == Fraction(new.count * new.duration, HOUR)
    assert all(new.start <= run[0] < run[1] <= new.end for run in change.runs)
    # On the same demand, the changed terms cost what they would cost asked afresh; and going
    # back costs what was agreed: nothing ratchets down (or up) by changing to and fro.
    assert change.total == pricing.of(new).total
    assert pricing.of_change(new, change, agreed).total == bound.total
    if new.start == agreed.start and new.duration >= agreed.duration and new.fixed >= agreed.fixed:
        assert change.credit == 0 and change.total >= bound.total
    if new == agreed:
        assert change.runs == bound.runs


@settings(max_examples=100, deadline=None)
@given(holds, terms, st.integers(1, 40), st.integers(1, 8))
def test_a_change_never_alters_the_hours_before_now(before, agreed, now_q, shorter_q):
    model = model_with(before)
    now = agreed.start + now_q * 15 * MINUTE
    bound = Pricing(CARD, DemandPricing(), model, 0).of(agreed)
    new = Terms("SMALL", "t", agreed.fixed, 0, agreed.start, max(now - agreed.start + MINUTE,
                                                                  agreed.duration - shorter_q * 15 * MINUTE))
    change = Pricing(CARD, DemandPricing(), model_with([*before, ("a", 0, 400, 6)]), now).of_change(agreed, bound, new)
    assert change.amount_before(now) == bound.amount_before(now)


class Demand:
    """A model whose every hour is `used` committed (for the order in which hours are given back)."""

    def __init__(self, used: float) -> None:
        self.used = used

    def hourly(self, first, hours, derive):
        import numpy as np
        return derive(np.full(hours, self.used))


def test_hours_given_back_are_those_added_last_whatever_their_price():
    one = Terms("SMALL", "t", 1, 0, 10 * HOUR, HOUR)
    two = Terms("SMALL", "t", 2, 0, 10 * HOUR, HOUR)
    busy = Pricing(CARD, DemandPricing(), Demand(1.0), 0).of(one)  # x3: 0.15
    grown = Pricing(CARD, DemandPricing(), Demand(0.0), 0).of_change(one, busy, two)  # + 0.05
    assert (busy.total, grown.total) == (Decimal("0.15"), Decimal("0.20"))
    shrunk = Pricing(CARD, DemandPricing(), Demand(0.0), 0).of_change(two, grown, one)
    assert (shrunk.total, shrunk.credit) == (Decimal("0.15"), Decimal("0.05")), "the dear hour stays sold"


def test_a_window_past_the_index_costs_the_card_and_one_across_its_edge_is_priced():
    model = model_with([("a", 0, 40, 8), ("b", 0, 40, 4)])  # the first 10 hours full
    pricing = Pricing(CARD, DemandPricing(), model, 0)
    past = -(-model.horizon // HOUR) * HOUR + HOUR
    assert pricing.of(Terms("SMALL", "t", 1, 0, past, 2 * HOUR)).total == Decimal("0.10")
    across = pricing.of(Terms("SMALL", "t", 2, 0, past - 3 * HOUR, 5 * HOUR))
    assert across.total == Decimal("0.50") and across.instance_hours == 10
    assert pricing.of(Terms("SMALL", "t", 1, 0, 0, HOUR)).total == Decimal("0.15")  # full: x3


def test_lost_hours_are_counted_from_the_reservation_s_start_even_within_a_run():
    from pex.domain.billing import _lost
    from pex.domain.pricing import Quote
    (before_lo, lost), booked = _lost(Quote.of_runs("USD", [(1, 6, 1, 1, 3)]), [], 3, 10, 12)
    assert (before_lo, lost, booked) == (9, 9, 0)


kept_steps = st.lists(st.one_of(
    st.tuples(st.just("hold"), st.sampled_from(sorted(NODES)), st.integers(-8, 1400), st.integers(1, 60), st.integers(1, 6)),
    st.tuples(st.just("release"), st.integers(0, 30)),
    st.tuples(st.just("without"), st.integers(0, 30)),
    st.tuples(st.just("eligible"), st.sampled_from(sorted(NODES)), st.booleans()),
    st.tuples(st.just("reload")),
    st.tuples(st.just("ask"), st.integers(-30, 400), st.integers(1, 200))), max_size=40)


def exactly(utilisation):
    """A derivation that tells every utilisation apart (demand pricing's steps hide small ones)."""
    import numpy as np
    return np.round(np.asarray(utilisation) * 1e6).astype(np.int64)


@settings(max_examples=300, deadline=None)
@given(kept_steps, st.sampled_from([0, 7 * MINUTE, 15 * MINUTE, 20 * MINUTE, 45 * MINUTE]),
       st.sampled_from([15 * MINUTE, 25 * MINUTE]), st.sampled_from(["demand", "exactly"]))
def test_the_multipliers_kept_per_hour_are_always_those_of_what_is_committed_now(steps, origin, bucket, kind):
    """The model keeps each hour's multiplier until what is held in it changes: whatever holds,
    releases, renegotiations (`without`), nodes leaving or coming back, growth past the horizon
    and reloads happen between two questions, it answers as if it had worked it out afresh
    (an origin off the clock hour, and buckets that do not tile the hour, included)."""
    model = CapacityModel(origin=origin, bucket=bucket, horizon=2 * 24 * HOUR)
    for name, capacity in NODES.items():
        model.add_node(name, capacity)
    derive = DemandPricing().multipliers if kind == "demand" else exactly
    for key, step in enumerate(steps):
        kind = step[0]
        if kind == "hold":
            _, node, start_q, quarters, count = step
            start, end = start_q * 15 * MINUTE, (start_q + quarters) * 15 * MINUTE
            fits = model.fit_on(node, SIZE, start, end)
            if fits:
                model.hold(key % 31, Allocation.uniform(SIZE, [(node, min(count, fits))], start, end))
        elif kind == "release":
            model.release(step[1])
        elif kind == "without":
            with model.without(step[1]):
                first = origin - origin % HOUR + HOUR
                assert (model.hourly(first, 30, derive) == derive(model.committed(first, 30))).all()
        elif kind == "eligible":
            model.set_eligible(step[1], step[2])
        elif kind == "reload":
            model.load(dict(model.holders()))
        else:
            _, hour, hours = step
            first = hour * HOUR
            kept = model.hourly(first, hours, derive)
            assert kept.tolist() == derive(model.committed(first, hours)).tolist(), (first, hours)
    for hour in (-2, 0, 5, 40):
        assert model.hourly(hour * HOUR, 60, derive).tolist() == derive(model.committed(hour * HOUR, 60)).tolist()


def test_the_hour_the_index_ends_inside_is_priced_by_what_is_held_in_it():
    """An origin off the clock hour (a service started at 10:45) makes the index end inside an
    hour: that hour is priced from what is held in it, not as if it were past the index."""
    model = CapacityModel(origin=45 * MINUTE, horizon=2 * 24 * HOUR)
    for name, capacity in NODES.items():
        model.add_node(name, capacity)
    last = model.horizon - model.horizon % HOUR  # the hour the index ends inside
    assert last < model.horizon
    model.hold("full", Allocation.uniform(SIZE, [("a", 8), ("b", 4)], last, model.horizon - MINUTE))
    for derive in (DemandPricing().multipliers, exactly):
        assert model.hourly(last, 2, derive).tolist() == derive(model.committed(last, 2)).tolist()
        assert model.hourly(last - HOUR, 3, derive).tolist() == derive(model.committed(last - HOUR, 3)).tolist()
