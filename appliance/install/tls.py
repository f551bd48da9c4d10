"""The appliance's TLS certificate: a self-signed one for the host name, or the site's PKI pair checked."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from appliance.errors import ConfigError

__all__ = ["check_site_pair", "install_site_pair", "self_signed"]

_VALID_DAYS = 397  # what browsers accept for a leaf certificate


def self_signed(cert_path: Path, key_path: Path, hostname: str) -> str:
    """Write an ECDSA P-256 key (0600) and a self-signed certificate for ``hostname``; its sha256."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                     x509.IPAddress(ipaddress.ip_address("::1"))]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cortex Code Appliance (self-signed)")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cert_path.chmod(0o644)
    return cert.fingerprint(hashes.SHA256()).hex()


def check_site_pair(cert_path: Path, key_path: Path) -> x509.Certificate:
    """The site's certificate, after checking it parses, is in date, is strong enough and matches the key.

    Raises:
        ConfigError: which file is wrong and why.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--tls-cert {cert_path}: not a readable PEM certificate ({exc})") from exc
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except TypeError as exc:
        raise ConfigError(f"--tls-key {key_path}: the key is encrypted; give an unencrypted key (it is stored "
                          "with mode 0600, readable by the service user only)") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--tls-key {key_path}: not a readable PEM private key ({exc})") from exc
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc <= now:
        raise ConfigError(f"--tls-cert {cert_path}: expired on {cert.not_valid_after_utc:%Y-%m-%d}; get a new one")
    if cert.not_valid_before_utc > now:
        raise ConfigError(f"--tls-cert {cert_path}: not valid before {cert.not_valid_before_utc:%Y-%m-%d}; "
                          "check this host's clock")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise ConfigError(f"--tls-key {key_path}: RSA {key.key_size} bits is too weak; use 2048 bits or more")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ConfigError(f"--tls-key {key_path}: use an RSA (2048+), ECDSA or Ed25519 key")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, public)
            != cert.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise ConfigError(f"--tls-key {key_path} does not belong to --tls-cert {cert_path}; give the matching pair")
    return cert


def install_site_pair(cert_source: Path, key_source: Path, cert_path: Path, key_path: Path) -> str:
    cert = check_site_pair(cert_source, key_source)
    _write_key(key_path, key_source.read_bytes())
    shutil.copyfile(cert_source, cert_path)
    cert_path.chmod(0o644)
    return cert.fingerprint(hashes.SHA256()).hex()


def _write_key(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".new")
    temp.touch(mode=0o600)
    temp.chmod(0o600)
    temp.write_bytes(data)
    temp.replace(path)
