"""The protocol state machine, one row per (state, message): what is allowed and what is 409."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from pex.domain.errors import InvalidField, ProtocolViolation
from pex.domain.negotiation import (
    LATEST_INSTANT,
    LATEST_START,
    LONGEST,
    TRANSITIONS,
    TermsChange,
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


GOOD = TermsChange(instance_type="XLARGE", template="debian", fixed=1, optional=0, start=1_000_000, duration=3_600_000)
TERMS = Terms("XLARGE", "debian", 1, 0, 1_000_000, 3_600_000)


def test_a_full_change_makes_new_terms_and_of_gives_them_back():
    assert GOOD.applied_to(None) == TERMS and TERMS.end == 4_600_000
    assert TermsChange.of(TERMS) == GOOD


def test_an_end_may_stand_for_the_duration_and_given_both_the_duration_counts():
    assert replace(GOOD, duration=None, end=1_000_000 + 7_200_000).applied_to(None).duration == 7_200_000
    assert replace(GOOD, end=9_000_000).applied_to(None).duration == 3_600_000
    assert TermsChange(optional=None, **{k: getattr(GOOD, k) for k in ("instance_type", "template", "fixed",
                                                                       "start", "duration")}).applied_to(None).optional == 0


BAD = [
    (lambda: replace(GOOD, instance_type=None).applied_to(None), "instance_type"),
    (lambda: replace(GOOD, duration=None).applied_to(None), "duration"),
    (lambda: replace(GOOD, start=None).applied_to(None), "start"),
    (lambda: replace(GOOD, fixed=None).applied_to(None), "fixed"),
    (lambda: replace(GOOD, instance_type="HUGE"), "instance_type"),
    (lambda: replace(GOOD, instance_type="small"), "instance_type"),  # the API's leniency is the API's
    (lambda: replace(GOOD, start=9900 * 365 * 86_400_000), "start"),  # could never end by 9999
    (lambda: replace(GOOD, template=""), "template"),
    (lambda: replace(GOOD, template=" "), "template"),
    (lambda: replace(GOOD, duration="1h"), "duration"),  # type: ignore[arg-type]
    (lambda: replace(GOOD, duration=0), "duration"),
    (lambda: replace(GOOD, duration=LONGEST + 1), "duration"),
    (lambda: replace(GOOD, fixed=0), "fixed"),
    (lambda: replace(GOOD, fixed=True), "fixed"),
    (lambda: replace(GOOD, fixed=1.5), "fixed"),  # type: ignore[arg-type]
    (lambda: replace(GOOD, optional=-1), "optional"),
    (lambda: replace(GOOD, start=-1), "start"),
    (lambda: replace(GOOD, duration=None, end=999_999).applied_to(None), "end"),
]


@pytest.mark.parametrize(("make", "field"), BAD, ids=[f"{i}-{f}" for i, (_, f) in enumerate(BAD)])
def test_a_bad_change_names_the_field_in_the_domains_words(make, field):
    with pytest.raises(InvalidField) as raised:
        make()
    assert raised.value.field == field and raised.value.status == 400


def test_the_latest_start_leaves_room_for_the_longest_duration_to_end_in_a_writable_year():
    latest = replace(GOOD, start=LATEST_START, duration=LONGEST).applied_to(None)
    assert latest.end <= LATEST_INSTANT


def test_a_renegotiation_may_send_only_what_changes():
    assert TermsChange(duration=7_200_000).applied_to(TERMS) == replace(TERMS, duration=7_200_000)
    assert TermsChange(end=1_000_000 + 600_000).applied_to(TERMS).duration == 600_000
    assert TermsChange().applied_to(TERMS) == TERMS


LIMITS = Limits(max_advance=10 * 86_400_000, max_duration=2 * 86_400_000)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"template": "windows"}, "unknown template 'windows'"),
        ({"start": 999_999}, "startTime is in the past"),
        ({"start": 1_000_000 + 11 * 86_400_000}, "more than 10 days ahead"),
        ({"duration": 3 * 86_400_000}, "longer than 2 days"),
    ],
)
def test_terms_that_can_never_be_accepted_get_a_reason(change, reason):
    terms = replace(TERMS, **change)
    assert reason in rejection_reason(terms, now=1_000_000, templates={"debian"}, limits=LIMITS)


def test_acceptable_terms_have_no_rejection_reason():
    terms = TERMS
    assert rejection_reason(terms, now=1_000_000, templates={"debian"}, limits=LIMITS) is None
