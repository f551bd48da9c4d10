"""The release MANIFEST: the format the bundle builder writes, and verification of an installed release."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.errors import ReleaseError
from appliance.verify.manifest import ManifestFile, manifest_text, parse_manifest, read_manifest, verify_release
from tests.verify.release import Release, make_release

SHA = hashlib.sha256(b"x").hexdigest()


@pytest.fixture
def release(tmp_path: Path) -> Release:
    return make_release(tmp_path / "opt")


def test_the_format_is_exactly_the_contract() -> None:
    text = manifest_text("0.2.0", "x86_64", "2026-11-24T15:00:00Z",
                         [("packs/b.tar", SHA, 1), ("cortex", SHA, 12)])
    assert text == ("format cortex-bundle-manifest/1\nproduct cortex-code-appliance\nversion 0.2.0\narch x86_64\n"
                    f"built 2026-11-24T15:00:00Z\nfile {SHA} 12 cortex\nfile {SHA} 1 packs/b.tar\n")
    manifest = parse_manifest(text.encode())
    assert (manifest.format, manifest.product, manifest.version, manifest.arch, manifest.built) == (
        "cortex-bundle-manifest/1", "cortex-code-appliance", "0.2.0", "x86_64", "2026-11-24T15:00:00Z")
    assert manifest.files == [ManifestFile("cortex", SHA, 12), ManifestFile("packs/b.tar", SHA, 1)]
    assert manifest.files[0] == ("cortex", SHA, 12)  # (path, sha256, length)


def test_a_build_time_may_be_a_datetime() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    built = datetime(2026, 11, 24, 16, 0, tzinfo=timezone(timedelta(hours=1)))
    assert "built 2026-11-24T15:00:00Z\n" in manifest_text("1", "x86_64", built, [])
    assert manifest_text("1", "x86_64", built.astimezone(UTC), []) == manifest_text("1", "x86_64", built, [])


@pytest.mark.parametrize(("path", "message"), [
    ("docs/user guide.html", "no spaces"),
    ("/etc/passwd", "relative"),
    ("../outside", r"'\.\.'"),
    ("MANIFEST", "do not list themselves"),
])
def test_paths_the_format_cannot_carry_are_refused(path: str, message: str) -> None:
    with pytest.raises(ReleaseError, match=message):
        manifest_text("1", "x86_64", "2026-11-24T15:00:00Z", [(path, SHA, 1)])


@pytest.mark.parametrize(("text", "message"), [
    ("format cortex-bundle-manifest/2\n", "this appliance reads 'cortex-bundle-manifest/1'"),
    ("format cortex-bundle-manifest/1\nproduct cortex-code-appliance\n", "lacks version, arch, built"),
    ("format cortex-bundle-manifest/1\nsigner me\n", "line 2: unknown item 'signer'"),
    (f"format cortex-bundle-manifest/1\nfile {SHA} 1 a\nfile {SHA} 1 a\n", "line 3: 'a' is listed twice"),
    (f"format cortex-bundle-manifest/1\nfile {SHA} one a\n", "line 2: expected 'file <sha256> <length> <path>'"),
    (f"format cortex-bundle-manifest/1\nfile {SHA} 1 ../a\n", "line 2"),
])
def test_malformed_manifests_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ReleaseError, match=message):
        parse_manifest(text.encode())


def test_a_clean_release_verifies(release: Release, tmp_path: Path) -> None:
    assert verify_release(release.dir) == []
    assert verify_release(tmp_path / "opt" / "current") == []  # through PREFIX/current
    assert verify_release(release.dir, release.public_pem()) == []
    manifest = read_manifest(release.dir / "MANIFEST")
    assert {f.path for f in manifest.files} >= {"cortex", "install", "release-key.pem", "SHA256SUMS",
                                                 "models/manifest.toml", "models/tiny.gguf", "trust/root.json",
                                                 "docs/index.html", "sbom.cdx.json", "licenses/llama.cpp.txt",
                                                 "packs/secure-coding-core.tar"}


def test_a_modified_file_is_named(release: Release) -> None:
    path = release.dir / "docs" / "index.html"
    data = path.read_bytes()
    path.write_bytes(data.replace(b"manual", b"MANUAL"))  # same length, other content
    problems = verify_release(release.dir)
    assert len(problems) == 1 and problems[0].startswith("docs/index.html: modified (sha256 ")
    path.write_bytes(data + b"<script>\n")
    assert verify_release(release.dir) == [
        f"docs/index.html: modified ({len(data) + 9} bytes, the manifest says {len(data)})"]


def test_a_missing_file_is_named(release: Release) -> None:
    (release.dir / "models" / "tiny.gguf").unlink()
    assert verify_release(release.dir) == ["models/tiny.gguf: missing"]


def test_an_extra_file_is_named(release: Release) -> None:
    (release.dir / "packs" / "backdoor.tar").write_bytes(b"x")
    (release.dir / "docs" / "empty").mkdir()  # directories are not listed, and an empty one is harmless
    assert verify_release(release.dir) == ["packs/backdoor.tar: extra file, not listed in MANIFEST"]


def test_a_bad_signature_fails(release: Release) -> None:
    manifest = release.dir / "MANIFEST"
    text = manifest.read_text()
    manifest.write_text(text.replace("arch x86_64", "arch aarch64"))
    problems = verify_release(release.dir)
    assert len(problems) == 1 and problems[0].startswith(
        "MANIFEST.sig: the signature over MANIFEST does not verify with the release key")
    manifest.write_text(text)
    assert verify_release(release.dir) == []
    # A manifest re-signed by someone else's key does not verify with the pinned release key either.
    other = Ed25519PrivateKey.generate()
    (release.dir / "MANIFEST.sig").write_bytes(other.sign(text.encode()))
    assert verify_release(release.dir, release.public_pem())[0].startswith("MANIFEST.sig: the signature")


def test_a_signature_of_the_wrong_size_or_missing(release: Release) -> None:
    sig = release.dir / "MANIFEST.sig"
    sig.write_bytes(sig.read_bytes()[:63])
    assert verify_release(release.dir) == ["MANIFEST.sig: 63 bytes; an Ed25519 signature is 64"]
    sig.unlink()
    assert verify_release(release.dir) == ["MANIFEST.sig: missing; the manifest is unsigned"]


def test_a_tampered_release_key_cannot_sign_for_itself(release: Release) -> None:
    """Whoever replaces release-key.pem and re-signs MANIFEST is caught by a pinned key (--release-key),
    and the replaced key file itself no longer matches the manifest that was signed with the real key."""
    original = release.public_pem()
    attacker = Release(release.dir, Ed25519PrivateKey.generate())
    (release.dir / "release-key.pem").write_bytes(attacker.public_pem())
    attacker.sign()
    assert verify_release(release.dir) == []  # self-consistent: hence the fingerprint in the evidence
    assert verify_release(release.dir, original)[0].startswith("MANIFEST.sig: the signature over MANIFEST")


def test_symbolic_links_are_never_followed(release: Release, tmp_path: Path) -> None:
    outside = tmp_path / "evil"
    outside.write_bytes((release.dir / "install").read_bytes())
    (release.dir / "install").unlink()
    (release.dir / "install").symlink_to(outside)
    (release.dir / "extra-link").symlink_to(release.dir / "docs")
    assert verify_release(release.dir) == [
        "install: is a symbolic link; the manifest lists regular files only",
        "extra-link: extra symbolic link, not listed in MANIFEST"]


def test_a_directory_where_a_file_belongs(release: Release) -> None:
    (release.dir / "sbom.cdx.json").unlink()
    (release.dir / "sbom.cdx.json").mkdir()
    assert verify_release(release.dir) == ["sbom.cdx.json: missing"]


def test_no_manifest(tmp_path: Path) -> None:
    tmp_path.joinpath("cortex").write_bytes(b"x")
    assert verify_release(tmp_path) == ["MANIFEST: missing; this is not a release directory, or it was damaged"]
    tmp_path.joinpath("MANIFEST").write_text("format nonsense\n")
    assert verify_release(tmp_path) == ["MANIFEST has format 'nonsense'; this appliance reads "
                                        "'cortex-bundle-manifest/1'"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file(release: Release) -> None:
    (release.dir / "install").chmod(0)
    assert verify_release(release.dir) == ["install: cannot be read (Permission denied)"]
