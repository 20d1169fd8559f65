"""Notary: keeps the Merkle tree over the event log and signs a tree head every second.

It reads what the store holds (its own connection, plain SQL: the leaves are the stored bytes
as they are, not as this process meant them), so it needs nothing from the Allocator and
costs the negotiations nothing but the GIL time of hashing. Each tick is a turn of its
pex.audit.keeper.TreeKeeper: hash what was recorded since, sign a head, store it if the log
grew. Idle, it still signs a fresh head each second (kept in memory for GET
/OpenPEX/audit/head, not stored: the stored one says the same, older).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pex.actors.calls import Call, CallableActor, tell
from pex.actors.ticker import Ticker
from pex.audit.keeper import TURN, TreeKeeper
from pex.audit.ledger import Ledger, LedgerError
from pex.audit.signing import TreeHead
from pex.domain.clock import Clock
from pex.metrics import Metrics

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Notarising:
    """What the Notary needs: the store (as `openpex serve --database` names it), the key."""

    store: str
    key: Ed25519PrivateKey
    interval: float = 1.0  # seconds between heads
    key_path: Path | None = None  # where the key is, for the log
    fence: Callable[[], int | None] | None = None  # the writer's lease token now (PostgreSQL; see Ledger)


def keeper(notarising: Notarising) -> TreeKeeper:
    """The Notary's keeper, opened by whoever starts it: a store or a heads table that cannot be
    used stops the start with one LedgerError, not a dead actor behind a running service."""
    ledger = Ledger.open(notarising.store, write=True, fence=notarising.fence)
    try:
        return TreeKeeper(ledger, notarising.key)
    except BaseException:
        ledger.close()
        raise


class Notary(CallableActor):
    def __init__(self, keeper: TreeKeeper, notarising: Notarising, clock: Clock, metrics: Metrics) -> None:
        super().__init__()
        self.notarising, self.clock, self.metrics = notarising, clock, metrics
        self._keeper = keeper
        self._ticker: Ticker | None = None

    def on_start(self) -> None:
        previous = self._keeper.latest
        if previous is not None and previous.public_key != self._keeper.public_key:
            log.warning("the tree heads were signed with key %s until now; from here on with key %s (verify "
                        "the log with both public keys)", previous.key_id, self._keeper.key_id)
        self.sign()  # the first head now: GET /OpenPEX/audit/head has one from the start
        self._ticker = Ticker(self.actor_ref, Call(lambda notary: notary.sign()), self.notarising.interval,
                              "Notary-ticker").start()
        log.info("signing a tree head every %.1f s with key %s (%s); the log holds %d events",
                 self.notarising.interval, self._keeper.key_id, self.notarising.key_path or "given",
                 self._keeper.frontier.size)

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        if self.notarising.fence is None or self.notarising.fence() is not None:
            self.sign()  # a last head: after a clean stop no event is left that no head covers
        self._keeper.ledger.close()

    def latest(self) -> TreeHead | None:
        """The last head signed (within a second of now, unless the store cannot be read)."""
        return self._keeper.latest

    def sign(self) -> None:
        """One turn of the keeper; another right after this one if there is more to hash."""
        try:
            hashed = self._keeper.turn(self.clock.now())
        except LedgerError as error:
            log.error("no tree head this second: %s", error)
            return
        if self._keeper.latest is not None:
            self.metrics.tree_head_size.set(self._keeper.latest.size)
        if hashed == TURN and self.actor_ref.is_alive():
            tell(self.actor_ref, lambda notary: notary.sign())  # more to hash: go on after what waits
