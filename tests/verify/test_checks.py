"""The checklist against a real installation: a signed release, a data directory with the signed packs
imported and a real audit chain, certificates made for the test. No check is mocked; the clock is the
one input given from outside (``now``)."""

from __future__ import annotations

import os
import pwd
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import clock
from appliance.audit.keys import AuditKey
from appliance.config import Settings, load_settings
from appliance.errors import ConfigError
from appliance.verify.host import check_data_dir, check_fips, check_service_user, check_tls
from appliance.verify.integrity import check_audit_chain, check_clock, check_model, check_packs, check_release
from appliance.verify.models import Check, ChecklistItem, Status
from appliance.verify.runner import CHECKLIST
from appliance.verify.system import SystemFiles
from tests.audit.tamper import attacker
from tests.support import make_settings
from tests.verify.conftest import SERVICE_USER, checks, evidence, give_to_service_user, run
from tests.verify.release import Release
from tests.verify.tls import weak_rsa, write_tls

# What a test machine cannot promise: routes, resolvers, FIPS, the service's sockets, TLS (unset), disk.
HOST_DEPENDENT = {"default-route", "dns", "fips", "listening", "tls", "disk"}


def test_a_clean_installation_passes(settings_of: Any, release: Release) -> None:
    report = run(settings_of(), release)
    found = checks(report)
    assert [c.id for c in report.checks] == [item.id for item in CHECKLIST]
    assert len(found) == 14
    for check_id, check in found.items():
        if check_id not in HOST_DEPENDENT:
            assert check.status is Status.PASS, (check_id, check.evidence)
        assert check.evidence, check_id
        assert check.status is Status.PASS or check.remedy, check_id
    assert report.ok and report.status is not Status.FAIL
    assert "files match MANIFEST" in evidence(found["release"])
    assert "tiny-test-model" in evidence(found["model"])
    assert "secure-coding-core" in evidence(found["packs"])
    assert evidence(found["audit-chain"]).startswith("OK: ")
    assert found["tls"].status is Status.WARN and "TLS is not configured" in evidence(found["tls"])
    assert report.context["release_dir"] == str(release.dir)
    assert report.context["service_user"].startswith(SERVICE_USER)


def test_a_source_checkout_is_a_warning(settings_of: Any) -> None:
    check = one(check_release, settings_of(), None)
    assert check.status is Status.WARN
    assert check.evidence == ["not an installed release (running from a source checkout)"]


@pytest.mark.parametrize(("damage", "named"), [
    (lambda d: (d / "cortex").write_bytes(b"\x7fELF patched binary stand-in\n"), "cortex: modified"),
    (lambda d: (d / "trust" / "root.json").unlink(), "trust/root.json: missing"),
    (lambda d: (d / "docs" / "extra.html").write_text("x"), "docs/extra.html: extra file"),
    (lambda d: (d / "MANIFEST").write_text((d / "MANIFEST").read_text().replace("x86_64", "i686")),
     "MANIFEST.sig: the signature over MANIFEST does not verify"),
])
def test_a_damaged_release_fails_naming_the_file(settings_of: Any, release: Release, damage: Any,
                                                 named: str) -> None:
    damage(release.dir)
    report = run(settings_of(), release)
    check = checks(report)["release"]
    assert check.status is Status.FAIL
    assert any(line.startswith(named) for line in check.evidence), check.evidence
    assert not report.ok


def test_a_pinned_release_key(settings_of: Any, release: Release) -> None:
    assert checks(run(settings_of(), release, release_key_pem=release.public_pem()))["release"].status is Status.PASS
    other = Release(release.dir, Ed25519PrivateKey.generate())
    assert checks(run(settings_of(), release, release_key_pem=other.public_pem()))["release"].status is Status.FAIL


def test_a_replaced_model_fails(settings_of: Any, release: Release) -> None:
    model = release.dir / "models" / "tiny.gguf"
    model.write_bytes(model.read_bytes()[::-1])
    check = one(check_model, settings_of(), release)
    assert check.status is Status.FAIL
    assert "sha256 of" in check.evidence[0] and "restore it from the install media" in check.evidence[0]


def test_an_unregistered_model(settings_of: Any, release: Release) -> None:
    check = one(check_model, settings_of(model="no-such-model"), release)
    assert check.status is Status.FAIL and "'no-such-model' is not registered" in check.evidence[0]
    check = one(check_model, settings_of(model="no-such-model", model_enabled=False), release)
    assert check.status is Status.WARN


def test_a_pack_edited_on_disk_fails(settings_of: Any, release: Release) -> None:
    settings = settings_of()
    rules = sorted((settings.data_dir / "packs").glob("secrets*/**/*.toml"))
    rules[-1].write_text(rules[-1].read_text() + "\n# loosened\n")
    check = one(check_packs, settings, release)
    assert check.status is Status.FAIL
    assert any("secrets" in line and "refused at load" in line for line in check.evidence), check.evidence


def test_a_tampered_audit_chain_fails(settings_of: Any, release: Release) -> None:
    settings = settings_of()
    con = attacker(settings.db_path)
    con.execute("UPDATE audit_events SET target = 'nothing to see' WHERE seq = 3")
    con.close()
    check = checks(run(settings, release))["audit-chain"]
    assert check.status is Status.FAIL
    assert check.evidence[0].startswith("FAILED at seq 3: modified")


def test_the_audit_check_creates_no_key(settings_of: Any, release: Release) -> None:
    settings = settings_of()
    assert not (settings.data_dir / "keys").exists()
    assert one(check_audit_chain, settings, release).status is Status.PASS
    assert not (settings.data_dir / "keys").exists()


def test_checkpoints_are_checked_with_the_audit_key(settings_of: Any, release: Release) -> None:
    from appliance.audit.checkpoints import make_checkpoint
    from appliance.tasks.services import open_database

    settings = settings_of()
    db = open_database(settings)
    checkpoint = make_checkpoint(db, settings.data_dir)
    db.close()
    assert checkpoint is not None
    check = one(check_audit_chain, settings, release)
    assert check.status is Status.PASS and "1 checkpoint(s) checked" in check.evidence[0]
    # A chain recomputed after the checkpoint was signed no longer matches it.
    con = attacker(settings.db_path)
    con.execute("UPDATE audit_events SET target = 'rewritten' WHERE seq = 2")
    con.rehash_from(2)
    con.close()
    check = one(check_audit_chain, settings, release)
    assert check.status is Status.FAIL and ": recomputed:" in check.evidence[0]


def test_a_clock_behind_the_newest_audit_event_fails(settings_of: Any, release: Release) -> None:
    settings = settings_of()
    yesterday = clock.now() - timedelta(days=1)
    check = checks(run(settings, release, now=yesterday))["clock"]
    assert check.status is Status.FAIL
    text = evidence(check)
    assert f"the clock ({clock.iso(yesterday)}) is earlier than the newest audit event (" in text
    assert "newest audit event: seq " in text


def test_tls_that_is_right_passes(settings_of: Any, release: Release, tmp_path: Path) -> None:
    cert, key = write_tls(tmp_path / "tls")
    give_to_service_user(key)
    check = one(check_tls, settings_of(tls_cert=cert, tls_key=key), release)
    assert check.status is Status.PASS, check.evidence
    assert "EC secp256r1" in check.evidence[0] and "the key matches the certificate" in check.evidence


def test_a_tls_key_readable_by_others_fails(settings_of: Any, release: Release, tmp_path: Path) -> None:
    cert, key = write_tls(tmp_path / "tls", key_mode=0o644)
    give_to_service_user(key)
    report = run(settings_of(tls_cert=cert, tls_key=key), release)
    check = checks(report)["tls"]
    assert check.status is Status.FAIL and not report.ok
    assert f"tls_key {key} has mode 0644: other users can read it; expected 0600 or stricter" in check.evidence


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a file to another user")
def test_a_tls_key_owned_by_another_user_fails(settings_of: Any, release: Release, tmp_path: Path) -> None:
    cert, key = write_tls(tmp_path / "tls")
    check = one(check_tls, settings_of(tls_cert=cert, tls_key=key), release)
    assert check.status is Status.FAIL
    assert f"tls_key {key} is owned by root (uid 0), not by the service user {SERVICE_USER}" in check.evidence


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"not_before": clock.now() - timedelta(days=30), "not_after": clock.now() - timedelta(days=1)},
     "the certificate expired on "),
    ({"not_before": clock.now() + timedelta(days=2)}, "the certificate is not valid before "),
    ({"cert_key": ec.generate_private_key(ec.SECP256R1())}, "does not match the certificate"),
    ({"key": weak_rsa()}, "RSA 1024 bits: RSA keys need at least 2048 bits"),
    ({"key": ec.generate_private_key(ec.SECP256K1())}, "EC keys must be on P-256, P-384 or P-521"),
])
def test_bad_tls_material_fails(settings_of: Any, release: Release, tmp_path: Path, kwargs: dict[str, Any],
                                message: str) -> None:
    cert, key = write_tls(tmp_path / "tls", **kwargs)
    give_to_service_user(key)
    check = one(check_tls, settings_of(tls_cert=cert, tls_key=key), release)
    assert check.status is Status.FAIL
    assert message in evidence(check)


def test_a_certificate_about_to_expire_warns(settings_of: Any, release: Release, tmp_path: Path) -> None:
    cert, key = write_tls(tmp_path / "tls", not_after=clock.now() + timedelta(days=3))
    give_to_service_user(key)
    check = one(check_tls, settings_of(tls_cert=cert, tls_key=key), release)
    assert check.status is Status.WARN and "in less than 30 days" in evidence(check)


def test_a_world_writable_data_dir_fails(settings_of: Any, release: Release) -> None:
    settings = settings_of()
    settings.data_dir.chmod(0o777)
    report = run(settings, release)
    check = checks(report)["data-dir"]
    assert check.status is Status.FAIL and not report.ok
    assert "the data directory is writable by others (mode 0777); expected 0700 or 0750" in check.evidence


def test_loose_files_and_secrets_in_the_data_dir_fail(settings_of: Any, release: Release) -> None:
    settings = settings_of()
    key = AuditKey.load(settings.data_dir)  # the audit key, as the service creates it (0600)
    assert one(check_data_dir, settings, release).status is Status.PASS
    (settings.data_dir / "packs").chmod(0o775)
    pem = settings.data_dir / "keys" / "audit-ed25519.pem"
    pem.chmod(0o644)
    check = one(check_data_dir, settings, release)
    assert check.status is Status.FAIL
    assert "writable by group or others: packs (mode 0775)" in check.evidence
    assert f"secret {pem} has mode 0644; expected 0600" in check.evidence
    assert key.key_id


def test_a_data_dir_readable_by_all_warns(settings_of: Any, release: Release) -> None:
    settings = settings_of()
    settings.data_dir.chmod(0o755)
    check = one(check_data_dir, settings, release)
    assert check.status is Status.WARN
    assert "every user can read the data directory (mode 0755); expected 0700 or 0750" in check.evidence


def test_a_root_service_user_fails(settings_of: Any, release: Release) -> None:
    report = run(settings_of(), release, service_user="root")
    check = checks(report)["service-user"]
    assert check.status is Status.FAIL and not report.ok
    assert "the service user is root: a flaw in the appliance would own the whole host" in check.evidence
    check = one(check_service_user, settings_of(), release, service_user="no-such-user-here")
    assert check.status is Status.FAIL and "there is no user 'no-such-user-here' on this host" in check.evidence


@pytest.mark.skipif(os.geteuid() != 0, reason="the data directory of a non-root test run is its own user's")
def test_without_a_named_user_the_data_dirs_owner_is_the_service_user(settings_of: Any, release: Release,
                                                                       tmp_path: Path) -> None:
    check = one(check_service_user, settings_of(), release, service_user=None)
    assert check.status is Status.PASS
    assert check.evidence[0].startswith(f"service user: {SERVICE_USER} (uid {pwd.getpwnam(SERVICE_USER).pw_uid}), "
                                        "from the owner of the data directory")
    root_owned = make_settings(tmp_path / "root-data")
    root_owned.data_dir.mkdir()
    check = one(check_service_user, root_owned, None, service_user=None)
    assert check.status is Status.FAIL


@pytest.mark.parametrize(("content", "status", "shown"), [
    ("1\n", Status.PASS, "enabled"),
    ("0\n", Status.WARN, "not enabled"),
    (None, Status.WARN, "not available"),
])
def test_fips_mode_is_reported(settings_of: Any, tmp_path: Path, content: str | None, status: Status,
                               shown: str) -> None:
    proc = tmp_path / "proc"
    (proc / "sys" / "crypto").mkdir(parents=True)
    if content is not None:
        (proc / "sys" / "crypto" / "fips_enabled").write_text(content)
    check = one(check_fips, settings_of(), None, files=SystemFiles(proc=proc))
    assert check.status is status and check.evidence[0].startswith(shown)


def test_no_database_yet_warns(tmp_path: Path, release: Release) -> None:
    settings = make_settings(tmp_path / "empty")
    report = run(settings, release, checks=[check_packs, check_audit_chain, check_clock])
    assert [c.status for c in report.checks] == [Status.WARN] * 3
    assert "the appliance was never started with this data directory" in report.checks[0].evidence[0]
    assert not (tmp_path / "empty").exists()  # nothing was created


def test_an_unexpected_error_fails_that_check_alone(settings_of: Any, release: Release,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_of()
    (settings.models_dir / "manifest.toml").write_text("[[model]]\nid = 'x'\n")
    report = run(settings, release, checks=[check_model, check_release])
    model, release_check = report.checks
    assert model.status is Status.FAIL and "lacks file, sha256, license" in model.evidence[0]
    assert release_check.status is Status.FAIL  # the manifest.toml changed too
    settings.models_dir.joinpath("manifest.toml").write_bytes(b"\xff\xfe")  # not UTF-8: no ModelError for that
    report = run(settings, release, checks=[check_model, check_release])
    assert report.checks[0].status is Status.FAIL
    assert report.checks[0].evidence[0].startswith("the check could not run: UnicodeDecodeError")
    assert "verify check model failed" in caplog.text  # the traceback goes to the log
    assert report.checks[1].evidence[1].startswith("models/manifest.toml: modified")


def test_site_ranges_setting(tmp_path: Path) -> None:
    config = tmp_path / "appliance.toml"
    config.write_text('site_ranges = ["10.20.0.0/16", "2001:db8::/32"]\n')
    assert load_settings({"CORTEX_CONFIG": str(config)}).site_ranges == ("10.20.0.0/16", "2001:db8::/32")
    env = {"CORTEX_CONFIG": "", "CORTEX_SITE_RANGES": "10.0.0.0/8, 192.168.7.0/24"}
    assert load_settings(env).site_ranges == ("10.0.0.0/8", "192.168.7.0/24")
    assert load_settings({"CORTEX_CONFIG": ""}).site_ranges == ()
    with pytest.raises(ConfigError, match=r"site_ranges entry '10\.1\.2\.3/8' is not a network in CIDR form "
                                          r"\(did you mean 10\.0\.0\.0/8\?\)"):
        load_settings({"CORTEX_CONFIG": "", "CORTEX_SITE_RANGES": "10.1.2.3/8"})
    config.write_text("site_ranges = 10\n")
    with pytest.raises(ConfigError, match="must be a list of text"):
        load_settings({"CORTEX_CONFIG": str(config)})


def one(item: ChecklistItem, settings: Settings, release: Release | None, **kwargs: Any) -> Check:
    """Run a single check of the checklist."""
    return run(settings, release, checks=[item], **kwargs).checks[0]
