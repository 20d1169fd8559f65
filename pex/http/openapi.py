"""The OpenAPI 3.1 description of /OpenPEX, served at /OpenPEX/openapi.json without credentials.

Exact, so that generated clients and fuzzers can trust it (tests/e2e/test_schemathesis.py runs
schemathesis against `openpex serve` with every check): every field has its type, bounds and
pattern; a request field that the server reads with a rule of its own (times, names, sizes) has
the pattern built from that very rule; objects say whether they take other properties as the
server really does; every status an operation can answer is listed with its headers.

What JSON Schema cannot say is said in descriptions, and is all a 400 naming the field:
a password must not be easy to guess (zxcvbn, told the username, full name and e-mail); an
endTime given without a duration must be after the startTime; an amount sent as a JSON number
(maxPrice, a rate) has at most 2 (a rate 6) decimal places; a kernel template's files must
be files in the image directory; a test:// node URI must name an .xml file in the data
directory's hosts/ folder.
"""

from __future__ import annotations

from typing import Any

from pex.actors.reservation_manager import SERVICE_KEYS
from pex.domain.catalogue import NAME_PATTERN, RESERVED_USERNAMES, URI_PATTERN
from pex.domain.event_log import EVENT_KINDS, KIND_NAMES, KINDS, LAST_POSITION, SCANNED
from pex.domain.listing import LONGEST_PAGE
from pex.domain.statuses import InstanceStatus, NodeStatus
from pex.domain.negotiation import LARGEST_COUNT, LATEST_INSTANT, LATEST_START, LONGEST, Message, Reply, Status
from pex.domain.pricing import CURRENCY, LARGEST_AMOUNT, RATE_PLACES, amount_pattern
from pex.domain.quotas import LARGEST_LIMIT, Quota
from pex.domain.sizes import InstanceType
from pex.http import passwords, presenters
from pex.http.auth import REGISTRATIONS_PER_HOUR
from pex.http.protection import SECURITY_HEADERS
from pex.http.wire import (
    ISO8601_IN,
    LARGEST_SIZE,
    RFC1123_IN,
    RFC1123_OUT,
    UUID_PATTERN,
)

_SIZES = list(InstanceType.__members__)
_REPLIES_OUT = [reply.value for reply in Reply]
_REPLIES_IN = [message.value for message in (Message.ACCEPT, Message.COUNTER, Message.CONFIRM, Message.REJECT)]
_RESERVATION_STATUSES = [status.value for status in Status]
_INSTANCE_STATUSES = sorted(status.value for status in InstanceStatus)
_AGGREGATES = [kind for kind in KINDS if "." not in kind]
_EVENT_TYPES = sorted({kind.partition(".")[2] for kind in EVENT_KINDS})


def _anchored(regex: str) -> str:
    return f"^(?:{regex})$"


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


def _escape(character: str) -> str:
    return f"\\u{ord(character):04x}"


# Text that is not only whitespace, as Python's str.strip() sees whitespace (spelled out: `\s`
# means other characters to ECMA, Python and Rust regular expressions).
NOT_BLANK = "[^" + "".join(_escape(c) for c in map(chr, range(0x110000)) if c.isspace()) + "]"
NAME = _anchored(NAME_PATTERN.pattern)
RESERVED = _anchored("|".join(_any_case(name) for name in sorted(RESERVED_USERNAMES)))
UUID = _anchored(UUID_PATTERN)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


def _integer(minimum: int, maximum: int, description: str | None = None, *, nullable: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["integer", "null"] if nullable else "integer", "minimum": minimum,
                              "maximum": maximum}
    return {**schema, "description": description} if description else schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _time_in(field: str, latest: int) -> dict[str, Any]:
    return {"anyOf": [
        {"type": "string", "pattern": _anchored(RFC1123_IN[field]), "description": "RFC 1123 in GMT"},
        {"type": "string", "pattern": _anchored(ISO8601_IN[field]),
         "description": "ISO 8601 date and time, seconds, fraction and zone optional (no zone: GMT)"},
        {"type": "integer", "minimum": 0, "maximum": latest, "description": "epoch milliseconds"},
    ]}


_TIME_NOTE = ("RFC 1123 in GMT ('Mon, 17 Aug 2009 04:49:03 GMT'; the day name is not checked), ISO 8601 "
              "('2009-08-17T04:49:03Z': 'T', 't' or a space; seconds, up to 9 digits of fraction and the zone "
              "optional; 'Z', 'z' or ±hh:mm; no zone is GMT; no leap second) or epoch milliseconds; real dates "
              "only. On 1970-01-01 only a zone at or behind GMT, on the last day only one at or ahead of it.")
START_IN = {**_time_in("startTime", LATEST_START),
            "description": f"when the instances start, from 1970 to 24 Jan 9900 (epoch ms {LATEST_START}). {_TIME_NOTE}"}
END_IN = {**_time_in("endTime", LATEST_INSTANT),
          "description": "when the instances stop, from 1970 to 31 Dec 9999; stands for the duration when no "
                         f"duration is given, and must then be after startTime (else 400). {_TIME_NOTE}"}
TIME_OUT = {"anyOf": [{"type": "string", "pattern": _anchored(RFC1123_OUT)},
                      {"type": "integer", "description": "an instant no calendar can show"}],
            "description": "RFC 1123 in GMT"}
TYPE_IN = {"type": "string", "pattern": _anchored("|".join(_any_case(size) for size in _SIZES)),
           "description": f"the instance size: {', '.join(_SIZES)}, in any case (answered in upper case)"}
TEMPLATE_IN = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": NOT_BLANK,
               "description": "a template's name; an unknown one is answered REJECT"}
SPEC_VALUE = {"type": ["string", "integer", "boolean", "null"], "maxLength": 4096,
              "minimum": -(2**31 - 1), "maximum": 2**31 - 1}
_NODE_SIZE = _integer(1, LARGEST_SIZE)


def _amount_in(places: int, description: str) -> dict[str, Any]:
    """An amount a client sends (pricing.amount_in): a decimal string, or a JSON number."""
    return {"anyOf": [
        {"type": "string", "pattern": _anchored(amount_pattern(places)),
         "description": f"digits, more than 0 and less than a billion, no leading zero, at most {places} decimal places"},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": int(LARGEST_AMOUNT),
         "description": f"with at most {places} decimal places (else 400)"}],
        "description": description}


MAX_PRICE_IN = _amount_in(2, "the most you will pay for the whole reservation, in the rate card's currency: terms "
                             "that fit but cost more are answered COUNTER at their price, with the nearest window "
                             "costing at most this among the alternatives")
_MONEY_OUT = {"type": "string", "pattern": "^-?[0-9]+[.][0-9]{2}$", "description": "an exact amount (a decimal string)"}
_QUANTITY_OUT = {"type": "string", "pattern": "^[0-9]+([.][0-9]{1,6})?$",
                 "description": "a decimal string, exact to 6 places"}
_RATE_OUT = {"type": "string", "pattern": "^[0-9]+([.][0-9]+)?$", "description": "an exact decimal string"}


def _proposal_properties(*, nullable: bool) -> dict[str, Any]:
    def maybe(schema: dict[str, Any]) -> dict[str, Any]:
        return _nullable(schema) if nullable else schema

    return {
        "type": maybe(TYPE_IN),
        "template": maybe(TEMPLATE_IN),
        "numInstancesFixed": _integer(1, LARGEST_COUNT, "instances that must all be granted", nullable=nullable),
        "numInstancesOption": _integer(0, LARGEST_COUNT, "instances that may be left out (default 0)",
                                       nullable=True),
        "startTime": maybe(START_IN),
        "duration": _integer(1, LONGEST, "milliseconds; required unless endTime is given", nullable=True),
        "endTime": _nullable(END_IN),
        "maxPrice": _nullable(MAX_PRICE_IN),
    }


_PROPOSAL_NOTE = ("Null is the same as leaving a field out. Other properties are ignored (a proposal echoed from "
                  "an answer carries id and userid). Terms that can never be met (an unknown template, a start "
                  "in the past or too far ahead, too many instances, too long) are answered 201 REJECT with a "
                  "reason, not 400.")


def _terms_out(*extra: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "duration": {"type": "integer", "minimum": 1}, "numInstancesFixed": {"type": "integer", "minimum": 1},
        "numInstancesOption": {"type": "integer", "minimum": 0}, "startTime": TIME_OUT,
        "template": {"type": "string"}, "type": {"type": "string", "enum": _SIZES}}
    if "id" in extra:
        properties["id"] = {"type": "string", "format": "uuid", "pattern": UUID}
    if "userid" in extra:
        properties["userid"] = {"type": "string"}
    required = sorted(properties)
    properties["maxPrice"] = {"type": "string", "pattern": "^[0-9]+([.][0-9]{1,2})?$",
                              "description": "the most the user said they will pay, as they wrote it"}
    if "price" in extra:
        properties.update(_PRICED)
    return {"type": "object", "additionalProperties": False, "required": required, "properties": properties}


_PRICED = {
    "price": {**_MONEY_OUT, "description": "the price of the whole reservation (for a change of agreed terms: the "
                                           "new total)"},
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217"},
    "priceDetail": {"$ref": "#/components/schemas/PriceDetail"},
}


_QUOTA_NAMES = list(presenters.quota(Quota()))

SCHEMAS: dict[str, Any] = {
    "Proposal": {
        "type": "object", "description": f"Terms asked for (the paper's Fig. 7). {_PROPOSAL_NOTE}",
        "required": ["numInstancesFixed", "startTime", "template", "type"],
        "properties": _proposal_properties(nullable=False),
        "anyOf": [{"required": ["duration"], "properties": {"duration": {"type": "integer"}}},
                  {"required": ["endTime"], "properties": {"endTime": {"type": ["string", "integer"]}}}],
    },
    "ProposalChange": {
        "type": "object", "properties": _proposal_properties(nullable=True),
        "description": "Terms to change: those left out (or null) keep their current values; an endTime given "
                       "without a duration must be after the start (given or current). Other properties are "
                       "ignored.",
    },
    "NewReservation": {
        "description": "A proposal, bare or wrapped as in an answer ({\"proposal\": {...}}: then the other "
                       "properties are ignored).",
        "anyOf": [{"allOf": [_ref("Proposal")], "not": {"required": ["proposal"]}},
                  {"type": "object", "required": ["proposal"], "properties": {"proposal": _ref("Proposal")}}],
    },
    "Terms": _terms_out(),
    "PricedTerms": _terms_out("price"),
    "OfferedTerms": _terms_out("id", "userid"),
    "PriceDetail": {
        "type": "object", "additionalProperties": False, "required": ["instanceHours", "hours"],
        "description": "How a price is made up: the instance-hours priced, and each run of hours at one rate (the "
                       "card's rate per instance-hour times the policy's multiplier for how committed the cluster "
                       "is then). For a change of agreed terms only the change is priced: the hours added at "
                       "today's rates, and `credit`, the hours given up at the agreed price's average rate, taken "
                       "off `agreedPrice`.",
        "properties": {
            "instanceHours": _QUANTITY_OUT,
            "hours": {"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "required": ["from", "to", "instances", "instanceHours", "rate", "multiplier", "amount"],
                "properties": {"from": TIME_OUT, "to": TIME_OUT, "instances": {"type": "integer", "minimum": 1},
                               "instanceHours": _QUANTITY_OUT,
                               "rate": {**_RATE_OUT, "description": "per instance-hour"},
                               "multiplier": _RATE_OUT, "amount": {**_MONEY_OUT, "description": "rounded to cents"}}}},
            "agreedPrice": _MONEY_OUT, "credit": _MONEY_OUT}},
    "Reply": {
        "type": "object", "additionalProperties": False, "required": ["reply", "proposal"],
        "properties": {
            "reply": {"type": "string", "enum": _REPLIES_OUT},
            "proposal": {**_ref("OfferedTerms"), "description": "the terms offered (or refused), with the "
                                                                "reservation's id"},
            "reason": {"type": "string", "description": "why, with REJECT"},
            "holdUntil": {**TIME_OUT, "description": "the offer is held until then"},
            **_PRICED,
            "alternatives": {"type": "array", "items": _ref("PricedTerms"),
                             "description": "other offers OpenPEX would make, each at its price (extension); a "
                                            "COUNTER on price has first the nearest window within maxPrice"}}},
    "UserReply": {
        "type": "object", "required": ["reply"], "description": "Other properties are ignored.",
        "properties": {
            "reply": {"type": "string", "enum": _REPLIES_IN},
            "proposal": {"anyOf": [_ref("ProposalChange"), {"type": "null"}],
                         "description": "with COUNTER: the changed terms; with another reply it is checked "
                                        "but not used"}}},
    "Reservation": {
        "type": "object", "additionalProperties": False,
        "required": ["id", "userid", "status", "template", "type", "numInstancesFixed", "numInstancesOption",
                     "startTime", "endTime", "duration", "instances"],
        "properties": {
            "id": {"type": "string", "format": "uuid", "pattern": UUID}, "userid": {"type": "string"},
            "status": {"type": "string", "enum": _RESERVATION_STATUSES},
            "template": {"type": "string"}, "type": {"type": "string", "enum": _SIZES},
            "numInstancesFixed": {"type": "integer", "minimum": 1},
            "numInstancesOption": {"type": "integer", "minimum": 0},
            "startTime": TIME_OUT, "endTime": TIME_OUT, "duration": {"type": "integer", "minimum": 1},
            "instances": {"type": "array", "items": {"type": "string", "format": "uuid", "pattern": UUID},
                          "description": "the vmIDs of its instances (not deleted)"},
            "reason": {"type": "string"},
            **_PRICED,
            "offer": {"type": "object", "additionalProperties": False, "required": ["state", "holdUntil", "proposal"],
                      "description": "the offer open on it, if any, and its price",
                      "properties": {"state": {"type": "string", "enum": ["ACCEPTED", "COUNTERED"]},
                                     "holdUntil": TIME_OUT, "proposal": _ref("Terms"), **_PRICED}}}},
    "Prices": {
        "type": "object", "additionalProperties": False, "required": ["currency", "unit", "rates", "policy", "utilisation"],
        "properties": {
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}, "unit": {"const": "instance-hour"},
            "rates": {"type": "object", "additionalProperties": False, "required": _SIZES,
                      "properties": {size: _RATE_OUT for size in _SIZES}},
            "policy": {"type": "object", "required": ["policy"], "additionalProperties": {"type": "string"},
                       "description": "the pricing policy (demand or flat) and its numbers"},
            "utilisation": {"type": "string", "description": "what demand pricing measures"}}},
    "PriceChange": {
        "type": "object", "additionalProperties": False, "required": ["rates"],
        "description": "New rates per instance-hour for the sizes given (the others stay). Agreed prices never change.",
        "properties": {
            "rates": {"type": "object", "minProperties": 1, "additionalProperties": False,
                      "properties": {size: _amount_in(RATE_PLACES, f"per instance-hour of {size}") for size in _SIZES}},
            "currency": {"anyOf": [{"const": CURRENCY}, {"type": "null"}],
                         "description": "the card's currency, which does not change (null: not given)"}}},
    "Statement": {
        "type": "object", "additionalProperties": False,
        "required": ["userid", "from", "to", "currency", "reservations", "instanceHours", "charges", "refunds", "total"],
        "description": "A user's charges over [from, to): each reservation's hours booked in the period at its "
                       "agreed price (cancelled before its start: nothing; after: the hours up to then), less "
                       "refunds for instances lost with a node and placed nowhere else; hours still to come are "
                       "not charged yet",
        "properties": {
            "userid": {"type": "string"}, "from": TIME_OUT, "to": TIME_OUT, "currency": {"type": "string"},
            "reservations": {"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "required": ["id", "status", "price", "instanceHours", "charged", "refunded"],
                "properties": {"id": {"type": "string", "format": "uuid", "pattern": UUID},
                               "status": {"type": "string", "enum": _RESERVATION_STATUSES},
                               "price": {**_MONEY_OUT, "description": "agreed for the whole reservation"},
                               "instanceHours": _QUANTITY_OUT, "charged": _MONEY_OUT, "refunded": _MONEY_OUT}}},
            "instanceHours": _QUANTITY_OUT, "charges": _MONEY_OUT, "refunds": _MONEY_OUT, "total": _MONEY_OUT}},
    "Usage": {
        "anyOf": [_ref("Statement"), {
            "type": "object", "additionalProperties": False, "required": ["from", "to", "currency", "users", "total"],
            "description": "the admin's: every user's statement with a charge, and their total",
            "properties": {"from": TIME_OUT, "to": TIME_OUT, "currency": {"type": "string"},
                           "users": _list("Statement"), "total": _MONEY_OUT}}]},
    "Instance": {
        "type": "object", "additionalProperties": False,
        "required": ["vmID", "name", "status", "reservationId", "node", "startTime", "endTime", "ipAddress"],
        "properties": {
            "vmID": {"type": "string", "format": "uuid", "pattern": UUID}, "name": {"type": "string"},
            "status": {"type": "string", "enum": _INSTANCE_STATUSES},
            "reservationId": {"type": "string", "format": "uuid", "pattern": UUID},
            "node": {"type": "string", "description": "empty when its node was lost and no other had room"},
            "startTime": TIME_OUT, "endTime": TIME_OUT, "ipAddress": {"type": "null"},
            "reason": {"type": "string"}}},
    "Size": {"type": "object", "additionalProperties": False, "required": ["cpus", "memoryMB", "diskGB"],
             "properties": {"cpus": {"type": "integer"}, "memoryMB": {"type": "integer"}, "diskGB": {"type": "integer"}}},
    "CapacityStep": {
        "type": "object", "additionalProperties": False, "required": ["from", "to", "free", "used"],
        "description": "the least free and the most used at any instant of [from, to); offers' holds count",
        "properties": {"from": TIME_OUT, "to": TIME_OUT, "free": _ref("Size"), "used": _ref("Size")}},
    "CapacityOverTime": {
        "type": "object", "additionalProperties": False, "required": ["size", "steps"],
        "properties": {"size": _ref("Size"), "steps": _list("CapacityStep")}},
    "CapacityReport": {
        "type": "object", "additionalProperties": False, "required": ["from", "to", "step", "cluster"],
        "properties": {"from": TIME_OUT, "to": TIME_OUT, "step": {"type": "integer", "minimum": 60_000},
                       "cluster": _ref("CapacityOverTime"),
                       "nodes": {"type": "object", "additionalProperties": _ref("CapacityOverTime"),
                                 "description": "each node's (the admin only)"}}},
    "Node": {
        "type": "object", "additionalProperties": False,
        "required": ["name", "uri", "status", "cpus", "memoryMB", "diskGB"],
        "properties": {
            "name": {"type": "string"}, "uri": {"type": "string"},
            "status": {"type": "string", "enum": [status.value for status in NodeStatus]},
            "cpus": {"type": "integer"}, "memoryMB": {"type": "integer"}, "diskGB": {"type": "integer"},
            "load": {"type": "object", "additionalProperties": False,
                     "description": "the latest poll of the host (extension); null where the hypervisor does not say",
                     "properties": {"cpus": {"type": "integer"}, "memoryMB": {"type": "integer"},
                                    "model": {"type": "string"}, "runningVMs": {"type": "integer"},
                                    "usedCpus": {"type": "integer"}, "usedMemoryMB": {"type": "integer"},
                                    "freeMemoryMB": {"type": ["integer", "null"]},
                                    "cpuBusy": {"type": ["number", "null"]}}}}},
    "NewNode": {
        "type": "object", "required": ["name", "uri"], "description": "Other properties are ignored.",
        "properties": {
            "name": {"type": "string", "pattern": NAME},
            "uri": {"type": "string", "maxLength": 1024, "pattern": _anchored(URI_PATTERN.pattern),
                    "description": "a libvirt URI of the test or qemu driver; a test:// one must name an .xml file "
                                   "in the data directory's hosts/ folder (else 400), or be test:///default"},
            "cpus": _NODE_SIZE, "memoryMB": _NODE_SIZE, "diskGB": _NODE_SIZE}},
    "Type": {"type": "object", "additionalProperties": False, "required": ["type", "cpus", "memoryMB", "diskGB"],
             "properties": {"type": {"type": "string", "enum": _SIZES}, "cpus": {"type": "integer"},
                            "memoryMB": {"type": "integer"}, "diskGB": {"type": "integer"}}},
    "Template": {"type": "object", "required": ["name", "description"],
                 "properties": {"name": {"type": "string"}, "description": {"type": "string"}},
                 "additionalProperties": SPEC_VALUE},
    "NewTemplate": {
        "type": "object", "required": ["name"],
        "description": "A name, a description and any other properties as the template's spec (but "
                       f"{' and '.join(SERVICE_KEYS)}, which the service sets). kind 'kernel' boots the kernel (and "
                       "initrd, cmdline) it names, which must be files in the image directory (else 400); any other "
                       "kind is a stand-in VM.",
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": NOT_BLANK},
                       "description": {"type": "string", "maxLength": 1024}},
        "propertyNames": {"maxLength": 64, "not": {"enum": list(SERVICE_KEYS)}},
        "additionalProperties": SPEC_VALUE,
        "if": {"required": ["kind"], "properties": {"kind": {"const": "kernel"}}},
        "then": {"required": ["kernel"],
                 "properties": {"kernel": {"type": "string", "minLength": 1},
                                "initrd": {"type": ["string", "null"], "minLength": 1},
                                "cmdline": {"type": ["string", "null"], "minLength": 1}}}},
    "NewUser": {
        "type": "object", "required": ["username", "password"], "description": "Other properties are ignored.",
        "properties": {
            "username": {"type": "string", "pattern": NAME, "not": {"pattern": RESERVED},
                         "description": "not a reserved name (admin, root, ...); unique whatever its case (409)"},
            "password": {"type": "string", "minLength": passwords.SHORTEST, "maxLength": passwords.LONGEST,
                         "pattern": NOT_BLANK,
                         "description": "must not be easy to guess: zxcvbn (told the username, full name and e-mail) "
                                        f"must score it {passwords.ENOUGH} or more on its first {passwords.JUDGED} "
                                        "characters, else 400 with its advice"},
            "fullname": {"type": "string", "maxLength": 256},
            "email": {"anyOf": [{"type": "string", "maxLength": 0}, {"type": "string", "maxLength": 256, "pattern": "@"}],
                      "description": "empty, or an address with an '@'"}}},
    "User": {"type": "object", "additionalProperties": False, "required": ["username", "fullname", "email", "isAdmin"],
             "properties": {"username": {"type": "string"}, "fullname": {"type": "string"},
                            "email": {"type": "string"}, "isAdmin": {"type": "boolean"}}},
    "Quota": {"type": "object", "minProperties": 1, "additionalProperties": False,
              "description": "the limits to change; the others stay",
              "properties": {name: _integer(0, LARGEST_LIMIT) for name in _QUOTA_NAMES}},
    "Account": {"type": "object", "additionalProperties": False,
                "required": ["username", "fullname", "email", "isAdmin", "quota", "usage", "refusedOverQuota"],
                "properties": {
                    "username": {"type": "string"}, "fullname": {"type": "string"}, "email": {"type": "string"},
                    "isAdmin": {"type": "boolean"},
                    "quota": {"type": "object", "additionalProperties": False, "required": _QUOTA_NAMES,
                              "properties": {name: _integer(0, LARGEST_LIMIT) for name in _QUOTA_NAMES}},
                    "usage": {"type": "object", "additionalProperties": False,
                              "required": ["openOffers", "heldInstanceHours", "proposalsAvailable"],
                              "properties": {"openOffers": {"type": "integer", "minimum": 0},
                                             "heldInstanceHours": {"type": "number", "minimum": 0},
                                             "proposalsAvailable": {"type": "integer", "minimum": 0,
                                                                    "description": "proposals it may send now"}}},
                    "refusedOverQuota": {"type": "integer", "minimum": 0,
                                         "description": "requests refused over quota since the service started"}}},
    "TreeHead": {
        "type": "object", "additionalProperties": False,
        "required": ["treeSize", "timestamp", "time", "rootHash", "signature", "publicKey", "keyId"],
        "description": "A signed tree head over the event log (docs/audit.md): Ed25519 over RFC 6962's "
                       "TreeHeadSignature bytes (version 0, type 1, timestamp, treeSize, rootHash)",
        "properties": {
            "treeSize": {"type": "integer", "minimum": 0, "description": "events the tree covers"},
            "timestamp": {"type": "integer", "minimum": 0, "description": "when it was signed, ms since 1970"},
            "time": {"type": "string", "description": "the same, ISO 8601 in UTC"},
            "rootHash": {"type": "string", "contentEncoding": "base64", "description": "RFC 9162 root, SHA-256"},
            "signature": {"type": "string", "contentEncoding": "base64"},
            "publicKey": {"type": "string", "contentEncoding": "base64", "description": "raw Ed25519"},
            "keyId": {"type": "string", "pattern": "^[0-9a-f]{16}$",
                      "description": "the first 16 hex digits of SHA-256 of the public key"}}},
    "Health": {"type": "object", "additionalProperties": False, "required": ["status", "types", "role"],
               "properties": {"status": {"const": "ok"}, "types": {"type": "integer"},
                              "role": {"enum": ["writer", "standby"],
                                       "description": "the writer decides; a standby (PostgreSQL) follows its log, "
                                                      "answers reads and takes over if the writer dies"},
                              "behind": {"type": "integer", "minimum": 0,
                                         "description": "a standby's events not yet applied"}}},
    "Event": {
        "type": "object", "additionalProperties": False,
        "required": ["position", "time", "kind", "id", "version", "type", "text", "data"],
        "properties": {
            "position": {"type": "integer", "minimum": 1, "description": "its place in the log"},
            "time": {**TIME_OUT, "description": "when it was recorded (RFC 1123 in GMT)"},
            "kind": {"type": "string", "enum": _AGGREGATES, "description": "what it is about"},
            "id": {"type": "string", "format": "uuid", "pattern": UUID,
                   "description": "which one: a reservation's id, an instance's vmID, ..."},
            "version": {"type": "integer", "minimum": 1, "description": "its place among that one's events"},
            "type": {"type": "string", "enum": _EVENT_TYPES},
            "text": {"type": "string", "description": "what it means, in a line"},
            "data": {"type": "object", "description": "what it recorded: names as the API writes them elsewhere "
                                                      "(startTime, numInstancesFixed, ...), times in RFC 1123; "
                                                      "password hashes are never shown"}}},
    "History": {
        "type": "object", "additionalProperties": False, "required": ["reservationId", "events"],
        "properties": {"reservationId": {"type": "string", "format": "uuid", "pattern": UUID},
                       "events": {**_list("Event"), "description": "the reservation's events and its instances', "
                                                                   "in the order they were recorded"}}},
    "Error": {"type": "object", "additionalProperties": False, "required": ["error", "message"],
              "properties": {"error": {"type": "string", "pattern": "^[A-Z][A-Z_]*$"}, "message": {"type": "string"},
                             "field": {"type": "string", "description": "the request field at fault"},
                             "retryAfter": {"type": "integer", "minimum": 1, "description": "seconds, with 429"}}},
}

# ---------------------------------------------------------------------- headers and error answers

HEADERS: dict[str, Any] = {
    **{name: {"required": True, "schema": {"type": "string", "const": value},
              "description": "on every answer"} for name, value in SECURITY_HEADERS.items()},
    "Location": {"required": True, "schema": {"type": "string"}, "description": "where the new resource is"},
    "Retry-After": {"required": False, "schema": {"type": "integer", "minimum": 1},
                    "description": "seconds; always with TOO_MANY_ATTEMPTS"},
    "WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": 'Basic realm="OpenPEX", charset="UTF-8"'}},
    "Allow": {"required": True, "schema": {"type": "string"}, "description": "the methods the path serves"},
    "Link": {"required": False, "schema": {"type": "string", "pattern": '^<[^>]+>; rel="next"$'},
             "description": 'on a full page: <the next page>; rel="next" (it may be empty)'},
}
_ALWAYS = {name: {"$ref": f"#/components/headers/{name}"} for name in SECURITY_HEADERS}


def _answer(description: str, schema: dict[str, Any] | None, *headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description,
                              "headers": {**_ALWAYS, **{h: {"$ref": f"#/components/headers/{h}"} for h in headers}}}
    if schema is not None:
        answer["content"] = {"application/json": {"schema": schema}}
    return answer


_ERROR = _ref("Error")
RESPONSES: dict[str, Any] = {
    "400": _answer("Bad input: INVALID_FIELD (with `field`), INVALID_JSON, or BAD_REQUEST", _ERROR),
    "401": _answer("UNAUTHORIZED: no, malformed or wrong HTTP Basic credentials", _ERROR, "WWW-Authenticate"),
    "403": _answer("FORBIDDEN (only the administrator may do this) or CROSS_ORIGIN_REFUSED (a state-changing "
                   "request from a web origin not allowed with --cors-origin)", _ERROR),
    "404": _answer("NOT_FOUND: no such resource, or not yours", _ERROR),
    "405": _answer("METHOD_NOT_ALLOWED: the path does not serve this method", _ERROR, "Allow"),
    "409": _answer("ALREADY_EXISTS, PROTOCOL_VIOLATION or OFFER_EXPIRED: the request conflicts with the "
                   "current state", _ERROR),
    "413": _answer("REQUEST_ENTITY_TOO_LARGE: the body is over 64 KiB", _ERROR),
    "415": _answer("UNSUPPORTED_MEDIA_TYPE: a body that is not application/json", _ERROR),
    "429": _answer("TOO_MANY_ATTEMPTS (failed logins for this username or from this address, or too many new "
                   "accounts from this address: refused until Retry-After) or QUOTA_EXCEEDED (a proposal over the "
                   "user's quota; nothing is recorded; Retry-After says when waiting helps, and is left out for a "
                   "proposal larger than the whole quota)",
                   {"allOf": [_ERROR], "if": {"properties": {"error": {"const": "TOO_MANY_ATTEMPTS"}}},
                    "then": {"required": ["retryAfter"]}}, "Retry-After"),
    "502": _answer("HYPERVISOR_ERROR: the host refused the operation", _ERROR),
    "503": _answer("UNAVAILABLE, STORE_UNAVAILABLE, NOT_THE_WRITER or STANDBY: the service is stopping, its "
                   "store cannot be used, it lost the writer's lease, or it is a standby (which answers reads "
                   "only; Retry-After says when to try again)", _ERROR, "Retry-After"),
    "504": _answer("TIMEOUT: no answer in time; the request may or may not have been carried out", _ERROR),
}


# ---------------------------------------------------------------------- operations

def _op(operation_id: str, method: str, summary: str, status: str, schema: dict[str, Any] | None, *,
        body: str | None = None, public: bool = False, throttled: bool = False, admin: bool = False, path: bool = False,
        conflict: bool = False, hypervisor: bool = False, actors: bool = True, headers: tuple[str, ...] = (),
        links: dict[str, Any] | None = None, description: str | None = None,
        query: list[dict[str, Any]] | None = None, forbidden: bool = False) -> dict[str, Any]:
    """An operation with every status it can answer: what it does, and what anything it passes
    through (authentication, content types, cross-origin rules, body limits, actors) can."""
    unsafe = method in ("post", "put", "delete")
    errors = {
        "400": body is not None or bool(query), "401": not public, "403": admin or unsafe or forbidden, "404": path, "409": conflict,
        "413": body is not None, "415": unsafe, "429": throttled or not public, "502": hypervisor, "503": actors,
        "504": actors,
    }
    success = _answer("success", schema, *headers)
    if links:
        success["links"] = links
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "responses": {
        status: success, **{code: {"$ref": f"#/components/responses/{code}"} for code, on in errors.items() if on}}}
    if description:
        operation["description"] = description
    if query:
        operation["parameters"] = query
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if public:
        operation["security"] = []
    return operation


def _listing(statuses: list[str]) -> list[dict[str, Any]]:
    """A list's query parameters (pex.http.wire.listing_in)."""
    one = "|".join(statuses)
    period = {"anyOf": [{"type": "string", "pattern": _anchored(RFC1123_IN["endTime"])},
                        {"type": "string", "pattern": _anchored(ISO8601_IN["endTime"])},
                        {"type": "string", "pattern": "^[0-9]{1,15}$",
                         "description": f"epoch milliseconds, at most {LATEST_INSTANT} (else 400)"}]}
    return [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": LONGEST_PAGE},
         "description": f"items in the page (default and most: {LONGEST_PAGE})"},
        {"name": "after", "in": "query", "schema": {"type": "string", "format": "uuid", "pattern": UUID},
         "description": "the id of the last item of the previous page (else 400)"},
        {"name": "status", "in": "query", "style": "form", "explode": False,
         "schema": {"type": "array", "items": {"type": "string", "enum": statuses}, "minItems": 1},
         "description": f"only these statuses (comma-separated): {one.replace('|', ', ')}"},
        {"name": "from", "in": "query", "schema": period, "description": "only those that end after this time"},
        {"name": "to", "in": "query", "schema": period,
         "description": "only those that start before this time; must be after `from` (else 400)"},
    ]


def _log_page(*, whole_log: bool) -> list[dict[str, Any]]:
    """A page of the log's query parameters (pex.http.wire.events_in)."""
    parameters: list[dict[str, Any]] = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": LONGEST_PAGE},
         "description": f"events in the page (default and most: {LONGEST_PAGE})"},
        {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": LAST_POSITION},
         "description": "the position of the last event of the previous page (default 0: from the start)"},
        {"name": "type", "in": "query", "style": "form", "explode": False,
         "schema": {"type": "array", "items": {"type": "string", "enum": list(KIND_NAMES)}, "minItems": 1},
         "description": "only events of these types (comma-separated): an event's name (Confirmed: of every kind "
                        "that has one), a kind's and its name (Reservation.Confirmed), or a kind (Reservation: all "
                        "of its events)"}]
    if whole_log:
        parameters.append({"name": "reservation", "in": "query",
                           "schema": {"type": "string", "format": "uuid", "pattern": UUID},
                           "description": "only the events of this reservation and its instances (404 if there is "
                                          "no such reservation)"})
    return parameters


def _period() -> list[dict[str, Any]]:
    """A question about capacity over time (pex.http.wire.period_in)."""
    times = [p for p in _listing([]) if p["name"] in ("from", "to")]
    times[0]["description"] = "the period's start (default: now)"
    times[1]["description"] = "its end (default: a day after the start); after the start (else 400)"
    return [*times,
            {"name": "step", "in": "query", "schema": {"type": "integer", "minimum": 60_000, "maximum": 999_999_999_999},
             "description": "milliseconds (default an hour); at most 20,000 steps in an answer, nodes' included "
                            "(else 400)"},
            {"name": "node", "in": "query", "style": "form", "explode": False,
             "schema": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": f"{NAME}|^[*]$"}},
             "description": "also these nodes' own (comma-separated; `*`: every node; the admin only: 403 for "
                            "others, 404 for a node there is not)"}]


def _usage_period() -> list[dict[str, Any]]:
    """A statement's period (pex.http.wire.usage_period_in)."""
    times = [p for p in _listing([]) if p["name"] in ("from", "to")]
    times[0]["description"] = "the period's start (default: the first of this month, UTC); before now when `to` is left out (else 400)"
    times[1]["description"] = "its end (default: now); after the start (else 400)"
    return times


def _text(operation: dict[str, Any]) -> dict[str, Any]:
    """An operation whose success is Prometheus' text format, not JSON."""
    operation["responses"]["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}
    return operation


def _link(operation_id: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": parameters}


def _reservation_links(source: str) -> dict[str, Any]:
    return {"GetReservation": _link("getReservation", id=source),
            "ReplyToReservation": _link("replyToReservation", id=source),
            "CancelReservation": _link("cancelReservation", id=source),
            "ActivateReservation": _link("activateReservation", id=source)}


def _instance_links(source: str) -> dict[str, Any]:
    return {"GetInstance": _link("getInstance", vm_id=source),
            "StopInstance": _link("stopInstance", vm_id=source),
            "StartInstance": _link("startInstance", vm_id=source),
            "RebootInstance": _link("rebootInstance", vm_id=source),
            "DeleteInstance": _link("deleteInstance", vm_id=source)}


def _node_links(source: str) -> dict[str, Any]:
    return {"GetNode": _link("getNode", name=source), "DrainNode": _link("drainNode", name=source),
            "UndrainNode": _link("undrainNode", name=source)}


def _user_links(source: str) -> dict[str, Any]:
    return {"GetUser": _link("getUser", name=source), "SetQuota": _link("setQuota", name=source)}


def _parameter(name: str, schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": schema}]


_ID = _parameter("id", {"type": "string", "format": "uuid", "pattern": UUID})
_VM = _parameter("vm_id", {"type": "string", "format": "uuid", "pattern": UUID})
_NODE = _parameter("name", {"type": "string", "pattern": NAME})
_USER = _parameter("name", {"type": "string", "pattern": NAME, "description": "any case"})
_INSTANCE_VERBS = {"stop": ("stopInstance", "Shut down (graceful, forced after a grace period)"),
                   "start": ("startInstance", "Start (or resume) a stopped instance"),
                   "reboot": ("rebootInstance", "Reboot")}

PATHS: dict[str, Any] = {
    "/OpenPEX/health": {"get": _op("health", "get", "Is the service up? (no credentials)", "200", _ref("Health"),
                                   public=True)},
    "/OpenPEX/openapi.json": {"get": _op("openapi", "get", "This description (no credentials)", "200",
                                         {"type": "object"}, public=True, actors=False)},
    "/metrics": {"get": _text(_op("metrics", "get", "Prometheus metrics in its text format (admin: give the "
                                  "credentials in the scrape config)", "200", None, admin=True))},
    "/OpenPEX/users": {
        "post": _op("register", "post", "Register an account (no credentials; a client address may register "
                    f"{REGISTRATIONS_PER_HOUR} an hour, in a burst)", "201", _ref("User"), body="NewUser", public=True,
                    throttled=True, conflict=True, headers=("Location",), links=_user_links("$response.body#/username")),
        "get": _op("listUsers", "get", "Every account with its quota, usage and refusals over quota (admin)", "200",
                   _list("Account"), admin=True, links=_user_links("$response.body#/0/username"))},
    "/OpenPEX/users/{name}": {
        "parameters": _USER,
        "get": _op("getUser", "get", "One account with its quota and usage (yours, or any for the admin; someone "
                   "else's is not found)", "200", _ref("Account"), path=True)},
    "/OpenPEX/users/{name}/quota": {
        "parameters": _USER,
        "put": _op("setQuota", "put", "Set a user's quota (admin): the limits given change, the others stay", "200",
                   _ref("Account"), body="Quota", admin=True, path=True)},
    "/OpenPEX/types": {"get": _op("listTypes", "get", "Instance sizes (the paper's Table 1)", "200", _list("Type"))},
    "/OpenPEX/templates": {
        "get": _op("listTemplates", "get", "VM templates", "200", _list("Template")),
        "post": _op("addTemplate", "post", "Add a template (admin)", "201", _ref("Template"), body="NewTemplate",
                    admin=True, conflict=True)},
    "/OpenPEX/reservations": {
        "post": _op("propose", "post", "Propose a reservation: answered ACCEPT, COUNTER or REJECT", "201",
                    _ref("Reply"), body="NewReservation", headers=("Location",),
                    links=_reservation_links("$response.body#/proposal/id")),
        "get": _op("listReservations", "get", "Your reservations (all, for the admin), a page at a time (prices "
                   "without their priceDetail: GET one for it)", "200",
                   _list("Reservation"), links=_reservation_links("$response.body#/0/id"), headers=("Link",),
                   query=_listing(_RESERVATION_STATUSES))},
    "/OpenPEX/reservations/{id}": {
        "parameters": _ID,
        "get": _op("getReservation", "get", "One reservation", "200", _ref("Reservation"), path=True,
                   links={**_reservation_links("$request.path.id"),
                          "GetFirstInstance": _link("getInstance", vm_id="$response.body#/instances/0")}),
        "put": _op("replyToReservation", "put", "Reply to an offer (ACCEPT, COUNTER, CONFIRM, REJECT) or renegotiate "
                   "agreed terms (COUNTER)", "200", _ref("Reply"), body="UserReply", path=True, conflict=True,
                   links=_reservation_links("$request.path.id")),
        "delete": _op("cancelReservation", "delete", "Cancel: stops its VMs and frees its capacity; the "
                      "reservation stays readable, CANCELLED (or WITHDRAWN, an open offer the user gave up)", "200",
                      _ref("Reservation"), path=True, conflict=True,
                      links={"GetReservation": _link("getReservation", id="$request.path.id")})},
    "/OpenPEX/reservations/{id}/history": {
        "parameters": _ID,
        "get": _op("getReservationHistory", "get", "Everything recorded of a reservation and its instances, in the "
                   "order it was recorded, each event with a line saying what it means (yours, or any for the "
                   "admin; someone else's is not found), a page at a time", "200", _ref("History"), path=True,
                   headers=("Link",), query=_log_page(whole_log=False),
                   description="`after` is the position of the last event of the previous page; a full page "
                               "carries Link to the next (which may be empty).")},
    "/OpenPEX/reservations/{id}/activate": {
        "parameters": _ID,
        "put": _op("activateReservation", "put", "Activate a confirmed reservation: its VMs start at its start time",
                   "200", _ref("Reservation"), path=True, conflict=True,
                   links={"GetReservation": _link("getReservation", id="$request.path.id")})},
    "/OpenPEX/instances": {"get": _op("listInstances", "get", "Your instances (all, for the admin), a page at a time",
                                      "200", _list("Instance"), links=_instance_links("$response.body#/0/vmID"),
                                      headers=("Link",), query=_listing(_INSTANCE_STATUSES))},
    "/OpenPEX/instances/{vm_id}": {
        "parameters": _VM,
        "get": _op("getInstance", "get", "One instance", "200", _ref("Instance"), path=True,
                   links=_instance_links("$request.path.vm_id")),
        "delete": _op("deleteInstance", "delete", "Delete an instance: forced off and removed from its host; it "
                      "stays readable, DELETED", "200", _ref("Instance"), path=True, conflict=True, hypervisor=True,
                      links={"GetInstance": _link("getInstance", vm_id="$request.path.vm_id")})},
    **{f"/OpenPEX/instances/{{vm_id}}/{verb}": {
        "parameters": _VM,
        "put": _op(operation_id, "put", summary, "200", _ref("Instance"), path=True, conflict=True, hypervisor=True,
                   links={"GetInstance": _link("getInstance", vm_id="$request.path.vm_id")})}
       for verb, (operation_id, summary) in _INSTANCE_VERBS.items()},
    "/OpenPEX/capacity": {
        "get": _op("getCapacity", "get", "The cluster's capacity over a period, per step, as held now (bookings and "
                   "open offers; a past period shows only what is still held); the admin may also ask for nodes' "
                   "own", "200", _ref("CapacityReport"), path=True,
                   query=_period(), forbidden=True)},
    "/OpenPEX/prices": {
        "get": _op("getPrices", "get", "The rate card (per instance-hour of each size) and the pricing policy", "200",
                   _ref("Prices")),
        "put": _op("setPrices", "put", "Change rates (admin; recorded as an event): the sizes given change, the "
                   "others stay; agreed prices never change", "200", _ref("Prices"), body="PriceChange", admin=True)},
    "/OpenPEX/usage": {
        "get": _op("getUsage", "get", "Your statement of a period (the admin: every user's, and the total)", "200",
                   _ref("Usage"), query=_usage_period())},
    "/OpenPEX/nodes": {
        "get": _op("listNodes", "get", "Hypervisor hosts (admin)", "200", _list("Node"), admin=True,
                   links=_node_links("$response.body#/0/name")),
        "post": _op("addNode", "post", "Add a host (admin); its size is asked of the host unless given. A host that "
                    "cannot be reached is added DOWN", "201", _ref("Node"), body="NewNode", admin=True,
                    conflict=True, headers=("Location",), links=_node_links("$response.body#/name"))},
    "/OpenPEX/nodes/{name}": {
        "parameters": _NODE,
        "get": _op("getNode", "get", "One host (admin)", "200", _ref("Node"), admin=True, path=True)},
    "/OpenPEX/nodes/{name}/drain": {
        "parameters": _NODE,
        "put": _op("drainNode", "put", "Drain a host (admin): it takes no new bookings; what it has stays", "200",
                   _ref("Node"), admin=True, path=True)},
    "/OpenPEX/nodes/{name}/undrain": {
        "parameters": _NODE,
        "put": _op("undrainNode", "put", "Put a drained host back in service (admin): it takes new bookings again",
                   "200", _ref("Node"), admin=True, path=True)},
    "/OpenPEX/events": {
        "get": _op("listEvents", "get", "The event log (admin), a page at a time in the order it was recorded", "200",
                   _list("Event"), admin=True, path=True, headers=("Link",), query=_log_page(whole_log=True),
                   description="Each event with its position in the log, when it was recorded, what it is about "
                               "(kind, id, version), its type, a line saying what it means and what it recorded. "
                               "`after` is the position of the last event of the previous page; a full page "
                               "carries Link to the next (which may be empty). A page of some types of the whole "
                               f"log (`type` without `reservation`) looks through at most {SCANNED:,} positions: it "
                               "may be short, even empty, and still carry a Link; follow Links until there is "
                               "none.")},
    "/OpenPEX/audit/head": {
        "get": _op("getAuditHead", "get", "The event log's latest signed tree head (admin; docs/audit.md). Save it "
                   "elsewhere: `openpex verify --head` proves the log still extends it", "200", _ref("TreeHead"),
                   admin=True, path=True)},
}

DESCRIPTION = """\
Advance reservation of virtual machines with negotiation (alternate offers).

Every call but registration, health and this description takes HTTP Basic credentials. Errors
are JSON `{"error": CODE, "message": ..., "field"?: ..., "retryAfter"?: ...}`. Request bodies are
JSON (Content-Type application/json, else 415), at most 64 KiB (413) and 16 levels deep (400).
A method a path does not serve is answered 405 with `Allow`; OPTIONS on any path is answered
204 with `Allow` (or as a CORS preflight). A state-changing request from a web origin not
allowed with --cors-origin is refused (403 CROSS_ORIGIN_REFUSED). Failed logins back off per
username and per client address (429 TOO_MANY_ATTEMPTS with Retry-After, for any authenticated
call); a client address may register a number of accounts an hour (429 TOO_MANY_ATTEMPTS with
Retry-After); each user may hold a number of open offers and instance-hours in them and send a
number of proposals a minute (429 QUOTA_EXCEEDED, with Retry-After when waiting helps). Every
answer carries security headers (X-Content-Type-Options and others). Times are answered in
RFC 1123 (GMT); durations are milliseconds."""

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "OpenPEX", "version": "0.3.0", "description": DESCRIPTION},
    "servers": [{"url": "/"}],
    "security": [{"basic": []}],
    "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}, "schemas": SCHEMAS,
                   "headers": HEADERS, "responses": RESPONSES},
    "paths": PATHS,
}
