"""Negotiation: a proposal answered ACCEPT, COUNTER or REJECT from the capacity model, the
user's replies to an offer, renegotiation of agreed terms, and the instances a confirmation
plans. The protocol's table is pex.domain.negotiation's; admission is pex.domain.admission's;
this module only carries their decisions to the aggregates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pex.domain.admission import decide
from pex.domain.aggregates import Instance, Reservation
from pex.domain.bookings import decide_running_change
from pex.domain.capacity import Allocation
from pex.domain.clock import Millis
from pex.domain.errors import InvalidField, ProtocolViolation
from pex.domain.negotiation import Action, Message, Reply, Terms, TermsChange, rejection_reason
from pex.domain.planning import PlannedInstance, plan_instances
from pex.domain.pricing import Quote
from pex.domain.quotas import HeldOffers, QuotaExceeded, check_offers
from pex.domain.quoting import PricedDecision, Pricing, priced
from pex.domain.read_models import Answer, offer_view
from pex.domain.statuses import InstanceStatus

if TYPE_CHECKING:
    from pex.domain.application import OpenPEX

USER_MESSAGES = (Message.ACCEPT, Message.COUNTER, Message.CONFIRM, Message.REJECT)


class Negotiation:
    def __init__(self, app: OpenPEX) -> None:
        self.app = app

    def propose(self, userid: str, proposal: TermsChange, now: Millis) -> Answer:
        """A new proposal (POST /reservations): answered ACCEPT, COUNTER or REJECT."""
        terms = proposal.applied_to(None)
        self.app.lifecycle.lapse_due(now)
        self._check_quota(userid, terms, now)
        reservation = Reservation(userid, terms.to_dict())
        self._negotiate(reservation, terms, now)
        return _answer(reservation, _reply_of(reservation))

    def respond(self, reservation_id: Any, userid: str, reply: Any, now: Millis,
                proposal: TermsChange | None = None, *, is_admin: bool = False) -> Answer:
        """The user's reply to an offer (PUT /reservations/{id}): ACCEPT, COUNTER, CONFIRM or
        REJECT; COUNTER carries a proposal and also renegotiates agreed terms."""
        message = user_message(reply)
        visible = self.app.read.visible_reservation(reservation_id, userid, is_admin)
        terms = None
        if message is Message.COUNTER:  # parse before anything is recorded
            terms = (proposal or TermsChange()).applied_to(visible.latest_terms)
        self.app.lifecycle.lapse_due(now)
        reservation: Reservation = self.app.load(visible.id)
        action = reservation.action_for(message)
        if action is Action.NEGOTIATE:
            assert terms is not None
            self._check_quota(reservation.userid, terms, now, renegotiating=reservation)
            reservation.propose(terms)
            self._negotiate(reservation, terms, now)
            return _answer(reservation, _reply_of(reservation))
        if action is Action.ACCEPT_COUNTER:
            reservation.accept_counter(now, self._hold_until(reservation, now))
            self.app.commit(reservation)
            return _answer(reservation, Reply.CONFIRM_REQUEST)
        if action is Action.CONFIRM:
            self._check_still_ahead(reservation, now)
            reservation.confirm(now, self._unpriced(reservation, now))
            self.app.commit(reservation, *self._plan_instances(reservation))
            return _answer(reservation, Reply.REQUEST_SUCCESS)
        assert action is Action.WITHDRAW
        withdrawn = reservation.offered_terms
        reservation.withdraw()
        self.app.commit(reservation)
        return _answer(reservation, Reply.REQUEST_SUCCESS, withdrawn)

    def _negotiate(self, reservation: Reservation, terms: Terms, now: Millis) -> None:
        app = self.app
        limits = app.settings.limits
        agreed = reservation.agreed_terms if reservation.is_agreed else None
        running = agreed is not None and agreed.start <= now
        reason = rejection_reason(terms, now=now, templates=app.view.templates.keys(), limits=limits,
                                  running=running)
        if reason is None and agreed is not None and terms.instance_type != agreed.instance_type:
            # Capacity holds one size per reservation (the old and new terms are held at once).
            reason = f"an agreed reservation keeps its size ({agreed.instance_type}); make a new reservation for another"
        latest_start = now + limits.max_advance
        pricing = Pricing(app.view.rate_card, app.settings.pricing, app.capacity, now)
        bound = (agreed, Quote.from_dict(reservation.price) if reservation.price else None) if agreed else None
        if reason is None and running:
            assert agreed is not None and reservation.booking is not None
            decision = decide_running_change(reservation.id, agreed, Allocation.from_list(reservation.booking), terms,
                                             app.capacity, {name: node.status for name, node in app.view.nodes.items()})
            with app.capacity.without(reservation.id):  # (its own hold is no demand on its price)
                outcome = priced(decision, terms, pricing, latest_start=latest_start, agreed=bound)
        elif reason is None:
            with app.capacity.without(reservation.id):
                decision = decide(app.capacity, terms, latest_start=latest_start, policy=app.settings.admission)
                outcome = priced(decision, terms, pricing, latest_start=latest_start, agreed=bound)
        else:
            outcome = PricedDecision(Reply.REJECT, reason=reason)
        if outcome.offer is None:
            reservation.answer(Reply.REJECT, reason=outcome.reason)
        else:
            assert outcome.price is not None
            reservation.answer(
                outcome.reply,
                terms=outcome.offer.terms,
                allocation=outcome.offer.allocation,
                hold_until=self._hold_until(reservation, now),
                alternatives=[{**alt.to_dict(), "price": price.to_dict()} for alt, price in outcome.alternatives],
                opened=reservation.negotiation_opened or now,
                price=outcome.price.to_dict(),
            )
        app.commit(reservation)

    @staticmethod
    def _check_still_ahead(reservation: Reservation, now: Millis) -> None:
        """A change of agreed terms confirmed after its end has passed is refused (409): the
        hours used are used. (A change takes effect as it was offered: one that gives hours
        back does so from its offer on, at most the hold's time ago.)"""
        if reservation.is_agreed and reservation.offer and Terms.from_dict(reservation.offer["terms"]).end <= now:
            raise ProtocolViolation("this change would end the reservation before now; propose the change again")

    def _unpriced(self, reservation: Reservation, now: Millis) -> dict[str, Any] | None:
        """The price of an offer made before offers carried one (an older store), so that a
        confirmation always binds a price; None for an offer that has its own."""
        offer = reservation.open_offer
        if offer.get("price") is not None:
            return None
        app = self.app
        with app.capacity.without(reservation.id):
            pricing = Pricing(app.view.rate_card, app.settings.pricing, app.capacity, now)
            agreed = reservation.agreed_terms if reservation.is_agreed else None
            offered = Terms.from_dict(offer["terms"])
            bound = Quote.from_dict(reservation.price) if reservation.price else None
            price = pricing.of(offered) if agreed is None else pricing.of_change(agreed, bound, offered)
        return price.to_dict()

    def _hold_until(self, reservation: Reservation, now: Millis) -> Millis:
        """An offer is held for the offer TTL, but a negotiation never holds capacity longer
        than `negotiation_hold` from its first offer, however often the user counters."""
        opened = reservation.negotiation_opened or now
        return min(now + self.app.settings.offer_ttl, opened + self.app.negotiation_hold)

    def _check_quota(self, userid: str, terms: Terms, now: Millis, *, renegotiating: Reservation | None = None) -> None:
        """Refuse (QuotaExceeded: nothing is recorded) a proposal over the user's quota. A
        counter replaces the offer it answers, so that offer does not count against it."""
        app = self.app
        quota = app.catalogue.quota_of(userid)
        mine = app.view.offers_of.get(userid, {})
        held = app.view.offers_held.get(userid, HeldOffers())
        if renegotiating is not None and renegotiating.id in mine:
            held = HeldOffers(held.count - 1, held.instance_ms - mine[renegotiating.id])

        def first_lapse() -> Millis | None:
            return min((app.view.reservations[rid].open_offer["hold_until"] for rid in mine), default=None)

        try:
            check_offers(quota, held, terms.count * terms.duration, first_lapse, now)
            app.proposals.take(userid, quota.proposals_per_minute, now)  # (only what could be decided)
        except QuotaExceeded:
            app.refusals[userid] += 1
            raise

    def _plan_instances(self, reservation: Reservation) -> list[Instance]:
        """Instances to match the agreed terms: planned on confirm, re-planned when a
        renegotiation changes the start, end or nodes; each keeps its id where it can."""
        terms = reservation.agreed_terms
        assert terms is not None and reservation.booking is not None
        booking = Allocation.from_list(reservation.booking)
        # The placement in force at the end (earlier shares may be history on a lost node).
        wanted = {s.node: s.count for s in booking.shares if s.end == terms.end} or booking.per_node()
        existing: list[Instance] = [self.app.load(i) for i in self.app.view.instances_of.get(reservation.id, ())]
        alive = [i for i in existing if i.status != InstanceStatus.DELETED]
        plan = plan_instances(wanted, [PlannedInstance(i.id, i.node, i.status) for i in alive])
        for instance in alive:
            if instance.id in plan.placed:
                instance.reschedule(plan.placed[instance.id], terms.start, terms.end)
            else:
                instance.discard()
        changed: list[Instance] = list(alive)
        for number, node in enumerate(plan.new, start=len(existing) + 1):
            changed.append(Instance(reservation.id, reservation.userid, f"{str(reservation.id)[:8]}-{number}",
                                    node, terms.instance_type, terms.template, terms.start, terms.end))
        return changed


def user_message(reply: Any) -> Message:
    """A user's reply as a protocol message, or InvalidField."""
    for message in USER_MESSAGES:
        if reply == message.value:
            return message
    raise InvalidField("reply", f"must be one of {', '.join(m.value for m in USER_MESSAGES)}")


def _reply_of(reservation: Reservation) -> Reply:
    """OpenPEX's answer to the proposal just negotiated, read off the recorded outcome."""
    if reservation.offer is None:
        return Reply.REJECT
    return Reply.ACCEPT if reservation.offer["state"] == "ACCEPTED" else Reply.COUNTER


def _answer(reservation: Reservation, reply: Reply, terms: Terms | None = None) -> Answer:
    """The answer to send: the terms it is about, and the offer's hold and alternatives."""
    withdrawn = terms is not None
    terms = terms or reservation.latest_terms
    reason = reservation.reason if reply is Reply.REJECT else None
    if reservation.offer and reply in (Reply.ACCEPT, Reply.COUNTER, Reply.CONFIRM_REQUEST):
        offer = offer_view(reservation.offer)
        return Answer(reply, reservation.id, reservation.userid, terms, reason, offer.hold_until, offer.alternatives,
                      offer.price, offer.alternative_prices)
    # After a CONFIRM, the price it bound (not after a withdrawal: its terms are not those agreed).
    bound = Quote.from_dict(reservation.price) if reply is Reply.REQUEST_SUCCESS and reservation.price and \
        not withdrawn else None
    return Answer(reply, reservation.id, reservation.userid, terms, reason, price=bound)
