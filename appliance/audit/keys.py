"""The appliance's audit key (Ed25519) and its appliance id, both in the data directory, outside the database.

``<data_dir>/keys/audit-ed25519.pem`` (PKCS#8, mode 0600, directory 0700) signs checkpoints, purge
markers, archives and exports; ``audit-ed25519.pub`` beside it is the public half for auditors, and
``appliance-id`` names this appliance in every checkpoint. All three are created on first use. Creation is
race-free across processes: each file is written aside and linked into place, and a loser reads the
winner's file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.errors import ConfigError, ValidationError

__all__ = ["AuditKey", "PublicKey", "key_dir", "load_public_key"]

KEY_FILE = "audit-ed25519.pem"
PUBLIC_FILE = "audit-ed25519.pub"
ID_FILE = "appliance-id"


def key_dir(data_dir: Path) -> Path:
    return data_dir / "keys"


def _create_exclusive(path: Path, data: bytes, mode: int) -> bool:
    """Write ``data`` to ``path`` unless it exists; True when this call created it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key that verifies the appliance's signatures."""

    key: Ed25519PublicKey

    @property
    def raw(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        """First 16 hex characters of the SHA-256 of the raw 32-byte key."""
        return hashlib.sha256(self.raw).hexdigest()[:16]

    def pem(self) -> str:
        return self.key.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    def verify(self, signature_b64: str, message: bytes) -> bool:
        try:
            self.key.verify(base64.b64decode(signature_b64, validate=True), message)
        except (InvalidSignature, ValueError):
            return False
        return True


def load_public_key(path: Path) -> PublicKey:
    """Read a PEM public key (``audit-ed25519.pub``) or, on the appliance, the private key file itself.

    Raises:
        ValidationError: the file is missing or holds no Ed25519 key.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read the key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"{path} holds no PEM Ed25519 key") from exc
        key = private.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ValidationError(f"{path} is not an Ed25519 key")
    return PublicKey(key)


class AuditKey:
    """The private key and appliance id of one data directory."""

    def __init__(self, private: Ed25519PrivateKey, appliance_id: str, *, created: bool = False) -> None:
        self._private = private
        self.appliance_id = appliance_id
        self.public = PublicKey(private.public_key())
        self.created = created  # this call generated the key

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, message: bytes) -> str:
        """Base64 Ed25519 signature of ``message`` (RFC 8032, pure Ed25519)."""
        return base64.b64encode(self._private.sign(message)).decode("ascii")

    @classmethod
    def load(cls, data_dir: Path, *, create: bool = True) -> AuditKey:
        """Load the data directory's key, creating it (and the appliance id) on first use.

        Raises:
            ConfigError: the key file is unreadable, not Ed25519, or readable by others than its owner.
        """
        folder = key_dir(data_dir)
        path = folder / KEY_FILE
        created = False
        if not path.exists():
            if not create:
                raise ConfigError(f"no audit key at {path}; run a `cortex` command once on the appliance")
            private = Ed25519PrivateKey.generate()
            pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            created = _create_exclusive(path, pem, 0o600)
        try:
            if path.stat().st_mode & 0o077:
                raise ConfigError(f"the audit key {path} is readable by other users; chmod 600 it")
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise ConfigError(f"cannot read the audit key {path}: {exc.strerror}") from exc
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ConfigError(f"the audit key {path} is not an Ed25519 key")
        id_path = folder / ID_FILE
        if not id_path.exists():
            _create_exclusive(id_path, f"{uuid.uuid4()}\n".encode(), 0o644)
        appliance_id = id_path.read_text(encoding="ascii").strip()
        key = cls(loaded, appliance_id, created=created)
        public_path = folder / PUBLIC_FILE
        if not public_path.exists():
            _create_exclusive(public_path, key.public.pem().encode("ascii"), 0o644)
        return key
