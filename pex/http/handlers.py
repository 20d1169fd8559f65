"""REST handlers for /OpenPEX (DESIGN §8, the paper's Table 2): JSON in (wire.py), a typed call
on the Allocator (negotiation, queries, the catalogue) or the ReservationManager (what needs the
hypervisors too), JSON out in the paper's names (presenters.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from pex.domain.catalogue import NodeChange
from pex.domain.errors import DomainError, InvalidField, NotFound
from pex.domain.listing import Listing
from pex.domain.negotiation import Status
from pex.domain.orders import Operation
from pex.domain.read_models import EventPage
from pex.domain.reading import Reading
from pex.domain.statuses import InstanceStatus
from pex.http import openapi, presenters
from pex.actors.calls import ask_async
from pex.http.typedefs import BASE, METRICS_PATH, PASSWORDS, SYSTEM, ask, ask_manager, ask_manager_later, principal
from pex.http.wire import (
    UUID_PATTERN,
    events_in,
    listing_in,
    node_size_in,
    period_in,
    quota_in,
    parse_json,
    prices_in,
    proposal_in,
    usage_period_in,
)

_UUID = re.compile(UUID_PATTERN)
Item = TypeVar("Item")
USER_REPLIES = ("ACCEPT", "COUNTER", "CONFIRM", "REJECT")


class Forbidden(DomainError):
    status = 403
    code = "FORBIDDEN"


def add_routes(app: web.Application) -> None:
    app.router.add_routes([
        web.get(f"{BASE}/health", health),
        web.get(METRICS_PATH, metrics),
        web.get(f"{BASE}/openapi.json", openapi_json),
        web.post(f"{BASE}/users", register),
        web.get(f"{BASE}/users", accounts),
        web.get(f"{BASE}/users/{{name}}", account),
        web.put(f"{BASE}/users/{{name}}/quota", set_quota),
        web.get(f"{BASE}/types", types),
        web.get(f"{BASE}/templates", templates),
        web.post(f"{BASE}/templates", add_template),
        web.post(f"{BASE}/reservations", propose),
        web.get(f"{BASE}/reservations", reservations),
        web.get(f"{BASE}/reservations/{{id}}", reservation),
        web.put(f"{BASE}/reservations/{{id}}", respond),
        web.delete(f"{BASE}/reservations/{{id}}", cancel),
        web.put(f"{BASE}/reservations/{{id}}/activate", activate),
        web.get(f"{BASE}/reservations/{{id}}/history", reservation_history),
        web.get(f"{BASE}/instances", instances),
        web.get(f"{BASE}/instances/{{vm_id}}", instance),
        web.put(f"{BASE}/instances/{{vm_id}}/{{operation:stop|start|reboot}}", operate),
        web.delete(f"{BASE}/instances/{{vm_id}}", delete_instance),
        web.get(f"{BASE}/capacity", capacity),
        web.get(f"{BASE}/prices", prices),
        web.put(f"{BASE}/prices", set_prices),
        web.get(f"{BASE}/usage", usage),
        web.get(f"{BASE}/nodes", nodes),
        web.post(f"{BASE}/nodes", add_node),
        web.get(f"{BASE}/nodes/{{name}}", node),
        web.put(f"{BASE}/nodes/{{name}}/drain", drain),
        web.put(f"{BASE}/nodes/{{name}}/undrain", undrain),
        web.get(f"{BASE}/events", log_events),
        web.get(f"{BASE}/audit/head", audit_head),
    ])


def reply(body: Any, status: int = 200, **kwargs: Any) -> web.Response:
    return web.json_response(body, status=status, **kwargs)


async def json_object(request: web.Request) -> dict[str, Any]:
    body = parse_json(await request.read())
    if not isinstance(body, dict):
        raise InvalidField("body", "must be a JSON object")
    return body


def path_id(request: web.Request, key: str, what: str) -> str:
    """The reservation or instance id in the path; NotFound unless it is a UUID as we write them."""
    value = request.match_info[key]
    if not _UUID.fullmatch(value):
        raise NotFound(f"no {what} {value[:64]!r}")
    return value


async def listed(request: web.Request, statuses: Iterable[StrEnum],
                 read: Callable[[Reading, str, bool, Listing], list[Item]], present: Callable[[Item], dict[str, Any]],
                 key: str) -> web.Response:
    """A page of a list, as the query string asks (wire.listing_in), for whoever asks; a full
    page links to the next (RFC 8288), which may be empty."""
    username, is_admin = caller(request)
    listing = listing_in(request.query, [status.value for status in statuses])
    found = await ask(request, lambda allocator: read(allocator.app.read, username, is_admin, listing))
    page = [present(item) for item in found]
    headers = {}
    if len(page) == listing.limit:
        following = request.rel_url.update_query(after=page[-1][key])
        headers["Link"] = f'<{following}>; rel="next"'
    return reply(page, headers=headers)


def caller(request: web.Request) -> tuple[str, bool]:
    """Who asks, as every reservation and instance call takes it: the username, and whether
    they are the admin (who sees all)."""
    user = principal(request)
    return user.username, user.is_admin


def admin_only(request: web.Request) -> None:
    if not principal(request).is_admin:
        raise Forbidden("only the administrator may do this")


# ---------------------------------------------------------------------- public

async def health(request: web.Request) -> web.Response:
    types = await ask(request, lambda allocator: allocator.app.catalogue.types())  # answers only if the actors do
    if request.app[SYSTEM].writing:
        return reply({"status": "ok", "types": len(types), "role": "writer"})
    behind = await ask(request, lambda allocator: allocator.behind())
    return reply({"status": "ok", "types": len(types), "role": "standby", "behind": behind})


async def audit_head(request: web.Request) -> web.Response:
    """The tree head the Notary signed last (the admin; docs/audit.md)."""
    admin_only(request)
    notary = request.app[SYSTEM].notary
    head = None if notary is None else await ask_async(notary, lambda notary: notary.latest())
    if head is None:
        raise NotFound("this service signs no tree heads (it runs with --head-interval 0)" if notary is None
                       else "no tree head yet: the store could not be read (see the service's log)")
    return reply(head.as_json())


async def metrics(request: web.Request) -> web.Response:
    """Prometheus' text format (the admin; a scrape config gives its credentials)."""
    admin_only(request)
    text = await ask(request, lambda allocator: allocator.metrics_text())
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.SPEC)


async def register(request: web.Request) -> web.Response:
    body = await json_object(request)
    username = body.get("username")
    passwords = request.app[PASSWORDS]
    # A weak password is refused with zxcvbn's advice (pex/http/passwords.py); never quoted.
    password = await passwords.judge_new(body.get("password"), (username, body.get("fullname"), body.get("email")),
                                         request.remote)
    # Refuse a taken name before paying for a hash; the store refuses a race at the end.
    if isinstance(username, str):
        await ask(request, lambda allocator: allocator.app.catalogue.check_username_free(username))
    password_hash = await passwords.hash(password, request.remote)
    fullname, email = body.get("fullname", ""), body.get("email", "")
    account = await ask(request, lambda allocator: allocator.app.catalogue.register_account(
        username, password_hash, fullname, email), alone=True)
    return reply(presenters.account(account), status=201, headers={"Location": f"{BASE}/users/{account.username}"})


# ---------------------------------------------------------------------- accounts

async def accounts(request: web.Request) -> web.Response:
    """Every account with its quota, what it holds and its refusals over quota (admin)."""
    admin_only(request)
    return reply([presenters.account_usage(usage) for usage in await ask(request, lambda a: a.accounts())])


async def account(request: web.Request) -> web.Response:
    """One account: one's own, or any for the admin (someone else's is not found)."""
    user = principal(request)
    name = request.match_info["name"]
    if not user.is_admin:
        if name.casefold() != user.username.casefold():
            raise NotFound(f"no account {name[:64]!r}")
        name = user.username  # one's own, even where an older store holds a look-alike
    return reply(presenters.account_usage(await ask(request, lambda a: a.account_usage(name))))


async def set_quota(request: web.Request) -> web.Response:
    admin_only(request)
    limits = quota_in(await json_object(request))
    name = request.match_info["name"]
    return reply(presenters.account_usage(await ask(request, lambda a: a.set_quota(name, limits))))


# ---------------------------------------------------------------------- catalogue

async def types(request: web.Request) -> web.Response:
    kinds = await ask(request, lambda allocator: allocator.app.catalogue.types())
    return reply([presenters.instance_type(kind) for kind in kinds])


async def templates(request: web.Request) -> web.Response:
    found = await ask(request, lambda allocator: allocator.app.catalogue.templates())
    return reply([presenters.template(template) for template in found])


async def add_template(request: web.Request) -> web.Response:
    admin_only(request)
    body = await json_object(request)
    spec = {key: value for key, value in body.items() if key not in ("name", "description")}
    name, description = body.get("name"), body.get("description", "")
    added = await ask_manager(request, lambda manager: manager.add_template(name, description, spec))
    return reply(presenters.template(added), status=201)


# ---------------------------------------------------------------------- reservations

async def propose(request: web.Request) -> web.Response:
    body = await json_object(request)
    proposal = proposal_in(body.get("proposal", body))  # the bare Fig. 7 body, or wrapped as in a reply
    username = principal(request).username
    answer = await ask(request, lambda allocator: allocator.propose(username, proposal))
    location = f"{BASE}/reservations/{answer.reservation_id}"
    return reply(presenters.answer(answer), status=201, headers={"Location": location})


async def respond(request: web.Request) -> web.Response:
    body = await json_object(request)
    message = body.get("reply")
    if message not in USER_REPLIES:  # the body is judged before the id is looked up
        raise InvalidField("reply", f"is required: one of {', '.join(USER_REPLIES)}")
    given = body.get("proposal")
    # (checked whatever the reply: one that is not a COUNTER may echo terms)
    proposal = proposal_in(given) if given is not None else None
    rid, (username, is_admin) = path_id(request, "id", "reservation"), caller(request)
    answer = await ask(request, lambda allocator: allocator.respond(rid, username, message, proposal, is_admin=is_admin))
    return reply(presenters.answer(answer))


async def reservations(request: web.Request) -> web.Response:
    """A page of the caller's reservations, and a Link to the next."""
    return await listed(request, Status, lambda read, username, is_admin, listing: read.reservations(
        username, is_admin=is_admin, listing=listing), lambda found: presenters.reservation(found, detail=False), "id")


async def reservation(request: web.Request) -> web.Response:
    rid, (username, is_admin) = path_id(request, "id", "reservation"), caller(request)
    found = await ask(request, lambda allocator: allocator.app.read.reservation(rid, username, is_admin=is_admin))
    return reply(presenters.reservation(found))


async def cancel(request: web.Request) -> web.Response:
    rid, (username, is_admin) = path_id(request, "id", "reservation"), caller(request)
    cancelled = await ask_manager(request, lambda manager: manager.cancel(rid, username, is_admin=is_admin))
    return reply(presenters.reservation(cancelled))


async def activate(request: web.Request) -> web.Response:
    rid, (username, is_admin) = path_id(request, "id", "reservation"), caller(request)
    activated = await ask(request, lambda allocator: allocator.app.lifecycle.activate(rid, username, is_admin=is_admin))
    return reply(presenters.reservation(activated))


async def reservation_history(request: web.Request) -> web.Response:
    """A page of everything recorded of a reservation and its instances (its owner's, or any
    for the admin; someone else's is not found), and a Link to the next."""
    rid, (username, is_admin) = path_id(request, "id", "reservation"), caller(request)
    listing = events_in(request.query, reservation=UUID(rid))
    page = await ask(request, lambda allocator: allocator.app.read.history(listing, username, is_admin=is_admin))
    return reply(presenters.history(UUID(rid), page), headers=next_events(request, page))


# ---------------------------------------------------------------------- instances

async def instances(request: web.Request) -> web.Response:
    """A page of the caller's instances, and a Link to the next."""
    return await listed(request, InstanceStatus, lambda read, username, is_admin, listing: read.instances(
        username, is_admin=is_admin, listing=listing), presenters.instance, "vmID")


async def instance(request: web.Request) -> web.Response:
    vm_id, (username, is_admin) = path_id(request, "vm_id", "instance"), caller(request)
    found = await ask(request, lambda allocator: allocator.app.read.instance(vm_id, username, is_admin=is_admin))
    return reply(presenters.instance(found))


async def operate(request: web.Request) -> web.Response:
    return await _operate(request, Operation(request.match_info["operation"]))


async def delete_instance(request: web.Request) -> web.Response:
    return await _operate(request, Operation.DELETE)


async def _operate(request: web.Request, operation: Operation) -> web.Response:
    vm_id, (username, is_admin) = path_id(request, "vm_id", "instance"), caller(request)
    done = await ask_manager_later(request, lambda manager: manager.operate(vm_id, username, operation,
                                                                            is_admin=is_admin))
    return reply(presenters.instance(done))


# ---------------------------------------------------------------------- capacity

MOST_CAPACITY_STEPS = 20_000  # steps one answer may hold, the cluster's and the nodes' together


async def capacity(request: web.Request) -> web.Response:
    """The cluster's capacity over a period, per step; the admin may also ask for nodes' own
    (`node=NAME`, repeated or comma-separated, or `node=*` for every node)."""
    start, end, step = period_in(request.query)
    named = [name for given in request.query.getall("node", []) for name in given.split(",")]
    if named and not principal(request).is_admin:
        raise Forbidden("only the administrator sees single nodes")
    nodes = named
    if "*" in named:
        nodes = [found.name for found in await ask(request, lambda allocator: allocator.app.catalogue.nodes())]
    report = await ask(request, lambda allocator: allocator.capacity(start, end, step, nodes=nodes,
                                                                     most=MOST_CAPACITY_STEPS))
    return reply(presenters.capacity_report(report))


# ---------------------------------------------------------------------- prices and statements

async def prices(request: web.Request) -> web.Response:
    """The rate card and the pricing policy (everyone)."""
    return reply(presenters.prices(await ask(request, lambda allocator: allocator.app.catalogue.prices())))


async def set_prices(request: web.Request) -> web.Response:
    """The admin changes rates (recorded as an event); agreed prices never change."""
    admin_only(request)
    rates, currency = prices_in(await json_object(request))
    return reply(presenters.prices(await ask(request, lambda allocator: allocator.app.catalogue.set_prices(rates, currency))))


async def usage(request: web.Request) -> web.Response:
    """The caller's statement of a period (`from`, `to`); the admin's has every user's and their total."""
    username, is_admin = caller(request)
    start, end = usage_period_in(request.query)
    found = await ask(request, lambda allocator: allocator.usage(username, start, end, is_admin=is_admin))
    return reply(presenters.statements(found) if is_admin else presenters.statement(found.users[0]))


# ---------------------------------------------------------------------- nodes (admin)

async def nodes(request: web.Request) -> web.Response:
    admin_only(request)
    return reply([presenters.node(found) for found in await ask(request, lambda allocator: allocator.nodes())])


async def node(request: web.Request) -> web.Response:
    admin_only(request)
    name = request.match_info["name"]
    return reply(presenters.node(await ask(request, lambda allocator: allocator.node(name))))


async def add_node(request: web.Request) -> web.Response:
    admin_only(request)
    body = await json_object(request)
    size = node_size_in(body)  # (checked before anything connects)
    name, uri = body.get("name"), body.get("uri")
    added = await ask_manager(request, lambda manager: manager.add_node(name, uri, size))
    return reply(presenters.node(added), status=201, headers={"Location": f"{BASE}/nodes/{added.name}"})


async def drain(request: web.Request) -> web.Response:
    return await _mark(request, "DRAINED")


async def undrain(request: web.Request) -> web.Response:
    return await _mark(request, "UNDRAINED")


async def _mark(request: web.Request, change: NodeChange) -> web.Response:
    admin_only(request)
    name = request.match_info["name"]
    return reply(presenters.node(await ask(request, lambda allocator: allocator.app.catalogue.mark_node(name, change))))


# ---------------------------------------------------------------------- the log (admin)

async def log_events(request: web.Request) -> web.Response:
    """A page of the event log, as the query string filters it, and a Link to the next."""
    admin_only(request)
    listing = events_in(request.query)
    page = await ask(request, lambda allocator: allocator.app.read.events(listing))
    return reply(presenters.events(page), headers=next_events(request, page))


def next_events(request: web.Request, page: EventPage) -> dict[str, str]:
    """A Link to the page after this one (RFC 8288), if there may be one."""
    if page.following is None:
        return {}
    return {"Link": f'<{request.rel_url.update_query(after=page.following)}>; rel="next"'}
