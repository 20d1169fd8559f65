"""REST handlers for /OpenPEX (DESIGN §8, the paper's Table 2): JSON in, a call on the
ReservationManager, JSON out in the paper's names."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from pex.domain.errors import DomainError, InvalidField, NotFound
from pex.domain.negotiation import check_proposal
from pex.domain.orders import Operation
from pex.http import openapi, presenters
from pex.http.typedefs import BASE, PASSWORDS, call, principal
from pex.http.wire import (
    NODE_SIZES,
    UUID_PATTERN,
    parse_json,
    proposal_in,
)

_UUID = re.compile(UUID_PATTERN)
USER_REPLIES = ("ACCEPT", "COUNTER", "CONFIRM", "REJECT")


class Forbidden(DomainError):
    status = 403
    code = "FORBIDDEN"


def add_routes(app: web.Application) -> None:
    app.router.add_routes([
        web.get(f"{BASE}/health", health),
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
        web.get(f"{BASE}/instances", instances),
        web.get(f"{BASE}/instances/{{vm_id}}", instance),
        web.put(f"{BASE}/instances/{{vm_id}}/{{operation:stop|start|reboot}}", operate),
        web.delete(f"{BASE}/instances/{{vm_id}}", delete_instance),
        web.get(f"{BASE}/nodes", nodes),
        web.post(f"{BASE}/nodes", add_node),
        web.get(f"{BASE}/nodes/{{name}}", node),
        web.put(f"{BASE}/nodes/{{name}}/drain", drain),
        web.put(f"{BASE}/nodes/{{name}}/undrain", undrain),
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


async def as_caller(request: web.Request, method: str, *ids: Any, then: tuple[Any, ...] = ()) -> Any:
    """Call `method` for whoever asks: every reservation and instance call takes the ids, the
    caller's username, anything `then`, and whether the caller is the admin (who sees all)."""
    user = principal(request)
    return await call(request, method, *ids, user.username, *then, is_admin=user.is_admin)


def admin_only(request: web.Request) -> None:
    if not principal(request).is_admin:
        raise Forbidden("only the administrator may do this")


# ---------------------------------------------------------------------- public

async def health(request: web.Request) -> web.Response:
    types = await call(request, "types")  # answers only if the actors do
    return reply({"status": "ok", "types": len(types)})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.SPEC)


async def register(request: web.Request) -> web.Response:
    body = await json_object(request)
    password, username = body.get("password"), body.get("username")
    passwords = request.app[PASSWORDS]
    # A weak password is refused with zxcvbn's advice (pex/http/passwords.py); never quoted.
    await passwords.judge_new(password, (username, body.get("fullname"), body.get("email")), request.remote)
    # Refuse a taken name before paying for a hash; the store refuses a race at the end.
    if isinstance(username, str):
        await call(request, "check_username_free", username)
    password_hash = await passwords.hash(password, request.remote)
    account = await call(request, "register_account", username, password_hash,
                         body.get("fullname", ""), body.get("email", ""))
    return reply(presenters.account(account), status=201, headers={"Location": f"{BASE}/users/{account.username}"})


# ---------------------------------------------------------------------- accounts

async def accounts(request: web.Request) -> web.Response:
    """Every account with its quota, what it holds and its refusals over quota (admin)."""
    admin_only(request)
    return reply([presenters.account_usage(usage) for usage in await call(request, "accounts")])


async def account(request: web.Request) -> web.Response:
    """One account: one's own, or any for the admin (someone else's is not found)."""
    user = principal(request)
    name = request.match_info["name"]
    if not user.is_admin:
        if name.casefold() != user.username.casefold():
            raise NotFound(f"no account {name[:64]!r}")
        name = user.username  # one's own, even where an older store holds a look-alike
    return reply(presenters.account_usage(await call(request, "account_usage", name)))


async def set_quota(request: web.Request) -> web.Response:
    admin_only(request)
    body = await json_object(request)
    return reply(presenters.account_usage(await call(request, "set_quota", request.match_info["name"], body)))


# ---------------------------------------------------------------------- catalogue

async def types(request: web.Request) -> web.Response:
    return reply([presenters.instance_type(kind) for kind in await call(request, "types")])


async def templates(request: web.Request) -> web.Response:
    return reply([presenters.template(template) for template in await call(request, "templates")])


async def add_template(request: web.Request) -> web.Response:
    admin_only(request)
    body = await json_object(request)
    spec = {key: value for key, value in body.items() if key not in ("name", "description")}
    added = await call(request, "add_template", body.get("name"), body.get("description", ""), spec)
    return reply(presenters.template(added), status=201)


# ---------------------------------------------------------------------- reservations

async def propose(request: web.Request) -> web.Response:
    body = await json_object(request)
    proposal = body.get("proposal", body)  # the bare Fig. 7 body, or wrapped as in a reply
    answer = await call(request, "propose", principal(request).username, proposal_in(proposal))
    location = f"{BASE}/reservations/{answer.reservation_id}"
    return reply(presenters.answer(answer), status=201, headers={"Location": location})


async def respond(request: web.Request) -> web.Response:
    body = await json_object(request)
    if body.get("reply") not in USER_REPLIES:  # the body is judged before the id is looked up
        raise InvalidField("reply", f"is required: one of {', '.join(USER_REPLIES)}")
    proposal = body.get("proposal")
    if proposal is not None:  # checked whatever the reply: one that is not a COUNTER may echo terms
        proposal = proposal_in(proposal)
        check_proposal(proposal)
    return reply(presenters.answer(await as_caller(request, "respond", path_id(request, "id", "reservation"),
                                                   then=(body["reply"], proposal))))


async def reservations(request: web.Request) -> web.Response:
    return reply([presenters.reservation(found) for found in await as_caller(request, "reservations")])


async def reservation(request: web.Request) -> web.Response:
    return reply(presenters.reservation(await as_caller(request, "reservation", path_id(request, "id", "reservation"))))


async def cancel(request: web.Request) -> web.Response:
    return reply(presenters.reservation(await as_caller(request, "cancel", path_id(request, "id", "reservation"))))


async def activate(request: web.Request) -> web.Response:
    return reply(presenters.reservation(await as_caller(request, "activate", path_id(request, "id", "reservation"))))


# ---------------------------------------------------------------------- instances

async def instances(request: web.Request) -> web.Response:
    return reply([presenters.instance(found) for found in await as_caller(request, "instances")])


async def instance(request: web.Request) -> web.Response:
    return reply(presenters.instance(await as_caller(request, "instance", path_id(request, "vm_id", "instance"))))


async def operate(request: web.Request) -> web.Response:
    operation = Operation(request.match_info["operation"])
    return reply(presenters.instance(
        await as_caller(request, "operate", path_id(request, "vm_id", "instance"), then=(operation.value,))))


async def delete_instance(request: web.Request) -> web.Response:
    return reply(presenters.instance(
        await as_caller(request, "operate", path_id(request, "vm_id", "instance"), then=(Operation.DELETE.value,))))


# ---------------------------------------------------------------------- nodes (admin)

async def nodes(request: web.Request) -> web.Response:
    admin_only(request)
    return reply([presenters.node(found) for found in await call(request, "nodes")])


async def node(request: web.Request) -> web.Response:
    admin_only(request)
    return reply(presenters.node(await call(request, "node", request.match_info["name"])))


async def add_node(request: web.Request) -> web.Response:
    admin_only(request)
    body = await json_object(request)
    size = {key: body[key] for key in NODE_SIZES if key in body}  # (checked before anything connects)
    added = await call(request, "add_node", body.get("name"), body.get("uri"), size)
    return reply(presenters.node(added), status=201, headers={"Location": f"{BASE}/nodes/{added.name}"})


async def drain(request: web.Request) -> web.Response:
    admin_only(request)
    return reply(presenters.node(await call(request, "drain", request.match_info["name"])))


async def undrain(request: web.Request) -> web.Response:
    admin_only(request)
    return reply(presenters.node(await call(request, "undrain", request.match_info["name"])))
