"""Password hashing with Argon2id (RFC 9106) through ``cryptography``, stored as PHC strings.

Parameters follow RFC 9106 §4's second recommended option (64 MiB, 3 passes, 4 lanes). Verifying an
unknown account still runs one hash, so response time does not tell which usernames exist.
"""

from __future__ import annotations

import functools
import os

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from appliance.errors import ValidationError

__all__ = ["MIN_PASSWORD_LENGTH", "check_password_policy", "hash_password", "verify_password"]

MIN_PASSWORD_LENGTH = 12
# Bounds the Argon2 input on sign-in too, so an oversized password cannot be used to spend CPU.
_MAX_PASSWORD_BYTES = 1024


def _kdf() -> Argon2id:
    return Argon2id(salt=os.urandom(16), length=32, iterations=3, lanes=4, memory_cost=64 * 1024)


def check_password_policy(password: str, *, username: str = "") -> None:
    """Raises ValidationError naming the rule a new password breaks."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password.encode("utf-8")) > _MAX_PASSWORD_BYTES:
        raise ValidationError(f"the password must be at most {_MAX_PASSWORD_BYTES} bytes long (in UTF-8)")
    if username and username.lower() in password.lower():
        raise ValidationError("the password must not contain the username")


def hash_password(password: str) -> str:
    return _kdf().derive_phc_encoded(password.encode("utf-8"))


@functools.cache
def _dummy() -> str:
    return hash_password("timing-equaliser-not-a-password")


def verify_password(password: str, encoded: str | None) -> bool:
    """Check ``password`` against a stored PHC string; None (no password) always fails, in equal time."""
    candidate = password.encode("utf-8")
    if len(candidate) > _MAX_PASSWORD_BYTES:
        candidate, encoded = b"", None  # cannot match any password the policy accepted; still one hash
    try:
        Argon2id.verify_phc_encoded(candidate, encoded or _dummy())
    except (InvalidKey, ValueError):
        return False
    return encoded is not None
