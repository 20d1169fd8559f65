"""The OpenAPI 3.1 description of /OpenPEX, served at /OpenPEX/openapi.json."""

from __future__ import annotations

from typing import Any

_TIME = {"type": "string", "description": "RFC 1123 in GMT, e.g. 'Mon, 17 Aug 2009 04:49:03 GMT' "
                                          "(ISO 8601 and epoch milliseconds are accepted on input)"}
_INT = {"type": "integer"}
_STR = {"type": "string"}
_SIZES = ["SMALL", "MEDIUM", "LARGE", "XLARGE"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


SCHEMAS: dict[str, Any] = {
    "Proposal": {
        "type": "object", "required": ["duration", "numInstancesFixed", "startTime", "template", "type"],
        "properties": {"duration": {"type": "integer", "minimum": 1, "description": "milliseconds"},
                       "numInstancesFixed": {"type": "integer", "minimum": 1},
                       "numInstancesOption": {"type": "integer", "minimum": 0},
                       "startTime": _TIME, "endTime": _TIME, "template": _STR,
                       "type": {"type": "string", "enum": _SIZES}}},
    "Reply": {
        "type": "object", "required": ["reply", "proposal"],
        "properties": {"reply": {"type": "string", "enum": ["ACCEPT", "REJECT", "COUNTER", "CONFIRM_REQUEST",
                                                              "REQUEST_SUCCESS"]},
                       "proposal": {"allOf": [_ref("Proposal")],
                                    "properties": {"id": _STR, "userid": _STR}},
                       "reason": {"type": "string", "description": "why, with REJECT"},
                       "holdUntil": {**_TIME, "description": "the offer is held until then"},
                       "alternatives": {"type": "array", "items": _ref("Proposal"),
                                        "description": "other offers OpenPEX would make (extension)"}}},
    "UserReply": {
        "type": "object", "required": ["reply"],
        "properties": {"reply": {"type": "string", "enum": ["ACCEPT", "COUNTER", "CONFIRM", "REJECT"]},
                       "proposal": {**_ref("Proposal"), "description": "with COUNTER: the changed terms; "
                                    "fields left out keep their current values"}}},
    "Reservation": {
        "type": "object",
        "properties": {"id": _STR, "userid": _STR,
                       "status": {"type": "string", "enum": ["INITIATED", "ACCEPTED", "COUNTERED", "CONFIRMED",
                                                             "ACTIVATED", "EXPIRED", "REJECTED", "CANCELLED",
                                                             "OFFER_EXPIRED", "DEGRADED"]},
                       "template": _STR, "type": _STR, "numInstancesFixed": _INT, "numInstancesOption": _INT,
                       "startTime": _TIME, "endTime": _TIME, "duration": _INT,
                       "instances": {"type": "array", "items": _STR}, "reason": _STR}},
    "Instance": {
        "type": "object",
        "properties": {"vmID": _STR, "name": _STR,
                       "status": {"type": "string", "enum": ["PENDING", "RUNNING", "PAUSED", "SUSPENDED", "HALTED",
                                                             "CRASHED", "DELETED"]},
                       "reservationId": _STR, "node": _STR, "startTime": _TIME, "endTime": _TIME,
                       "ipAddress": {"type": ["string", "null"]}, "reason": _STR}},
    "Node": {
        "type": "object",
        "properties": {"name": _STR, "uri": _STR, "status": {"type": "string", "enum": ["UP", "DOWN", "DRAINED"]},
                       "cpus": _INT, "memoryMB": _INT, "diskGB": _INT,
                       "load": {"type": "object", "description": "the latest poll of the host (extension): "
                                "runningVMs, usedCpus, usedMemoryMB, freeMemoryMB, cpuBusy (null where the "
                                "hypervisor does not say)"}}},
    "NewNode": {
        "type": "object", "required": ["name", "uri"],
        "properties": {"name": _STR, "uri": _STR, "cpus": _INT, "memoryMB": _INT, "diskGB": _INT}},
    "Type": {"type": "object", "properties": {"type": _STR, "cpus": _INT, "memoryMB": _INT, "diskGB": _INT}},
    "Template": {"type": "object", "required": ["name"], "properties": {"name": _STR, "description": _STR},
                 "additionalProperties": True},
    "NewUser": {"type": "object", "required": ["username", "password"],
                "properties": {"username": _STR, "password": {"type": "string", "minLength": 8},
                               "fullname": _STR, "email": _STR}},
    "User": {"type": "object", "properties": {"username": _STR, "fullname": _STR, "email": _STR, "isAdmin": {"type": "boolean"}}},
    "Quota": {"type": "object", "minProperties": 1, "additionalProperties": False,
              "properties": {name: {"type": "integer", "minimum": 0, "maximum": 1_000_000_000}
                             for name in ("openOffers", "heldInstanceHours", "proposalsPerMinute")}},
    "Account": {"type": "object", "properties": {
        "username": _STR, "fullname": _STR, "email": _STR, "isAdmin": {"type": "boolean"},
        "quota": {"$ref": "#/components/schemas/Quota"},
        "usage": {"type": "object", "properties": {"openOffers": _INT, "heldInstanceHours": {"type": "number"},
                                                   "proposalsAvailable": _INT}},
        "refusedOverQuota": {"type": "integer", "description": "requests refused over quota since the service started"}}},
    "Error": {"type": "object", "required": ["error", "message"],
              "properties": {"error": _STR, "message": _STR, "field": _STR}},
}


def _op(summary: str, response: dict[str, Any] | None, *, status: str = "200", body: str | None = None,
        public: bool = False, errors: tuple[str, ...] = ("400", "401", "404", "409")) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {
        status: {"description": "success", **({"content": {"application/json": {"schema": response}}} if response else {})},
        **{code: {"description": "error", "content": {"application/json": {"schema": _ref("Error")}}}
           for code in errors if not (public and code == "401")},
    }}
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if public:
        operation["security"] = []
    return operation


_ID = [{"name": "id", "in": "path", "required": True, "schema": _STR}]
_VM = [{"name": "vm_id", "in": "path", "required": True, "schema": _STR}]

PATHS: dict[str, Any] = {
    "/OpenPEX/health": {"get": _op("Is the service up?", {"type": "object"}, public=True, errors=())},
    "/OpenPEX/openapi.json": {"get": _op("This description", {"type": "object"}, errors=("401",))},
    "/OpenPEX/users": {"post": _op("Register an account", _ref("User"), status="201", body="NewUser", public=True,
                                   errors=("400", "409")),
                       "get": _op("Every account with its quota, usage and refusals over quota (admin)",
                                  _list("Account"), errors=("401", "403"))},
    "/OpenPEX/types": {"get": _op("Instance sizes (the paper's Table 1)", _list("Type"), errors=("401",))},
    "/OpenPEX/templates": {
        "get": _op("VM templates", _list("Template"), errors=("401",)),
        "post": _op("Add a template (admin): name, description, kind ('simulated', or 'kernel' with kernel, initrd "
                    "and cmdline paths that must exist)", _ref("Template"), status="201", body="Template",
                    errors=("400", "401", "403", "409"))},
    "/OpenPEX/reservations": {
        "post": _op("Propose a reservation: answered ACCEPT, COUNTER or REJECT", _ref("Reply"), status="201",
                    body="Proposal", errors=("400", "401")),
        "get": _op("Your reservations (all, for the admin)", _list("Reservation"), errors=("401",))},
    "/OpenPEX/reservations/{id}": {
        "parameters": _ID,
        "get": _op("One reservation", _ref("Reservation")),
        "put": _op("Reply to an offer (ACCEPT, COUNTER, CONFIRM, REJECT) or renegotiate agreed terms (COUNTER)",
                   _ref("Reply"), body="UserReply"),
        "delete": _op("Cancel: stops its VMs and frees its capacity", _ref("Reservation"))},
    "/OpenPEX/reservations/{id}/activate": {
        "parameters": _ID, "put": _op("Activate a confirmed reservation: its VMs start at its start time",
                                      _ref("Reservation"))},
    "/OpenPEX/instances": {"get": _op("Your instances (all, for the admin)", _list("Instance"), errors=("401",))},
    "/OpenPEX/instances/{vm_id}": {
        "parameters": _VM,
        "get": _op("One instance", _ref("Instance")),
        "delete": _op("Delete an instance: forced off and removed from its host", _ref("Instance"))},
    **{f"/OpenPEX/instances/{{vm_id}}/{verb}": {
        "parameters": _VM, "put": _op(summary, _ref("Instance"), errors=("401", "404", "409", "502"))}
       for verb, summary in (("stop", "Shut down (graceful, forced after a grace period)"),
                             ("start", "Start (or resume) a stopped instance"), ("reboot", "Reboot"))},
    "/OpenPEX/nodes": {
        "get": _op("Hypervisor hosts (admin)", _list("Node"), errors=("401", "403")),
        "post": _op("Add a host (admin); its size is asked of the host unless given. A host that cannot be "
                    "reached is added DOWN", _ref("Node"), status="201",
                    body="NewNode", errors=("400", "401", "403", "409"))},
    "/OpenPEX/nodes/{name}": {
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STR}],
        "get": _op("One host (admin)", _ref("Node"), errors=("401", "403", "404"))},
    "/OpenPEX/users/{name}": {
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STR}],
        "get": _op("One account with its quota and usage (yours, or any for the admin)", _ref("Account"),
                   errors=("401", "404"))},
    "/OpenPEX/users/{name}/quota": {
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STR}],
        "put": _op("Set a user's quota (admin): the limits given change, the others stay", _ref("Account"),
                   body="Quota", errors=("400", "401", "403", "404"))},
    "/OpenPEX/nodes/{name}/undrain": {
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STR}],
        "put": _op("Put a drained host back in service (admin): it takes new bookings again",
                   _ref("Node"), errors=("401", "403", "404"))},
    "/OpenPEX/nodes/{name}/drain": {
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STR}],
        "put": _op("Drain a host (admin): it takes no new bookings; what it has stays",
                   _ref("Node"), errors=("401", "403", "404"))},
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "OpenPEX", "version": "0.3.0",
             "description": "Advance reservation of virtual machines with negotiation (alternate offers)."},
    "servers": [{"url": "/"}],
    "security": [{"basic": []}],
    "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}, "schemas": SCHEMAS},
    "paths": PATHS,
}
