"""Judges a new password: long enough, not blank, and not among the first guesses an attacker
would try against this account.

The guessing is zxcvbn's (Dropbox's estimator: lists of common passwords, names and words,
keyboard patterns, dates, l33t substitutions), told the account's own username, full name and
e-mail so that `alice2024` is refused for alice. Score 2 and up means more than a million
guesses are needed. The seeded admin password is the operator's choice and is not judged.
A refusal says why in zxcvbn's words and never quotes the password.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from zxcvbn import zxcvbn

from pex.domain.errors import InvalidField
from pex.domain.negotiation import check_text

SHORTEST = 8
LONGEST = 1024
JUDGED = 100  # zxcvbn's time grows fast with length; only this many characters are judged
ENOUGH = 2  # zxcvbn's score: 0 too guessable ... 4 very unguessable

# zxcvbn keeps the user inputs of the call under way in a module-level dictionary.
_ONE_AT_A_TIME = threading.Lock()


def judge(password: Any, about: Iterable[Any] = ()) -> str:
    """The password, if an account may have it; else InvalidField on "password". `about`
    are the account's own words (username, full name, e-mail): a password made of them is easy
    to guess for this account."""
    if not isinstance(password, str) or not SHORTEST <= len(password) <= LONGEST:
        raise InvalidField("password", f"must be a string of {SHORTEST} to {LONGEST} characters")
    check_text("password", password, longest=LONGEST)
    if not password.strip():
        raise InvalidField("password", "must not be only whitespace")
    with _ONE_AT_A_TIME:
        verdict = zxcvbn(password[:JUDGED], user_inputs=own_words(about), max_length=JUDGED)
    if verdict["score"] < ENOUGH:
        feedback = verdict["feedback"]
        advice = " ".join(filter(None, [feedback.get("warning"), *feedback.get("suggestions", [])]))
        raise InvalidField("password", f"is too easy to guess. {advice}".strip())
    return password


def own_words(about: Iterable[Any]) -> list[str]:
    """Each text whole and cut into words ("Alice Liddell" -> also "Alice", "Liddell";
    "alice@example.org" -> also "alice", "example", "org"), bounded in length."""
    words: list[str] = []
    for text in about:
        if isinstance(text, str) and text:
            text = text[:256]
            words.append(text)
            words.extend(part for part in re.split(r"\W+", text) if len(part) > 1 and part != text)
    return words
