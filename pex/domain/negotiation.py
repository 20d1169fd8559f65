"""The alternate-offers negotiation protocol (DESIGN §2) as a pure state machine.

A reservation is in one `Status`; while OpenPEX has an offer open (the first negotiation, or a
renegotiation of an agreed reservation) the offer is in one `OfferState`. `next_action` says
what a `Message` does in that state, or raises ProtocolViolation (HTTP 409). Nothing here
looks at capacity: the action NEGOTIATE means "run admission and answer".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from pex.domain.clock import Millis, to_datetime
from pex.domain.errors import InvalidField, ProtocolViolation
from pex.domain.pricing import amount_in
from pex.domain.sizes import InstanceType


class Status(StrEnum):
    INITIATED = "INITIATED"
    ACCEPTED = "ACCEPTED"
    COUNTERED = "COUNTERED"
    CONFIRMED = "CONFIRMED"
    ACTIVATED = "ACTIVATED"
    DEGRADED = "DEGRADED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"  # OpenPEX refused the proposal (see the reason)
    WITHDRAWN = "WITHDRAWN"  # the user rejected or cancelled an open offer
    CANCELLED = "CANCELLED"
    OFFER_EXPIRED = "OFFER_EXPIRED"


# Statuses in which the terms are agreed and the capacity is booked.
AGREED = frozenset({Status.CONFIRMED, Status.ACTIVATED, Status.DEGRADED})
# Statuses nothing can leave.
CLOSED = frozenset({Status.EXPIRED, Status.REJECTED, Status.WITHDRAWN, Status.CANCELLED, Status.OFFER_EXPIRED})


class OfferState(StrEnum):
    """An open offer: OpenPEX accepted the terms (await CONFIRM) or countered them."""

    ACCEPTED = "ACCEPTED"
    COUNTERED = "COUNTERED"


class Reply(StrEnum):
    """What OpenPEX answers (the paper's `reply`)."""

    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    COUNTER = "COUNTER"
    CONFIRM_REQUEST = "CONFIRM_REQUEST"
    REQUEST_SUCCESS = "REQUEST_SUCCESS"


class Message(StrEnum):
    """What arrives at a reservation: the user's protocol replies, lifecycle commands, timers."""

    PROPOSE = "PROPOSE"  # a new proposal (POST)
    ACCEPT = "ACCEPT"  # accept a counter offer
    COUNTER = "COUNTER"  # counter a counter, or renegotiate agreed terms
    CONFIRM = "CONFIRM"
    REJECT = "REJECT"  # withdraw an open offer
    ACTIVATE = "ACTIVATE"
    CANCEL = "CANCEL"  # DELETE of the reservation
    LAPSE = "LAPSE"  # the offer's hold time has passed (timer)
    EXPIRE = "EXPIRE"  # the reservation's end has passed (timer)


class Action(StrEnum):
    NEGOTIATE = "NEGOTIATE"  # run admission on (new) terms; answer ACCEPT / COUNTER / REJECT
    ACCEPT_COUNTER = "ACCEPT_COUNTER"  # answer CONFIRM_REQUEST
    CONFIRM = "CONFIRM"  # the offer's terms become the agreed terms
    WITHDRAW = "WITHDRAW"  # the user rejects the open offer
    LAPSE = "LAPSE"  # the open offer's hold ran out
    ACTIVATE = "ACTIVATE"
    CANCEL = "CANCEL"
    EXPIRE = "EXPIRE"


_OPEN_ACCEPTED = {
    Message.CONFIRM: Action.CONFIRM,
    Message.REJECT: Action.WITHDRAW,
    Message.LAPSE: Action.LAPSE,
}
_OPEN_COUNTERED = {
    Message.ACCEPT: Action.ACCEPT_COUNTER,
    Message.COUNTER: Action.NEGOTIATE,
    Message.REJECT: Action.WITHDRAW,
    Message.LAPSE: Action.LAPSE,
}
_AGREED = {Message.COUNTER: Action.NEGOTIATE, Message.CANCEL: Action.CANCEL, Message.EXPIRE: Action.EXPIRE}
_AGREED_ACCEPTED = {**_OPEN_ACCEPTED, Message.CANCEL: Action.CANCEL, Message.EXPIRE: Action.EXPIRE}
_AGREED_COUNTERED = {**_OPEN_COUNTERED, Message.CANCEL: Action.CANCEL, Message.EXPIRE: Action.EXPIRE}
_ACTIVATE = {Message.ACTIVATE: Action.ACTIVATE}

# (status, open offer) -> message -> action. A pair or message missing here is a 409.
TRANSITIONS: dict[tuple[Status, OfferState | None], dict[Message, Action]] = {
    (Status.INITIATED, None): {Message.PROPOSE: Action.NEGOTIATE},
    (Status.ACCEPTED, OfferState.ACCEPTED): {**_OPEN_ACCEPTED, Message.CANCEL: Action.WITHDRAW},
    (Status.COUNTERED, OfferState.COUNTERED): {**_OPEN_COUNTERED, Message.CANCEL: Action.WITHDRAW},
    (Status.CONFIRMED, None): {**_AGREED, **_ACTIVATE},
    (Status.CONFIRMED, OfferState.ACCEPTED): {**_AGREED_ACCEPTED, **_ACTIVATE},
    (Status.CONFIRMED, OfferState.COUNTERED): {**_AGREED_COUNTERED, **_ACTIVATE},
    (Status.ACTIVATED, None): _AGREED,
    (Status.ACTIVATED, OfferState.ACCEPTED): _AGREED_ACCEPTED,
    (Status.ACTIVATED, OfferState.COUNTERED): _AGREED_COUNTERED,
    # Degraded (a node was lost): may still be activated if it was not yet (the aggregate checks).
    (Status.DEGRADED, None): {**_AGREED, **_ACTIVATE},
    (Status.DEGRADED, OfferState.ACCEPTED): {**_AGREED_ACCEPTED, **_ACTIVATE},
    (Status.DEGRADED, OfferState.COUNTERED): {**_AGREED_COUNTERED, **_ACTIVATE},
}


def next_action(status: Status, offer: OfferState | None, message: Message) -> Action:
    """The action `message` triggers in this state; ProtocolViolation if it is not allowed."""
    allowed = TRANSITIONS.get((status, offer), {})
    try:
        return allowed[message]
    except KeyError:
        raise ProtocolViolation(_explain(status, offer, message, allowed)) from None


def _explain(
    status: Status, offer: OfferState | None, message: Message, allowed: Mapping[Message, Action]
) -> str:
    state = status.value
    if offer is not None and status in AGREED:
        state += f" with a pending change {offer.value}"
    if status is Status.OFFER_EXPIRED:
        return f"{message.value} is not allowed: the offer expired; send a new proposal"
    if status is Status.COUNTERED and message is Message.CONFIRM:
        return "a COUNTER offer must be ACCEPTed before it can be CONFIRMed"
    if not allowed:
        return f"{message.value} is not allowed: the reservation is {state}"
    expected = ", ".join(m.value for m in allowed if m not in (Message.LAPSE, Message.EXPIRE))
    return f"{message.value} is not allowed while the reservation is {state}; expected one of {expected}"


# The status an open offer shows while it is the reservation's first negotiation.
OFFER_STATUS = {OfferState.ACCEPTED: Status.ACCEPTED, OfferState.COUNTERED: Status.COUNTERED}


@dataclass(frozen=True, slots=True)
class Terms:
    """What a proposal asks for and an offer grants (paper, Fig. 7)."""

    instance_type: str
    template: str
    fixed: int
    optional: int
    start: Millis
    duration: Millis
    max_price: Decimal | None = None  # the most the user will pay for the whole reservation

    @property
    def end(self) -> Millis:
        return self.start + self.duration

    @property
    def count(self) -> int:
        return self.fixed + self.optional

    def with_start(self, start: Millis) -> Terms:
        return replace(self, start=start)

    def to_dict(self) -> dict[str, Any]:
        stored = {
            "instance_type": self.instance_type,
            "template": self.template,
            "fixed": self.fixed,
            "optional": self.optional,
            "start": self.start,
            "duration": self.duration,
        }
        if self.max_price is not None:
            stored["max_price"] = str(self.max_price)  # (exact: events hold amounts as strings)
        return stored

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Terms:
        ceiling = data.get("max_price")
        if ceiling is None:
            return cls(**data)
        return cls(**{**data, "max_price": Decimal(ceiling)})


# Bounds that keep every stored number inside what msgpack, datetime and RFC 1123 can carry.
LATEST_INSTANT: Millis = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
LARGEST_COUNT = 1_000_000
LONGEST: Millis = 100 * 365 * 86_400_000  # a duration longer than this is not a reservation
LATEST_START: Millis = LATEST_INSTANT - LONGEST  # so that every end can still be written as a date


@dataclass(frozen=True, slots=True)
class TermsChange:
    """The terms a proposal gives, each valid on its own (None: not given). A new proposal
    gives them all (the optional count may be left out); a renegotiation gives what changes.
    An end may stand for the duration; given both, the duration counts."""

    instance_type: str | None = None
    template: str | None = None
    fixed: int | None = None
    optional: int | None = None
    start: Millis | None = None
    duration: Millis | None = None
    end: Millis | None = None
    max_price: Any = None  # as the client sent it: a decimal string or a number

    def __post_init__(self) -> None:
        if self.instance_type is not None and InstanceType.named(self.instance_type) is None:
            raise InvalidField("instance_type", f"must be one of {', '.join(InstanceType.__members__)}")
        if self.template is not None:
            if not isinstance(self.template, str) or not self.template.strip():
                raise InvalidField("template", "must be a non-empty string")
            check_text("template", self.template)
        _check_integer("fixed", self.fixed, 1, LARGEST_COUNT)
        _check_integer("optional", self.optional, 0, LARGEST_COUNT)
        _check_integer("duration", self.duration, 1, LONGEST)
        _check_instant("start", self.start, LATEST_START)
        _check_instant("end", self.end, LATEST_INSTANT)
        if self.max_price is not None:
            object.__setattr__(self, "max_price", amount_in(self.max_price, "max_price"))

    def applied_to(self, base: Terms | None) -> Terms:
        """The terms this change makes of `base` (None: a new proposal), or InvalidField naming
        what is missing or does not fit."""
        start = _given_or(self.start, base.start if base else None, "start")
        duration = self.duration
        if duration is None and self.end is not None:
            duration = self.end - start
            if duration <= 0:
                raise InvalidField("end", "must be after the start")
        return Terms(
            _given_or(self.instance_type, base.instance_type if base else None, "instance_type"),
            _given_or(self.template, base.template if base else None, "template"),
            _given_or(self.fixed, base.fixed if base else None, "fixed"),
            _given_or(self.optional, base.optional if base else 0, "optional"),
            start,
            _given_or(duration, base.duration if base else None, "duration"),
            self.max_price if self.max_price is not None else base.max_price if base else None,
        )

    @classmethod
    def of(cls, terms: Terms) -> TermsChange:
        """A change that gives every one of `terms` (a proposal of exactly them)."""
        return cls(terms.instance_type, terms.template, terms.fixed, terms.optional, terms.start, terms.duration,
                   max_price=terms.max_price)


G = TypeVar("G")


def _given_or(given: G | None, base: G | None, field: str) -> G:
    if given is not None:
        return given
    if base is None:
        raise InvalidField(field, "is required")
    return base


def _check_integer(field: str, value: int | None, least: int, most: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(field, "must be an integer")
    if not least <= value <= most:
        raise InvalidField(field, f"must be at least {least}" if value < least else f"must be at most {most}")


def _check_instant(field: str, value: Millis | None, latest: Millis) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(field, "must be a time")
    if not 0 <= value <= latest:
        raise InvalidField(field, f"must be between 1970 and {to_year(latest)}")


def check_text(field: str, value: str, *, longest: int = 256) -> None:
    """A string that can be stored and shown: bounded, and valid Unicode (no lone surrogates)."""
    if len(value) > longest:
        raise InvalidField(field, f"must be at most {longest} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidField(field, "must be valid Unicode text") from None


@dataclass(frozen=True, slots=True)
class Limits:
    """Rules on terms that make OpenPEX answer REJECT (with a reason) rather than negotiate."""

    max_advance: Millis  # how far ahead a reservation may start
    max_duration: Millis


class Beyond(StrEnum):
    """A limit of the service that a term is beyond."""

    PAST = "PAST"  # a start before now
    ADVANCE = "ADVANCE"  # a start further ahead than `max_advance`
    DURATION = "DURATION"  # longer than `max_duration`


def beyond_limits(limits: Limits, *, now: Millis, start: Millis | None = None, duration: Millis | None = None,
                  running: bool = False) -> list[Beyond]:
    """The limits the given start and duration are beyond (those not given are not judged),
    in the order a refusal names them. For a `running` reservation (renegotiated after its
    start) the start is rightly in the past."""
    found = []
    if start is not None:
        if start < now and not running:
            found.append(Beyond.PAST)
        elif start - now > limits.max_advance:
            found.append(Beyond.ADVANCE)
    if duration is not None and duration > limits.max_duration:
        found.append(Beyond.DURATION)
    return found


def rejection_reason(
    terms: Terms, *, now: Millis, templates: Collection[str], limits: Limits, running: bool = False
) -> str | None:
    """Why these terms can never be accepted, or None if admission should decide."""
    if terms.template not in templates:
        return f"unknown template {terms.template!r}"
    if running and terms.end <= now:  # (the hours used are used: an end can only be ahead)
        return "endTime is in the past: a running reservation can end no earlier than now"
    beyond = beyond_limits(limits, now=now, start=terms.start, duration=terms.duration, running=running)
    if not beyond:
        return None
    return {Beyond.PAST: "startTime is in the past",
            Beyond.ADVANCE: f"startTime is more than {limits.max_advance // 86_400_000} days ahead",
            Beyond.DURATION: f"duration is longer than {limits.max_duration // 86_400_000} days"}[beyond[0]]


def to_year(instant: Millis) -> int:
    return to_datetime(instant).year
