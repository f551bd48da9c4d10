"""Install, upgrade, roll back and uninstall a verified release on this host.

``./install`` (the bundle's shell entry) has checked the bundle's signature and every file before this
code runs: it is the bundle's own ``cortex`` binary. The order of an install or upgrade, each step safe to
repeat, with the step reached recorded in ``PREFIX/.install-in-progress.json`` so that a re-run after an
interruption finishes the job (or ``--rollback`` undoes it):

1. refuse early, changing nothing: prefix not writable, too little disk, a newer version installed;
2. copy the release to ``PREFIX/releases/VERSION`` (into a temporary sibling, then renamed);
3. upgrade only: stop the service and take a verified backup with the *installed* binary
   (``cortex backup create``), before any migration touches the data;
4. settings, TLS certificate and key, data directory, owned by the service user;
5. migrate the database, import the bundle's signed packs, record the install in the audit log;
6. switch ``PREFIX/current`` to the new release (an atomic rename of a symlink);
7. write and start the hardened systemd unit (unless ``--no-systemd``);
8. show the first admin's one-time token (when no admin exists), run ``cortex verify``, print next steps.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.audit import Actor, AuditTag, record_event
from appliance.auth import has_admin, issue_bootstrap_token
from appliance.config import load_settings
from appliance.errors import ApplianceError, PackError
from appliance.install.layout import InstallPaths, InstallRecord, parse_version, write_atomic
from appliance.install.systemd import UNIT_NAME, check_site_ranges, render_unit
from appliance.install.tls import install_site_pair, self_signed
from appliance.packs import import_pack
from appliance.tasks.services import open_database
from appliance.verify.manifest import read_manifest, verify_release

__all__ = ["InstallError", "InstallOptions", "install", "rollback", "uninstall"]

# Room beyond the release itself: the database, a backup of it and the first reviews.
HEADROOM_BYTES = 256 << 20
SYSTEMD_DIR = Path("/etc/systemd/system")


class InstallError(ApplianceError):
    """The install cannot go on; the message says what to do."""


@dataclass
class InstallOptions:
    bundle: Path
    paths: InstallPaths
    systemd: bool = True
    service_user: str | None = None
    hostname: str = field(default_factory=socket.gethostname)
    host: str = "127.0.0.1"
    port: int = 8443
    tls_cert: Path | None = None
    tls_key: Path | None = None
    site_ranges: list[str] = field(default_factory=list)
    allow_downgrade: bool = False
    key_fingerprint: str = ""
    run_checklist: bool = True
    say: Callable[[str], None] = print


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_root() -> bool:
    return os.geteuid() == 0


def _stop_after(step: str) -> None:
    """Fault injection for the interrupted-upgrade tests: ``CORTEX_INSTALL_STOP_AFTER=<step>`` ends the
    process abruptly (as a power cut would) once ``step`` is done."""
    if os.environ.get("CORTEX_INSTALL_STOP_AFTER") == step:
        os._exit(137)


def _free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    stats = os.statvfs(probe)
    return stats.f_bavail * stats.f_frsize


def _check_writable(prefix: Path) -> None:
    try:
        prefix.mkdir(parents=True, exist_ok=True)
        probe = prefix / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InstallError(f"prefix not writable: {prefix} ({exc.strerror}); run ./install as root, or choose a "
                           "directory you can write with --prefix DIR --no-systemd") from exc


def _copy_release(bundle: Path, target: Path, say: Callable[[str], None]) -> None:
    """``bundle`` → ``target``, whole or not at all; an earlier complete copy that still verifies is kept."""
    if target.exists():
        if not verify_release(target):
            return
        say(f"an earlier copy of this release at {target} is incomplete or altered: copying it again")
        shutil.rmtree(target)
    staging = target.with_name(f".{target.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(bundle, staging, symlinks=False)
    problems = verify_release(staging)
    if problems:
        shutil.rmtree(staging, ignore_errors=True)
        raise InstallError(f"the copy of the release at {staging} does not match its manifest "
                           f"({problems[0]}); check the disk and run ./install again")
    staging.replace(target)


def _switch_current(paths: InstallPaths, version: str) -> None:
    link = paths.current
    temp = link.with_name(f".current.{os.getpid()}")
    temp.unlink(missing_ok=True)
    temp.symlink_to(Path("releases") / version)
    temp.replace(link)


def _service_user(options: InstallOptions) -> str:
    """The account the appliance runs as: never root. Root installs create it (default ``cortex``);
    an unprivileged install runs as the installing user."""
    if _is_root():
        name = options.service_user or "cortex"
        if name == "root":
            raise InstallError("--service-user root: the appliance must not run as root; name an ordinary "
                               "account (default cortex, created when missing)")
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",  # noqa: S603,S607
                            str(options.paths.data_dir), "--shell", "/usr/sbin/nologin", name], check=True)
        return name
    current = pwd.getpwuid(os.geteuid()).pw_name
    if options.service_user and options.service_user != current:
        raise InstallError(f"--service-user {options.service_user}: an unprivileged install runs as the user who "
                           f"installs it ({current}); install as that user, or as root")
    return current


def _chown(path: Path, user: str) -> None:
    if not _is_root():
        return
    entry = pwd.getpwnam(user)
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chown(item, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _write_settings(options: InstallOptions, release: Path) -> None:
    paths = options.paths
    if paths.config_file.exists():
        return  # the site's settings survive upgrades; the release paths go through PREFIX/current
    current = paths.current
    lines = [
        "# Written by the Cortex Code Appliance installer; see docs/configuration.html for every setting.",
        f'data_dir = "{paths.data_dir}"',
        f'host = "{options.host}"',
        f"port = {options.port}",
        f'tls_cert = "{paths.tls_dir / "cert.pem"}"',
        f'tls_key = "{paths.tls_dir / "key.pem"}"',
        f'public_url = "https://{options.hostname}:{options.port}"',
        f'models_dir = "{current / "models"}"',
        f'trust_root = "{current / "trust" / "root.json"}"',
        f"site_ranges = {json.dumps(options.site_ranges)}",
    ]
    write_atomic(paths.config_file, "\n".join(lines) + "\n", mode=0o644)


def _tls(options: InstallOptions, user: str) -> str:
    paths = options.paths
    cert, key = paths.tls_dir / "cert.pem", paths.tls_dir / "key.pem"
    paths.tls_dir.mkdir(parents=True, exist_ok=True)
    paths.tls_dir.chmod(0o750)
    if _is_root():  # root owns the folder; the service user's group may enter it to read its key
        os.chown(paths.tls_dir, 0, pwd.getpwnam(user).pw_gid)
    if options.tls_cert or options.tls_key:
        if not (options.tls_cert and options.tls_key):
            raise InstallError("give both --tls-cert and --tls-key (the site's certificate and its key)")
        fingerprint = install_site_pair(options.tls_cert, options.tls_key, cert, key)
        described = f"the site's certificate {options.tls_cert}"
    elif cert.exists() and key.exists():
        return f"TLS: keeping the certificate at {cert}"
    else:
        fingerprint = self_signed(cert, key, options.hostname)
        described = f"a self-signed certificate for {options.hostname}"
    _chown(key, user)
    return f"TLS: {described}, sha256 fingerprint {fingerprint}"


def _backup_with(binary: Path, config_file: Path, data_dir: Path) -> str:
    """A verified backup taken by the installed (old) binary, before the new one migrates anything."""
    result = subprocess.run([str(binary), "--config", str(config_file), "backup", "create", "--out",  # noqa: S603
                             str(data_dir / "backups")], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError(f"the backup before the upgrade failed, so nothing was changed: "
                           f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().splitlines()[-1]


def _systemctl(*args: str, check: bool = True) -> None:
    subprocess.run(["systemctl", *args], check=check, capture_output=True)  # noqa: S603,S607


def _progress(paths: InstallPaths) -> dict[str, Any] | None:
    if not paths.progress_file.exists():
        return None
    return dict(json.loads(paths.progress_file.read_text(encoding="utf-8")))


def _save_progress(paths: InstallPaths, progress: dict[str, Any]) -> None:
    write_atomic(paths.progress_file, json.dumps(progress, indent=2, sort_keys=True) + "\n")


def install(options: InstallOptions) -> int:
    """Install or upgrade to the release in ``options.bundle``; the exit status for the command.

    Raises:
        InstallError: a refusal (nothing was changed) or a failed step (re-run ./install to finish it).
    """
    say, paths = options.say, options.paths
    manifest = read_manifest(options.bundle / "MANIFEST")
    version = manifest.version
    options.site_ranges = check_site_ranges(options.site_ranges)
    record = InstallRecord.load(paths.record_file)
    progress = _progress(paths)
    if progress is not None and progress.get("to") != version:
        raise InstallError(f"an upgrade from {progress.get('from')} to {progress.get('to')} was interrupted at "
                           f"step '{progress.get('step')}'; finish it with that version's ./install, or undo it "
                           "with ./install --rollback")
    if record is not None and progress is None:
        installed = parse_version(record.version)
        if parse_version(version) < installed and not options.allow_downgrade:
            raise InstallError(f"version {record.version} is installed, newer than this bundle's {version}; "
                               "to go back use ./install --rollback (restores the data as it was), or pass "
                               "--allow-downgrade to install the older release over the newer data")
        if version == record.version:
            say(f"Cortex Code Appliance {version} is already installed at {paths.prefix}; nothing to do")
            return _checklist(options) if options.run_checklist else 0
        if record.key_fingerprint and options.key_fingerprint and record.key_fingerprint != options.key_fingerprint:
            say(f"note: this bundle is signed by release key {options.key_fingerprint}, the installed one by "
                f"{record.key_fingerprint}; check the new key's fingerprint with your vendor")
    _check_writable(paths.prefix)
    need = sum(item.length for item in manifest.files) + HEADROOM_BYTES
    free = _free_bytes(paths.prefix)
    if free < need:
        raise InstallError(f"disk too small: the install needs {need >> 20} MiB and {paths.prefix} has "
                           f"{free >> 20} MiB free; free some space or choose another --prefix")
    upgrading = record is not None
    if progress is None:
        progress = {"kind": "upgrade" if upgrading else "install", "from": record.version if record else None,
                    "to": version, "step": "started", "started_at": _now()}
        _save_progress(paths, progress)
    else:
        say(f"finishing the interrupted {progress['kind']} to {version} (it stopped after '{progress['step']}')")

    def reached(step: str) -> None:
        progress["step"] = step
        _save_progress(paths, progress)
        _stop_after(step)

    release = paths.release(version)
    paths.releases.mkdir(parents=True, exist_ok=True)
    _copy_release(options.bundle, release, say)
    say(f"release {version} copied to {release}")
    reached("copied")

    if upgrading and record is not None and not progress.get("backup"):
        if record.systemd:
            _systemctl("stop", UNIT_NAME, check=False)
        old_binary = Path(record.release_dir) / "cortex"
        progress["backup"] = _backup_with(old_binary, paths.config_file, paths.data_dir)
        say(f"backup of the data before the upgrade: {progress['backup']}")
        reached("backed-up")

    user = _service_user(options)
    _write_settings(options, release)
    say(_tls(options, user))
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    paths.data_dir.chmod(0o700)
    reached("configured")

    settings = load_settings({}, config_file=paths.config_file, models_dir=release / "models",
                             trust_root=release / "trust" / "root.json")
    db = open_database(settings)
    token = None
    try:
        actor = Actor(kind="cli", name="installer")
        for pack in sorted((release / "packs").glob("*.tar")):
            try:
                result = import_pack(db, settings, pack, actor=actor)
                say(f"rule pack {result.pack_id} {result.display_version}: {result.outcome}")
            except PackError as exc:
                say(f"rule pack {pack.name} refused: {exc.message}")
        with db.write() as tx:
            record_event(tx, AuditTag.SYSTEM_RELEASE_INSTALLED, actor, target=f"release:{version}",
                         details={"kind": progress["kind"], "from": progress.get("from"), "to": version,
                                  "prefix": str(paths.prefix), "key_fingerprint": options.key_fingerprint,
                                  "backup": progress.get("backup")})
        if not has_admin(db):
            token = issue_bootstrap_token(db, settings)
    finally:
        db.close()
    _chown(paths.data_dir, user)
    reached("migrated")

    _switch_current(paths, version)
    new_record = InstallRecord(
        version=version, prefix=str(paths.prefix), release_dir=str(release), config_dir=str(paths.config_dir),
        data_dir=str(paths.data_dir), service_user=user, systemd=options.systemd,
        site_ranges=options.site_ranges, installed_at=_now(),
        previous_version=record.version if record else None,
        previous_backup=progress.get("backup"), key_fingerprint=options.key_fingerprint)
    new_record.save(paths.record_file)
    reached("switched")

    if options.systemd:
        unit = render_unit(binary=str(paths.current / "cortex"), config_file=str(paths.config_file),
                           data_dir=str(paths.data_dir), user=user, site_ranges=options.site_ranges)
        write_atomic(SYSTEMD_DIR / UNIT_NAME, unit)
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", UNIT_NAME)
    paths.progress_file.unlink(missing_ok=True)

    say(f"Cortex Code Appliance {version} {'upgraded' if upgrading else 'installed'} at {paths.prefix}")
    if token:
        # Shown once, here, on the operator's terminal; only its hash is stored and it is never logged.
        say("No administrator yet. Create the first one, once, with this one-time token:")
        say(f"    {settings.base_url}/setup#token={token}")
    status = _checklist(options) if options.run_checklist else 0
    _next_steps(options, settings.base_url)
    return status


def _checklist(options: InstallOptions) -> int:
    paths = options.paths
    binary = paths.current / "cortex"
    if not binary.exists():
        return 0
    options.say("Air-gap verification checklist (cortex verify):")
    sys.stdout.flush()
    result = subprocess.run([str(binary), "--config", str(paths.config_file), "verify",  # noqa: S603
                             "--release", str(paths.current.resolve())], check=False)
    if result.returncode != 0:
        options.say("The checklist found a FAIL (above): fix it, then run `cortex verify` again.")
    return result.returncode


def _next_steps(options: InstallOptions, base_url: str) -> None:
    paths = options.paths
    run = (f"sudo systemctl status {UNIT_NAME}" if options.systemd else
           f"CORTEX_CONFIG={paths.config_file} {paths.current / 'cortex'} serve")
    options.say("Next steps:")
    options.say(f"  1. {'the service is running; check it with: ' if options.systemd else 'start it: '}{run}")
    options.say(f"  2. open {base_url} and create the first administrator with the token above")
    options.say(f"  3. file the checklist: {paths.current / 'cortex'} --config {paths.config_file} verify "
                "--html verify-report.html")
    options.say(f"  4. the manual: {paths.current / 'docs' / 'index.html'} (also at {base_url}/docs)")


def rollback(paths: InstallPaths, *, say: Callable[[str], None] = print) -> int:
    """Go back to the previous release and the data as it was before the upgrade.

    Raises:
        InstallError: there is nothing to roll back to, or the backup does not verify.
    """
    record = InstallRecord.load(paths.record_file)
    progress = _progress(paths)
    if progress is not None and progress.get("kind") == "upgrade":
        previous, backup = progress.get("from"), progress.get("backup")
        systemd = record.systemd if record else False
    elif record is not None and record.previous_version:
        previous, backup, systemd = record.previous_version, record.previous_backup, record.systemd
    elif progress is not None:
        raise InstallError("the interrupted first install has nothing to roll back to: run ./install again "
                           "to finish it, or ./install --uninstall")
    else:
        raise InstallError("nothing to roll back to: no earlier release was replaced by an upgrade here")
    release = paths.release(str(previous))
    if not (release / "cortex").exists():
        raise InstallError(f"the previous release {previous} is no longer at {release}; reinstall it from its bundle")
    if systemd:
        _systemctl("stop", UNIT_NAME, check=False)
    if backup:
        result = subprocess.run([str(release / "cortex"), "--config", str(paths.config_file), "backup",  # noqa: S603
                                 "restore", str(backup), "--yes"], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise InstallError(f"restoring the backup {backup} failed, so the release was not switched: "
                               f"{result.stderr.strip() or result.stdout.strip()}")
        say(f"data restored from {backup}")
    _switch_current(paths, str(previous))
    if record is not None:
        failed_version = record.version if progress is None else str(progress.get("to"))
        record.version, record.release_dir = str(previous), str(release)
        record.previous_version, record.previous_backup = None, None
        record.installed_at = _now()
        record.save(paths.record_file)
        say(f"rolled back from {failed_version} to {previous}")
    paths.progress_file.unlink(missing_ok=True)
    if systemd:
        _systemctl("start", UNIT_NAME)
    return 0


def uninstall(paths: InstallPaths, *, purge: bool, say: Callable[[str], None] = print) -> int:
    """Remove the releases and the unit; the data and settings stay unless ``purge``."""
    record = InstallRecord.load(paths.record_file)
    if record is None and not paths.releases.exists():
        raise InstallError(f"no installation found at {paths.prefix} (no {paths.record_file})")
    if record is not None and record.systemd:
        _systemctl("disable", "--now", UNIT_NAME, check=False)
        (SYSTEMD_DIR / UNIT_NAME).unlink(missing_ok=True)
        _systemctl("daemon-reload", check=False)
    if record is not None and not purge and paths.config_file.exists():
        db = open_database(load_settings({}, config_file=paths.config_file))
        try:
            with db.write() as tx:
                record_event(tx, AuditTag.SYSTEM_RELEASE_REMOVED, Actor(kind="cli", name="installer"),
                             target=f"release:{record.version}",
                             details={"version": record.version, "prefix": str(paths.prefix)})
        finally:
            db.close()
    paths.current.unlink(missing_ok=True)
    shutil.rmtree(paths.releases, ignore_errors=True)
    paths.progress_file.unlink(missing_ok=True)
    if purge:
        shutil.rmtree(paths.data_dir, ignore_errors=True)
        shutil.rmtree(paths.config_dir, ignore_errors=True)
        say(f"removed the appliance, its settings ({paths.config_dir}) and its data ({paths.data_dir})")
    else:
        paths.record_file.unlink(missing_ok=True)
        say(f"removed the appliance; kept its settings in {paths.config_dir} and its data in {paths.data_dir} "
            "(./install --uninstall --purge removes them too)")
    return 0

