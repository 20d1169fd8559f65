"""Signed tree heads: the bytes signed, what a signature binds, the JSON form, the key files."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pex.audit.signing import (
    HeadError,
    SigningKeyError,
    TreeHead,
    public_key_path,
    read_head_file,
    read_public_key,
    sign,
    signed_bytes,
    signing_key,
)

ROOT = bytes(range(32))


def test_the_signed_bytes_are_rfc_6962s_tree_head_signature() -> None:
    # version v1 (0), signature type tree_hash (1), uint64 timestamp, uint64 tree_size, root
    assert signed_bytes(5, 0x0102, ROOT) == b"\x00\x01" + (0x0102).to_bytes(8, "big") + (5).to_bytes(8, "big") + ROOT


def test_a_signature_binds_size_time_root_and_key() -> None:
    key = Ed25519PrivateKey.generate()
    head = sign(key, 10, 1_700_000_000_000, ROOT)
    assert head.verifies()
    assert head.verifies(head.public_key)
    other = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                   serialization.PublicFormat.Raw)
    assert not head.verifies(other)
    for altered in (TreeHead(11, head.timestamp, head.root, head.public_key, head.signature),
                    TreeHead(10, head.timestamp + 1, head.root, head.public_key, head.signature),
                    TreeHead(10, head.timestamp, bytes(32), head.public_key, head.signature),
                    TreeHead(10, head.timestamp, head.root, other, head.signature),
                    TreeHead(10, head.timestamp, head.root, head.public_key, bytes(64))):
        assert not altered.verifies()


def test_a_head_goes_to_json_and_back(tmp_path: Path) -> None:
    head = sign(Ed25519PrivateKey.generate(), 3, 1_795_655_634_172, ROOT)
    shown = head.as_json()
    assert shown["time"] == "2026-11-26T01:13:54.172Z" and shown["treeSize"] == 3
    assert base64.b64decode(shown["rootHash"]) == ROOT and len(shown["keyId"]) == 16
    assert TreeHead.from_json(shown) == head
    saved = tmp_path / "head.json"
    saved.write_text("a banner line\n" + __import__("json").dumps(shown) + "\n")
    assert read_head_file(str(saved)) == head


@pytest.mark.parametrize(("change", "field"), [
    ({"treeSize": -1}, "treeSize"), ({"treeSize": True}, "treeSize"), ({"timestamp": "now"}, "timestamp"),
    ({"rootHash": "AAAA"}, "rootHash"), ({"rootHash": "not base64!"}, "rootHash"),
    ({"signature": None}, "signature"), ({"publicKey": 7}, "publicKey"),
])
def test_a_malformed_head_names_its_field(change: dict[str, object], field: str) -> None:
    shown = sign(Ed25519PrivateKey.generate(), 3, 1, ROOT).as_json()
    with pytest.raises(HeadError, match=field):
        TreeHead.from_json({**shown, **change})
    with pytest.raises(HeadError):
        TreeHead.from_json([shown])


def test_the_key_is_made_private_with_its_public_half_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "audit-signing-key.pem"
    key = signing_key(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_path(path) == tmp_path / "audit-signing-key.pub"
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert read_public_key(str(public_key_path(path))) == raw
    again = signing_key(path, create=False)
    assert again.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == raw
    base64_file = tmp_path / "key.b64"
    base64_file.write_text(base64.b64encode(raw).decode())
    assert read_public_key(str(base64_file)) == raw


def test_keys_that_cannot_be_used_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="no signing key"):
        signing_key(tmp_path / "missing.pem", create=False)
    path = tmp_path / "open.pem"
    signing_key(path, create=True)
    os.chmod(path, 0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        signing_key(path, create=False)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    garbage.chmod(0o600)
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM"):
        signing_key(garbage, create=False)
    other = tmp_path / "ec.pem"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    other.chmod(0o600)
    with pytest.raises(SigningKeyError, match="not an Ed25519"):
        signing_key(other, create=False)
    with pytest.raises(SigningKeyError, match="not a public key"):
        read_public_key(str(garbage))
    with pytest.raises(SigningKeyError, match="cannot read"):
        read_public_key(str(tmp_path / "none.pub"))
