"""Signed pack import: every bad input is refused with its reason, the active packs stay as they were,
and an audit event is written. Real keys, real tars and folders, the real importer."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance import clock
from appliance.audit import Actor, AuditTag, record_event
from appliance.config import Settings
from appliance.errors import PackError, StoreError
from appliance.packs import current_root, import_pack, load_ruleset, update_root
from appliance.packs.keys import generate_key, load_private_key, load_public_key
from appliance.packs.manifest import MANIFEST_NAME, build_tar
from appliance.packs.trust import make_root, sign_document
from appliance.store import Database
from appliance.tasks.services import open_database
from tests.support import ROOT, Trust, make_settings, signed_pack

CORE = ROOT / "rules" / "secure-coding-core"


def snapshot(db: Database) -> list[tuple[Any, ...]]:
    with db.read() as tx:
        return tx.rows("SELECT id, version, content_digest, path FROM packs ORDER BY id")


def refusals(db: Database) -> int:
    with db.read() as tx:
        return int(tx.scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'packs:pack:refused'"))


def assert_refused(db: Database, settings: Settings, source: Path, needle: str, **kwargs: Any) -> PackError:
    before, audited = snapshot(db), refusals(db)
    with pytest.raises(PackError) as caught:
        import_pack(db, settings, source, actor=Actor.cli(), **kwargs)
    assert needle in caught.value.message, caught.value.message
    assert snapshot(db) == before, "a refusal must leave the active packs unchanged"
    assert refusals(db) == audited + 1, "every refusal is audited"
    assert not list((settings.data_dir / "packs" / ".staging").glob("*")), "no staging left behind"
    return caught.value


def bump(version: int) -> Any:
    def edit(folder: Path) -> None:
        text = (folder / "pack.toml").read_text()
        (folder / "pack.toml").write_text(text.replace("version = 1\n", f"version = {version}\n", 1)
                                          .replace('display_version = "1.0.0"', f'display_version = "{version}.0.0"'))
    return edit


@pytest.fixture
def fresh(tmp_path: Path, test_trust: Trust) -> tuple[Database, Settings]:
    """A data directory with no pack active yet, trusting the test root."""
    settings = make_settings(tmp_path / "fresh")
    db = open_database(settings)
    yield db, settings
    db.close()


def test_a_signed_pack_is_verified_examples_run_and_it_is_activated(fresh: tuple[Database, Settings],
                                                                    test_trust: Trust) -> None:
    db, settings = fresh
    result = import_pack(db, settings, test_trust.packs["secure-coding-core"], actor=Actor.cli())
    assert (result.pack_id, result.version, result.outcome) == ("secure-coding-core", 1, "activated")
    ruleset = load_ruleset(db, settings)
    assert [p.id for p in ruleset.packs] == ["secure-coding-core"] and ruleset.refused == []
    with db.read() as tx:
        actions = [r[0] for r in tx.rows("SELECT action FROM audit_events WHERE target = 'pack:secure-coding-core' "
                                         "ORDER BY seq")]
    assert actions[:2] == ["packs:pack:imported", "packs:pack:activated"]
    again = import_pack(db, settings, test_trust.packs["secure-coding-core"], actor=Actor.cli())
    assert again.outcome == "unchanged"


def test_forged_signature(fresh: tuple[Database, Settings], test_trust: Trust, tmp_path: Path) -> None:
    db, settings = fresh
    folder = signed_pack(CORE, tmp_path / "forged", [test_trust.pack_key])
    doc = json.loads((folder / MANIFEST_NAME).read_text())
    doc["signed"]["version"] = 7  # the signature no longer covers what the manifest says
    (folder / MANIFEST_NAME).write_text(json.dumps(doc))
    assert_refused(db, settings, folder, "0 valid signature(s)")
    intruder = tmp_path / "intruder.pem"
    generate_key(intruder)
    assert_refused(db, settings, signed_pack(CORE, tmp_path / "intruder", [intruder]), "0 valid signature(s)")


def two_of_two(tmp_path: Path) -> tuple[Settings, Database, Path, Path]:
    """An appliance whose root demands two pack signatures from two distinct keys."""
    keys = []
    for name in ("root", "a", "b"):
        generate_key(tmp_path / f"{name}.pem")
        keys.append(tmp_path / f"{name}.pem")
    root = make_root(version=1, environment="production", expires=clock.now() + timedelta(days=30),
                     root_keys=[load_public_key(keys[0])], root_threshold=1,
                     pack_keys=[load_public_key(keys[1]), load_public_key(keys[2])], pack_threshold=2)
    (tmp_path / "root.json").write_text(json.dumps({"signed": root.signed, "signatures": sign_document(
        root.signed, [], load_private_key(keys[0]))}))
    settings = make_settings(tmp_path / "data", trust_root=tmp_path / "root.json")
    return settings, open_database(settings), keys[1], keys[2]


def test_one_signature_where_two_are_required_and_one_key_counted_twice(tmp_path: Path) -> None:
    settings, db, key_a, key_b = two_of_two(tmp_path)
    assert_refused(db, settings, signed_pack(CORE, tmp_path / "one", [key_a]), "1 valid signature(s)")
    twice = signed_pack(CORE, tmp_path / "twice", [key_a])
    doc = json.loads((twice / MANIFEST_NAME).read_text())
    doc["signatures"] = doc["signatures"] * 2  # the same key's signature, listed twice
    (twice / MANIFEST_NAME).write_text(json.dumps(doc))
    assert_refused(db, settings, twice, "1 valid signature(s) from distinct keys")
    both = build_tar(signed_pack(CORE, tmp_path / "both", [key_a, key_b]), tmp_path / "both.tar")
    assert import_pack(db, settings, both, actor=Actor.cli()).outcome == "activated"
    db.close()


def test_an_older_pack_over_a_newer_one_needs_an_audited_downgrade(fresh: tuple[Database, Settings],
                                                                   test_trust: Trust, tmp_path: Path) -> None:
    db, settings = fresh
    newer = signed_pack(CORE, tmp_path / "v2", [test_trust.pack_key], edit=bump(2))
    assert import_pack(db, settings, newer, actor=Actor.cli()).version == 2
    older = test_trust.packs["secure-coding-core"]
    assert_refused(db, settings, older, "older than the active version 2")
    assert_refused(db, settings, older, "a downgrade needs a reason", allow_downgrade=True)
    result = import_pack(db, settings, older, actor=Actor.cli(), allow_downgrade=True, reason="v2 rule misfires")
    assert (result.outcome, result.version) == ("downgraded", 1)
    with db.read() as tx:
        downgrade = tx.one("SELECT details FROM audit_events WHERE action = 'packs:pack:downgraded'")
        assert tx.scalar("SELECT downgrade_reason FROM packs") == "v2 rule misfires"
    assert downgrade is not None and "v2 rule misfires" in str(downgrade["details"])


def test_re_import_is_a_no_op_and_changed_content_needs_a_new_version(fresh: tuple[Database, Settings],
                                                                      test_trust: Trust, tmp_path: Path) -> None:
    db, settings = fresh
    import_pack(db, settings, test_trust.packs["secure-coding-core"], actor=Actor.cli())
    with db.read() as tx:
        before = tx.scalar("SELECT value FROM appliance_state WHERE key = 'packs.generation'")
    assert import_pack(db, settings, test_trust.packs["secure-coding-core"], actor=Actor.cli()).outcome == "unchanged"
    with db.read() as tx:
        assert tx.scalar("SELECT value FROM appliance_state WHERE key = 'packs.generation'") == before
        assert tx.scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'packs:pack:unchanged'") == 1

    def tweak(folder: Path) -> None:
        (folder / "README.md").write_text("changed without a new version\n")

    assert_refused(db, settings, signed_pack(CORE, tmp_path / "same-version", [test_trust.pack_key], edit=tweak),
                   "already active with different content")


def test_expired_packs_also_after_the_clock_is_set_back(fresh: tuple[Database, Settings], test_trust: Trust,
                                                        tmp_path: Path) -> None:
    db, settings = fresh
    expired = signed_pack(CORE, tmp_path / "expired", [test_trust.pack_key],
                          issued=clock.now() - timedelta(days=10), valid=timedelta(days=1))
    assert_refused(db, settings, expired, "the pack expired at")
    # Far "in the future" by this clock is refused: it would raise the clock floor past valid packs.
    assert_refused(db, settings, signed_pack(CORE, tmp_path / "far", [test_trust.pack_key],
                                             issued=clock.now() + timedelta(days=5)), "ahead of this appliance's clock")
    # A pack issued a day ahead (clock skew) moves the clock floor forward...
    future = signed_pack(CORE, tmp_path / "future", [test_trust.pack_key], edit=bump(2),
                         issued=clock.now() + timedelta(days=1))
    assert import_pack(db, settings, future, actor=Actor.cli()).version == 2
    # ...so a pack that expires before that floor stays expired, even though this clock says otherwise.
    stale = signed_pack(CORE, tmp_path / "stale", [test_trust.pack_key], edit=bump(3),
                        issued=clock.now() - timedelta(days=1), valid=timedelta(hours=36))
    error = assert_refused(db, settings, stale, "a clock set back does not make it valid")
    assert "accepted a pack issued at" in error.message


def test_a_manifest_of_one_pack_with_a_file_of_another(fresh: tuple[Database, Settings], test_trust: Trust,
                                                       tmp_path: Path) -> None:
    db, settings = fresh
    folder = signed_pack(CORE, tmp_path / "mixed", [test_trust.pack_key])
    # Another pack's version of the file, of the same length, so only its hash can tell.
    def other_version(folder: Path) -> None:
        path = folder / "rules" / "crypto.toml"
        path.write_text(path.read_text().replace('severity = "high"', 'severity = "low" '))

    other = signed_pack(CORE, tmp_path / "other", [test_trust.pack_key], edit=other_version)
    assert (other / "rules" / "crypto.toml").stat().st_size == (folder / "rules" / "crypto.toml").stat().st_size
    shutil.copy(other / "rules" / "crypto.toml", folder / "rules" / "crypto.toml")
    assert_refused(db, settings, folder, "does not match its signed sha256")


def test_a_file_longer_than_signed(fresh: tuple[Database, Settings], test_trust: Trust, tmp_path: Path) -> None:
    db, settings = fresh
    folder = signed_pack(CORE, tmp_path / "longer", [test_trust.pack_key])
    with (folder / "rules" / "crypto.toml").open("ab") as fh:
        fh.write(b"\n[[rule]]\n")
    assert_refused(db, settings, folder, "longer than the signed")


def raw_tar(target: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(target, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return target


def test_tar_bomb_of_entries_and_a_10_gb_sparse_file(fresh: tuple[Database, Settings], test_trust: Trust,
                                                     tmp_path: Path) -> None:
    db, settings = fresh
    folder = signed_pack(CORE, tmp_path / "bomb", [test_trust.pack_key])
    manifest = (folder / MANIFEST_NAME).read_bytes()
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    info = tarfile.TarInfo(MANIFEST_NAME)
    info.size = len(manifest)
    entries.append((info, manifest))
    for n in range(2100):
        member = tarfile.TarInfo(f"rules/x{n}.toml")
        member.size = 0
        entries.append((member, b""))
    assert_refused(db, settings, raw_tar(tmp_path / "bomb.tar", entries), "more than 2000 entries")
    # A file the manifest lists, replaced by a 10 GB sparse file: refused from its size, nothing is read.
    sparse = signed_pack(CORE, tmp_path / "sparse", [test_trust.pack_key])
    target = sparse / "rules" / "crypto.toml"
    target.unlink()
    with target.open("wb") as fh:
        fh.truncate(10 << 30)
    assert target.stat().st_blocks < 1024, "the test needs a sparse file"
    assert_refused(db, settings, sparse, "10737418240 bytes, longer than the signed")
    # In a tar, a header claiming 10 GB (with no data behind it) is refused the same way.
    header = tarfile.TarInfo("rules/crypto.toml")
    header.size = 10 << 30
    with (tmp_path / "huge.tar").open("wb") as fh:
        data = (folder / MANIFEST_NAME).read_bytes()
        first = tarfile.TarInfo(MANIFEST_NAME)
        first.size = len(data)
        fh.write(first.tobuf(tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512))
        fh.write(header.tobuf(tarfile.GNU_FORMAT))
    error = assert_refused(db, settings, tmp_path / "huge.tar", "")
    assert "longer than the signed" in error.message or "damaged or truncated" in error.message


def test_dot_dot_paths_and_links(fresh: tuple[Database, Settings], test_trust: Trust, tmp_path: Path) -> None:
    db, settings = fresh
    folder = signed_pack(CORE, tmp_path / "paths", [test_trust.pack_key])
    manifest = (folder / MANIFEST_NAME).read_bytes()
    first = tarfile.TarInfo(MANIFEST_NAME)
    first.size = len(manifest)
    evil = tarfile.TarInfo("../../etc/cron.d/evil")
    evil.size = 4
    assert_refused(db, settings, raw_tar(tmp_path / "dotdot.tar", [(first, manifest), (evil, b"boom")]),
                   "'..' and '.' path components are not allowed")
    link = tarfile.TarInfo("rules/crypto.toml")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/shadow"
    assert_refused(db, settings, raw_tar(tmp_path / "link.tar", [(first, manifest), (link, None)]),
                   "symbolic or hard link")
    (folder / "rules" / "crypto.toml").unlink()
    (folder / "rules" / "crypto.toml").symlink_to("/etc/hostname")
    assert_refused(db, settings, folder, "symbolic or hard link")


def test_a_pack_for_another_product_or_channel(fresh: tuple[Database, Settings], test_trust: Trust,
                                               tmp_path: Path) -> None:
    db, settings = fresh

    def retarget(key: str, value: str) -> Any:
        def edit(folder: Path) -> None:
            text = (folder / "pack.toml").read_text()
            (folder / "pack.toml").write_text(text.replace(f'{key} = "', f'{key} = "{value}', 1)
                                              if f"{key} =" in text else text + f'{key} = "{value}"\n')
        return edit

    assert_refused(db, settings, signed_pack(CORE, tmp_path / "product", [test_trust.pack_key],
                                             edit=retarget("product", "other-")), "not cortex-code-appliance")
    assert_refused(db, settings, signed_pack(CORE, tmp_path / "channel", [test_trust.pack_key],
                                             edit=retarget("channel", "beta-")), "channel")


def test_malformed_toml_and_an_uncompilable_pattern(fresh: tuple[Database, Settings], test_trust: Trust,
                                                    tmp_path: Path) -> None:
    db, settings = fresh
    broken = signed_pack(CORE, tmp_path / "toml", [test_trust.pack_key],
                         edit=lambda f: (f / "rules" / "crypto.toml").write_text("[[rule]\nid = \n"))
    assert_refused(db, settings, broken, "is not valid TOML")

    def bad_pattern(folder: Path) -> None:
        (folder / "rules" / "zz-bad.toml").write_text(
            '[[rule]]\nid = "BAD-1"\ntitle = "t"\nseverity = "low"\nmessage = "m"\npattern = "(?=lookahead)"\n'
            'controls = { CWE = ["CWE-20"] }\n')

    error = assert_refused(db, settings, signed_pack(CORE, tmp_path / "re2", [test_trust.pack_key], edit=bad_pattern),
                           "rule BAD-1: pattern does not compile with RE2")
    assert error.pack_id == "secure-coding-core"


def test_failing_examples_refuse_the_pack(fresh: tuple[Database, Settings], test_trust: Trust, tmp_path: Path) -> None:
    db, settings = fresh

    def wrong_example(folder: Path) -> None:
        path = folder / "rules" / "crypto.toml"
        path.write_text(path.read_text().replace('expect = "clean"', 'expect = "finding"', 1))

    assert_refused(db, settings, signed_pack(CORE, tmp_path / "examples", [test_trust.pack_key], edit=wrong_example),
                   "the pack's own examples fail")


def test_a_failed_activation_leaves_the_old_pack_active(fresh: tuple[Database, Settings], test_trust: Trust,
                                                        tmp_path: Path) -> None:
    db, settings = fresh
    import_pack(db, settings, test_trust.packs["secure-coding-core"], actor=Actor.cli())
    before = snapshot(db)
    newer = signed_pack(CORE, tmp_path / "v2", [test_trust.pack_key], edit=bump(2))
    # The disk "fills" before the switch: SQLite may not grow the database file any more, and every page
    # is used, so the activation's transaction cannot commit.
    with db.write() as tx:
        tx.script("CREATE TABLE filler (x BLOB)")
        tx.scalar(f"PRAGMA max_page_count = {tx.scalar('PRAGMA page_count') + 8}")
    for size in (512, 64, 8, 1):  # fill the free pages, then the gaps in them
        with pytest.raises(StoreError, match="full"):
            while True:
                with db.write() as tx:
                    tx.execute("INSERT INTO filler VALUES (randomblob(?))", (size,))
    for size in (256, 16, 0):  # and the audit table's last page, with events (this database is a throwaway)
        with pytest.raises(StoreError, match="full"):
            while True:
                with db.write() as tx:
                    record_event(tx, AuditTag.SYSTEM_SERVICE_STARTED, Actor.system(), details={"pad": "x" * size})
    with pytest.raises(StoreError, match="full"):
        import_pack(db, settings, newer, actor=Actor.cli())
    with db.write() as tx:
        tx.scalar("PRAGMA max_page_count = 1073741823")
    assert snapshot(db) == before
    assert [p.version for p in load_ruleset(db, settings).packs] == [1]


def test_a_pack_changed_on_disk_after_activation_is_refused_at_load(fresh: tuple[Database, Settings],
                                                                    test_trust: Trust) -> None:
    db, settings = fresh
    result = import_pack(db, settings, test_trust.packs["secure-coding-core"], actor=Actor.cli())
    assert result.path is not None
    with (result.path / "rules" / "crypto.toml").open("a") as fh:
        fh.write("\n# edited on the appliance\n")
    ruleset = load_ruleset(db, settings)
    assert ruleset.packs == [] and "no longer matches its signed manifest" in ruleset.refused[0].message
    # Importing the same signed pack again repairs the folder.
    repaired = import_pack(db, settings, test_trust.packs["secure-coding-core"], actor=Actor.cli())
    assert repaired.outcome == "repaired"
    assert [p.id for p in load_ruleset(db, settings).packs] == ["secure-coding-core"]


def test_root_rotation_needs_both_thresholds_and_moves_pack_keys(fresh: tuple[Database, Settings], test_trust: Trust,
                                                                 tmp_path: Path) -> None:
    db, settings = fresh
    assert current_root(db, settings).version == 1
    import_pack(db, settings, test_trust.packs["secure-coding-core"], actor=Actor.cli())
    new_root_key, new_pack_key = tmp_path / "root2.pem", tmp_path / "pack2.pem"
    generate_key(new_root_key)
    generate_key(new_pack_key)

    def root_v(version: int, signers: list[Path]) -> Path:
        root = make_root(version=version, environment="development", expires=clock.now() + timedelta(days=30),
                         root_keys=[load_public_key(new_root_key)], root_threshold=1,
                         pack_keys=[load_public_key(new_pack_key)], pack_threshold=1)
        signatures: list[dict[str, str]] = []
        for key in signers:
            signatures = sign_document(root.signed, signatures, load_private_key(key))
        path = tmp_path / f"root-{version}-{len(signers)}.json"
        path.write_text(json.dumps({"signed": root.signed, "signatures": signatures}))
        return path

    with pytest.raises(PackError, match="current root's root"):
        update_root(db, settings, root_v(2, [new_root_key]), actor=Actor.cli())
    with pytest.raises(PackError, match="new root's root"):
        update_root(db, settings, root_v(2, [test_trust.root_key]), actor=Actor.cli())
    with pytest.raises(PackError, match="only version 2 can follow"):
        update_root(db, settings, root_v(3, [test_trust.root_key, new_root_key]), actor=Actor.cli())
    update_root(db, settings, root_v(2, [test_trust.root_key, new_root_key]), actor=Actor.cli())
    assert current_root(db, settings).version == 2
    # The old pack key is no longer trusted: the active pack it signed stops at load, and its tar is refused.
    refused = load_ruleset(db, settings)
    assert refused.packs == [] and "current trust root" in refused.refused[0].message
    assert_refused(db, settings, test_trust.packs["secure-coding-core"], "0 valid signature(s)")
    newer = signed_pack(CORE, tmp_path / "new-key", [new_pack_key], edit=bump(2))
    assert import_pack(db, settings, newer, actor=Actor.cli()).outcome == "activated"
    assert [p.version for p in load_ruleset(db, settings).packs] == [2]
    with db.read() as tx:
        actions = [r[0] for r in tx.rows(
            "SELECT action FROM audit_events WHERE action LIKE 'packs:root:%' ORDER BY seq")]
    assert actions == ["packs:root:installed", "packs:root:refused", "packs:root:refused", "packs:root:refused",
                       "packs:root:updated"]


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare is not installed")
def test_import_from_a_read_only_mount(test_trust: Trust, tmp_path: Path) -> None:
    media = tmp_path / "usb"
    shutil.copytree(signed_pack(CORE, tmp_path / "src", [test_trust.pack_key]), media / "secure-coding-core")
    shutil.copy(test_trust.packs["secure-coding-core"], media / "secure-coding-core.tar")
    data = tmp_path / "appliance"
    env = {**os.environ, "CORTEX_DATA_DIR": str(data), "CORTEX_CONFIG": "", "CORTEX_TRUST_ROOT": str(test_trust.root)}
    script = (f"mount --bind {media} {media} && mount -o remount,bind,ro {media} && "
              f"! touch {media}/probe 2>/dev/null && "
              f"{sys.executable} -m appliance packs import {media}/secure-coding-core.tar && "
              f"{sys.executable} -m appliance packs import {media}/secure-coding-core")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"this machine cannot create a mount namespace: {probe.stderr.decode().strip()}")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=env, capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # The folder was signed after the tar: the same content, re-issued with a later expiry, renews it.
    assert "activated secure-coding-core" in result.stdout and "renewed   secure-coding-core" in result.stdout


def test_a_template_takes_the_packs_active_at_review_time(fresh: tuple[Database, Settings], test_trust: Trust) -> None:
    from appliance.packs import set_selection
    from appliance.packs.selection import resolve_selection

    db, settings = fresh
    import_pack(db, settings, test_trust.packs["secure-coding-core"], actor=Actor.cli())
    chosen = set_selection(db, repository="gov/app", actor=Actor.cli(), template="government")
    assert chosen["packs"] == ["secure-coding-core"] and chosen["strict"] is True
    for pack in ("secure-coding", "nist-800-53"):
        if pack in test_trust.packs:
            import_pack(db, settings, test_trust.packs[pack], actor=Actor.cli())
    with db.read() as tx:
        resolved = resolve_selection(tx, "gov/app")
    expected = [p for p in ("nist-800-53", "secure-coding", "secure-coding-core")
                if p in test_trust.packs]
    assert resolved["packs"] == expected and resolved["template"] == "government"


def test_the_catalog_never_makes_readiness_wait_for_a_compile(fresh: tuple[Database, Settings],
                                                              test_trust: Trust) -> None:
    """While another thread holds the catalog compiling, describe() (what /readyz shows) answers from
    what it knows, and an import seen meanwhile is picked up in the background."""
    import threading

    from appliance.packs.service import PackCatalog

    db, settings = fresh
    import_pack(db, settings, test_trust.packs["secure-coding-core"], actor=Actor.cli())
    catalog = PackCatalog(settings, db)
    catalog.begin_load()
    assert catalog.describe()["checking"] is True  # the service's first load has not run yet
    catalog.load()
    loaded = catalog.describe()
    assert loaded["compiled"] is True and [p["id"] for p in loaded["active"]] == ["secure-coding-core"]

    other = "secure-coding" if "secure-coding" in test_trust.packs else "secrets"
    import_pack(db, settings, test_trust.packs[other], actor=Actor.cli())  # bumps the generation
    answers: list[dict[str, Any]] = []
    with catalog._lock:  # a compile in progress elsewhere holds it
        asker = threading.Thread(target=lambda: answers.append(catalog.describe()))
        asker.start()
        asker.join(timeout=60)
        assert not asker.is_alive(), "describe() waited for the compile"
    assert answers[0]["compiled"] is False  # the last load's packs, while the new one runs
    assert [p["id"] for p in answers[0]["active"]] == ["secure-coding-core"]
    catalog.ruleset  # noqa: B018 - waits for the background reload
    assert sorted(p["id"] for p in catalog.describe()["active"]) == sorted(["secure-coding-core", other])
