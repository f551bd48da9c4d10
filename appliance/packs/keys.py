"""Ed25519 keys for pack and root signatures: generate, store (mode 0600), load, sign, verify.

A key is identified by its key id: the hex SHA-256 of its 32-byte raw public key, so the same key always
has the same id whatever file it came from (a threshold can never count one key twice).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.audit import keys as audit_keys
from appliance.errors import PackError, ValidationError

__all__ = ["generate_key", "key_id", "load_private_key", "load_public_key", "public_from_hex", "public_hex",
           "sign", "verify"]


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def public_from_hex(value: str) -> Ed25519PublicKey:
    try:
        raw = bytes.fromhex(value)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise PackError(f"not an Ed25519 public key: {value[:16]}…") from exc


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(bytes.fromhex(public_hex(key))).hexdigest()


def generate_key(path: Path) -> Ed25519PrivateKey:
    """Create a new private key at ``path`` (mode 0600, refusing to overwrite) and its ``.pub`` beside it."""
    if path.exists():
        raise PackError(f"{path} exists already; keys are never overwritten")
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    path.with_name(path.name + ".pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load a signing key; refuses files that others can read (a signing key is a secret)."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise PackError(f"cannot read the key {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PackError(f"the key {path} is readable by other users (mode {oct(mode & 0o777)}); chmod 600 it")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PackError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise PackError(f"{path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A public key from a PEM file, or the public half of a private key file (the audit key's reader)."""
    try:
        return audit_keys.load_public_key(path).key
    except ValidationError as exc:
        raise PackError(exc.message) from exc


def sign(key: Ed25519PrivateKey, payload: bytes) -> dict[str, str]:
    return {"keyid": key_id(key.public_key()), "sig": base64.b64encode(key.sign(payload)).decode()}


def verify(key: Ed25519PublicKey, payload: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), payload)
    except (InvalidSignature, ValueError):
        return False
    return True
