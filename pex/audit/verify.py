"""`openpex head`, `openpex verify` and `openpex prove`: checking the log against its signed
tree heads (docs/audit.md).

`verify` rehashes every stored event, in log order, and walks the stored heads beside it: each
head's signature, each leaf a head recorded against the event now at that place, each head's
root against the leaves. The first thing that does not hold names its position. With a head an
operator saved elsewhere, it also proves (RFC 9162 consistency proof) that the log is still an
extension of it: what a holder of the signing key who rewrote the store cannot fake.

Exit codes: 0 it holds, 1 it does not (or the store failed while being read), 2 input that
cannot be used (a store that is not there, a malformed file or argument).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from pex.audit import arguments
from pex.audit.arguments import UsageError, complain, one_line_errors, progress, store_of, store_options, style_of
from pex.audit.events import as_json
from pex.audit.ledger import Ledger, LedgerError, Row, StoredHead, id_bytes
from pex.audit.merkle import EMPTY_ROOT, Frontier, MerkleLog, event_leaf, leaf_hash, verify_consistency, verify_inclusion
from pex.audit.signing import (KEY_FILE, HeadError, b64, SigningKeyError, TreeHead, public_key_path, read_head_file,
                               read_public_key)
from pex.domain.event_log import CheckedMapper, UndecodableEvent, event_record
from pex.domain.transcoding import MsgpackTranscoder
from pex.stores import StoreError, is_postgres

# ---------------------------------------------------------------------- the command line

def configure(parser: argparse.ArgumentParser, program: str) -> None:
    """The arguments every one of these commands takes: where the store is, how to print."""
    store_options(parser)
    parser.add_argument("--format", choices=("table", "json"),
                        help="table (default on a terminal) or json (one object a line; default otherwise)")
    one_line_errors(parser, program)


def configure_verify(parser: argparse.ArgumentParser) -> None:
    configure(parser, "openpex verify")
    parser.add_argument("--head", metavar="SAVED.json",
                        help="a head saved earlier (openpex head --format json): the log must still extend it")
    parser.add_argument("--public-key", metavar="PATH", action="append", default=[],
                        help="a key the heads may be signed with (the .pub beside the signing key; repeatable after "
                             "a key change; default: audit-signing-key.pub beside a SQLite store, if there)")
    parser.add_argument("--proof", metavar="FILE",
                        help="check an inclusion proof (openpex prove) against its head, without the store")


def configure_prove(parser: argparse.ArgumentParser) -> None:
    configure(parser, "openpex prove")
    parser.add_argument("--position", required=True, type=_position, metavar="N", help="the event's position in the log")


def _position(text: str) -> int:
    if arguments.position(text) < 1:
        raise argparse.ArgumentTypeError(f"{text[:64]!r} is not a position (the log's first is 1)")
    return int(text)


def _json_line(out: TextIO, value: object) -> None:
    out.write(json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------- openpex head

def run_head(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the latest stored head: 0, or 1 if the store has none yet."""
    out = sys.stdout if out is None else out
    try:
        with Ledger.open(store_of(args)) as ledger:
            stored = ledger.latest()
    except (StoreError, LedgerError) as error:
        return _refused("openpex head", error)
    if stored is None:
        print("openpex head: the store has no signed tree head yet (has `openpex serve` run on it?)", file=sys.stderr)
        return 1
    if style_of(args, out) == "json":
        _json_line(out, stored.head.as_json())
    else:
        _head_table(out, stored.head)
    return 0


def _head_table(out: TextIO, head: TreeHead) -> None:
    shown = head.as_json()
    for label, key in (("tree size", "treeSize"), ("time", "time"), ("root hash", "rootHash"),
                       ("key id", "keyId"), ("public key", "publicKey"), ("signature", "signature")):
        out.write(f"{label:<11} {shown[key]}\n")


def _refused(program: str, error: BaseException) -> int:
    complain(program, error)
    return 2


# ---------------------------------------------------------------------- openpex verify

@dataclass(frozen=True)
class Verdict:
    ok: bool
    events: int
    first_bad_position: int | None
    reason: str
    head: TreeHead | None = None  # the latest head that held
    heads: int = 0
    unsigned: int = 0  # events recorded after the latest head

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "events": self.events, "firstBadPosition": self.first_bad_position,
                "reason": self.reason}


class _Tampered(Exception):
    def __init__(self, position: int | None, reason: str) -> None:
        super().__init__(reason)
        self.position, self.reason = position, reason


def verify_store(ledger: Ledger, *, keys: Collection[bytes] = (), saved: TreeHead | None = None,
                 progress: Callable[[int], None] | None = None) -> Verdict:
    """Rehash the log and check it against every stored head (and a saved one). Every head must
    be signed by one of `keys` (raw Ed25519 public keys); without any, by the saved head's key,
    else by the first head's: then a head proves the log whole, not who signed it."""
    checker = _Checker(ledger, keys, saved, progress)
    try:
        checker.run()
    except _Tampered as tampered:
        return Verdict(False, checker.frontier.size, tampered.position, tampered.reason, checker.latest,
                       checker.heads)
    except LedgerError as error:
        return Verdict(False, checker.frontier.size, None, f"the store cannot be read: {error}", checker.latest,
                       checker.heads)
    return Verdict(True, checker.frontier.size, None, checker.summary(), checker.latest, checker.heads,
                   checker.unsigned)


class _Checker:
    def __init__(self, ledger: Ledger, keys: Collection[bytes], saved: TreeHead | None,
                 progress: Callable[[int], None] | None) -> None:
        self.ledger, self.saved, self.progress = ledger, saved, progress
        self.keys = set(keys) or ({saved.public_key} if saved is not None else set())
        self.trusted = bool(self.keys)  # else the first head's key is taken on its word
        self.frontier = Frontier()
        self.tree = MerkleLog() if saved is not None else None  # for the consistency proof
        self.saved_root = EMPTY_ROOT if saved is not None and saved.size == 0 else None  # the log's, at its size
        self.latest: TreeHead | None = None
        self.heads = 0
        self.unsigned = 0
        self._last_position = 0
        self._mapper = _mapper()

    def run(self) -> None:
        rows = self.ledger.rows(0)
        for stored in self.ledger.heads():
            self._check_head(stored, rows)
        for row in rows:  # recorded since the last head: no head vouches for them yet
            self._check_decodes(row)
            self._take(row.leaf_hash(), row.position)
            self.unsigned += 1
        if self.saved is not None:
            self._check_saved(self.saved)
        if self.latest is None and self.frontier.size:
            raise _Tampered(None, f"no signed tree head vouches for the {self.frontier.size} events of this store "
                                  "(has `openpex serve` run on it with tree heads?)")

    def _check_head(self, stored: StoredHead, rows: Iterator[Row]) -> None:
        head = stored.head
        first = self._last_position + 1  # (the first position it covers, whatever its leaves say)
        name = f"the head of size {head.size} ({head.as_json()['time']})"
        if not self.keys:
            self.keys.add(head.public_key)
        if head.public_key not in self.keys:
            raise _Tampered(first, f"{name} is signed by key {head.key_id}, not by "
                                   + ("the key given" if self.trusted else "the key of the heads before it"))
        if not head.verifies():
            raise _Tampered(first, f"{name}: its signature does not verify (the head was altered)")
        if stored.count != head.size - self.frontier.size:
            raise _Tampered(first, f"{name} records {stored.count} events after a head of size "
                                   f"{self.frontier.size} (a head was altered or removed)")
        for position, recorded in stored.added():
            row = next(rows, None)
            if row is None:
                raise _Tampered(position, f"the event at position {position} is missing: the log ends at "
                                          f"position {self._last_position} (events were deleted)")
            if row.position < position:
                raise _Tampered(row.position, f"an event at position {row.position} was inserted "
                                              f"(no head recorded it; position {position} follows {self._last_position})")
            if row.position > position:
                raise _Tampered(position, f"the event at position {position} was deleted "
                                          f"(position {row.position} follows {self._last_position})")
            if row.leaf_hash() != recorded:
                undecodable = "" if self._decodes(row) else "; it no longer decodes"
                raise _Tampered(position, f"the event at position {position} differs from the one the log "
                                          f"recorded (its bytes were changed or events were moved{undecodable})")
            self._take(recorded, position)
        if self.frontier.root() != head.root:
            raise _Tampered(first, f"the events from position {first} do not hash to the signed root of {name} "
                                   "(the ledger itself was altered)")
        self.latest = head
        self.heads += 1

    def _check_saved(self, saved: TreeHead) -> None:
        name = f"the saved head (size {saved.size}, {saved.as_json()['time']})"
        if saved.public_key not in self.keys:
            raise _Tampered(None, f"{name} is signed by key {saved.key_id}, not by the key the heads are signed with")
        if not saved.verifies():
            raise _Tampered(None, f"{name}: its signature does not verify (the file was altered)")
        if saved.size > self.frontier.size:
            raise _Tampered(None, f"{name} covers {saved.size} events; the log holds only {self.frontier.size} "
                                  "(events were deleted from its end, with the heads that signed them)")
        assert self.tree is not None
        newest = self.latest if self.latest is not None and self.latest.size >= saved.size else None
        size, root = (newest.size, newest.root) if newest is not None else (self.tree.size, self.tree.root())
        proof = self.tree.consistency_proof(saved.size, size)
        if self.saved_root != saved.root or not verify_consistency(saved.size, size, saved.root, root, proof):
            raise _Tampered(None, f"the log is no longer an extension of {name}: its first {saved.size} events are "
                                  "not the ones that head signed (the store was rewritten, with the signing key)")

    def _take(self, hashed: bytes, position: int) -> None:
        self.frontier.append(hashed)
        self._last_position = position
        if self.tree is not None:
            self.tree.append_leaf_hash(hashed)
        if self.saved is not None and self.frontier.size == self.saved.size:
            self.saved_root = self.frontier.root()
        if self.progress is not None:
            self.progress(1)

    def _check_decodes(self, row: Row) -> None:
        if not self._decodes(row):
            raise _Tampered(row.position, f"the event at position {row.position} does not decode "
                                          "(it was written by something other than OpenPEX)")

    def _decodes(self, row: Row) -> bool:
        return decode(self._mapper, row) is not None

    def summary(self) -> str:
        if self.latest is None:
            return "the store is empty"
        text = (f"{self.frontier.size} events hold; {self.latest.size} under {self.heads} signed heads "
                f"(the latest at {self.latest.as_json()['time']}, key {self.latest.key_id}"
                + (")" if self.trusted else ", taken from the heads themselves: give --public-key to know who signed)"))
        if self.unsigned:
            text += f"; {self.unsigned} recorded since"
        if self.saved is not None:
            text += f"; the log extends the saved head of size {self.saved.size}"
        return text


def run_verify(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = sys.stdout if out is None else out
    program = "openpex verify"
    try:
        keys = [read_public_key(path) for path in args.public_key]
        if args.proof is not None:
            if args.head is not None:
                raise UsageError("--proof is checked against the head inside it; --head is for the store")
            return _verify_proof(args.proof, set(keys), style_of(args, out), out)
        saved = None if args.head is None else read_head_file(args.head)
        store = store_of(args)
        beside = None if is_postgres(store) else Path(store).parent / public_key_path(Path(KEY_FILE)).name
        if not keys and beside is not None and beside.is_file():  # the service's own .pub, if it is there
            keys.append(read_public_key(str(beside)))
        with Ledger.open(store) as ledger:
            with _counting(ledger) as step:
                verdict = verify_store(ledger, keys=keys, saved=saved, progress=step)
    except (UsageError, HeadError, SigningKeyError, StoreError, LedgerError) as error:
        return _refused(program, error)
    if style_of(args, out) == "json":
        if verdict.ok and verdict.head is not None:
            _json_line(out, {"head": verdict.head.as_json()})
        _json_line(out, verdict.as_json())
    elif verdict.ok:
        out.write(f"ok: {verdict.reason}\n")
        if verdict.head is not None:
            _head_table(out, verdict.head)
    else:
        where = "" if verdict.first_bad_position is None else f" at position {verdict.first_bad_position}"
        out.write(f"FAILED{where}: {verdict.reason}\n")
    return 0 if verdict.ok else 1


@contextmanager
def _counting(ledger: Ledger) -> Iterator[Callable[[int], None]]:
    """The walk's progress, told by the event and shown by the thousand (tqdm is slow per update)."""
    total = ledger.last_position()
    with progress("verifying") as told:
        counted = [0]

        def step(n: int) -> None:
            counted[0] += n
            if counted[0] % 4096 == 0:
                told(counted[0], total)

        yield step


# ---------------------------------------------------------------------- openpex prove / verify --proof

def run_prove(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print an inclusion proof of the event at --position against the latest stored head."""
    out = sys.stdout if out is None else out
    program = "openpex prove"
    try:
        with Ledger.open(store_of(args)) as ledger:
            proof = prove(ledger, args.position)
    except (UsageError, StoreError, LedgerError) as error:
        return _refused(program, error)
    except _Tampered as tampered:
        complain(program, tampered.reason)
        return 1
    if style_of(args, out) == "json":
        _json_line(out, proof)
    else:
        _proof_table(out, proof)
    return 0


def prove(ledger: Ledger, position: int) -> dict[str, Any]:
    """The proof as JSON: the event's row, its leaf hash and audit path, and the head."""
    tree = MerkleLog()
    index = None
    latest: StoredHead | None = None
    for stored in ledger.heads():
        for at, hashed in stored.added():
            if at == position:
                index = tree.size
            tree.append_leaf_hash(hashed)
        latest = stored
    if latest is None:
        raise UsageError("the store has no signed tree head yet (has `openpex serve` run on it?)")
    if index is None:
        raise UsageError(f"no event at position {position} is under the latest signed head "
                         f"(size {latest.head.size}); a new event is in the next head, within a second")
    row = next(ledger.rows(position - 1, position), None)
    if row is None or row.position != position:
        raise _Tampered(position, f"the event at position {position} is no longer in the store")
    if row.leaf_hash() != tree.leaf_hash_at(index):
        raise _Tampered(position, f"the event at position {position} differs from the one the head signed")
    head = latest.head
    return {"position": position, "leafIndex": index, "treeSize": head.size,
            "event": {"originatorId": str(UUID(bytes=row.leaf()[8:24])), "originatorVersion": row.version,
                      "topic": _text(row.topic), "state": b64(bytes(row.state) if isinstance(row.state, (bytes, memoryview))
                                                         else b"")},
            "leafHash": b64(tree.leaf_hash_at(index)),
            "auditPath": [b64(h) for h in tree.inclusion_proof(index, head.size)],
            "head": head.as_json()}


def _proof_table(out: TextIO, proof: dict[str, Any]) -> None:
    out.write(f"position    {proof['position']} (leaf {proof['leafIndex']} of {proof['treeSize']})\n")
    out.write(f"event       {proof['event']['topic']} of {proof['event']['originatorId']} "
              f"v{proof['event']['originatorVersion']}\n")
    out.write(f"leaf hash   {proof['leafHash']}\n")
    out.write(f"audit path  {len(proof['auditPath'])} hashes\n")
    _head_table(out, TreeHead.from_json(proof["head"]))
    out.write("save it with --format json, and check it with: openpex verify --proof FILE --public-key KEY.pub\n")


def check_proof(proof: object, keys: Collection[bytes]) -> tuple[str, dict[str, Any] | None]:
    """'' and the event's data if the proof holds, else why not (and None)."""
    if not isinstance(proof, dict):
        return "the proof is not a JSON object", None
    head = TreeHead.from_json(proof.get("head"))
    event = proof.get("event")
    index, size, position = proof.get("leafIndex"), proof.get("treeSize"), proof.get("position")
    path = proof.get("auditPath")
    if not (isinstance(event, dict) and all(isinstance(v, int) and not isinstance(v, bool)
                                            for v in (index, size, position)) and isinstance(path, list)):
        raise HeadError("the proof lacks its event, leafIndex, treeSize, position or auditPath")
    assert isinstance(index, int) and isinstance(size, int) and isinstance(position, int)
    try:
        state = base64.b64decode(str(event.get("state")), validate=True)
        hashes = [base64.b64decode(str(h), validate=True) for h in path]
        originator = UUID(str(event.get("originatorId")))
    except (binascii.Error, ValueError):
        raise HeadError("the proof's event or audit path is not base64 / an id") from None
    version, topic = event.get("originatorVersion"), event.get("topic")
    if not isinstance(version, int) or not isinstance(topic, str):
        raise HeadError("the proof's event lacks its originatorVersion or topic")
    try:
        hashed = leaf_hash(event_leaf(position, originator.bytes, version, topic, state))
    except ValueError as error:
        raise HeadError(f"the proof's event cannot be a leaf: {error}") from None
    if keys and head.public_key not in keys:
        return f"the head is signed by key {head.key_id}, not by the key given", None
    if not head.verifies():
        return "the head's signature does not verify", None
    if size != head.size:
        return f"the proof is for a tree of {size} events, its head has {head.size}", None
    if not verify_inclusion(hashed, index, size, hashes, head.root):
        return "the event is not in the tree the head signed (the proof or the event was altered)", None
    return "", decode(_mapper(), Row(position, originator, version, topic, state))


def _verify_proof(path: str, keys: Collection[bytes], style: str, out: TextIO) -> int:
    try:
        proof = json.loads(Path(path).read_text(encoding="utf-8").strip().splitlines()[-1])
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        raise UsageError(f"cannot read a proof from {path} (expected the JSON `openpex prove --format json` prints)") \
            from None
    reason, data = check_proof(proof, keys)
    position = proof.get("position") if isinstance(proof, dict) else None
    verdict = {"ok": not reason, "events": 1, "firstBadPosition": position if reason else None,
               "reason": reason or f"the event at position {position} is in the signed tree of "
                                   f"{proof['treeSize']} events" + ("" if keys else
                                                                    " (signed by the key in the head itself)")}
    if style == "json":
        if data is not None:
            _json_line(out, {"event": data})
        _json_line(out, verdict)
    else:
        out.write(("ok: " if not reason else f"FAILED at position {position}: ") + str(verdict["reason"]) + "\n")
        if data is not None:
            out.write(json.dumps(data, ensure_ascii=False) + "\n")
    return 0 if not reason else 1


# ---------------------------------------------------------------------- decoding a row

def _mapper() -> CheckedMapper:
    return CheckedMapper(transcoder=MsgpackTranscoder())


def decode(mapper: CheckedMapper, row: Row) -> dict[str, Any] | None:
    """The row as an event in the domain's words (as `openpex events` prints it), or None if it
    is not an event OpenPEX wrote."""
    try:
        topic = row.topic.decode("utf-8", "strict") if isinstance(row.topic, bytes) else row.topic
    except UnicodeDecodeError:
        return None
    if not isinstance(topic, str) or not isinstance(row.state, (bytes, bytearray, memoryview)) \
            or not isinstance(row.version, int):
        return None
    try:
        originator = row.originator_id if isinstance(row.originator_id, UUID) else UUID(bytes=id_bytes(row.originator_id))
        record = event_record(mapper, row.position, StoredEvent(originator, row.version, topic, bytes(row.state)))
    except UndecodableEvent:
        return None
    return as_json(record)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


