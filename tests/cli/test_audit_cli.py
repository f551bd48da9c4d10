"""``cortex audit`` as operators and auditors run it: a subprocess, a real data directory, the real openssl."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.store import Database
from tests.audit.tamper import attacker
from tests.cli.test_cli import cortex
from tests.support import Trust


@pytest.fixture
def data(tmp_path: Path, test_trust: Trust) -> Path:
    # test_trust fills in the trust root that cortex() passes to every command.
    data_dir = tmp_path / "data"
    for n in range(3):
        assert cortex(data_dir, "users", "create", f"user{n}", "--role", "viewer", "--no-password").returncode == 0
    return data_dir


def test_verify_says_ok_with_count_and_head_and_records_itself(data: Path) -> None:
    result = cortex(data, "audit", "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: ") and "events verified" in result.stdout
    as_json = json.loads(cortex(data, "audit", "verify", "--json").stdout)
    assert as_json["ok"] and len(as_json["head"]) == 64
    log = cortex(data, "audit", "log", "--action", "audit:log:verified")
    assert log.stdout.count("audit:log:verified") == 2 and "cli:" in log.stdout


def test_a_checkpoint_verifies_with_openssl_alone_and_catches_a_cut_tail(data: Path, tmp_path: Path) -> None:
    made = cortex(data, "audit", "checkpoint")
    assert made.returncode == 0 and "checkpoint at size" in made.stdout
    path = Path(made.stdout.strip().rsplit(": ", 1)[1])
    kept = tmp_path / "kept.txt"
    shutil.copy(path, kept)
    public = tmp_path / "audit.pub"
    public.write_text(cortex(data, "audit", "key").stdout)
    assert (data / "keys" / "audit-ed25519.pem").stat().st_mode & 0o777 == 0o600
    openssl = shutil.which("openssl")
    if openssl:  # the documented recipe, with nothing of ours
        lines = kept.read_text().splitlines(keepends=True)
        (tmp_path / "msg").write_text("".join(lines[:6]))
        (tmp_path / "sig").write_bytes(base64.b64decode(lines[6].split(": ", 1)[1]))
        ok = subprocess.run([openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(public), "-rawin",
                             "-in", str(tmp_path / "msg"), "-sigfile", str(tmp_path / "sig")],
                            capture_output=True, text=True, check=False)
        assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout
        (tmp_path / "msg").write_text("".join(lines[:6]).replace("size: ", "size: 1"))
        bad = subprocess.run([openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(public), "-rawin",
                              "-in", str(tmp_path / "msg"), "-sigfile", str(tmp_path / "sig")],
                             capture_output=True, text=True, check=False)
        assert bad.returncode != 0
    # Cut the tail and every checkpoint on the box: only the kept copy notices.
    size = int(kept.read_text().split("size: ")[1].split()[0])
    con = attacker(data / "appliance.db")
    con.execute("DELETE FROM audit_events WHERE seq > ?", (size - 2,))
    con.execute("DELETE FROM audit_checkpoints")
    con.close()
    shutil.rmtree(data / "audit" / "checkpoints")
    assert cortex(data, "audit", "verify").returncode == 0  # and records itself as event size - 1
    caught = cortex(data, "audit", "verify", "--checkpoint", str(kept))
    assert caught.returncode == 1
    assert caught.stdout.startswith(f"FAILED at seq {size}: truncated: the log ends at seq {size - 1}")


def test_a_checkpoint_file_with_a_bad_signature_fails_verify(data: Path, tmp_path: Path) -> None:
    made = cortex(data, "audit", "checkpoint")
    text = Path(made.stdout.strip().rsplit(": ", 1)[1]).read_text()
    forged = tmp_path / "forged.txt"
    forged.write_text(text.replace("time: 2", "time: 1"))
    result = cortex(data, "audit", "verify", "--checkpoint", str(forged))
    assert result.returncode == 1 and "bad_signature" in result.stdout
    malformed = tmp_path / "malformed.txt"
    malformed.write_text("hello\n")
    result = cortex(data, "audit", "verify", "--checkpoint", str(malformed))
    assert result.returncode == 1 and "Error: " in result.stderr and "is not a checkpoint" in result.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_verifies_offline_and_tampering_with_it_is_caught(data: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"audit.{fmt}"
    exported = cortex(data, "audit", "export", "--format", fmt, "--from-seq", "2", "--output", str(out))
    assert exported.returncode == 0, exported.stderr
    assert "exported events 2.." in exported.stderr
    public = tmp_path / "audit.pub"
    public.write_text(cortex(data, "audit", "key").stdout)
    # Offline, on another machine: no data directory at all.
    elsewhere = tmp_path / "elsewhere"
    ok = cortex(elsewhere, "audit", "verify", "--export", str(out), "--public-key", str(public))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK: ") and not (elsewhere / "appliance.db").exists()
    raw = out.read_bytes()
    edited = tmp_path / f"edited.{fmt}"
    edited.write_bytes(raw.replace(b"user1", b"userX", 1))
    assert cortex(elsewhere, "audit", "verify", "--export", str(edited)).returncode == 1
    truncated = tmp_path / f"truncated.{fmt}"
    truncated.write_bytes(raw[: len(raw) // 2])
    result = cortex(elsewhere, "audit", "verify", "--export", str(truncated))
    assert result.returncode == 1 and "malformed" in result.stdout
    garbage = tmp_path / f"garbage.{fmt}"
    garbage.write_bytes(b'{"record":"header"}\n{not json\n{"record":"signature"}\n')
    result = cortex(elsewhere, "audit", "verify", "--export", str(garbage))
    assert result.returncode == 1 and "malformed" in result.stdout
    db = Database(data / "appliance.db")
    with db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'audit:log:exported'") == 1
    db.close()


def test_forwarders_retention_holds_and_purge_from_the_command_line(data: Path, tmp_path: Path) -> None:
    secret = tmp_path / "hook.key"
    secret.write_text("k")
    added = cortex(data, "audit", "forwarders", "add", "hook", "--kind", "webhook", "--target",
                   "http://127.0.0.1:9/x", "--secret-file", str(secret))
    assert added.returncode == 0, added.stderr
    assert "hook" in cortex(data, "audit", "forwarders", "list").stdout
    forward = cortex(data, "audit", "forward")
    assert forward.returncode == 1 and "hook: 0 event(s) delivered, then:" in forward.stderr
    assert cortex(data, "audit", "forwarders", "remove", "hook").returncode == 0
    assert cortex(data, "audit", "retention", "set", "auth:user", "30").returncode == 0
    assert "auth:user" in cortex(data, "audit", "retention", "list").stdout
    placed = cortex(data, "audit", "hold", "place", "--reason", "case 7")
    assert placed.returncode == 0 and "legal hold 1 placed" in placed.stdout
    assert "case 7" in cortex(data, "audit", "hold", "list").stdout
    assert cortex(data, "audit", "purge", "--dry-run").stdout.startswith("0 event(s) due")
    assert cortex(data, "audit", "purge").returncode == 0
    assert cortex(data, "audit", "hold", "release", "1").returncode == 0
    assert cortex(data, "audit", "retention", "clear", "auth:user").returncode == 0
    bad = cortex(data, "audit", "retention", "set", "nope", "3")
    assert bad.returncode == 1 and "not an action class" in bad.stderr
    assert cortex(data, "audit", "verify").returncode == 0
