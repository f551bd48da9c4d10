"""The signed manifest of a release directory (the unpacked bundle): its format, reader and verifier.

``MANIFEST`` is UTF-8 text, one item per line, fields separated by one space::

    format cortex-bundle-manifest/1
    product cortex-code-appliance
    version 0.2.0
    arch x86_64
    built 2026-11-24T15:00:00Z
    file <sha256 hex> <length in bytes> <relative path>
    …

The ``file`` lines list every file of the release directory except ``MANIFEST`` and ``MANIFEST.sig``,
sorted by path; paths are relative, '/'-separated and contain no spaces. ``MANIFEST.sig`` is the raw
64-byte Ed25519 signature (RFC 8032) over the exact bytes of ``MANIFEST``; ``release-key.pem`` is the
release public key as PEM SubjectPublicKeyInfo. The bundle builder renders the text with
:func:`manifest_text` (and signs it itself); the installer and ``cortex verify`` check a directory with
:func:`verify_release`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.errors import ReleaseError

__all__ = ["FORMAT", "KEY_NAME", "MANIFEST_NAME", "PRODUCT", "SIGNATURE_NAME", "BundleManifest", "ManifestFile",
           "key_fingerprint", "manifest_text", "parse_manifest", "read_manifest", "release_key", "verify_release"]

FORMAT = "cortex-bundle-manifest/1"
PRODUCT = "cortex-code-appliance"
MANIFEST_NAME = "MANIFEST"
SIGNATURE_NAME = "MANIFEST.sig"
KEY_NAME = "release-key.pem"

_HEADER = ("format", "product", "version", "arch", "built")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TOKEN = re.compile(r"^[!-~]+$")  # printable ASCII without spaces: versions, arch names, times
_MAX_MANIFEST_BYTES = 16 << 20  # a manifest of 100,000 files is about 10 MB
_MAX_KEY_BYTES = 64 << 10
_CHUNK = 1 << 20
_SIGNATURE_BYTES = 64  # RFC 8032 §5.1.6: an Ed25519 signature is 64 bytes


class ManifestFile(NamedTuple):
    """One ``file`` line: where, and what the file must hash to."""

    path: str
    sha256: str
    length: int


@dataclass(frozen=True)
class BundleManifest:
    format: str
    product: str
    version: str
    arch: str
    built: str
    files: list[ManifestFile] = field(default_factory=list)


def _check_path(path: str) -> str | None:
    """Why ``path`` cannot be a manifest path, or None when it can."""
    if not path or path.startswith("/") or "\\" in path:
        return "paths are relative and '/'-separated"
    if any(ch.isspace() or ord(ch) < 32 for ch in path):
        return "paths contain no spaces or control characters"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "paths have no empty, '.' or '..' parts"
    if path in (MANIFEST_NAME, SIGNATURE_NAME):
        return f"{MANIFEST_NAME} and {SIGNATURE_NAME} do not list themselves"
    return None


def manifest_text(version: str, arch: str, built: str | datetime,
                  files: Iterable[tuple[str, str, int]]) -> str:
    """Render a MANIFEST: the header, then one ``file`` line per ``(path, sha256, length)``, sorted by path.

    Args:
        version: the release version (no spaces).
        arch: the machine architecture, e.g. ``x86_64``.
        built: the build time, as text or an aware datetime (rendered ``YYYY-MM-DDTHH:MM:SSZ`` in UTC).
        files: every file of the release directory except MANIFEST and MANIFEST.sig.

    Raises:
        ReleaseError: a field or path that the format cannot carry, or a path listed twice.
    """
    if isinstance(built, datetime):
        if built.tzinfo is None:
            raise ReleaseError("the build time must be timezone-aware")
        built = built.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name, value in (("version", version), ("arch", arch), ("built", built)):
        if not _TOKEN.match(value):
            raise ReleaseError(f"the manifest's {name} must be printable text without spaces, got {value!r}")
    lines = [f"format {FORMAT}", f"product {PRODUCT}", f"version {version}", f"arch {arch}", f"built {built}"]
    seen: set[str] = set()
    for path, sha256, length in sorted(files, key=lambda item: item[0]):
        why = _check_path(path)
        if why:
            raise ReleaseError(f"cannot list {path!r} in a manifest: {why}")
        if path in seen:
            raise ReleaseError(f"{path!r} is listed twice")
        seen.add(path)
        if not _SHA256.match(sha256) or not isinstance(length, int) or length < 0:
            raise ReleaseError(f"{path!r}: sha256 must be 64 lower-case hex characters and length a byte count")
        lines.append(f"file {sha256} {length} {path}")
    return "\n".join(lines) + "\n"


def parse_manifest(data: bytes, where: str = MANIFEST_NAME) -> BundleManifest:
    """Read MANIFEST bytes.

    Raises:
        ReleaseError: not UTF-8, an unknown format, a header item missing or repeated, or a bad ``file``
            line (the message names the line).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReleaseError(f"{where} is not UTF-8 text") from exc
    first = text.split("\n", 1)[0]
    if not first.startswith("format "):
        raise ReleaseError(f"{where} does not start with a 'format' line: it is not a release manifest")
    if first != f"format {FORMAT}":
        # Another format may have other items: refuse before reading any of them.
        raise ReleaseError(f"{where} has format {first[7:47]!r}; this appliance reads {FORMAT!r}")
    header: dict[str, str] = {}
    files: list[ManifestFile] = []
    seen: set[str] = set()
    for number, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        key, _, rest = line.partition(" ")
        if key == "file":
            parts = rest.split(" ")
            if len(parts) != 3 or not _SHA256.match(parts[0]) or not parts[1].isdigit():
                raise ReleaseError(f"{where} line {number}: expected 'file <sha256> <length> <path>', "
                                   f"got {line[:120]!r}")
            sha256, length, path = parts
            why = _check_path(path)
            if why:
                raise ReleaseError(f"{where} line {number}: {path!r}: {why}")
            if path in seen:
                raise ReleaseError(f"{where} line {number}: {path!r} is listed twice")
            seen.add(path)
            files.append(ManifestFile(path, sha256, int(length)))
        elif key in _HEADER:
            if key in header:
                raise ReleaseError(f"{where} line {number}: {key!r} is given twice")
            if not _TOKEN.match(rest):
                raise ReleaseError(f"{where} line {number}: {key!r} needs one value without spaces")
            header[key] = rest
        else:
            raise ReleaseError(f"{where} line {number}: unknown item {key[:40]!r}")
    missing = [k for k in _HEADER if k not in header]
    if missing:
        raise ReleaseError(f"{where} lacks {', '.join(missing)}")
    if header["product"] != PRODUCT:
        raise ReleaseError(f"{where} is for product {header['product']!r}, not {PRODUCT!r}")
    return BundleManifest(header["format"], header["product"], header["version"], header["arch"], header["built"],
                          files)


def _read_bounded(path: Path, limit: int) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ReleaseError(f"{path} is larger than {limit} bytes")
    return data


def read_manifest(path: Path) -> BundleManifest:
    """Read and parse a MANIFEST file (at most 16 MiB).

    Raises:
        ReleaseError: unreadable or malformed (see :func:`parse_manifest`).
    """
    try:
        data = _read_bounded(Path(path), _MAX_MANIFEST_BYTES)
    except OSError as exc:
        raise ReleaseError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_manifest(data, str(path))


def release_key(pem: bytes) -> Ed25519PublicKey:
    """The release public key from PEM SubjectPublicKeyInfo.

    Raises:
        ReleaseError: not PEM, or not an Ed25519 key.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ReleaseError("the release key is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseError("the release key is not an Ed25519 key")
    return key


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, in hex: what release notes print for the operator to compare."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _walk(root: Path, problems: list[str]) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below ``root`` that is not a directory (symbolic links included, never followed); a
    folder that cannot be listed is a problem."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                found = [(entry.path, entry.stat(follow_symlinks=False)) for entry in entries]
        except OSError as exc:
            problems.append(f"{folder.relative_to(root).as_posix()}/: cannot be listed ({exc.strerror})")
            continue
        for path, info in found:
            if stat.S_ISDIR(info.st_mode):
                stack.append(Path(path))
            else:
                yield Path(path).relative_to(root).as_posix(), info


def _file_problem(root: Path, item: ManifestFile) -> str | None:
    path = root / item.path
    try:
        # O_NOFOLLOW: a listed file replaced by a link is reported, never read through.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return f"{item.path}: missing"  # removed since the directory was listed
    except OSError as exc:
        if path.is_symlink():
            return f"{item.path}: is a symbolic link; the manifest lists regular files only"
        return f"{item.path}: cannot be read ({exc.strerror})"
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if stat.S_ISDIR(info.st_mode):
            return f"{item.path}: is a directory; the manifest lists a file"
        if not stat.S_ISREG(info.st_mode):
            return f"{item.path}: is not a regular file"
        if info.st_size != item.length:
            return f"{item.path}: modified ({info.st_size} bytes, the manifest says {item.length})"
        digest = hashlib.sha256()
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    if digest.hexdigest() != item.sha256:
        return f"{item.path}: modified (sha256 {digest.hexdigest()}, the manifest says {item.sha256})"
    return None


def verify_release(release_dir: Path, public_key_pem: bytes | None = None) -> list[str]:
    """Check a release directory against its signed MANIFEST; an empty list means it verifies.

    The signature first (with ``public_key_pem``, default the directory's own ``release-key.pem``), then
    every listed file's length and sha256 (read in 1 MiB chunks), then files missing, then files present
    but not listed. Directories are not listed and not reported (an empty one is harmless); symbolic links
    are never followed: one in a listed file's place, or one not listed, is a problem.

    Returns:
        One line per problem, each starting with the path it is about (``cortex: modified (…)``).
    """
    root = Path(release_dir).resolve()
    if not root.is_dir():
        return [f"{release_dir}: not a directory"]
    try:
        manifest_bytes = _read_bounded(root / MANIFEST_NAME, _MAX_MANIFEST_BYTES)
        manifest = parse_manifest(manifest_bytes)
    except FileNotFoundError:
        return [f"{MANIFEST_NAME}: missing; this is not a release directory, or it was damaged"]
    except OSError as exc:
        return [f"{MANIFEST_NAME}: cannot be read ({exc.strerror})"]
    except ReleaseError as exc:
        return [exc.message]  # "MANIFEST line 7: …", "MANIFEST lacks …"

    problems: list[str] = []
    try:
        pem = public_key_pem if public_key_pem is not None else _read_bounded(root / KEY_NAME, _MAX_KEY_BYTES)
        key: Ed25519PublicKey | None = release_key(pem)
    except FileNotFoundError:
        key = None
        problems.append(f"{KEY_NAME}: missing, so {MANIFEST_NAME}'s signature cannot be checked")
    except (OSError, ReleaseError) as exc:
        key = None
        why = exc.message if isinstance(exc, ReleaseError) else f"cannot be read ({exc.strerror})"
        problems.append(f"{KEY_NAME}: {why}")
    try:
        signature = _read_bounded(root / SIGNATURE_NAME, 4096)
    except FileNotFoundError:
        signature = None
        problems.append(f"{SIGNATURE_NAME}: missing; the manifest is unsigned")
    except (OSError, ReleaseError) as exc:
        signature = None
        problems.append(f"{SIGNATURE_NAME}: {exc.message if isinstance(exc, ReleaseError) else exc.strerror}")
    if key is not None and signature is not None:
        if len(signature) != _SIGNATURE_BYTES:
            problems.append(f"{SIGNATURE_NAME}: {len(signature)} bytes; an Ed25519 signature is 64")
        else:
            try:
                key.verify(signature, manifest_bytes)
            except InvalidSignature:
                problems.append(f"{SIGNATURE_NAME}: the signature over {MANIFEST_NAME} does not verify with the "
                                f"release key {key_fingerprint(key)[:16]}…: {MANIFEST_NAME} was changed, or "
                                "signed by another key")

    present = dict(_walk(root, problems))
    missing: list[str] = []
    for item in manifest.files:
        if item.path not in present:
            missing.append(f"{item.path}: missing")
            continue
        problem = _file_problem(root, item)
        if problem:
            problems.append(problem)
    problems.extend(missing)
    listed = {item.path for item in manifest.files} | {MANIFEST_NAME, SIGNATURE_NAME}
    for path in sorted(set(present) - listed):
        kind = "symbolic link" if stat.S_ISLNK(present[path].st_mode) else "file"
        problems.append(f"{path}: extra {kind}, not listed in {MANIFEST_NAME}")
    return problems
