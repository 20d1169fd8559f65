"""The login throttle (exponential back-off per username and per address, bounded memory) and the
new-password policy, with no server: a fake monotonic clock instead of sleeping."""

from __future__ import annotations

import time

import pytest

from pex.domain.errors import InvalidField
from pex.http.auth import Backoff, LoginThrottle, TooManyAttempts
from pex.http.passwords import judge


class Stopwatch:
    """A monotonic clock moved only by the test."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


# ---------------------------------------------------------------------- back-off

def test_five_failures_are_free_then_the_window_doubles_up_to_the_longest():
    clock = Stopwatch()
    backoff = Backoff(5, clock=clock, first=1.0, longest=8.0, forget_after=60.0)
    for _ in range(4):
        backoff.failed("alice")
        assert backoff.wait("alice") == 0
    windows = []
    for _ in range(6):
        backoff.failed("alice")
        windows.append(backoff.wait("alice"))
        clock.advance(windows[-1])  # each failure once its door has opened again
        assert backoff.wait("alice") == 0
    assert windows == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_the_wait_shrinks_as_time_passes_and_other_keys_are_untouched():
    clock = Stopwatch()
    backoff = Backoff(1, clock=clock)
    backoff.failed("alice")
    clock.advance(0.25)
    assert backoff.wait("alice") == 0.75
    assert backoff.wait("bob") == 0


def test_a_key_is_forgotten_after_a_quiet_while_and_its_count_starts_again():
    clock = Stopwatch()
    backoff = Backoff(3, clock=clock, longest=10.0, forget_after=60.0)
    for _ in range(3):
        backoff.failed("alice")
    assert backoff.failures("alice") == 3 and backoff.wait("alice") == 1.0
    clock.advance(60.0)
    assert backoff.failures("alice") == 0 and len(backoff) == 0
    backoff.failed("alice")
    assert backoff.wait("alice") == 0, "a fresh count: one failure is free again"


def test_memory_is_capped_by_dropping_the_keys_that_failed_least_recently():
    clock = Stopwatch()
    backoff = Backoff(1, clock=clock, capacity=100)
    for i in range(10_000):
        backoff.failed(f"name{i}")
    assert len(backoff) == 100
    assert backoff.wait("name9999") > 0 and backoff.wait("name0") == 0


def test_a_key_cannot_be_forgotten_while_its_door_is_closed():
    with pytest.raises(ValueError):
        Backoff(5, longest=600.0, forget_after=300.0)


# ---------------------------------------------------------------------- per username and per address

def test_a_username_is_closed_after_five_failures_from_anywhere():
    throttle = LoginThrottle(clock=Stopwatch())
    for i in range(5):
        throttle.failed("alice", f"10.0.0.{i}")
    assert throttle.wait("alice", "10.0.0.99") == 1.0
    assert throttle.wait("bob", "10.0.0.0") == 0, "each address failed once: far from its own limit"


def test_an_address_is_closed_after_twenty_failures_whatever_the_usernames():
    throttle = LoginThrottle(clock=Stopwatch())
    for i in range(19):
        throttle.failed(f"user{i}", "10.0.0.1")
    assert throttle.wait("someone", "10.0.0.1") == 0 and throttle.clean("10.0.0.2")
    throttle.failed("user19", "10.0.0.1")
    assert throttle.wait("someone", "10.0.0.1") == 1.0
    assert throttle.wait("someone", "10.0.0.2") == 0 and not throttle.clean("10.0.0.1")


def test_a_success_clears_the_username_but_not_the_address():
    throttle = LoginThrottle(per_username=5, per_address=6, clock=Stopwatch())
    for _ in range(4):
        throttle.failed("alice", "10.0.0.1")
    throttle.succeeded("alice")
    for _ in range(2):
        throttle.failed("alice", "10.0.0.1")
    assert throttle.wait("alice", "10.0.0.2") == 0, "the username's count started again"
    assert throttle.wait("bob", "10.0.0.1") == 1.0, "the address kept all six"


def test_made_up_usernames_of_any_length_are_kept_as_digests_of_one_size():
    throttle = LoginThrottle(clock=Stopwatch())
    long_name = "x" * 1_000_000
    for _ in range(5):
        throttle.failed(long_name, "10.0.0.1")
    assert throttle.wait(long_name, "10.0.0.2") == 1.0
    assert throttle.usernames.failures(long_name) == 0, "the megabyte itself is not what is kept"


def test_retry_after_is_whole_seconds_and_at_least_one():
    assert TooManyAttempts("slow down", 0.01).retry_after == 1
    assert TooManyAttempts("slow down", 2.1).retry_after == 3
    assert TooManyAttempts("slow down", 4.0).retry_after == 4


# ---------------------------------------------------------------------- new passwords

ALICE = ("alice", "Alice Liddell", "alice@example.org")


@pytest.mark.parametrize("password", ["password", "12345678", " " * 8, "\t\n" * 5, "qwertyuiop", "aaaaaaaaaaaa",
                                      "iloveyou1", "Password1"])
def test_common_and_blank_passwords_are_refused_without_being_quoted(password):
    with pytest.raises(InvalidField) as refused:
        judge(password, ALICE)
    assert refused.value.field == "password"
    assert refused.value.message.startswith("password: ") and len(refused.value.message) > len("password: ")
    assert repr(password) not in refused.value.message and f'"{password}"' not in refused.value.message
    if password.strip() and password != "password":  # "password" is also a word of the advice
        assert password not in refused.value.message


@pytest.mark.parametrize("password", ["alice2024", "liddell2024", "alice@example.org", "aliceliddell"])
def test_a_password_made_of_the_accounts_own_words_is_refused(password):
    with pytest.raises(InvalidField) as refused:
        judge(password, ALICE)
    assert password not in refused.value.message


def test_the_same_words_are_fine_for_someone_else():
    judge("liddell2024", ("bob", "Bob Builder", "bob@example.org"))
    judge("alice@example.org", ("bob",))


@pytest.mark.parametrize("password", ["correct-horse-battery-9", "Tr0ub4dor&3-staple", "wonderland-alice"])
def test_passwords_hard_to_guess_are_accepted(password):
    judge(password, ALICE)


@pytest.mark.parametrize("password, why", [
    ("short1!", "8 to 1024"), ("Zq8#" * 256 + "x", "8 to 1024"), (None, "8 to 1024"), (12345678, "8 to 1024"),
    ("Zq8#kLp2\ud800", "Unicode"),
])
def test_the_length_and_text_bounds_hold(password, why):
    with pytest.raises(InvalidField, match=why):
        judge(password, ALICE)


def test_only_the_first_hundred_characters_are_estimated_so_long_ones_are_quick():
    started = time.perf_counter()
    judge("correct-horse-battery-9" + "a" * 1000, ALICE)
    with pytest.raises(InvalidField):
        judge("a" * 1024, ALICE)
    assert time.perf_counter() - started < 1.0
