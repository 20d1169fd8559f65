"""The paper's JSON (Figs. 7-9, Table 2) made from the domain's read models: camelCase names,
RFC 1123 times, statuses as their names. The only place the wire shapes of answers are made;
the OpenAPI document (pex/http/openapi.py) describes exactly these."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from pex.domain.clock import HOUR, SECOND
from pex.domain.errors import DomainError, InvalidField
from pex.domain.negotiation import Reply, Terms
from pex.domain.read_models import (
    AccountUsage,
    AccountView,
    Answer,
    CapacityReport,
    CapacityStep,
    InstanceView,
    NodeView,
    ReservationView,
    TemplateView,
)
from pex.domain.quotas import Quota, QuotaExceeded
from pex.domain.sizes import InstanceType, Resources
from pex.drivers.base import NodeInfo
from pex.http.auth import TooManyAttempts
from pex.http.wire import WIRE_NAMES, format_time

Body = dict[str, Any]



def proposal(terms: Terms) -> Body:
    """Terms in the paper's names (Fig. 7)."""
    return {"duration": terms.duration, "numInstancesFixed": terms.fixed, "numInstancesOption": terms.optional,
            "startTime": format_time(terms.start), "template": terms.template, "type": terms.instance_type}


def answer(found: Answer) -> Body:
    """A reply to a proposal or to a message about an offer (Figs. 8, 9)."""
    body: Body = {"reply": found.reply.value,
                  "proposal": {**proposal(found.terms), "id": str(found.reservation_id), "userid": found.userid}}
    if found.reply is Reply.REJECT:
        body["reason"] = found.reason
    if found.hold_until is not None:
        body["holdUntil"] = format_time(found.hold_until)
        if found.alternatives:
            body["alternatives"] = [proposal(terms) for terms in found.alternatives]
    return body


def reservation(found: ReservationView) -> Body:
    terms = found.terms
    body: Body = {
        "id": str(found.id),
        "userid": found.userid,
        "status": found.status.value,
        "template": terms.template,
        "type": terms.instance_type,
        "numInstancesFixed": terms.fixed,
        "numInstancesOption": terms.optional,
        "startTime": format_time(terms.start),
        "endTime": format_time(terms.end),
        "duration": terms.duration,
        "instances": [str(i) for i in found.instances],
    }
    if found.reason:
        body["reason"] = found.reason
    if found.offer:
        body["offer"] = {"state": found.offer.state.value, "holdUntil": format_time(found.offer.hold_until),
                         "proposal": proposal(found.offer.terms)}
    return body


def instance(found: InstanceView) -> Body:
    body: Body = {"vmID": str(found.id), "name": found.name, "status": found.status.value,
                  "reservationId": str(found.reservation_id), "node": found.node,
                  "startTime": format_time(found.start), "endTime": format_time(found.end), "ipAddress": None}
    if found.reason:
        body["reason"] = found.reason
    return body


def node(found: NodeView) -> Body:
    body: Body = {"name": found.name, "uri": found.uri, "status": found.status.value, **resources(found.capacity)}
    if isinstance(found.load, NodeInfo):
        body["load"] = host_load(found.load)
    return body


def host_load(load: NodeInfo) -> Body:
    return {"cpus": load.cpus, "memoryMB": load.memory_mb, "model": load.model, "runningVMs": load.running,
            "usedCpus": load.used_cpus, "usedMemoryMB": load.used_memory_mb, "freeMemoryMB": load.free_memory_mb,
            "cpuBusy": load.cpu_busy}


def resources(amount: Resources) -> Body:
    return {"cpus": amount.cpus, "memoryMB": amount.memory_mb, "diskGB": amount.disk_gb}


def instance_type(kind: InstanceType) -> Body:
    return {"type": kind.name, **resources(kind.resources)}


def template(found: TemplateView) -> Body:
    return {"name": found.name, "description": found.description, **found.spec}


def account(found: AccountView) -> Body:
    return {"username": found.username, "fullname": found.fullname, "email": found.email, "isAdmin": found.is_admin}


def quota(limits: Quota) -> Body:
    return {WIRE_NAMES[f.name]: getattr(limits, f.name) for f in fields(limits)}


def account_usage(found: AccountUsage) -> Body:
    return {**account(found.account), "quota": quota(found.quota),
            "usage": {"openOffers": found.open_offers,
                      "heldInstanceHours": round(found.held_instance_ms / HOUR, 3),
                      "proposalsAvailable": found.proposals_available},
            "refusedOverQuota": found.refused_over_quota}


def capacity_step(step: CapacityStep) -> Body:
    return {"from": format_time(step.start), "to": format_time(step.end),
            "free": resources(step.free), "used": resources(step.used)}


def capacity_report(report: CapacityReport) -> Body:
    """The cluster's capacity over time (and each node's, where asked): per step the least
    free and the most used at any instant in it."""
    body: Body = {"from": format_time(report.start), "to": format_time(report.end), "step": report.step,
                  "cluster": {"size": resources(report.size), "steps": [capacity_step(s) for s in report.steps]}}
    if report.nodes:
        body["nodes"] = {name: {"size": resources(size), "steps": [capacity_step(s) for s in steps]}
                         for name, (size, steps) in report.nodes.items()}
    return body


def error(refused: DomainError) -> tuple[Body, int | None]:
    """The error body (`error`, `message`, and `field` or `retryAfter` where they apply) and
    the seconds to send as Retry-After, if waiting helps."""
    body: Body = {"error": refused.code, "message": refused.message}
    if isinstance(refused, InvalidField):
        field = refused.field if refused.as_given else WIRE_NAMES.get(refused.field, refused.field)
        body.update(field=field, message=f"{field}: {refused.reason}")
    retry_after = None
    if isinstance(refused, QuotaExceeded) and refused.retry_after is not None:
        retry_after = math.ceil(refused.retry_after / SECOND)
    elif isinstance(refused, TooManyAttempts):
        retry_after = refused.retry_after
    if retry_after is not None:
        body["retryAfter"] = retry_after
    return body, retry_after
