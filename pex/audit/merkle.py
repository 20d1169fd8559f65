"""An append-only Merkle tree over the event log, exactly as RFC 9162 §2.1 defines it.

Following the RFC to the byte (rather than inventing a variant) is what lets an auditor
check OpenPEX's log heads and proofs with any Certificate Transparency tooling:

* leaf hash ``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)`` -- the
  distinct prefixes stop a leaf from being passed off as an interior node;
* a tree of ``n > 1`` leaves is split at ``k``, the largest power of two smaller than ``n``;
* the empty tree's root is ``SHA-256("")``.

The verifiers need only hashes, so an auditor can run them without access to the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_MAX_POSITION = 2**64 - 1
_MAX_TOPIC_LENGTH = 2**16 - 1


def leaf_hash(data: bytes) -> bytes:
    """Hash one log entry; the 0x00 prefix keeps leaves and interior nodes apart."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash an interior node from its children's hashes (0x01 prefix)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def event_leaf(position: int, originator_id: bytes, version: int, topic: str | bytes, state: bytes) -> bytes:
    """Encode one stored event, every column of its row, as a leaf, unambiguously.

    Layout: the 8-byte big-endian notification ``position``, the 16 bytes of the
    aggregate's id, the 8-byte big-endian ``version``, a 2-byte big-endian length and the
    UTF-8 ``topic``, then ``state`` (the event's stored bytes) to the end. Every field but
    the last is fixed-width or length-prefixed, so no two different rows encode alike;
    because the position is inside the leaf, reordering, inserting or deleting an event
    changes the leaf sequence, and changing any byte of any column changes that leaf
    (the id and version are columns of their own: the state does not repeat them).
    """
    if not 0 <= position <= _MAX_POSITION:
        raise ValueError(f"notification position {position} does not fit in 8 bytes")
    if len(originator_id) != 16:
        raise ValueError(f"an aggregate id is 16 bytes, not {len(originator_id)}")
    if not 0 <= version <= _MAX_POSITION:
        raise ValueError(f"version {version} does not fit in 8 bytes")
    encoded_topic = topic.encode("utf-8") if isinstance(topic, str) else topic
    if len(encoded_topic) > _MAX_TOPIC_LENGTH:
        raise ValueError(f"topic is {len(encoded_topic)} bytes; at most {_MAX_TOPIC_LENGTH}")
    return b"".join((position.to_bytes(8, "big"), originator_id, version.to_bytes(8, "big"),
                     len(encoded_topic).to_bytes(2, "big"), encoded_topic, state))


class Frontier:
    """A log's compact range: the roots of its perfect subtrees, largest first, one per set
    bit of its size. Enough to append and to know the root, in O(log n) hashes of memory,
    which is all the service keeps (the auditor's tools rebuild the rest from the store)."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if not _is_count(size) or len(hashes) != size.bit_count() or not all(_is_hash(h) for h in hashes):
            raise ValueError(f"a frontier of {size} leaves has {size.bit_count() if _is_count(size) else '?'} "
                             f"hashes of {HASH_SIZE} bytes, not {len(hashes)}")
        self.size = size
        self._hashes = list(hashes)

    def append(self, hashed_leaf: bytes) -> None:
        """Add a leaf's hash, merging the subtrees it completes (as MerkleLog does)."""
        hashes = self._hashes
        self.size += 1
        count = self.size
        while count % 2 == 0:
            hashed_leaf = node_hash(hashes.pop(), hashed_leaf)
            count //= 2
        hashes.append(hashed_leaf)

    def root(self) -> bytes:
        """MTH of every leaf: the subtrees folded from the right, as RFC 9162 splits them."""
        if not self._hashes:
            return EMPTY_ROOT
        result = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            result = node_hash(left, result)
        return result

    def to_bytes(self) -> bytes:
        return b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> Frontier:
        return cls(size, [bytes(data[i:i + HASH_SIZE]) for i in range(0, len(data), HASH_SIZE)])


def _split(n: int) -> int:
    """The RFC's k: the largest power of two strictly smaller than ``n`` (``n > 1``)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleLog:
    """An append-only Merkle tree that also answers for every earlier size.

    It keeps every perfect, aligned subtree's hash, one flat ``bytearray`` per level
    (level 0 holds the leaf hashes), about 64 bytes per leaf in all. The newest hash of
    each level whose bit is set in ``size`` is the compact frontier, so ``append`` is
    O(log n) (amortised O(1)); any tree head ``root_at(size)`` and any RFC subtree hash
    folds at most one stored hash per level, which makes roots O(log n) and proofs
    O(log² n) at worst.
    """

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0

    @property
    def size(self) -> int:
        """How many leaves the log holds."""
        return self._size

    def append(self, leaf: bytes) -> int:
        """Add a leaf, returning its index; completes whatever perfect subtrees it closes."""
        index = self._size
        self.append_leaf_hash(leaf_hash(leaf))
        return index

    def append_leaf_hash(self, hashed_leaf: bytes) -> None:
        """Add an already-hashed leaf, e.g. when rebuilding the log from stored hashes."""
        if len(hashed_leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, not {len(hashed_leaf)}")
        self._levels[0] += hashed_leaf
        self._size += 1
        level, count, current = 0, self._size, bytes(hashed_leaf)
        while count % 2 == 0:
            # This hash closes a pair: the parent subtree is now complete too.
            left = self._node(level, count - 2)
            current = node_hash(left, current)
            level += 1
            count //= 2
            if level == len(self._levels):
                self._levels.append(bytearray())
            self._levels[level] += current

    def root(self) -> bytes:
        """The current tree head's root hash (MTH of every leaf)."""
        return self.root_at(self._size)

    def root_at(self, size: int) -> bytes:
        """The root hash the log had when it held ``size`` leaves."""
        self._check_size(size)
        return self._subtree_hash(0, size)

    def leaf_hash_at(self, index: int) -> bytes:
        """The stored hash of leaf ``index``, which a proof of inclusion starts from."""
        if not 0 <= index < self._size:
            raise IndexError(f"no leaf {index} in a log of {self._size}")
        return self._node(0, index)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[size]): sibling hashes from the leaf upward."""
        self._check_size(size)
        if not 0 <= index < size:
            raise IndexError(f"no leaf {index} in a tree of {size}")
        path: list[bytes] = []  # gathered root-downward, returned leaf-upward
        start, n, m = 0, size, index
        while n > 1:
            k = _split(n)
            if m < k:
                path.append(self._subtree_hash(start + k, n - k))
                n = k
            else:
                path.append(self._subtree_hash(start, k))
                start, n, m = start + k, n - k, m - k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(old_size, D[new_size]) that the old tree is a prefix.

        Empty for ``old_size`` 0 or ``old_size == new_size``, where nothing needs proving.
        """
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ValueError(f"no consistency from size {old_size} to {new_size}")
        if old_size in (0, new_size):
            return []
        proof: list[bytes] = []  # gathered root-downward, returned bottom-up
        start, n, m, whole_old_tree = 0, new_size, old_size, True
        while m != n:
            k = _split(n)
            if m <= k:
                proof.append(self._subtree_hash(start + k, n - k))
                n = k
            else:
                proof.append(self._subtree_hash(start, k))
                start, n, m, whole_old_tree = start + k, n - k, m - k, False
        if not whole_old_tree:
            # SUBPROOF(m, D[m], false): this subtree's hash is needed to rebuild the old root.
            proof.append(self._subtree_hash(start, n))
        proof.reverse()
        return proof

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._size:
            raise ValueError(f"the log has never held {size} leaves (it holds {self._size})")

    def _node(self, level: int, index: int) -> bytes:
        """The stored hash of the ``index``-th perfect subtree of 2**level leaves."""
        offset = index * HASH_SIZE
        return bytes(self._levels[level][offset : offset + HASH_SIZE])

    def _subtree_hash(self, start: int, n: int) -> bytes:
        """MTH(D[start:start+n]) for a subtree as the RFC's recursion cuts it.

        Such a subtree starts at a multiple of the smallest power of two >= n, so it is
        a run of stored perfect subtrees of strictly decreasing size -- one per set bit
        of ``n`` -- whose hashes fold from the right.
        """
        if n == 0:
            return EMPTY_ROOT
        chunks: list[bytes] = []
        offset = start
        for level in range(n.bit_length() - 1, -1, -1):
            if n >> level & 1:
                chunks.append(self._node(level, offset >> level))
                offset += 1 << level
        result = chunks.pop()
        while chunks:
            result = node_hash(chunks.pop(), result)
        return result


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_proof(proof: object) -> bool:
    if isinstance(proof, (bytes, bytearray, str)) or not isinstance(proof, Sequence):
        return False
    return all(_is_hash(p) for p in proof)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show leaf ``index`` is in the tree ``(size, root)``?

    Needs only hashes. Malformed input (wrong hash lengths, ``index >= size``, negative
    numbers, non-bytes) is simply not a proof, so it returns False rather than raising.
    The proof binds the root and the leaf's position; the size itself is bound by the
    signed tree head the auditor got ``(size, root)`` from.
    """
    if not (_is_hash(leaf_hash) and _is_hash(root) and _is_proof(proof)):
        return False
    if not (_is_count(index) and _is_count(size)) or index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree ``(old_size, old_root)`` a prefix of ``(new_size, new_root)``?

    Needs only hashes; returns False, never raises, on malformed input. Sizes 0 and equal
    sizes need an empty proof: the empty tree (root SHA-256("")) is a prefix of every
    tree, and a tree is consistent with itself only if the roots agree.
    """
    if not (_is_hash(old_root) and _is_hash(new_root) and _is_proof(proof)):
        return False
    if not (_is_count(old_size) and _is_count(new_size)) or old_size > new_size:
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
