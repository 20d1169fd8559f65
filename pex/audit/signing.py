"""Signed tree heads: what the service vouches for, and how anyone checks it.

A tree head says "the log held `size` events, whose Merkle root was `root`, at `timestamp`".
It is signed with Ed25519 over the bytes Certificate Transparency signs for its tree heads
(RFC 6962 §3.5, TreeHeadSignature: version v1, signature type tree_hash, the timestamp in
milliseconds, the size, the root), so a head means the same thing to any CT tooling.

The private key is a PEM (PKCS#8) file only its owner may read, made on the service's first
start; the public key is written beside it (`.pub`, PEM) for operators to keep and give to
auditors. A head as JSON carries its public key for convenience only: a check against the key
in the head proves the head is whole, not who signed it; `--public-key` proves who did.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pex.audit.merkle import HASH_SIZE

KEY_FILE = "audit-signing-key.pem"  # in the data dir
_V1, _TREE_HASH = 0, 1  # RFC 6962's Version v1 and SignatureType tree_hash
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_PUBLIC_SIZE = 32
_SIGNATURE_SIZE = 64


class SigningKeyError(Exception):
    """A signing or public key that cannot be used (one line, fit for a user)."""


class HeadError(ValueError):
    """A tree head (or its JSON) that is not well formed (one line)."""


@dataclass(frozen=True)
class TreeHead:
    size: int
    timestamp: int  # milliseconds since the Unix epoch
    root: bytes
    public_key: bytes  # raw Ed25519, 32 bytes
    signature: bytes

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def signed_bytes(self) -> bytes:
        return signed_bytes(self.size, self.timestamp, self.root)

    def verifies(self, public_key: bytes | None = None) -> bool:
        """Whether the signature is good for this head, by `public_key` (raw) if given, else by
        the key the head names."""
        key = self.public_key if public_key is None else public_key
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(self.signature, self.signed_bytes())
        except (InvalidSignature, ValueError):
            return False
        return True

    def as_json(self) -> dict[str, Any]:
        """As `openpex head`, GET /OpenPEX/audit/head and a saved head file show it."""
        moment = _EPOCH + timedelta(milliseconds=self.timestamp)
        return {"treeSize": self.size, "timestamp": self.timestamp,
                "time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
                "rootHash": b64(self.root), "signature": b64(self.signature),
                "publicKey": b64(self.public_key), "keyId": self.key_id}

    @classmethod
    def from_json(cls, data: object) -> TreeHead:
        """A head from its JSON object (HeadError naming the field that is wrong)."""
        if not isinstance(data, dict):
            raise HeadError("a tree head is a JSON object with treeSize, timestamp, rootHash, signature, publicKey")
        size, timestamp = data.get("treeSize"), data.get("timestamp")
        for name, value in (("treeSize", size), ("timestamp", timestamp)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
                raise HeadError(f"{name}: expected a whole number >= 0, got {str(value)[:40]!r}")
        assert isinstance(size, int) and isinstance(timestamp, int)
        return cls(size, timestamp, _bytes(data, "rootHash", HASH_SIZE), _bytes(data, "publicKey", _PUBLIC_SIZE),
                   _bytes(data, "signature", _SIGNATURE_SIZE))


def key_id(public_key: bytes) -> str:
    """A short name for a key: the first 16 hex digits of SHA-256 of its raw bytes."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def signed_bytes(size: int, timestamp: int, root: bytes) -> bytes:
    """RFC 6962 §3.5's TreeHeadSignature: version, signature type, timestamp, size, root."""
    return bytes((_V1, _TREE_HASH)) + timestamp.to_bytes(8, "big") + size.to_bytes(8, "big") + root


def sign(key: Ed25519PrivateKey, size: int, timestamp: int, root: bytes) -> TreeHead:
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return TreeHead(size, timestamp, root, public, key.sign(signed_bytes(size, timestamp, root)))


def read_head_file(path: str) -> TreeHead:
    """A head an operator saved (`openpex head --format json > FILE`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise HeadError(f"cannot read the head {path}: {error.strerror if isinstance(error, OSError) else error}") \
            from None
    try:
        data = json.loads(text.strip().splitlines()[-1] if text.strip() else "")
    except ValueError:
        raise HeadError(f"{path} is not a tree head (expected the JSON `openpex head --format json` prints)") from None
    return TreeHead.from_json(data)


# ---------------------------------------------------------------------- keys

def signing_key(path: Path, create: bool) -> Ed25519PrivateKey:
    """The private key at `path`; made there (0600, with its .pub beside it) if it is missing
    and `create`. Refuses a key others may read, as ssh does."""
    if not path.exists():
        if not create:
            raise SigningKeyError(f"no signing key at {path}")
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        public_key_path(path).write_bytes(public_pem(key.public_key()))
        return key
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(f"the signing key {path} may be read by others than its owner; chmod 600 it")
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm, OSError) as error:
        raise SigningKeyError(f"{path} is not an unencrypted PEM private key: {str(error).splitlines()[0][:120]}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 key")
    key = loaded
    if not public_key_path(path).exists():
        public_key_path(path).write_bytes(public_pem(key.public_key()))
    return key


def public_key_path(private: Path) -> Path:
    return private.with_name(private.name.removesuffix(".pem") + ".pub")


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def read_public_key(path: str) -> bytes:
    """A public key's raw 32 bytes from a PEM file (the .pub beside the signing key), or from a
    file holding the base64 `publicKey` of a head."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise SigningKeyError(f"cannot read the public key {path}: {error.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        try:
            raw = base64.b64decode(data.strip(), validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) == _PUBLIC_SIZE:
            return raw
        raise SigningKeyError(f"{path} is not a public key (expected PEM, as in {KEY_FILE.removesuffix('.pem')}.pub)") \
            from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} is not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _bytes(data: dict[str, Any], name: str, size: int) -> bytes:
    value = data.get(name)
    try:
        decoded = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except binascii.Error:
        decoded = b""
    if len(decoded) != size:
        raise HeadError(f"{name}: expected {size} bytes in base64, got {str(value)[:60]!r}")
    return decoded
