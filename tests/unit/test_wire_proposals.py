"""Proposals in the paper's names (Fig. 7) as the API takes them: each field parsed here, the
terms made by the domain, and a bad field named back as the client wrote it."""

from __future__ import annotations

from typing import Any

import pytest

from pex.domain.errors import InvalidField
from pex.domain.negotiation import Terms, TermsChange
from pex.http.presenters import error, proposal
from pex.http.wire import format_time, proposal_in

GOOD = {"duration": 3_600_000, "numInstancesFixed": 1, "numInstancesOption": 0,
        "startTime": 1_000_000, "template": "debian", "type": "XLARGE"}
TERMS = Terms("XLARGE", "debian", 1, 0, 1_000_000, 3_600_000)


def terms(body: Any, base: Terms | None = None) -> Terms:
    return proposal_in(body).applied_to(base)


def test_a_proposal_in_the_papers_names_parses_and_is_answered_in_them():
    assert terms(GOOD) == TERMS
    assert proposal(TERMS) == {**GOOD, "startTime": format_time(1_000_000)}


def test_times_may_be_rfc_1123_iso_8601_or_epoch_ms_and_an_end_may_replace_the_duration():
    body = {**GOOD, "startTime": "Tue, 01 Jan 2030 00:00:00 GMT", "endTime": "2030-01-01T02:00:00Z"}
    del body["duration"]
    parsed = terms(body)
    assert parsed.duration == 2 * 3_600_000 and parsed.start == 1_893_456_000_000


def test_null_is_the_same_as_leaving_a_field_out():
    assert proposal_in({**GOOD, "numInstancesOption": None}) == TermsChange(
        instance_type="XLARGE", template="debian", fixed=1, start=1_000_000, duration=3_600_000)


BAD = [
    ({k: v for k, v in GOOD.items() if k != "type"}, "type"),
    ({k: v for k, v in GOOD.items() if k != "duration"}, "duration"),
    ({k: v for k, v in GOOD.items() if k != "startTime"}, "startTime"),
    ({k: v for k, v in GOOD.items() if k != "numInstancesFixed"}, "numInstancesFixed"),
    ({**GOOD, "type": 3}, "type"),
    ({**GOOD, "type": "HUGE"}, "type"),
    ({**GOOD, "type": "ＳＭＡＬＬ"}, "type"),
    ({**GOOD, "startTime": 9900 * 365 * 86_400_000}, "startTime"),  # could never end by 9999
    ({**GOOD, "template": ""}, "template"),
    ({**GOOD, "duration": "1h"}, "duration"),
    ({**GOOD, "duration": 0}, "duration"),
    ({**GOOD, "duration": -5}, "duration"),
    ({**GOOD, "numInstancesFixed": 0}, "numInstancesFixed"),
    ({**GOOD, "numInstancesFixed": True}, "numInstancesFixed"),
    ({**GOOD, "numInstancesFixed": 1.5}, "numInstancesFixed"),
    ({**GOOD, "numInstancesOption": -1}, "numInstancesOption"),
    ({**GOOD, "startTime": "tomorrow"}, "startTime"),
    ({**{k: v for k, v in GOOD.items() if k != "duration"}, "endTime": 999_999}, "endTime"),
    ([1, 2], "proposal"),
]


@pytest.mark.parametrize(("body", "field"), BAD, ids=[f"{i}-{f}" for i, (_, f) in enumerate(BAD)])
def test_a_bad_proposal_is_answered_naming_the_field_as_sent(body, field):
    with pytest.raises(InvalidField) as raised:
        terms(body)
    shown, _ = error(raised.value)
    assert shown["field"] == field and shown["message"].startswith(f"{field}: ") and raised.value.status == 400


def test_a_size_is_known_by_any_ascii_spelling_and_answered_in_the_papers():
    assert terms({**GOOD, "type": "small"}).instance_type == "SMALL"


def test_a_counter_may_send_only_what_changes():
    assert terms({"duration": 7_200_000}, TERMS).duration == 7_200_000
    assert terms({}, TERMS) == TERMS
