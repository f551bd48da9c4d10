"""What the installer writes on the host: the hardened systemd unit and the TLS certificate and key."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from appliance.errors import ConfigError
from appliance.install.systemd import check_site_ranges, render_unit
from appliance.install.tls import check_site_pair, install_site_pair, self_signed


def test_the_unit_is_hardened_and_allows_only_loopback_and_the_site_ranges(tmp_path: Path) -> None:
    unit = render_unit(binary="/opt/cortex/current/cortex", config_file="/etc/cortex/appliance.toml",
                       data_dir="/var/lib/cortex", user="cortex", site_ranges=check_site_ranges(["10.20.0.0/16"]))
    lines = set(unit.splitlines())
    for directive in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/cortex",
                      "PrivateTmp=yes", "CapabilityBoundingSet=", "IPAddressDeny=any", "IPAddressAllow=localhost",
                      "IPAddressAllow=10.20.0.0/16", "User=cortex", "ProtectHome=yes"):
        assert directive in lines, directive
    assert [line for line in lines if line.startswith("ReadWritePaths=")] == ["ReadWritePaths=/var/lib/cortex"]
    assert not any(line.startswith("AmbientCapabilities=") and line != "AmbientCapabilities=" for line in lines)
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax is checked on hosts that have it")
    path = tmp_path / "cortex.service"
    path.write_text(unit)
    result = subprocess.run([analyze, "verify", "--man=no", str(path)], capture_output=True, text=True, check=False)
    # The binary and the user do not exist on this machine; any other complaint is a mistake in the unit.
    problems = [line for line in result.stderr.splitlines() if line.strip()
                and "is not executable" not in line and "user" not in line.lower()]
    assert problems == [], result.stderr


def test_a_site_range_that_is_not_a_network_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"--site-range '10\.20\.0\.0/33' is not a network"):
        check_site_ranges(["10.20.0.0/33"])


def test_the_self_signed_certificate_names_the_host_and_its_key_is_private(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    self_signed(cert_path, key_path, "review.site.internal")
    assert key_path.stat().st_mode & 0o777 == 0o600
    cert = check_site_pair(cert_path, key_path)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "review.site.internal" in names.get_values_for_type(x509.DNSName)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


def _pair(tmp_path: Path, *, bits: int = 2048, days: int = 30, name: str = "site") -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "review.site.internal")])
    start, end = (now - dt.timedelta(days=1), now + dt.timedelta(days=days)) if days > 0 else \
        (now - dt.timedelta(days=10), now - dt.timedelta(days=1))
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_the_sites_pki_pair_is_installed_with_the_key_at_0600(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path)
    target = tmp_path / "tls"
    target.mkdir()
    install_site_pair(cert, key, target / "cert.pem", target / "key.pem")
    assert (target / "cert.pem").read_bytes() == cert.read_bytes()
    assert (target / "key.pem").read_bytes() == key.read_bytes()
    assert (target / "key.pem").stat().st_mode & 0o777 == 0o600


def test_a_bad_site_pair_is_refused_naming_the_file(tmp_path: Path) -> None:
    cert, _ = _pair(tmp_path, name="one")
    _, other_key = _pair(tmp_path, name="two")
    with pytest.raises(ConfigError, match="does not belong to --tls-cert"):
        check_site_pair(cert, other_key)
    expired_cert, expired_key = _pair(tmp_path, days=0, name="old")
    with pytest.raises(ConfigError, match="expired on"):
        check_site_pair(expired_cert, expired_key)
    weak_cert, weak_key = _pair(tmp_path, bits=1024, name="weak")
    with pytest.raises(ConfigError, match="RSA 1024 bits is too weak"):
        check_site_pair(weak_cert, weak_key)
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="not a readable PEM certificate"):
        check_site_pair(tmp_path / "junk.pem", weak_key)
