"""The audit Merkle log against RFC 9162's own definitions and the CT project's vectors.

A log whose roots no other implementation reproduces proves nothing to an outside
auditor, so the incremental tree is checked against a literal transcription of the
RFC's recursive MTH / PATH / PROOF, and against published Certificate Transparency data.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pex.audit.merkle import (
    EMPTY_ROOT,
    MerkleLog,
    Frontier,
    event_leaf,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# --- the RFC's definitions, transcribed naively (D is a list of leaf byte strings) ---


def k_of(n: int) -> int:
    """Largest power of two strictly smaller than n, by counting up."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = k_of(n)
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = k_of(n)
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = k_of(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    return subproof(m, d, True)


def directions(m: int, n: int) -> list[bool]:
    """Which side each PATH sibling sits on (True: right), leaf upward, per the recursion."""
    if n == 1:
        return []
    k = k_of(n)
    if m < k:
        return directions(m, k) + [True]
    return directions(m - k, n - k) + [False]


def entries(n: int) -> list[bytes]:
    return [bytes([i % 256, i // 256]) * (i % 5) for i in range(n)]


def log_of(d: list[bytes]) -> MerkleLog:
    log = MerkleLog()
    for entry in d:
        log.append(entry)
    return log


def flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


# --- exhaustive agreement with the RFC for every size 0..64 ---

D64 = entries(64)
LOG64 = log_of(D64)


def test_hash_primitives_are_the_rfc_prefixes() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == MerkleLog().root()
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()


def test_roots_match_mth_at_every_size_both_live_and_historic() -> None:
    log = MerkleLog()
    for n in range(65):
        assert log.size == n
        assert log.root() == mth(D64[:n])
        if n < 64:
            assert log.append(D64[n]) == n
    for n in range(65):
        assert LOG64.root_at(n) == mth(D64[:n])


@pytest.mark.parametrize("n", range(1, 65))
def test_inclusion_proofs_match_path_and_verify(n: int) -> None:
    root = LOG64.root_at(n)
    for m in range(n):
        got = LOG64.inclusion_proof(m, n)
        assert got == path(m, D64[:n])
        assert verify_inclusion(leaf_hash(D64[m]), m, n, got, root)
        assert LOG64.leaf_hash_at(m) == leaf_hash(D64[m])


@pytest.mark.parametrize("n", range(0, 65))
def test_consistency_proofs_match_proof_and_verify(n: int) -> None:
    new_root = LOG64.root_at(n)
    for m in range(n + 1):
        got = LOG64.consistency_proof(m, n)
        assert got == ([] if m in (0, n) else proof(m, D64[:n]))
        assert verify_consistency(m, n, LOG64.root_at(m), new_root, got)


# --- published vectors ---
# Leaves, roots (sizes 0..8), inclusion and consistency proofs are copied from the
# Certificate Transparency project's RFC 6962 test data as kept in
# github.com/transparency-dev/merkle: testonly/constants.go (LeafInputs, RootHashes,
# NodeHashes) and proof/verify_test.go (inclusionProofs, consistencyProofs; their leaf
# numbers are 1-based, turned 0-based here). The same roots appear in
# certificate-transparency-go's merkle tree tests (rootForTestLeaves).

CT_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [  # (index, size, proof)
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CT_CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CT_LOG = log_of(CT_LEAVES)


def test_roots_match_the_ct_vectors() -> None:
    assert [CT_LOG.root_at(n).hex() for n in range(9)] == CT_ROOTS


@pytest.mark.parametrize(("index", "size", "expected"), CT_INCLUSION)
def test_inclusion_proofs_match_the_ct_vectors(index: int, size: int, expected: list[str]) -> None:
    got = CT_LOG.inclusion_proof(index, size)
    assert [h.hex() for h in got] == expected
    root = bytes.fromhex(CT_ROOTS[size])
    assert verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, got, root)


@pytest.mark.parametrize(("old", "new", "expected"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_ct_vectors(old: int, new: int, expected: list[str]) -> None:
    got = CT_LOG.consistency_proof(old, new)
    assert [h.hex() for h in got] == expected
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, got)


# --- properties: proofs verify, and any tampering is caught ---

sizes = st.integers(1, 300)


def distinct_leaves(n: int) -> st.SearchStrategy[list[bytes]]:
    """Distinct, so that a leaf found at another index really is a wrong answer."""
    return st.lists(st.binary(max_size=8), min_size=n, max_size=n, unique=True)


@st.composite
def inclusion_cases(draw: st.DrawFn) -> tuple[MerkleLog, int, int]:
    n = draw(sizes)
    log = log_of(draw(distinct_leaves(n)))
    size = draw(st.integers(1, n))
    return log, draw(st.integers(0, size - 1)), size


@st.composite
def consistency_cases(draw: st.DrawFn) -> tuple[MerkleLog, int, int]:
    n = draw(sizes)
    log = log_of(draw(distinct_leaves(n)))
    new = draw(st.integers(1, n))
    return log, draw(st.integers(1, new)), new


@settings(max_examples=200, deadline=None)
@given(inclusion_cases(), st.integers(0, 2**16))
def test_inclusion_verifies_and_catches_every_single_bit_flip(
    case: tuple[MerkleLog, int, int], bit: int
) -> None:
    log, index, size = case
    leaf, root, got = log.leaf_hash_at(index), log.root_at(size), log.inclusion_proof(index, size)
    assert verify_inclusion(leaf, index, size, got, root)
    assert not verify_inclusion(flip(leaf, bit), index, size, got, root)
    assert not verify_inclusion(leaf, index, size, got, flip(root, bit))
    for i in range(len(got)):
        tampered = got[:i] + [flip(got[i], bit)] + got[i + 1 :]
        assert not verify_inclusion(leaf, index, size, tampered, root)
    if got:
        assert not verify_inclusion(leaf, index, size, got[:-1], root)
    assert not verify_inclusion(leaf, index, size, got + [root], root)
    assert not verify_inclusion(leaf, index, size, [root] + got, root)


@settings(max_examples=200, deadline=None)
@given(inclusion_cases(), st.data())
def test_inclusion_rejects_a_wrong_index_or_size(case: tuple[MerkleLog, int, int], data: st.DataObject) -> None:
    log, index, size = case
    leaf, root, got = log.leaf_hash_at(index), log.root_at(size), log.inclusion_proof(index, size)
    wrong_index = data.draw(st.integers(0, 2 * size).filter(lambda i: i != index))
    assert not verify_inclusion(leaf, wrong_index, size, got, root)
    wrong_size = data.draw(st.integers(0, 2 * size + 2).filter(lambda s: s != size))
    # Against that size's real root the proof fails unless it *is* that size's proof.
    if index < wrong_size <= log.size:
        assert verify_inclusion(leaf, index, wrong_size, got, log.root_at(wrong_size)) == (
            got == log.inclusion_proof(index, wrong_size)
        )
    # Relabelling the same root with another size passes only when the RFC recursion
    # gives both sizes the same path shape: the size is bound by the signed tree head.
    same_shape = index < wrong_size and directions(index, wrong_size) == directions(index, size)
    assert verify_inclusion(leaf, index, wrong_size, got, root) == same_shape


@settings(max_examples=200, deadline=None)
@given(consistency_cases(), st.integers(0, 2**16))
def test_consistency_verifies_and_catches_every_single_bit_flip(
    case: tuple[MerkleLog, int, int], bit: int
) -> None:
    log, old, new = case
    old_root, new_root, got = log.root_at(old), log.root_at(new), log.consistency_proof(old, new)
    assert verify_consistency(old, new, old_root, new_root, got)
    assert not verify_consistency(old, new, flip(old_root, bit), new_root, got)
    assert not verify_consistency(old, new, old_root, flip(new_root, bit), got)
    for i in range(len(got)):
        tampered = got[:i] + [flip(got[i], bit)] + got[i + 1 :]
        assert not verify_consistency(old, new, old_root, new_root, tampered)
    if got:
        assert not verify_consistency(old, new, old_root, new_root, got[:-1])
        assert not verify_consistency(old, new, old_root, new_root, [got[0]] + got)
    assert not verify_consistency(old, new, old_root, new_root, got + [new_root])
    if old != new:
        assert not verify_consistency(old, new, new_root, old_root, got)


@settings(max_examples=200, deadline=None)
@given(consistency_cases(), st.data())
def test_consistency_rejects_wrong_sizes_against_their_real_roots(
    case: tuple[MerkleLog, int, int], data: st.DataObject
) -> None:
    log, old, new = case
    got = log.consistency_proof(old, new)
    wrong_old = data.draw(st.integers(1, new).filter(lambda s: s != old)) if new > 1 else old
    wrong_new = data.draw(st.integers(old, log.size).filter(lambda s: s != new)) if log.size > old else new
    for m, n in {(wrong_old, new), (old, wrong_new)} - {(old, new)}:
        assert verify_consistency(m, n, log.root_at(m), log.root_at(n), got) == (
            got == log.consistency_proof(m, n)
        )


def test_a_fork_is_not_consistent_with_the_history_it_rewrote() -> None:
    honest = entries(20)
    forked = log_of(honest[:5] + [b"rewritten"] + honest[6:])
    for old in range(6, 20):  # every head the auditor may hold that covers the rewritten entry
        got = forked.consistency_proof(old, 20)
        assert verify_consistency(old, 20, forked.root_at(old), forked.root(), got)
        assert not verify_consistency(old, 20, log_of(honest).root_at(old), forked.root(), got)


# --- malformed input is a failed verification, never an exception ---

GOOD = LOG64.inclusion_proof(5, 13)
GOOD_LEAF, GOOD_ROOT = leaf_hash(D64[5]), LOG64.root_at(13)
H = b"\x00" * 32


@pytest.mark.parametrize(
    "args",
    [
        (GOOD_LEAF, 13, 13, GOOD, GOOD_ROOT),  # index == size
        (GOOD_LEAF, 14, 13, GOOD, GOOD_ROOT),  # index > size
        (GOOD_LEAF, -1, 13, GOOD, GOOD_ROOT),
        (GOOD_LEAF, 0, 0, [], EMPTY_ROOT),  # nothing is in the empty tree
        (GOOD_LEAF[:31], 5, 13, GOOD, GOOD_ROOT),
        (GOOD_LEAF, 5, 13, GOOD, GOOD_ROOT + b"\x00"),
        (GOOD_LEAF, 5, 13, [*GOOD[:-1], GOOD[-1][:16]], GOOD_ROOT),
        (GOOD_LEAF, 5, 13, [*GOOD[:-1], b""], GOOD_ROOT),
        (GOOD_LEAF, 5, 13, [*GOOD[:-1], "not bytes"], GOOD_ROOT),
        (GOOD_LEAF, 5, 13, b"".join(GOOD), GOOD_ROOT),
        (GOOD_LEAF, 5, 13, None, GOOD_ROOT),
        (GOOD_LEAF.hex(), 5, 13, GOOD, GOOD_ROOT),
        (GOOD_LEAF, 5.0, 13, GOOD, GOOD_ROOT),
        (GOOD_LEAF, "5", 13, GOOD, GOOD_ROOT),
        (bytearray(GOOD_LEAF), 5, 13, GOOD, GOOD_ROOT),
    ],
)
def test_malformed_inclusion_input_is_false(args: tuple[object, ...]) -> None:
    assert verify_inclusion(*args) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [
        (5, 4, H, H, [H]),  # time travel
        (-1, 4, H, H, [H]),
        (2, 5, H, H, []),  # a real extension needs a proof
        (0, 0, H, H, []),  # the empty tree's root is SHA-256("")
        (0, 5, EMPTY_ROOT, H, [H]),  # nothing to prove, so no proof
        (3, 3, H, b"\x01" * 32, []),  # same size, different roots
        (3, 3, H, H, [H]),
        (2, 5, H[:31], H, [H, H]),
        (2, 5, H, H, [H, H[:31]]),
        (2, 5, H, H, None),
        (2, 5, H, H, H + H),
        ("2", 5, H, H, [H, H]),
        (2, 5, "h", H, [H, H]),
    ],
)
def test_malformed_consistency_input_is_false(args: tuple[object, ...]) -> None:
    assert verify_consistency(*args) is False  # type: ignore[arg-type]


def test_trivial_consistency_holds() -> None:
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 9, EMPTY_ROOT, LOG64.root_at(9), [])
    assert verify_consistency(9, 9, LOG64.root_at(9), LOG64.root_at(9), [])


def test_the_log_refuses_questions_about_sizes_it_never_had() -> None:
    log = log_of(entries(5))
    with pytest.raises(ValueError):
        log.root_at(6)
    with pytest.raises(IndexError):
        log.inclusion_proof(5, 5)
    with pytest.raises(ValueError):
        log.inclusion_proof(0, 6)
    with pytest.raises(ValueError):
        log.consistency_proof(4, 3)
    with pytest.raises(ValueError):
        log.consistency_proof(1, 6)
    with pytest.raises(ValueError):
        log.append_leaf_hash(b"short")


# --- what a leaf is for OpenPEX ---


ID_A, ID_B = bytes(range(16)), bytes(range(1, 17))


def test_event_leaf_layout_is_position_id_version_topic_length_topic_state() -> None:
    leaf = event_leaf(258, ID_A, 3, "pex.domain:Booked", b"\x01\x02")
    assert leaf == ((258).to_bytes(8, "big") + ID_A + (3).to_bytes(8, "big") + (17).to_bytes(2, "big")
                    + b"pex.domain:Booked" + b"\x01\x02")


@given(
    st.integers(0, 2**64 - 1), st.sampled_from([ID_A, ID_B]), st.integers(0, 3), st.text(max_size=20),
    st.binary(max_size=20),
    st.integers(0, 2**64 - 1), st.sampled_from([ID_A, ID_B]), st.integers(0, 3), st.text(max_size=20),
    st.binary(max_size=20),
)
def test_event_leaves_are_unambiguous(p1: int, o1: bytes, v1: int, t1: str, s1: bytes,
                                      p2: int, o2: bytes, v2: int, t2: str, s2: bytes) -> None:
    assert (event_leaf(p1, o1, v1, t1, s1) == event_leaf(p2, o2, v2, t2, s2)) == \
        ((p1, o1, v1, t1, s1) == (p2, o2, v2, t2, s2))


def test_changing_reordering_inserting_or_deleting_an_event_changes_the_root() -> None:
    events = [(i + 1, f"state {i}".encode(), "pex.domain.orders:Order.Placed") for i in range(10)]

    def root(evs: list[tuple[int, bytes, str]]) -> bytes:
        return log_of([event_leaf(p, ID_A, p, t, s) for p, s, t in evs]).root()

    original = root(events)
    changed = events[:3] + [(4, b"state 3!", events[3][2])] + events[4:]
    reordered = events[:3] + [events[4], events[3]] + events[5:]
    renumbered = [(p, s, t) for p, (_, s, t) in zip(range(1, 11), reordered)]  # positions kept in order
    inserted = events[:5] + [(6, b"forged", events[0][2])] + events[5:]
    deleted = events[:5] + events[6:]
    for tampered in (changed, reordered, renumbered, inserted, deleted):
        assert root(tampered) != original


def test_event_leaf_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(ValueError):
        event_leaf(-1, ID_A, 1, "t", b"")
    with pytest.raises(ValueError):
        event_leaf(2**64, ID_A, 1, "t", b"")
    with pytest.raises(ValueError):
        event_leaf(0, ID_A, 1, "x" * 65536, b"")
    with pytest.raises(ValueError):
        event_leaf(0, b"short", 1, "t", b"")


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70))
def test_a_frontier_has_the_logs_root_at_every_size_and_survives_a_round_trip(leaves: list[bytes]) -> None:
    log, frontier = MerkleLog(), Frontier()
    assert frontier.root() == log.root()
    for hashed in leaves:
        log.append_leaf_hash(hashed)
        frontier.append(hashed)
        assert frontier.root() == log.root()
        frontier = Frontier.from_bytes(frontier.size, frontier.to_bytes())
    assert frontier.size == len(leaves)


def test_a_frontier_refuses_hashes_that_do_not_fit_its_size() -> None:
    with pytest.raises(ValueError):
        Frontier(3, [b"\x00" * 32])
    with pytest.raises(ValueError):
        Frontier(1, [b"short"])
