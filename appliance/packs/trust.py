"""The trust root: which keys may sign packs, and which keys may change that (The Update Framework's
root role, kept to what an offline appliance needs).

A root document is JSON: ``{"signed": {...}, "signatures": [{"keyid", "sig"}]}``. The signed part names the
keys (Ed25519, by key id) and two roles, each a set of key ids with a threshold:

- ``root``: signs root documents. A new root is accepted only with version exactly one higher, signed by a
  threshold of the old root's root keys *and* a threshold of its own (TUF §5.3.4-5.3.5), so neither a
  thief of old keys nor of new keys alone can rotate trust.
- ``packs``: signs pack manifests; rotating pack keys means publishing a new root.

Signatures cover the canonical JSON of the signed part (sorted keys, no spaces, UTF-8). A key id counts
once however many signatures carry it, and keys outside the role never count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance import clock
from appliance.errors import PackError
from appliance.packs.keys import key_id, public_from_hex, public_hex, sign, verify

__all__ = ["ROLES", "Root", "canonical", "check_threshold", "make_root", "sign_document", "verify_root_update"]

ROLES = ("root", "packs")
ENVIRONMENTS = ("production", "development")


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Role:
    keyids: frozenset[str]
    threshold: int


@dataclass(frozen=True)
class Root:
    version: int
    environment: str
    expires: datetime
    keys: dict[str, Ed25519PublicKey]
    roles: dict[str, Role]
    signed: dict[str, Any]
    signatures: list[dict[str, str]]

    @property
    def document(self) -> str:
        return json.dumps({"signed": self.signed, "signatures": self.signatures}, indent=2, sort_keys=True) + "\n"

    @property
    def payload(self) -> bytes:
        return canonical(self.signed)

    @classmethod
    def parse(cls, text: str | bytes, *, where: str = "the root document") -> Root:
        """Parse and check the shape of a root document (not its signatures).

        Raises:
            PackError: malformed JSON, unknown role, threshold out of range, or a key id that does not
                match its key.
        """
        try:
            doc = json.loads(text)
            signed = doc["signed"]
            signatures = doc.get("signatures", [])
            if signed.get("type") != "cortex-root":
                raise ValueError("type is not cortex-root")
            version = int(signed["version"])
            environment = signed["environment"]
            if environment not in ENVIRONMENTS:
                raise ValueError(f"environment must be production or development, not {environment!r}")
            expires = clock.from_iso(signed["expires"])
            keys = {}
            for kid, entry in signed["keys"].items():
                if entry.get("keytype") != "ed25519":
                    raise ValueError(f"key {kid[:12]}… is not ed25519")
                public = public_from_hex(entry["public"])
                if key_id(public) != kid:
                    raise ValueError(f"key id {kid[:12]}… does not match its public key")
                keys[kid] = public
            roles = {}
            for name in ROLES:
                raw = signed["roles"][name]
                ids = frozenset(raw["keyids"])
                threshold = int(raw["threshold"])
                if not ids <= keys.keys():
                    raise ValueError(f"role {name} names keys the document does not list")
                if not 1 <= threshold <= len(ids):
                    raise ValueError(f"role {name} has threshold {threshold} for {len(ids)} key(s)")
                roles[name] = Role(ids, threshold)
            if not isinstance(signatures, list) or not all(isinstance(s, dict) for s in signatures):
                raise ValueError("signatures must be a list of {keyid, sig}")
        except PackError as exc:
            raise PackError(f"{where} is malformed: {exc.message}") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PackError(f"{where} is malformed: {exc}") from exc
        return cls(version, environment, expires, keys, roles, signed, signatures)


def valid_signers(payload: bytes, signatures: list[dict[str, str]], keys: dict[str, Ed25519PublicKey],
                  role: Role) -> set[str]:
    """Distinct key ids of ``role`` whose signature over ``payload`` verifies."""
    found: set[str] = set()
    for entry in signatures:
        kid = entry.get("keyid", "")
        if kid in role.keyids and kid in keys and kid not in found and verify(keys[kid], payload, entry.get("sig", "")):
            found.add(kid)
    return found


def check_threshold(payload: bytes, signatures: list[dict[str, str]], keys: dict[str, Ed25519PublicKey],
                    role: Role, *, what: str, role_name: str) -> set[str]:
    """The signer key ids, or PackError saying how many valid signatures there were and how many are needed."""
    signers = valid_signers(payload, signatures, keys, role)
    if len(signers) < role.threshold:
        listed = len(signatures)
        raise PackError(
            f"{what}: {len(signers)} valid signature(s) from distinct keys of the {role_name} role, "
            f"{role.threshold} needed ({listed} signature(s) present; signatures by other keys, repeated keys "
            "or over different content do not count)")
    return signers


def verify_root_update(current: Root, new: Root, *, now: datetime | None = None) -> None:
    """Check that ``new`` may replace ``current`` (TUF root rotation rules).

    Raises:
        PackError: the version is not current + 1, the new root expired, or either threshold is not met.
    """
    if new.version != current.version + 1:
        raise PackError(f"the new root has version {new.version}; only version {current.version + 1} can follow "
                        f"the trusted version {current.version}")
    if new.expires <= (now or clock.now()):
        raise PackError(f"the new root expired on {clock.iso(new.expires)}")
    check_threshold(new.payload, new.signatures, current.keys, current.roles["root"],
                    what=f"root version {new.version}", role_name="current root's root")
    check_threshold(new.payload, new.signatures, new.keys, new.roles["root"],
                    what=f"root version {new.version}", role_name="new root's root")


def make_root(*, version: int, environment: str, expires: datetime, root_keys: list[Ed25519PublicKey],
              root_threshold: int, pack_keys: list[Ed25519PublicKey], pack_threshold: int) -> Root:
    """An unsigned root document; sign it with :func:`sign_document` by a threshold of root key holders."""
    keys = {key_id(k): {"keytype": "ed25519", "public": public_hex(k)} for k in [*root_keys, *pack_keys]}
    signed = {
        "type": "cortex-root", "version": version, "environment": environment, "expires": clock.iso(expires),
        "keys": keys,
        "roles": {"root": {"keyids": sorted({key_id(k) for k in root_keys}), "threshold": root_threshold},
                  "packs": {"keyids": sorted({key_id(k) for k in pack_keys}), "threshold": pack_threshold}},
    }
    return Root.parse(json.dumps({"signed": signed, "signatures": []}), where="the new root")


def sign_document(signed: dict[str, Any], signatures: list[dict[str, str]],
                  key: Ed25519PrivateKey) -> list[dict[str, str]]:
    """Add this key's signature over ``signed`` (replacing an earlier one by the same key)."""
    kid = key_id(key.public_key())
    return [*(s for s in signatures if s.get("keyid") != kid), sign(key, canonical(signed))]
