"""Checks of the host the appliance runs on: TLS material, the service user, the data directory's
permissions, the kernel's FIPS mode and free disk."""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from appliance import clock
from appliance.audit.forwarders import list_forwarders
from appliance.errors import ApplianceError
from appliance.verify.context import VerifyContext
from appliance.verify.models import Status, Verdict, checklist_item

__all__ = ["DISK_FAIL_BYTES", "DISK_WARN_BYTES", "DISK_WARN_FRACTION", "TLS_EXPIRY_WARN_DAYS", "check_data_dir",
           "check_disk", "check_fips", "check_service_user", "check_tls"]

DISK_WARN_BYTES = 1 << 30  # WARN below 1 GiB free …
DISK_WARN_FRACTION = 0.10  # … or below 10 % of the file system
DISK_FAIL_BYTES = 100 << 20  # FAIL below 100 MiB: SQLite may no longer commit
TLS_EXPIRY_WARN_DAYS = 30
RSA_MIN_BITS = 2048
_EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")  # NIST P-256, P-384, P-521
_MAX_PEM = 1 << 20
_MAX_WALK = 100_000  # entries of the data directory looked at for loose permissions
_MAX_LISTED = 20


def _mode(info: os.stat_result) -> str:
    return f"{stat.S_IMODE(info.st_mode):04o}"


def _read_pem(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(_MAX_PEM)


def _key_strength(key: object) -> tuple[str, str | None]:
    """A description of a public key, and why it is too weak (None when it is strong enough)."""
    if isinstance(key, rsa.RSAPublicKey):
        weak = f"RSA keys need at least {RSA_MIN_BITS} bits" if key.key_size < RSA_MIN_BITS else None
        return f"RSA {key.key_size} bits", weak
    if isinstance(key, ec.EllipticCurvePublicKey):
        weak = None if key.curve.name in _EC_CURVES else "EC keys must be on P-256, P-384 or P-521"
        return f"EC {key.curve.name}", weak
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", None
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", None
    return type(key).__name__, "only RSA (2048 bits or more), EC P-256 or stronger, and Ed25519 keys are accepted"


def _spki(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_certificate(ctx: VerifyContext, path: Path, evidence: list[str], failures: list[str],
                       warnings: list[str]) -> x509.Certificate | None:
    try:
        chain = x509.load_pem_x509_certificates(_read_pem(path))
    except OSError as exc:
        failures.append(f"tls_cert {path} cannot be read ({exc.strerror})")
        return None
    except ValueError:
        failures.append(f"tls_cert {path} holds no PEM certificate")
        return None
    cert = chain[0]
    before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
    description, weak = _key_strength(cert.public_key())
    evidence.append(f"tls_cert {path}: {cert.subject.rfc4514_string() or '(empty subject)'}, issued by "
                    f"{cert.issuer.rfc4514_string() or '(empty issuer)'}, {description}, valid "
                    f"{clock.iso(before)} to {clock.iso(after)}" + (f"; {len(chain)} certificates in the chain"
                                                                    if len(chain) > 1 else ""))
    if ctx.now < before:
        failures.append(f"the certificate is not valid before {clock.iso(before)} (the clock reads "
                        f"{clock.iso(ctx.now)})")
    elif ctx.now >= after:
        failures.append(f"the certificate expired on {clock.iso(after)}")
    elif after - ctx.now < timedelta(days=TLS_EXPIRY_WARN_DAYS):
        warnings.append(f"the certificate expires on {clock.iso(after)}, in less than {TLS_EXPIRY_WARN_DAYS} days")
    if weak:
        failures.append(f"the certificate's key is {description}: {weak}")
    algorithm = cert.signature_hash_algorithm
    if isinstance(algorithm, hashes.SHA1 | hashes.MD5):
        failures.append(f"the certificate is signed with {algorithm.name.upper()}, which is broken")
    return cert


@checklist_item("tls", "TLS certificate and key")
def check_tls(ctx: VerifyContext) -> Verdict:
    """8. The TLS certificate is valid now, its key matches and is strong enough, and the key file is private."""
    settings = ctx.settings
    if settings.tls_cert is None or settings.tls_key is None:
        return Verdict(Status.WARN,
                       ["TLS is not configured (tls_cert and tls_key are unset): the dashboard and API are served "
                        "over plain HTTP"],
                       "issue a certificate from the site's CA and set tls_cert and tls_key (mode 0600, owned by "
                       "the service user)")
    evidence: list[str] = []
    failures: list[str] = []
    warnings: list[str] = []
    cert = _check_certificate(ctx, settings.tls_cert, evidence, failures, warnings)
    key_path = settings.tls_key
    try:
        info = key_path.stat()
    except OSError as exc:
        failures.append(f"tls_key {key_path} cannot be found ({exc.strerror})")
        info = None
    if info is not None:
        owner = _owner(info.st_uid)
        evidence.append(f"tls_key {key_path}: mode {_mode(info)}, owner {owner}")
        if info.st_mode & 0o077:
            failures.append(f"tls_key {key_path} has mode {_mode(info)}: other users can read it; expected 0600 "
                            "or stricter")
        user = ctx.service_user
        if user.uid is not None and info.st_uid != user.uid:
            failures.append(f"tls_key {key_path} is owned by {owner}, not by the service user {user.name}")
        try:
            private = serialization.load_pem_private_key(_read_pem(key_path), password=None)
        except OSError as exc:
            warnings.append(f"tls_key {key_path} cannot be read by this user ({exc.strerror}); run cortex verify "
                            "as root to check that it matches the certificate")
        except TypeError:
            failures.append(f"tls_key {key_path} is encrypted; cortex serve needs it unencrypted (protected by "
                            "its mode and owner)")
        except ValueError:
            failures.append(f"tls_key {key_path} holds no PEM private key")
        else:
            if cert is not None:
                if _spki(private.public_key()) == _spki(cert.public_key()):
                    evidence.append("the key matches the certificate")
                else:
                    failures.append(f"tls_key {key_path} does not match the certificate in {settings.tls_cert}")
    if failures:
        return Verdict(Status.FAIL, [*evidence, *failures, *warnings],
                       "issue a new certificate from the site's CA for a key of at least RSA 2048 / EC P-256 / "
                       "Ed25519; install the key with chmod 600 and chown to the service user; restart the service")
    if warnings:
        return Verdict(Status.WARN, [*evidence, *warnings],
                       "renew the certificate before it expires and restart the service")
    return Verdict(Status.PASS, evidence)


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


@checklist_item("service-user", "The service does not run as root")
def check_service_user(ctx: VerifyContext) -> Verdict:
    """9. The service runs as an ordinary user, never root."""
    user = ctx.service_user
    evidence = [f"service user: {user.describe()}"]
    failures: list[str] = []
    warnings: list[str] = []
    if user.uid is None:
        failures.append(f"there is no user {user.name!r} on this host")
    elif user.uid == 0:
        failures.append("the service user is root: a flaw in the appliance would own the whole host")
    processes = ctx.processes()
    for process in processes:
        if not process.uids:
            warnings.append(f"{process.describe()}: its user cannot be read")
            continue
        real, effective = process.uids[0], process.uids[1]
        if real == 0 or effective == 0:
            failures.append(f"{process.describe()} runs as root")
        elif user.uid is not None and effective != user.uid:
            warnings.append(f"{process.describe()} runs as {_owner(effective)}, not the service user")
        else:
            evidence.append(f"{process.describe()} runs as {_owner(effective)}")
    if not processes:
        evidence.append(f"the service is not running (no `cortex serve` process holds {ctx.settings.db_path} "
                        "open): no process to look at")
    try:
        owner = ctx.settings.data_dir.stat().st_uid
        evidence.append(f"data directory {ctx.settings.data_dir} is owned by {_owner(owner)}")
        if user.uid is not None and owner != user.uid:
            warnings.append(f"the data directory is owned by {_owner(owner)}, not by the service user")
    except OSError as exc:
        warnings.append(f"data directory {ctx.settings.data_dir} cannot be examined ({exc.strerror})")
    if failures:
        return Verdict(Status.FAIL, [*evidence, *failures, *warnings],
                       "create a system user (useradd --system --home-dir DATA_DIR --shell /usr/sbin/nologin cortex), "
                       "chown -R the data directory to it and run the service as it (User= in the systemd unit), "
                       "or name it with --service-user")
    if warnings:
        return Verdict(Status.WARN, [*evidence, *warnings],
                       "run the service as the service user and chown -R the data directory to it")
    return Verdict(Status.PASS, evidence)


def _secret_files(ctx: VerifyContext) -> list[Path]:
    keys = ctx.settings.data_dir / "keys"
    found = sorted(keys.glob("*.pem")) if keys.is_dir() else []
    if ctx.db is not None:
        # The outbound check reports an unreadable forwarder table.
        with contextlib.suppress(ApplianceError):
            found += [Path(f.secret_file) for f in list_forwarders(ctx.db) if f.secret_file]
    return found


@checklist_item("data-dir", "Data directory permissions")
def check_data_dir(ctx: VerifyContext) -> Verdict:
    """10. The data directory and everything in it is writable by its owner only; secrets are 0600."""
    data_dir = ctx.settings.data_dir
    try:
        info = data_dir.lstat()
    except OSError as exc:
        return Verdict(Status.FAIL, [f"data directory {data_dir} cannot be examined ({exc.strerror})"],
                       "set data_dir to the appliance's data directory (the installer creates it with mode 0700)")
    evidence = [f"data directory {data_dir}: mode {_mode(info)}, owner {_owner(info.st_uid)}"]
    failures: list[str] = []
    warnings: list[str] = []
    if not stat.S_ISDIR(info.st_mode):
        failures.append(f"{data_dir} is not a directory")
    elif info.st_mode & 0o022:
        failures.append(f"the data directory is writable by {'others' if info.st_mode & 0o002 else 'its group'} "
                        f"(mode {_mode(info)}); expected 0700 or 0750")
    elif info.st_mode & 0o007:
        warnings.append(f"every user can read the data directory (mode {_mode(info)}); expected 0700 or 0750")
    if ctx.install is not None and ctx.install.data_dir is not None and ctx.install.data_dir != data_dir:
        warnings.append(f"{ctx.install.path} names data directory {ctx.install.data_dir}, but the settings name "
                        f"{data_dir}")
    loose: list[str] = []
    seen = 0
    for folder, dirs, names in os.walk(data_dir):
        for name in [*dirs, *names]:
            seen += 1
            path = Path(folder) / name
            try:
                entry = path.lstat()
            except OSError:
                continue  # removed meanwhile
            if not stat.S_ISLNK(entry.st_mode) and entry.st_mode & 0o022:
                loose.append(f"{path.relative_to(data_dir)} (mode {_mode(entry)})")
        if seen >= _MAX_WALK:
            warnings.append(f"only the first {_MAX_WALK} entries were examined")
            break
    if loose:
        shown = loose[:_MAX_LISTED] + ([f"… and {len(loose) - _MAX_LISTED} more"] if len(loose) > _MAX_LISTED else [])
        failures.append("writable by group or others: " + ", ".join(shown))
    for secret in _secret_files(ctx):
        try:
            mode = secret.stat()
        except OSError as exc:
            warnings.append(f"secret {secret} cannot be examined ({exc.strerror})")
            continue
        if mode.st_mode & 0o077:
            failures.append(f"secret {secret} has mode {_mode(mode)}; expected 0600")
        else:
            evidence.append(f"secret {secret}: mode {_mode(mode)}")
    if failures:
        return Verdict(Status.FAIL, [*evidence, *failures, *warnings],
                       f"chmod 700 {data_dir}; chmod -R go-w {data_dir}; chmod 600 on each secret named above; "
                       "then find out who loosened them")
    if warnings:
        return Verdict(Status.WARN, [*evidence, *warnings], f"chmod 700 {data_dir}")
    return Verdict(Status.PASS, evidence)


@checklist_item("fips", "Kernel FIPS mode")
def check_fips(ctx: VerifyContext) -> Verdict:
    """12. Whether the kernel runs in FIPS mode (reported; the appliance's own crypto does not depend on it)."""
    path = ctx.files.proc / "sys" / "crypto" / "fips_enabled"
    try:
        value = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return Verdict(Status.WARN, [f"not available: {path} does not exist"],
                       "if the site requires FIPS 140 mode, boot a kernel built with it and add fips=1 to its "
                       "command line")
    except (OSError, UnicodeDecodeError) as exc:
        return Verdict(Status.WARN, [f"not available: {path} cannot be read ({exc})"],
                       "run cortex verify as root")
    if value == "1":
        return Verdict(Status.PASS, [f"enabled ({path} = 1)"])
    return Verdict(Status.WARN, [f"not enabled ({path} = {value})"],
                   "if the site requires FIPS 140 mode, enable it (fips-mode-setup --enable, or fips=1 on the kernel "
                   "command line) and reboot")


def _gib(size: float) -> str:
    return f"{size / (1 << 30):.2f} GiB"


@checklist_item("disk", "Free disk space on the data directory")
def check_disk(ctx: VerifyContext) -> Verdict:
    """13. Free space on the data directory's file system."""
    place = ctx.settings.data_dir
    while not place.exists() and place != place.parent:
        place = place.parent
    usage = os.statvfs(place)
    free = usage.f_bavail * usage.f_frsize
    total = usage.f_blocks * usage.f_frsize
    fraction = free / total if total else 0.0
    evidence = [f"{place}: {_gib(free)} free of {_gib(total)} ({fraction:.1%})"]
    limits = (f"thresholds: FAIL under {DISK_FAIL_BYTES >> 20} MiB, WARN under {DISK_WARN_BYTES >> 30} GiB or "
              f"{DISK_WARN_FRACTION:.0%}")
    if free < DISK_FAIL_BYTES:
        return Verdict(Status.FAIL, [*evidence, limits],
                       "free space now: the database cannot commit when the disk is full (move archives and exports "
                       "off the box, or grow the file system)")
    if free < DISK_WARN_BYTES or fraction < DISK_WARN_FRACTION:
        return Verdict(Status.WARN, [*evidence, limits],
                       "free space or grow the file system before it fills up")
    return Verdict(Status.PASS, evidence)
