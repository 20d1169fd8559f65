"""The recovery decision table and what a host's report of a VM means, without a store."""

from __future__ import annotations

import pytest

from pex.domain.reconciling import MISSING, SHUTTING_DOWN, Recovery, changed_behind_our_back, recovery_step


@pytest.mark.parametrize(("status", "reason", "observed", "step"), [
    ("RUNNING", None, MISSING, Recovery.BOOT),  # the host lost it (restarted, or simulated)
    ("PENDING", None, MISSING, Recovery.BOOT),  # never defined
    ("PENDING", None, "HALTED", Recovery.BOOT),  # defined, never started
    ("RUNNING", SHUTTING_DOWN, MISSING, Recovery.RECORD_HALTED),  # its stop finished meanwhile
    ("RUNNING", SHUTTING_DOWN, "RUNNING", Recovery.STOP),  # a stop cut short: carried on
    ("RUNNING", SHUTTING_DOWN, "PAUSED", Recovery.STOP),
    ("RUNNING", None, "HALTED", Recovery.RECORD_OBSERVED),  # powered off while we were down
    ("RUNNING", None, "CRASHED", Recovery.RECORD_OBSERVED),
    ("RUNNING", None, "RUNNING", Recovery.NOTHING),
    ("HALTED", None, MISSING, Recovery.NOTHING),  # stopped by its user: stays stopped
    ("HALTED", None, "HALTED", Recovery.NOTHING),
    ("HALTED", None, "CRASHED", Recovery.NOTHING),  # forced off by our own stop
    ("CRASHED", None, MISSING, Recovery.NOTHING),
    ("PAUSED", None, "RUNNING", Recovery.RECORD_OBSERVED),  # resumed behind our back
])
def test_a_restarted_service_does_this_about_each_vm_that_should_run(status, reason, observed, step):
    assert recovery_step(status, reason, observed) is step


@pytest.mark.parametrize(("recorded", "observed", "news"), [
    ("PENDING", "HALTED", False),  # defined, not yet started
    ("HALTED", "CRASHED", False),  # our own stop had to force it off
    ("RUNNING", "RUNNING", False),
    ("RUNNING", "HALTED", True),
    ("RUNNING", "CRASHED", True),
    ("HALTED", "RUNNING", True),
])
def test_a_report_is_news_only_if_openpex_did_not_put_the_vm_there(recorded, observed, news):
    assert changed_behind_our_back(recorded, observed) is news
