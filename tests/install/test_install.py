"""The offline bundle and ./install, end to end: the real bundle builder, real tar, the real installer
script and frozen binary, a network namespace with only loopback, strace recording every connect()."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import __version__
from tests.support import ADMIN_PASSWORD, ROOT, Trust, free_port
from tests.test_frozen import frozen_binary

pytestmark = pytest.mark.slow

NOBODY = "nobody"  # when tests run as root, the service user must be someone else


def as_service_user() -> list[str]:
    """Run a command as the installed service user, the way systemd would (root only: otherwise the
    install runs as the installing user and so does everything here)."""
    if os.geteuid() != 0:
        return []
    entry = pwd.getpwnam(NOBODY)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]


@pytest.fixture(scope="session")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def bundle_tar(tmp_path_factory: pytest.TempPathFactory, test_trust: Trust,
               release_key: Ed25519PrivateKey) -> Path:
    """``bundle/make_bundle.py`` run on the frozen binary, the model, the test-signed packs and a test key."""
    binary = frozen_binary()
    work = tmp_path_factory.mktemp("bundle")
    key = work / "release.pem"
    key.touch(mode=0o600)  # a signing key must be private, or the builder refuses it
    key.write_bytes(release_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    tar = make_bundle(binary, test_trust, key, work)
    assert tar.name == f"cortex-appliance-{__version__}-linux-{os.uname().machine}.tar"
    return tar


BUILD_EPOCH = "1795000000"


def make_bundle(binary: Path, trust: Trust, key: Path, out: Path) -> Path:
    packs = next(iter(trust.packs.values())).parent
    built = subprocess.run([sys.executable, str(ROOT / "bundle" / "make_bundle.py"), "--binary", str(binary),
                            "--packs", str(packs), "--trust-root", str(trust.root), "--models",
                            str(ROOT / "models"), "--key", str(key), "--out", str(out)],
                           capture_output=True, text=True, check=False,
                           env={**os.environ, "SOURCE_DATE_EPOCH": BUILD_EPOCH})
    assert built.returncode == 0, built.stderr
    return Path(built.stdout.strip().splitlines()[-1])


def test_two_bundle_builds_from_the_same_inputs_are_byte_identical(bundle_tar: Path, test_trust: Trust,
                                                                   tmp_path: Path) -> None:
    again = make_bundle(frozen_binary(), test_trust, bundle_tar.parent / "release.pem", tmp_path)
    assert again.read_bytes() == bundle_tar.read_bytes()


@pytest.fixture
def unpacked(bundle_tar: Path, tmp_path: Path) -> Iterator[Path]:
    """The bundle unpacked with the real tar, as an operator does from the USB stick."""
    if os.geteuid() == 0:
        # pytest keeps its temporary folders 0700; the service user must be able to pass through them.
        for folder in [tmp_path, *tmp_path.parents]:
            if folder == Path(tempfile.gettempdir()):
                break
            folder.chmod(folder.stat().st_mode | 0o711)
    subprocess.run(["tar", "-xf", str(bundle_tar), "-C", str(tmp_path)], check=True)
    yield tmp_path / f"cortex-appliance-{__version__}"
    shutil.rmtree(tmp_path, ignore_errors=True)  # a bundle and an install are a few hundred MB each


def run_install(bundle: Path, prefix: Path, *args: str, env: dict[str, str] | None = None,
                wrapper: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [*(wrapper or []), str(bundle / "install"), "--prefix", str(prefix), "--no-systemd",
               "--service-user", NOBODY, "--hostname", "localhost", "--port", str(free_port()), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "PYTHONPATH": "", "CORTEX_CONFIG": "", **(env or {})})


def resign(bundle: Path, key: Ed25519PrivateKey, **header: str) -> None:
    """Change MANIFEST header lines (version, arch) and sign it again with the release key."""
    text = (bundle / "MANIFEST").read_text(encoding="utf-8")
    for name, value in header.items():
        text = re.sub(rf"^{name} .*$", f"{name} {value}", text, count=1, flags=re.M)
    (bundle / "MANIFEST").write_text(text, encoding="utf-8")
    (bundle / "MANIFEST.sig").write_bytes(key.sign(text.encode("utf-8")))


def newer_bundle(unpacked: Path, tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    """A copy of the bundle that says it is version 99.0.0, correctly signed: an upgrade to install."""
    newer = tmp_path / "newer"
    shutil.copytree(unpacked, newer)
    resign(newer, key, version="99.0.0")
    return newer


def installed_cli(prefix: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*as_service_user(), str(prefix / "current" / "cortex"), "--config",
                           str(prefix / "etc" / "appliance.toml"), *args], input=stdin, capture_output=True,
                          text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": "", "CORTEX_CONFIG": ""})


def users(prefix: Path) -> list[str]:
    # immutable: read without creating -wal/-shm files that the service user could not open later
    with sqlite3.connect(f"file:{prefix / 'data' / 'appliance.db'}?immutable=1", uri=True) as db:
        return [row[0] for row in db.execute("SELECT username FROM users ORDER BY username")]


# --- the bundle ----------------------------------------------------------------------------------


def test_the_bundle_holds_everything_and_its_signature_checks_with_openssl(unpacked: Path) -> None:
    names = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()}
    for required in ("cortex", "install", "MANIFEST", "MANIFEST.sig", "release-key.pem", "SHA256SUMS",
                     "models/manifest.toml", "models/SmolLM2-135M-Instruct.Q4_1.gguf", "trust/root.json",
                     "docs/index.html", "docs/install.html", "sbom.cdx.json"):
        assert required in names, required
    assert any(n.startswith("packs/") and n.endswith(".tar") for n in names)
    assert any(n.startswith("licenses/") for n in names)
    # The operator's own check, before running anything from the bundle (offline-docs/install.md).
    verified = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "release-key.pem", "-rawin",
                               "-in", "MANIFEST", "-sigfile", "MANIFEST.sig"], cwd=unpacked, capture_output=True,
                              text=True, check=False)
    assert verified.returncode == 0 and "Signature Verified Successfully" in verified.stdout
    sums = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=unpacked, capture_output=True,
                          text=True, check=False)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    sbom = json.loads((unpacked / "sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.5"
    kinds = {c["type"] for c in sbom["components"]}
    assert {"library", "machine-learning-model"} <= kinds
    names_in_sbom = {re.sub(r"[-_.]+", "-", c["name"]).lower() for c in sbom["components"]}
    assert {"litestar", "llama-cpp-python", "cryptography", "apsw"} <= names_in_sbom
    natives = [n for c in sbom["components"] for n in c.get("components", [])]
    assert any("llama" in n["name"] for n in natives)  # llama.cpp's shared library, with its sha256
    for page in (unpacked / "docs").glob("*.html"):  # the manual loads nothing from anywhere
        assert re.findall(r'(?:src|href)="(?:https?:)?//', page.read_text()) == [], page.name


# --- install, then the air gap -------------------------------------------------------------------


def test_install_into_a_prefix_then_review_and_every_page_with_no_network(unpacked: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    result = run_install(unpacked, prefix)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "bundle verified" in output and f"installed at {prefix}" in output
    assert re.search(r"/setup#token=\S+", output), "the first admin's one-time token is shown"
    record = json.loads((prefix / "etc" / "install.json").read_text())
    assert record["version"] == __version__ and record["service_user"] == NOBODY
    assert (prefix / "current").resolve() == prefix / "releases" / __version__
    key = prefix / "etc" / "tls" / "key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (prefix / "data").stat().st_mode & 0o777 == 0o700
    token_shown = re.search(r"token=(\S+)", output)
    assert token_shown is not None
    # The token is shown once and stored only as a hash, never in a log or file of the install.
    for path in prefix.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000 and path.suffix not in (".gguf",):
            assert token_shown.group(1).encode() not in path.read_bytes(), path

    created = installed_cli(prefix, "users", "create", "admin", "--role", "admin", "--password-stdin",
                            stdin=ADMIN_PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    token = installed_cli(prefix, "tokens", "create", "--user", "admin", "--name", "airgap")
    assert token.returncode == 0, token.stderr
    settings = (prefix / "etc" / "appliance.toml").read_text()
    port = re.search(r"^port = (\d+)", settings, re.M)
    assert port is not None
    for tool in ("unshare", "strace", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed here (build.py test installs it): the no-network part cannot run")
    trace = tmp_path / "connect.trace"
    server_log = tmp_path / "server.log"
    client = Path(__file__).with_name("airgap_client.py")
    script = (
        "set -e; ip link set lo up; "
        # No route but loopback: the appliance could not reach anything else even if it tried.
        "test -z \"$(ip route show default)\"; "
        f"strace -f -qq -e trace=connect -o {trace} sh -c '"
        f"{' '.join(as_service_user())} {prefix / 'current' / 'cortex'} "
        f"--config {prefix / 'etc' / 'appliance.toml'} serve "
        f"> {server_log} 2>&1 & server=$!; "
        f"{sys.executable} {client} https://localhost:{port.group(1)} {prefix / 'etc' / 'tls' / 'cert.pem'} "
        f"{token.stdout.strip()} {ADMIN_PASSWORD}; status=$?; kill $server; wait $server; exit $status'"
    )
    try:
        # As root: a plain network namespace, the server run as the service user. Otherwise a user namespace.
        unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
        namespace = subprocess.run([*unshare, "sh", "-c", script], capture_output=True, text=True,
                                   timeout=900, check=False,
                                   env={**os.environ, "PYTHONPATH": str(ROOT), "CORTEX_CONFIG": ""})
    except FileNotFoundError:
        pytest.skip("unshare is not installed here: the no-network part cannot run")
    if namespace.returncode != 0 and "unshare:" in namespace.stderr and "Operation not permitted" in namespace.stderr:
        pytest.skip(f"this machine cannot create network namespaces: {namespace.stderr.strip()}")
    assert namespace.returncode == 0, namespace.stdout + namespace.stderr + server_log.read_text()[-3000:]
    assert "ok: review" in namespace.stdout and "ok: page /audit" in namespace.stdout, namespace.stdout

    connects = [line for line in trace.read_text().splitlines() if "connect(" in line]
    targets = re.findall(r'(?:inet_addr|inet_pton\(AF_INET6, )\("?([0-9a-fA-F:.]+)"?', "\n".join(connects))
    assert targets, "strace recorded the client's connections, so it would have recorded any other"
    outside = [t for t in targets if not (t.startswith("127.") or t in ("::1", "::ffff:127.0.0.1"))]
    assert outside == [], f"connect() beyond loopback: {outside}"


# --- bad bundles ---------------------------------------------------------------------------------


def _tamper_binary(bundle: Path) -> str:
    with (bundle / "cortex").open("ab") as out:
        out.write(b"\0")
    return "modified file: cortex"


def _missing(bundle: Path) -> str:
    (bundle / "docs" / "index.html").unlink()
    return "missing file: docs/index.html"


def _extra(bundle: Path) -> str:
    (bundle / "packs" / "backdoor.tar").write_bytes(b"x")
    return "extra file: packs/backdoor.tar"


def _tamper_runtime(bundle: Path) -> str:
    library = next(p for p in sorted((bundle / "runtime").rglob("*.so*")) if p.stat().st_size > 1024)
    data = bytearray(library.read_bytes())
    data[512] ^= 1  # same length: only the sha256 tells
    library.write_bytes(bytes(data))
    return f"modified file: {library.relative_to(bundle).as_posix()} has sha256"


def _hidden_extra(bundle: Path) -> str:
    # A planted module, and a name with a newline that would split the installer's file lists.
    (bundle / "runtime" / "sitecustomize.py").write_text("import os\n")
    (bundle / "runtime" / "x\n").write_bytes(b"1")
    return "has a control character in its name"


def _link(bundle: Path) -> str:
    (bundle / "runtime" / "passwd").symlink_to("/etc/passwd")
    return "unexpected entry: ./runtime/passwd is neither a file nor a directory"


def _bad_signature(bundle: Path) -> str:
    signature = bytearray((bundle / "MANIFEST.sig").read_bytes())
    signature[0] ^= 1
    (bundle / "MANIFEST.sig").write_bytes(bytes(signature))
    return "bad manifest signature"


def _edited_manifest(bundle: Path) -> str:
    text = (bundle / "MANIFEST").read_text()
    (bundle / "MANIFEST").write_text(text.replace("built ", "built 1", 1))
    return "bad manifest signature"


@pytest.mark.parametrize("tamper", [_tamper_binary, _tamper_runtime, _missing, _extra, _hidden_extra, _link,
                                    _bad_signature, _edited_manifest],
                         ids=["tampered-binary", "tampered-runtime-library", "missing-file", "extra-file",
                              "extra-file-behind-a-newline-name", "symbolic-link", "bad-signature", "edited-manifest"])
def test_a_bad_bundle_is_refused_naming_the_problem_and_nothing_is_installed(unpacked: Path, tmp_path: Path,
                                                                            tamper: object) -> None:
    assert callable(tamper)
    expected = tamper(unpacked)
    prefix = tmp_path / "opt"
    result = run_install(unpacked, prefix)
    assert result.returncode == 1
    assert expected in result.stderr, result.stderr
    assert not prefix.exists()


def test_a_bundle_for_another_architecture_is_refused(unpacked: Path, tmp_path: Path,
                                                      release_key: Ed25519PrivateKey) -> None:
    resign(unpacked, release_key, arch="riscv64")  # correctly signed, for the wrong machine
    result = run_install(unpacked, tmp_path / "opt")
    assert result.returncode == 1
    assert f"wrong architecture: this bundle is for riscv64 and this host is {os.uname().machine}" in result.stderr


def test_a_truncated_tarball_never_installs(bundle_tar: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.tar"
    with bundle_tar.open("rb") as source, cut.open("wb") as out:
        out.write(source.read(bundle_tar.stat().st_size // 2))
    unpack = subprocess.run(["tar", "-xf", str(cut), "-C", str(tmp_path)], capture_output=True, text=True,
                            check=False)
    assert unpack.returncode != 0  # tar itself says the archive ends early
    bundle = tmp_path / f"cortex-appliance-{__version__}"
    if (bundle / "install").exists():
        result = run_install(bundle, tmp_path / "opt")
        assert result.returncode == 1
        assert re.search(r"missing file|modified file", result.stderr), result.stderr
    assert not (tmp_path / "opt").exists()


def install_under_mount(unpacked: Path, mount: str, prefix: Path) -> subprocess.CompletedProcess[str]:
    """``./install --prefix`` in a mount namespace where ``mount`` (a shell command) ran first."""
    script = f"{mount} && exec {unpacked / 'install'} --prefix {prefix} --no-systemd --hostname localhost"
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                            check=False, env={**os.environ, "PYTHONPATH": "", "CORTEX_CONFIG": ""})
    if "Operation not permitted" in result.stderr and "mount" in result.stderr:
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")
    return result


def test_too_little_disk_is_refused_before_anything_is_written(unpacked: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "small"
    prefix.mkdir()
    result = install_under_mount(unpacked, f"mount -t tmpfs -o size=64m tmpfs {prefix}", prefix)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "disk too small: the install needs" in result.stdout + result.stderr


def test_an_unwritable_prefix_is_refused(unpacked: Path, tmp_path: Path) -> None:
    parent = tmp_path / "readonly"
    parent.mkdir()
    # Root may write anywhere, so make the folder read-only the way a mount does.
    result = install_under_mount(unpacked, f"mount --bind -o ro {parent} {parent}", parent / "opt")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"prefix not writable: {parent / 'opt'}" in result.stdout + result.stderr


# --- upgrade, rollback, downgrade, uninstall -----------------------------------------------------


def test_upgrade_keeps_a_backup_and_rollback_restores_the_data(unpacked: Path, tmp_path: Path,
                                                               release_key: Ed25519PrivateKey) -> None:
    prefix = tmp_path / "opt"
    first = run_install(unpacked, prefix)
    assert first.returncode == 0, first.stdout + first.stderr
    assert installed_cli(prefix, "users", "create", "before", "--role", "viewer", "--password-stdin",
                         stdin=ADMIN_PASSWORD + "\n").returncode == 0
    newer = newer_bundle(unpacked, tmp_path, release_key)
    upgraded = run_install(newer, prefix)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "backup of the data before the upgrade" in upgraded.stdout
    record = json.loads((prefix / "etc" / "install.json").read_text())
    assert record["version"] == "99.0.0" and record["previous_version"] == __version__
    assert Path(record["previous_backup"]).is_dir()
    assert (prefix / "releases" / __version__ / "cortex").exists()  # the previous release is kept
    # Work done on the new version, then the operator rolls back: the data is as it was before.
    assert installed_cli(prefix, "users", "create", "after", "--role", "viewer", "--password-stdin",
                         stdin=ADMIN_PASSWORD + "\n").returncode == 0
    assert "after" in users(prefix)
    back = run_install(newer, prefix, "--rollback")
    assert back.returncode == 0, back.stdout + back.stderr
    assert f"rolled back from 99.0.0 to {__version__}" in back.stdout
    assert (prefix / "current").resolve() == prefix / "releases" / __version__
    assert "before" in users(prefix) and "after" not in users(prefix)
    assert json.loads((prefix / "etc" / "install.json").read_text())["version"] == __version__


def test_an_older_bundle_over_a_newer_install_is_refused_unless_allowed(unpacked: Path, tmp_path: Path,
                                                                        release_key: Ed25519PrivateKey) -> None:
    prefix = tmp_path / "opt"
    newer = newer_bundle(unpacked, tmp_path, release_key)
    assert run_install(newer, prefix).returncode == 0
    refused = run_install(unpacked, prefix)
    assert refused.returncode == 1
    assert f"version 99.0.0 is installed, newer than this bundle's {__version__}" in refused.stderr
    assert json.loads((prefix / "etc" / "install.json").read_text())["version"] == "99.0.0"
    allowed = run_install(unpacked, prefix, "--allow-downgrade")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr


@pytest.mark.parametrize("stop_after", ["copied", "backed-up", "migrated"])
def test_an_interrupted_upgrade_completes_on_rerun_or_rolls_back(unpacked: Path, tmp_path: Path,
                                                                  release_key: Ed25519PrivateKey,
                                                                  stop_after: str) -> None:
    prefix = tmp_path / "opt"
    assert run_install(unpacked, prefix).returncode == 0
    assert installed_cli(prefix, "users", "create", "kept", "--role", "viewer", "--password-stdin",
                         stdin=ADMIN_PASSWORD + "\n").returncode == 0
    newer = newer_bundle(unpacked, tmp_path, release_key)
    cut = run_install(newer, prefix, env={"CORTEX_INSTALL_STOP_AFTER": stop_after})
    assert cut.returncode == 137  # the power went out mid-upgrade
    assert (prefix / ".install-in-progress.json").exists()
    assert "kept" in users(prefix)
    if stop_after == "backed-up":
        back = run_install(newer, prefix, "--rollback")
        assert back.returncode == 0, back.stdout + back.stderr
        assert (prefix / "current").resolve() == prefix / "releases" / __version__
    else:
        again = run_install(newer, prefix)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "finishing the interrupted upgrade" in again.stdout
        assert json.loads((prefix / "etc" / "install.json").read_text())["version"] == "99.0.0"
    assert not (prefix / ".install-in-progress.json").exists()
    assert "kept" in users(prefix)


def test_uninstall_keeps_the_data_unless_purged(unpacked: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    assert run_install(unpacked, prefix).returncode == 0
    removed = run_install(unpacked, prefix, "--uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (prefix / "releases").exists() and (prefix / "data" / "appliance.db").exists()
    with sqlite3.connect(f"file:{prefix / 'data' / 'appliance.db'}?immutable=1", uri=True) as db:
        assert db.execute("SELECT COUNT(*) FROM audit_events WHERE action = 'system:release:removed'").fetchone()[0]
    assert run_install(unpacked, prefix).returncode == 0  # a reinstall finds its data again
    purged = run_install(unpacked, prefix, "--uninstall", "--purge")
    assert purged.returncode == 0
    assert not (prefix / "data").exists() and not (prefix / "etc").exists()
