"""A release directory as the bundle builder lays it out, signed with a key made for the test."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import __version__
from appliance.verify.manifest import manifest_text

MODEL_ID = "tiny-test-model"
MODEL_BYTES = b"GGUF" + bytes(range(256)) * 8


@dataclass(frozen=True)
class Release:
    dir: Path
    key: Ed25519PrivateKey

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self) -> None:
        """(Re)write MANIFEST over every file present and sign it, as the bundle builder does."""
        files = []
        for path in sorted(p for p in self.dir.rglob("*") if p.is_file()):
            rel = path.relative_to(self.dir).as_posix()
            if rel in ("MANIFEST", "MANIFEST.sig"):
                continue
            data = path.read_bytes()
            files.append((rel, hashlib.sha256(data).hexdigest(), len(data)))
        text = manifest_text(__version__, "x86_64", "2026-11-24T15:00:00Z", files)
        (self.dir / "MANIFEST").write_text(text, encoding="utf-8")
        (self.dir / "MANIFEST.sig").write_bytes(self.key.sign(text.encode("utf-8")))


def make_release(base: Path) -> Release:
    """PREFIX/releases/VERSION with the contract's files; models/ holds a small model pinned by sha256."""
    root = base / "releases" / __version__
    key = Ed25519PrivateKey.generate()
    release = Release(root, key)
    model_sha = hashlib.sha256(MODEL_BYTES).hexdigest()
    files: dict[str, bytes] = {
        "cortex": b"\x7fELF frozen binary stand-in\n",
        "install": b"#!/bin/sh\necho install\n",
        "release-key.pem": release.public_pem(),
        "models/manifest.toml": (f'[[model]]\nid = "{MODEL_ID}"\nfile = "tiny.gguf"\nsha256 = "{model_sha}"\n'
                                 f'size = {len(MODEL_BYTES)}\nlicense = "apache-2.0"\n').encode(),
        "models/tiny.gguf": MODEL_BYTES,
        "packs/secure-coding-core.tar": b"tar stand-in\n",
        "trust/root.json": b'{"signed": {}, "signatures": []}\n',
        "docs/index.html": b"<!DOCTYPE html><title>manual</title>\n",
        "sbom.cdx.json": b'{"bomFormat": "CycloneDX"}\n',
        "licenses/llama.cpp.txt": b"MIT License\n",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "cortex").chmod(0o755)
    sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {r}\n" for r, d in sorted(files.items()))
    (root / "SHA256SUMS").write_text(sums)
    release.sign()
    current = base / "current"
    current.symlink_to(root)
    return release
