"""What schemathesis needs to know of OpenPEX beyond its OpenAPI description: loaded by
tests/e2e/test_schemathesis.py, and by the command line through tests/e2e/schemathesis.toml
(`hooks = ...`; run `st` from the project root with PYTHONPATH=.).

A few rules cannot be written in JSON Schema, and the description states them in words: a
password must not be easy to guess; an endTime given without a duration must be after the
start; an amount given as a JSON number has at most 2 decimal places (a rate 6); a kernel
template's files, and a test:// node's host file, must exist where the service
keeps them. And a body may not be over 64 KiB (413), which no schema can bound. A request that
meets the schema may be refused 400 or 413 for those alone, so schemathesis.toml lets
positive_data_acceptance take those statuses on the operations concerned, and the check below
takes that back for every other reason: a schema-valid request refused 400 must name the field
and the rule in question, and one refused 413 must have been sent more than 64 KiB.
"""

from __future__ import annotations

from typing import Any

import schemathesis

# operationId -> (field, the start of the message) of the refusals the description explains.
EXPLAINED_REFUSALS: dict[str, tuple[tuple[str, str], ...]] = {
    "register": (("password", "password: is too easy to guess"),),
    "propose": (("endTime", "endTime: must be after the start"), ("maxPrice", "maxPrice: may have at most 2 decimal")),
    "replyToReservation": (("endTime", "endTime: must be after the start"),
                           ("maxPrice", "maxPrice: may have at most 2 decimal")),
    "setPrices": tuple((f"rates.{size}", f"rates.{size}: may have at most 6 decimal")
                       for size in ("SMALL", "MEDIUM", "LARGE", "XLARGE")),
    "getUsage": (("to", "to: must be after from"), ("from", "from: must be a time from 1970"),
                 ("from", "from: must be before now when to is left out"),
                 ("to", "to: must be a time from 1970")),
    "addTemplate": tuple((field, f"{field}: {rule}") for field in ("kernel", "initrd")
                         for rule in ("must be a file in the image directory", "there is no file")),
    "addNode": (("uri", "uri: must be a file in the hosts directory"), ("uri", "uri: there is no file"),
                ("uri", "uri: a simulated host is an .xml file")),
    **{listing: (("to", "to: must be after from"), ("after", "after: is not an item of this list"),
                 ("from", "from: must be a time from 1970"), ("to", "to: must be a time from 1970"))
       for listing in ("listReservations", "listInstances")},
    "getCapacity": (("to", "to: must be after from"), ("from", "from: must be a time from 1970"),
                    ("to", "to: must be a time from 1970"), 
                    ("step", "step: asks for more than")),
}


def _operation_id(case: Any) -> str | None:
    return case.operation.definition.raw.get("operationId")


LARGEST_BODY = 64 * 1024  # bytes; the description says so, JSON Schema cannot


@schemathesis.check
def refusals_the_schema_cannot_express(ctx: Any, response: Any, case: Any) -> bool | None:
    """A schema-valid request refused 400 is refused for one of the rules the description
    explains in words (EXPLAINED_REFUSALS), and says so; one refused 413 was sent a body over
    64 KiB."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in (400, 413):
        return None
    if response.status_code == 413:
        sent = len(response.request.body or b"")
        if sent > LARGEST_BODY:
            return True
        raise AssertionError(f"{case.operation.label}: a schema-valid body of {sent} bytes was refused 413")
    explained = EXPLAINED_REFUSALS.get(_operation_id(case) or "", ())
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and any(body.get("field") == field and str(body.get("message", "")).startswith(start)
                                      for field, start in explained):
        return True
    raise AssertionError(f"{case.operation.label}: a schema-valid request was refused 400 for a reason the "
                         f"description does not give: {response.text[:500]}")
