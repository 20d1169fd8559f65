"""Domain errors: what a caller did wrong, in words a client can be shown.

Each error says which HTTP status it deserves through `status`, so that the HTTP layer maps
errors by attribute rather than by a table that must be kept in step with this module.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    status = 400
    code = "BAD_REQUEST"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidField(DomainError):
    """A field is missing, of the wrong type, or out of range."""

    code = "INVALID_FIELD"

    def __init__(self, field: str, reason: str, *, as_given: bool = False) -> None:
        super().__init__(f"{field}: {reason}")
        # In the domain's words, which pex/http/presenters.py names as the API does; or, where
        # `as_given`, a name the caller chose (a template's own field), shown as it came.
        self.field = field
        self.reason = reason
        self.as_given = as_given


class NotFound(DomainError):
    status = 404
    code = "NOT_FOUND"


class AlreadyExists(DomainError):
    status = 409
    code = "ALREADY_EXISTS"


class ProtocolViolation(DomainError):
    """A message the reservation's current state does not allow (DESIGN §2: 409)."""

    status = 409
    code = "PROTOCOL_VIOLATION"


class OfferExpired(ProtocolViolation):
    code = "OFFER_EXPIRED"


class CapacityExceeded(DomainError):
    """An allocation would put a node over its capacity at some instant.

    Decisions never produce one; seeing it means a caller bypassed admission.
    """

    status = 409
    code = "CAPACITY_EXCEEDED"


class StoreUnavailable(DomainError):
    """The event store failed; nothing was decided. Try again later."""

    status = 503
    code = "STORE_UNAVAILABLE"


def one_line(error: BaseException | str) -> str:
    """An error's message as one line of at most 300 characters, for a log or a user: what a
    library or a hypervisor says may quote what it was given, newlines and all."""
    return " ".join(str(error).split())[:300] or type(error).__name__
