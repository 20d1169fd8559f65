"""The user's pages (the paper's §3.3, Figs. 4-6): the welcome screen, a new reservation and
its negotiation (price included: issue 12), the reservations, one reservation with its history,
the instances, and the statement of what the visitor's reservations cost (usage). Each reads
and acts through the same calls on the actors as the REST API, as the signed-in visitor.

Every action is a POST form that answers with a redirect (post/redirect/get), so a reload or
the back button never sends it again; a new reservation's form also carries a one-time token,
so a double click makes one reservation.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from aiohttp import web

from pex.actors.allocator import Allocator
from pex.domain.billing import Statements
from pex.domain.clock import HOUR, MINUTE
from pex.domain.errors import DomainError, InvalidField, NotFound
from pex.domain.event_log import EventListing
from pex.domain.listing import Listing
from pex.domain.negotiation import AGREED, LATEST_INSTANT, OfferState, Status, Terms, TermsChange
from pex.domain.orders import Operation
from pex.domain.pricing import Quote
from pex.domain.read_models import EventPage, InstanceView, PricesView, ReservationView, TemplateView
from pex.domain.sizes import InstanceType
from pex.http.portal.forms import Catalogue, Judged, form_of as terms_form, instant, iso, reservation_terms, values_of
from pex.http.portal.prices import over, price_row
from pex.http.portal.live import Hub
from pex.http.portal.sessions import Visitor, flash
from pex.http.portal.site import PageRefused, act, form_of, page, render, visitor
from pex.http.presenters import event_texts
from pex.http.typedefs import ask, ask_manager, ask_manager_later
from pex.http.wire import UUID_PATTERN

_UUID = re.compile(UUID_PATTERN)
PAGE = 50  # rows a list page shows
HUB = web.AppKey("portal_hub", Hub)


# ---------------------------------------------------------------------- a form sent once

class SentOnce:
    """New reservations by form token: a second submission of one form (a double click, a
    resubmit) waits for the first and is sent where it went, instead of proposing again. A
    refusal (nothing recorded) frees the token, so the corrected form may be sent; a failure
    whose outcome is unknown (no answer in time) does not: it may have been recorded.
    In memory, bounded per user; a restart forgets it."""

    UNKNOWN = ""  # sent, but whether it was recorded is not known

    def __init__(self, per_user: int = 100, users: int = 10_000) -> None:
        self._sent: OrderedDict[str, OrderedDict[str, asyncio.Future[str | None]]] = OrderedDict()
        self.per_user, self.users = per_user, users

    async def run(self, username: str, token: str, send: Callable[[], Awaitable[str]]) -> str:
        """The reservation the form made (UNKNOWN: the first sending's outcome is not known)."""
        mine = self._sent.setdefault(username, OrderedDict())
        self._sent.move_to_end(username)
        while len(self._sent) > self.users:
            self._sent.popitem(last=False)
        while True:
            earlier = mine.get(token)
            if earlier is None:
                break
            done = await asyncio.shield(earlier)
            if done is not None:
                return done
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        mine[token] = future
        while len(mine) > self.per_user:
            mine.popitem(last=False)
        try:
            result = await send()
        except DomainError:
            mine.pop(token, None)  # refused, nothing recorded: the form may be corrected and sent again
            future.set_result(None)
            raise
        except BaseException:
            future.set_result(self.UNKNOWN)
            raise
        future.set_result(result)
        return result


SENT = web.AppKey("portal_sent_once", SentOnce)


# ---------------------------------------------------------------------- welcome

@page()
async def welcome(request: web.Request) -> web.Response:
    who = visitor(request)
    summary = await ask(request, lambda allocator: allocator.app.read.summary(who.username))
    return await render(request, "welcome.html", {"summary": summary})


# ---------------------------------------------------------------------- a new reservation

@dataclass(frozen=True)
class FormChoices:
    types: list[InstanceType]
    templates: list[TemplateView]
    catalogue: Catalogue
    prices: PricesView  # the rate card (shown beside the sizes) and its currency (the maxPrice field's)


def _choices(allocator: Allocator) -> FormChoices:
    app = allocator.app
    types = app.catalogue.types()
    templates = app.catalogue.templates()
    return FormChoices(types, templates, Catalogue(allocator.clock.now(), [kind.name for kind in types],
                                                   [template.name for template in templates], app.settings.limits),
                       app.catalogue.prices())


@page()
async def new_reservation_form(request: web.Request) -> web.Response:
    return await _new_form(request)


async def _new_form(request: web.Request, values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                    choices: FormChoices | None = None) -> web.Response:
    if choices is None:
        choices = await ask(request, _choices)
    if values is None:
        values = await _start_values(request, choices)
    values.setdefault("once", secrets.token_urlsafe(16))
    return await render(request, "reservation_new.html", {"values": values, "errors": errors or {},
                                                          "types": choices.types, "templates": choices.templates,
                                                          "limits": choices.catalogue.limits, "prices": choices.prices,
                                                          "kept_price": None},
                        status=400 if errors else 200)


async def _start_values(request: web.Request, choices: FormChoices) -> dict[str, str]:
    """A fresh form: the terms of the reservation named by `?from=` (try again, make another
    like it), else a small one starting at the next quarter hour."""
    given = request.query.get("from", "")
    if _UUID.fullmatch(given):
        who = visitor(request)
        try:
            found = await ask(request, lambda allocator: allocator.app.read.reservation(
                given, who.username, is_admin=who.is_admin))
        except NotFound:
            pass
        else:
            terms = found.requested or found.terms
            values = terms_form(terms)
            if terms.start < choices.catalogue.now:  # (a start gone by is no default)
                values.pop("start"), values.pop("start_utc")
            return values
    quarter = 15 * MINUTE
    start = (choices.catalogue.now // quarter + 1) * quarter
    kind = choices.types[0].name if choices.types else ""
    template = choices.templates[0].name if choices.templates else ""
    return terms_form(Terms(kind, template, 1, 0, start, HOUR))


@page()
async def new_reservation(request: web.Request) -> web.Response:
    form = form_of(request)
    who = visitor(request)
    choices = await ask(request, _choices)
    change, judged = reservation_terms(form, choices.catalogue)
    judged.values["once"] = str(form.get("once", ""))[:64]
    if change is None:
        return await _new_form(request, judged.values, judged.errors, choices)

    async def propose() -> str:
        answer = await ask(request, lambda allocator: allocator.propose(who.username, change))
        return str(answer.reservation_id)

    once = judged.values["once"] or secrets.token_urlsafe(16)
    try:
        rid = await request.app[SENT].run(who.username, once, propose)
    except InvalidField as error:
        return await _new_form(request, judged.values, {error.field: error.reason}, choices)
    if rid == SentOnce.UNKNOWN:
        await flash(request, "This form was sent before and OpenPEX did not answer in time: look for the "
                             "reservation here before sending it again.", "error")
        raise web.HTTPSeeOther("/reservations")
    raise web.HTTPSeeOther(f"/reservations/{rid}")


# ---------------------------------------------------------------------- the reservations

@page()
async def reservations(request: web.Request) -> web.Response:
    who = visitor(request)
    after = request.query.get("after", "")
    status = request.query.get("status", "")
    statuses = frozenset({status}) if status in Status.__members__ else frozenset()
    listing = Listing(after=UUID(after) if _UUID.fullmatch(after) else None, limit=PAGE + 1, statuses=statuses)
    try:
        found = await ask(request, lambda allocator: allocator.app.read.reservations(
            who.username, is_admin=who.is_admin, listing=listing))
    except InvalidField:  # a cursor that is not one of the visitor's: the first page
        raise web.HTTPSeeOther("/reservations")
    following = str(found[PAGE - 1].id) if len(found) > PAGE else None
    return await render(request, "reservations.html", {"reservations": found[:PAGE], "following": following,
                                                       "status": status if statuses else "",
                                                       "statuses": list(Status.__members__)})


def reservation_id(request: web.Request) -> str:
    """The id in the path; 404 unless it is a UUID as we write them."""
    value = request.match_info["id"]
    if not _UUID.fullmatch(value):
        raise NotFound("There is no such reservation.")
    return value


@dataclass(frozen=True)
class Step:
    name: str  # the protocol's word (ACCEPT, COUNTER, CONFIRM_REQUEST, ...)
    says: str  # what it means here
    state: str  # done, current, todo, failed


def protocol_steps(view: ReservationView, page: EventPage) -> list[Step]:
    """The paper's protocol (Fig. 2) as steps for this negotiation's latest round: the
    proposal, OpenPEX's answer, for a counter the ACCEPT and the CONFIRM_REQUEST, then the
    CONFIRM and the REQUEST_SUCCESS."""
    round_: list[tuple[str, dict[str, Any]]] = []
    for record in page.records:
        if not record.kind.startswith("Reservation."):
            continue
        if record.kind in ("Reservation.Requested", "Reservation.Proposed"):
            round_ = []
        round_.append((record.kind, dict(record.fields)))
    kinds = [kind for kind, _ in round_]
    offered = next((fields for kind, fields in reversed(round_) if kind == "Reservation.Offered"), None)
    countered = offered is not None and offered.get("reply") == "COUNTER"
    steps = [Step("PROPOSE", "You sent your terms", "done")]
    if "Reservation.Declined" in kinds:
        return [*steps, Step("REJECT", "OpenPEX cannot meet them in any way", "failed")]
    if offered is None:
        return [*steps, Step("ANSWER", "OpenPEX answers", "current")]
    steps.append(Step("COUNTER" if countered else "ACCEPT",
                      "OpenPEX offered other terms" if countered else "OpenPEX can meet them", "done"))
    ended = next((kind for kind in kinds if kind in ("Reservation.Withdrawn", "Reservation.OfferLapsed")), None)
    if countered:
        accepted = "Reservation.CounterAccepted" in kinds
        steps.append(Step("ACCEPT", "You accept the counter offer", "done" if accepted else "current"))
        steps.append(Step("CONFIRM_REQUEST", "OpenPEX asks you to confirm", "done" if accepted else "todo"))
    confirmed = "Reservation.Confirmed" in kinds
    waiting = view.offer is not None and view.offer.state is OfferState.ACCEPTED
    steps.append(Step("CONFIRM", "You confirm", "done" if confirmed else "current" if waiting else "todo"))
    steps.append(Step("REQUEST_SUCCESS", "The reservation is made", "done" if confirmed else "todo"))
    if ended is not None:
        says = "You rejected the offer" if ended == "Reservation.Withdrawn" else "The hold lapsed unconfirmed"
        steps = [step if step.state == "done" else Step(step.name, step.says, "todo") for step in steps]
        steps.append(Step("REJECT" if ended == "Reservation.Withdrawn" else "LAPSED", says, "failed"))
    return steps


TERM_ROWS = (("Size", "instance_type"), ("Template", "template"), ("Instances", "fixed"),
             ("Optional instances", "optional"), ("Start", "start"), ("Duration", "duration"), ("End", "end"))


def compared(asked: Terms, offered: Terms) -> list[tuple[str, str, Any, Any, bool]]:
    """The terms side by side: (label, field, asked, offered, changed)."""
    return [(label, name, getattr(asked, name), getattr(offered, name), getattr(asked, name) != getattr(offered, name))
            for label, name in TERM_ROWS]


def compared_priced(asked: Terms, offered: Terms, quote: Quote | None, currency: str) -> list[tuple[str, str, Any, Any, bool]]:
    """The terms side by side, and the price beside the most the visitor would pay (marked
    changed when it is more)."""
    return [*compared(asked, offered), price_row(asked, quote, currency)]


@page()
async def reservation(request: web.Request) -> web.Response:
    rid, who = reservation_id(request), visitor(request)

    def read(allocator: Allocator) -> tuple[ReservationView, list[InstanceView], EventPage, int, str]:
        reading = allocator.app.read
        found = reading.reservation(rid, who.username, is_admin=who.is_admin)
        instances = [reading.instance(vm, who.username, is_admin=who.is_admin) for vm in found.instances]
        history = reading.history(EventListing(reservation=UUID(rid)), who.username, is_admin=who.is_admin)
        return found, instances, history, allocator.clock.now(), allocator.app.catalogue.prices().currency

    found, instances, history, now, currency = await ask(request, read)
    asked = found.requested or found.terms
    offer = found.offer
    prices = (offer.alternative_prices or (None,) * len(offer.alternatives)) if offer else ()
    alternatives = [(terms, compared_priced(asked, terms, price, currency), price, over(price, asked))
                    for terms, price in zip(offer.alternatives, prices)] if offer else []
    return await render(request, "reservation.html", {
        "r": found, "instances": instances, "asked": asked, "currency": currency,
        "offer": offer, "compared": compared_priced(asked, offer.terms, offer.price, currency) if offer else [],
        # a COUNTER on price: the window asked, at a price above the most the visitor would pay
        "over_price": offer is not None and over(offer.price, asked),
        "on_price": offer is not None and over(offer.price, asked) and not any(
            changed for _, _, _, _, changed in compared(asked, offer.terms)),
        "alternatives": alternatives,
        # an alternative within the most the visitor would pay (the domain puts the nearest first)
        "cheaper": asked.max_price is not None and any(price is not None and not above
                                                      for _, _, price, above in alternatives),
        "held_seconds": max(0, (offer.hold_until - now) // 1000) if offer else 0,
        "steps": protocol_steps(found, history),
        "history": list(zip(history.records, event_texts(history))),
        "agreed": found.status in AGREED})


# What a notice says once OpenPEX has answered the visitor's reply (a counter: what it answered).
REPLY_WORDS = {"ACCEPT": "You accepted the counter offer. OpenPEX holds it and asks you to confirm (CONFIRM_REQUEST).",
               "CONFIRM": "Confirmed: the reservation is made (REQUEST_SUCCESS).",
               "REJECT": "You rejected the offer; nothing is held for it any more."}


@page()
async def reply(request: web.Request) -> web.Response:
    """Confirm, accept or reject the open offer (an alternative is taken as a counter)."""
    rid, who, form = reservation_id(request), visitor(request), form_of(request)
    message = str(form.get("reply", ""))
    proposal: TermsChange | None = None
    if message == "TAKE":  # one of the alternatives OpenPEX found (by its place), proposed as it is
        found = await ask(request, lambda allocator: allocator.app.read.reservation(
            rid, who.username, is_admin=who.is_admin))
        alternatives = found.offer.alternatives if found.offer else ()
        chosen = str(form.get("alternative", ""))
        if not (chosen.isascii() and chosen.isdigit() and int(chosen) < len(alternatives)):
            await flash(request, "That alternative is no longer on offer.", "error")
            raise web.HTTPSeeOther(f"/reservations/{rid}")
        proposal = TermsChange.of(alternatives[int(chosen)])
        message = "COUNTER"
    if message not in ("CONFIRM", "ACCEPT", "REJECT", "COUNTER"):
        await flash(request, "Choose Confirm, Accept or Reject.", "error")
        raise web.HTTPSeeOther(f"/reservations/{rid}")
    await act(request, ask(request, lambda allocator: allocator.respond(rid, who.username, message, proposal,
                                                                       is_admin=who.is_admin)),
              lambda answer: (REPLY_WORDS.get(message) or f"OpenPEX answered {answer.reply.value}.", "ok"))
    raise web.HTTPSeeOther(f"/reservations/{rid}")


@page()
async def change_form(request: web.Request) -> web.Response:
    """Counter an offer with changed terms, or change (renegotiate) an agreed reservation."""
    rid, who = reservation_id(request), visitor(request)
    found = await ask(request, lambda allocator: allocator.app.read.reservation(rid, who.username, is_admin=who.is_admin))
    base = found.offer.terms if found.offer else found.terms
    return await _change_page(request, found, terms_form(base))


def _kept_price(found: ReservationView) -> Decimal | None:
    """The most the visitor said they would pay in the terms a counter or a change starts from
    (an empty field keeps it)."""
    base = found.offer.terms if found.offer else found.terms
    return base.max_price


async def _change_page(request: web.Request, found: ReservationView, values: dict[str, str],
                       errors: dict[str, str] | None = None) -> web.Response:
    choices = await ask(request, _choices)
    running = found.status in AGREED and found.terms.start <= choices.catalogue.now
    return await render(request, "reservation_change.html", {
        "r": found, "values": values, "errors": errors or {}, "types": choices.types,
        "templates": choices.templates, "limits": choices.catalogue.limits, "running": running,
        "agreed": found.status in AGREED, "prices": choices.prices, "kept_price": _kept_price(found)},
        status=400 if errors else 200)


@page()
async def change(request: web.Request) -> web.Response:
    rid, who, form = reservation_id(request), visitor(request), form_of(request)
    found = await ask(request, lambda allocator: allocator.app.read.reservation(rid, who.username, is_admin=who.is_admin))
    choices = await ask(request, _choices)
    base = found.offer.terms if found.offer else found.terms
    running = found.status in AGREED and found.terms.start <= choices.catalogue.now
    proposal, judged = reservation_terms(form, choices.catalogue, base=base, running=running)
    if proposal is None:
        return await _change_page(request, found, judged.values, judged.errors)
    try:
        answer = await ask(request, lambda allocator: allocator.respond(rid, who.username, "COUNTER", proposal,
                                                                        is_admin=who.is_admin))
    except InvalidField as error:
        return await _change_page(request, found, judged.values, {error.field: error.reason})
    except DomainError as refused:
        if refused.status == 404:
            raise
        await flash(request, refused.message, "error")
    else:
        rejected = answer.reply.value == "REJECT"
        await flash(request, f"OpenPEX answered {answer.reply.value}." + (f" {answer.reason}" if answer.reason else ""),
                    "error" if rejected else "ok")
    raise web.HTTPSeeOther(f"/reservations/{rid}")


@page()
async def activate(request: web.Request) -> web.Response:
    rid, who = reservation_id(request), visitor(request)
    await act(request, ask(request, lambda allocator: allocator.app.lifecycle.activate(
        rid, who.username, is_admin=who.is_admin)), lambda _: ("Activated: its VMs boot at its start.", "ok"))
    raise web.HTTPSeeOther(_back(request, f"/reservations/{rid}"))


@page()
async def delete(request: web.Request) -> web.Response:
    """Cancel an agreed reservation, or withdraw one still being negotiated."""
    rid, who = reservation_id(request), visitor(request)
    await act(request, ask_manager(request, lambda manager: manager.cancel(rid, who.username, is_admin=who.is_admin)),
              lambda _: ("Deleted: the reservation is cancelled and its VMs are stopped.", "ok"))
    raise web.HTTPSeeOther(_back(request, f"/reservations/{rid}"))


def _back(request: web.Request, default: str) -> str:
    """Where an action returns: the list it was sent from, or `default`."""
    back = str(form_of(request).get("back", ""))
    return back if back in ("/reservations", "/instances") else default


# ---------------------------------------------------------------------- the instances

@page()
async def instances(request: web.Request) -> web.Response:
    who = visitor(request)
    after = request.query.get("after", "")
    listing = Listing(after=UUID(after) if _UUID.fullmatch(after) else None, limit=PAGE + 1)
    try:
        found = await ask(request, lambda allocator: allocator.app.read.instances(
            who.username, is_admin=who.is_admin, listing=listing))
    except InvalidField:
        raise web.HTTPSeeOther("/instances")
    following = str(found[PAGE - 1].id) if len(found) > PAGE else None
    return await render(request, "instances.html", {"instances": found[:PAGE], "following": following})


OPERATIONS = {"stop": Operation.STOP, "start": Operation.START, "reboot": Operation.REBOOT, "delete": Operation.DELETE}
DONE = {"stop": "is stopping", "start": "is starting", "reboot": "is rebooting", "delete": "was deleted"}


@page()
async def operate(request: web.Request) -> web.Response:
    vm_id, who = request.match_info["vm_id"], visitor(request)
    operation = request.match_info["operation"]
    if not _UUID.fullmatch(vm_id) or operation not in OPERATIONS:
        raise NotFound("There is no such instance.")
    await act(request, ask_manager_later(request, lambda manager: manager.operate(
        vm_id, who.username, OPERATIONS[operation], is_admin=who.is_admin)),
        lambda done: (f"VM {done.name} {DONE[operation]}.", "ok"))
    raise web.HTTPSeeOther(_back(request, "/instances"))


def instance_row(found: InstanceView) -> dict[str, Any]:
    """What a live page needs of an instance to draw or redraw its row."""
    return {"vmID": str(found.id), "name": found.name, "status": found.status.value, "node": found.node or "",
            "start": iso(found.start), "end": iso(found.end), "reason": found.reason or "",
            "reservationId": str(found.reservation_id)}


HEARTBEAT = 15.0  # seconds between comments on a quiet stream (proxies close silent ones)


STREAMS_PER_USER = 8  # live pages one user may have open at once (each read costs the Allocator)


@page()
async def live_instances(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the visitor's instances, each time the service records a change to
    any instance (only rows that read differently are sent), until the page goes away."""
    who = visitor(request)
    hub = request.app[HUB]
    with hub.streaming(who.username, STREAMS_PER_USER) as allowed:
        if not allowed:
            raise PageRefused(429, f"You have {STREAMS_PER_USER} live pages open already: close one.")
        return await _stream(request, who, hub)


async def _stream(request: web.Request, who: Visitor, hub: Hub) -> web.StreamResponse:
    stream = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                         "X-Accel-Buffering": "no"})
    await stream.prepare(request)
    sent: dict[str, dict[str, Any]] = {}
    seen = -1
    try:
        while not hub.closed:
            generation = hub.generation
            if generation != seen:
                seen = generation
                found = await ask(request, lambda allocator: allocator.app.read.instances(
                    who.username, is_admin=who.is_admin, listing=Listing(limit=PAGE * 20)))
                rows = [instance_row(instance) for instance in found]
                changed = [row for row in rows if sent.get(row["vmID"]) != row]
                sent = {row["vmID"]: row for row in rows}
                if changed:
                    await stream.write(f"event: instances\ndata: {json.dumps(changed)}\n\n".encode())
            if await hub.wait(seen, HEARTBEAT) == seen and not hub.closed:
                await stream.write(b": still here\n\n")
    except ConnectionResetError:  # the page went away
        pass
    return stream


# ---------------------------------------------------------------------- usage (statements)

USAGE_FIELDS = ("from", "from_utc", "to", "to_utc")


@page()
async def usage(request: web.Request) -> web.Response:
    """What the visitor's reservations cost over a period (`from`, `to`; by default this month
    up to now): a line per reservation and the totals. The admin sees every user's statement
    with a charge in the period, and their total."""
    who = visitor(request)
    judged = Judged(values_of(request.query, USAGE_FIELDS))
    start, end = _period_end(judged, "from"), _period_end(judged, "to")
    if start is not None and end is not None and end <= start:
        judged.refuse("to", "must be after from")
    if judged.errors:
        start = end = None  # (the default period, under the messages)
    try:
        found: Statements = await ask(request, lambda allocator: allocator.usage(
            who.username, start, end, is_admin=who.is_admin))
    except InvalidField as error:
        judged.refuse(error.field if error.field in USAGE_FIELDS else "to", error.reason)
        found = await ask(request, lambda allocator: allocator.usage(who.username, None, None, is_admin=who.is_admin))
    values = judged.values if judged.errors else {
        "from": iso(found.start)[:16], "from_utc": iso(found.start), "to": iso(found.end)[:16], "to_utc": iso(found.end)}
    mine = None if who.is_admin else (found.users[0] if found.users else None)
    return await render(request, "usage.html", {"found": found, "mine": mine, "values": values,
                                                "errors": judged.errors}, status=400 if judged.errors else 200)


def _period_end(judged: Judged, name: str) -> int | None:
    """One end of the period as the form sends it (the script's UTC copy, else the typed date
    and time read as UTC), or None if it is left empty (the default)."""
    sent = judged.values[f"{name}_utc"].strip()
    typed = judged.values[name].strip()
    if not sent and not typed:
        return None
    try:
        moment = instant(sent or typed, name)
    except InvalidField:
        try:
            moment = instant(typed, name)
        except InvalidField as error:
            judged.refuse(name, error.reason)
            return None
    if not 0 <= moment <= LATEST_INSTANT:
        judged.refuse(name, "must be from 1970 to 9999")
        return None
    return moment
