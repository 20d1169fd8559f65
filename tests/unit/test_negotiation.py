"""The protocol state machine, one row per (state, message): what is allowed and what is 409."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

import pytest

from pex.domain.errors import InvalidField, ProtocolViolation
from pex.domain.negotiation import (
    LATEST_INSTANT,
    LATEST_START,
    LONGEST,
    TRANSITIONS,
    Action,
    Limits,
    Message as M,
    OfferState as O,
    Status as S,
    Terms,
    next_action,
    rejection_reason,
)

A = Action
AGREED_EXTRA = {M.CANCEL: A.CANCEL, M.EXPIRE: A.EXPIRE}

# Every legal transition, written out by hand from DESIGN §2 (not derived from TRANSITIONS).
LEGAL = {
    (S.INITIATED, None): {M.PROPOSE: A.NEGOTIATE},
    (S.ACCEPTED, O.ACCEPTED): {M.CONFIRM: A.CONFIRM, M.REJECT: A.WITHDRAW, M.LAPSE: A.LAPSE,
                               M.CANCEL: A.WITHDRAW},
    (S.COUNTERED, O.COUNTERED): {M.ACCEPT: A.ACCEPT_COUNTER, M.COUNTER: A.NEGOTIATE,
                                 M.REJECT: A.WITHDRAW, M.LAPSE: A.LAPSE, M.CANCEL: A.WITHDRAW},
    (S.CONFIRMED, None): {M.ACTIVATE: A.ACTIVATE, M.COUNTER: A.NEGOTIATE, **AGREED_EXTRA},
    (S.CONFIRMED, O.ACCEPTED): {M.ACTIVATE: A.ACTIVATE, M.CONFIRM: A.CONFIRM, M.REJECT: A.WITHDRAW,
                                M.LAPSE: A.LAPSE, **AGREED_EXTRA},
    (S.CONFIRMED, O.COUNTERED): {M.ACTIVATE: A.ACTIVATE, M.ACCEPT: A.ACCEPT_COUNTER,
                                 M.COUNTER: A.NEGOTIATE, M.REJECT: A.WITHDRAW, M.LAPSE: A.LAPSE,
                                 **AGREED_EXTRA},
}
for offer in (None, O.ACCEPTED, O.COUNTERED):
    LEGAL[(S.ACTIVATED, offer)] = {m: a for m, a in LEGAL[(S.CONFIRMED, offer)].items() if m is not M.ACTIVATE}
    # Degraded (a node was lost) may be confirmed-not-yet-activated: ACTIVATE stays open (the
    # aggregate refuses a second activation).
    LEGAL[(S.DEGRADED, offer)] = dict(LEGAL[(S.CONFIRMED, offer)])

ALL_STATES = [(s, o) for s in S for o in (None, O.ACCEPTED, O.COUNTERED)]
CASES = [
    (status, offer, message, LEGAL.get((status, offer), {}).get(message))
    for (status, offer), message in itertools.product(ALL_STATES, M)
]


@pytest.mark.parametrize(("status", "offer", "message", "expected"), CASES,
                         ids=[f"{s.value}-{o.value if o else 'none'}-{m.value}" for s, o, m, _ in CASES])
def test_every_state_and_message(status, offer, message, expected):
    if expected is None:
        with pytest.raises(ProtocolViolation) as raised:
            next_action(status, offer, message)
        assert raised.value.status == 409 and message.value in raised.value.message
    else:
        assert next_action(status, offer, message) is expected


def test_the_table_has_no_transition_the_design_does_not_list():
    assert TRANSITIONS == LEGAL


def test_confirming_a_counter_before_accepting_it_says_why():
    with pytest.raises(ProtocolViolation, match="must be ACCEPTed before it can be CONFIRMed"):
        next_action(S.COUNTERED, O.COUNTERED, M.CONFIRM)


@pytest.mark.parametrize("closed", [S.EXPIRED, S.REJECTED, S.WITHDRAWN, S.CANCELLED, S.OFFER_EXPIRED])
def test_nothing_leaves_a_closed_reservation(closed):
    for message in M:
        with pytest.raises(ProtocolViolation):
            next_action(closed, None, message)


GOOD = {"duration": 3_600_000, "numInstancesFixed": 1, "numInstancesOption": 0,
        "startTime": 1_000_000, "template": "debian", "type": "XLARGE"}


def test_a_proposal_in_the_papers_names_parses():
    terms = Terms.from_proposal(GOOD)
    assert terms == Terms("XLARGE", "debian", 1, 0, 1_000_000, 3_600_000)
    assert terms.end == 4_600_000 and terms.to_proposal() == GOOD


def test_start_time_may_be_a_datetime_and_end_time_may_replace_duration():
    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    body = {**GOOD, "startTime": start, "endTime": datetime(2030, 1, 1, 2, tzinfo=timezone.utc)}
    del body["duration"]
    terms = Terms.from_proposal(body)
    assert terms.duration == 2 * 3_600_000 and terms.start == int(start.timestamp() * 1000)


BAD = [
    ({k: v for k, v in GOOD.items() if k != "type"}, "type"),
    ({k: v for k, v in GOOD.items() if k != "duration"}, "duration"),
    ({k: v for k, v in GOOD.items() if k != "startTime"}, "startTime"),
    ({k: v for k, v in GOOD.items() if k != "numInstancesFixed"}, "numInstancesFixed"),
    ({**GOOD, "type": 3}, "type"),
    ({**GOOD, "type": "HUGE"}, "type"),
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


@pytest.mark.parametrize(("body", "field"), BAD, ids=[f for _, f in BAD])
def test_a_bad_proposal_names_the_field(body, field):
    with pytest.raises(InvalidField) as raised:
        Terms.from_proposal(body)
    assert raised.value.field == field and raised.value.status == 400


def test_a_size_is_known_by_any_spelling_and_answered_in_the_papers():
    assert Terms.from_proposal({**GOOD, "type": "small"}).instance_type == "SMALL"


def test_the_latest_start_leaves_room_for_the_longest_duration_to_end_in_a_writable_year():
    latest = Terms.from_proposal({**GOOD, "startTime": LATEST_START, "duration": LONGEST})
    assert latest.end <= LATEST_INSTANT


def test_a_renegotiation_may_send_only_what_changes():
    agreed = Terms.from_proposal(GOOD)
    assert Terms.from_proposal({"duration": 7_200_000}, defaults=agreed) == Terms(
        "XLARGE", "debian", 1, 0, 1_000_000, 7_200_000
    )


LIMITS = Limits(max_advance=10 * 86_400_000, max_duration=2 * 86_400_000)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"template": "windows"}, "unknown template 'windows'"),
        ({"startTime": 999_999}, "startTime is in the past"),
        ({"startTime": 1_000_000 + 11 * 86_400_000}, "more than 10 days ahead"),
        ({"duration": 3 * 86_400_000}, "longer than 2 days"),
    ],
)
def test_terms_that_can_never_be_accepted_get_a_reason(change, reason):
    terms = Terms.from_proposal({**GOOD, **change})
    assert reason in rejection_reason(terms, now=1_000_000, templates={"debian"}, limits=LIMITS)


def test_acceptable_terms_have_no_rejection_reason():
    terms = Terms.from_proposal(GOOD)
    assert rejection_reason(terms, now=1_000_000, templates={"debian"}, limits=LIMITS) is None
