"""Keeping the Merkle tree over a store's log and signing its heads: what the service's Notary
does every second, as a plain object (the benchmark runs it without actors).

Each turn hashes the events recorded since the last one (read from the store, as stored: see
pex.audit.ledger), signs a head (size, root, time) and, when the log grew, stores the head
with the leaves it added and the frontier at its size. A keeper opened on a store that has
heads goes on from the last one's frontier; events recorded after it are in the next head.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pex.audit.ledger import LEAF_RECORD, Ledger, LedgerError, StoredHead
from pex.audit.merkle import Frontier
from pex.audit.signing import TreeHead, key_id, sign

TURN = 50_000  # events hashed in one turn at most: a long catch-up is spread over turns


class TreeKeeper:
    def __init__(self, ledger: Ledger, key: Ed25519PrivateKey) -> None:
        self.ledger, self.key = ledger, key
        self.public_key = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = key_id(self.public_key)
        self.frontier = Frontier()
        self.last_position = 0  # of the last event in the tree
        self.latest: TreeHead | None = None  # the last head signed, stored or not
        self._pending = bytearray()  # leaves since the last stored head
        self._stored_size = 0
        stored = ledger.latest()
        if stored is not None:
            self.frontier = _resumed(stored, ledger.where)
            self._stored_size = stored.head.size
            self.last_position = int.from_bytes(stored.leaves[-LEAF_RECORD:-LEAF_RECORD + 8], "big")
            self.latest = stored.head

    def turn(self, now: int, most: int = TURN) -> int:
        """Hash up to `most` new events, sign a head at `now` (ms) and store it if the log grew;
        returns how many events were hashed. LedgerError if the store fails: the leaves hashed
        stay pending, and the next head that is stored carries them."""
        rows = self.ledger.page(self.last_position, most)
        frontier, pending = self.frontier, self._pending
        for row in rows:
            hashed = row.leaf_hash()
            frontier.append(hashed)
            pending += row.position.to_bytes(8, "big") + hashed
        if rows:
            self.last_position = rows[-1].position
        head = sign(self.key, frontier.size, now, frontier.root())
        self.latest = head
        if head.size > self._stored_size:
            try:
                self.ledger.append(head, bytes(pending), frontier)
            except LedgerError:
                if not self._was_stored(head):
                    raise
            pending.clear()
            self._stored_size = head.size
        return len(rows)

    def _was_stored(self, head: TreeHead) -> bool:
        """Whether a head whose storing failed is stored all the same (the database committed it
        and the answer was lost): then sending its leaves again would record them twice."""
        try:
            stored = self.ledger.latest()
        except LedgerError:
            return False
        return stored is not None and stored.head == head


def _resumed(stored: StoredHead, where: str) -> Frontier:
    """The frontier to go on from, if the latest head holds: signed, and its frontier's root is
    its root. Going on from a damaged one would sign heads that blame honest events, so a
    keeper refuses to start (LedgerError) and the operator looks with `openpex verify`."""
    head = stored.head
    refuse = f"the latest tree head in {where} (size {head.size}) {{}}; see `openpex verify` and docs/audit.md"
    if not head.verifies():
        raise LedgerError(refuse.format("does not verify: the heads were altered"))
    try:
        frontier = Frontier.from_bytes(head.size, stored.frontier)
    except ValueError:
        raise LedgerError(refuse.format("has a damaged frontier")) from None
    if frontier.root() != head.root or not stored.leaves or len(stored.leaves) % LEAF_RECORD:
        raise LedgerError(refuse.format("does not match its own leaves: the heads table was altered"))
    return frontier
