"""The air-gap checks: routes and resolvers (from files in the kernel's formats), configured outbound
destinations (real forwarders in the database), and the sockets real processes listen on."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from appliance.audit import Actor
from appliance.audit.forwarders import add_forwarder
from appliance.tasks.services import open_database
from appliance.verify.host import check_service_user
from appliance.verify.install import read_install_record
from appliance.verify.models import Status
from appliance.verify.network import check_default_route, check_dns, check_listening, check_outbound
from appliance.verify.system import SystemFiles
from tests.support import free_port
from tests.verify.conftest import checks, evidence, run
from tests.verify.release import Release

# /proc/net/route and /proc/net/ipv6_route as Linux writes them: a default route via 192.0.2.1 and one via
# fd00::1, a directly connected network, and the reject route the kernel keeps on lo (not a default route).
ROUTE_HEADER = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n")
ROUTE_DEFAULT = "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
ROUTE_LAN = "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
IPV6_DEFAULT = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
                "fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0\n")
IPV6_REJECT = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
               "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n")
IPV6_LAN = ("fd000000000000000000000000000000 40 00000000000000000000000000000000 00 "
            "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n")


def host_files(tmp_path: Path, *, route: str, ipv6: str | None, resolv: str | None = None,
               hosts: str = "127.0.0.1 localhost\n") -> SystemFiles:
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "route").write_text(ROUTE_HEADER + route)
    if ipv6 is not None:
        (proc / "net" / "ipv6_route").write_text(ipv6)
    etc = tmp_path / "etc"
    etc.mkdir()
    if resolv is not None:
        (etc / "resolv.conf").write_text(resolv)
    (etc / "hosts").write_text(hosts)
    return SystemFiles(proc=proc, resolv_conf=etc / "resolv.conf", hosts=etc / "hosts")


def test_a_default_route_warns_with_what_was_found(settings_of: Any, tmp_path: Path) -> None:
    files = host_files(tmp_path, route=ROUTE_DEFAULT + ROUTE_LAN, ipv6=IPV6_LAN + IPV6_DEFAULT + IPV6_REJECT)
    check = run(settings_of(), None, files=files, checks=[check_default_route]).checks[0]
    assert check.status is Status.WARN
    assert check.evidence == ["IPv4 default route via 192.0.2.1 on eth0", "IPv6 default route via fd00::1 on eth0"]


def test_no_default_route_passes(settings_of: Any, tmp_path: Path) -> None:
    files = host_files(tmp_path, route=ROUTE_LAN, ipv6=None)
    check = run(settings_of(), None, files=files, checks=[check_default_route]).checks[0]
    assert check.status is Status.PASS
    assert check.evidence[0] == "no IPv4 or IPv6 default route in the routing tables"
    assert "does not exist (IPv6 is off)" in check.evidence[1]


@pytest.mark.parametrize(("resolv", "status", "shown"), [
    ("# generated\nsearch site.example\nnameserver 10.0.0.53\nnameserver ::1\n", Status.WARN,
     ["nameserver 10.0.0.53", "nameserver ::1"]),
    ("search site.example\noptions ndots:1\n", Status.PASS, ["no nameserver lines"]),
    (None, Status.PASS, ["no nameserver lines"]),
])
def test_a_dns_resolver_warns(settings_of: Any, tmp_path: Path, resolv: str | None, status: Status,
                              shown: list[str]) -> None:
    files = host_files(tmp_path, route="", ipv6=None, resolv=resolv)
    check = run(settings_of(), None, files=files, checks=[check_dns]).checks[0]
    assert check.status is status
    assert [line.split(": ", 1)[1] for line in check.evidence] == shown


def _forwarder(settings: Any, name: str, kind: str, target: str, tmp_path: Path) -> None:
    secret = tmp_path / f"{name}.secret"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    db = open_database(settings)
    try:
        add_forwarder(db, name=name, kind=kind, target=target, actor=Actor.system(),
                      secret_file=str(secret) if kind in ("webhook", "splunk-hec") else None)
    finally:
        db.close()


def test_an_outbound_destination_outside_the_site_ranges_fails(settings_of: Any, release: Release,
                                                               tmp_path: Path) -> None:
    settings = settings_of()
    _forwarder(settings, "siem", "syslog-tls", "203.0.113.5:6514", tmp_path)
    _forwarder(settings, "local", "syslog-tcp", "127.0.0.1:5514", tmp_path)
    report = run(settings, release)
    check = checks(report)["outbound"]
    assert check.status is Status.FAIL and not report.ok
    assert "audit forwarder siem (syslog-tls) → 203.0.113.5:6514: 203.0.113.5 is OUTSIDE the site ranges" \
        in check.evidence
    assert "audit forwarder local (syslog-tcp) → 127.0.0.1:5514: 127.0.0.1 is inside the site ranges" \
        in check.evidence
    assert check.evidence[0] == "site ranges: none configured (loopback only); loopback is always allowed"
    # The site's own network, once declared, is allowed.
    inside = run(settings_of(site_ranges="203.0.113.0/24"), release, checks=[check_outbound]).checks[0]
    assert inside.status is Status.PASS, inside.evidence
    assert inside.evidence[0] == ("site ranges: 203.0.113.0/24 (from the site_ranges setting); loopback is "
                                  "always allowed")


def test_hostnames_are_never_resolved(settings_of: Any, tmp_path: Path) -> None:
    settings = settings_of(site_ranges="10.0.0.0/8,2001:db8::/32")
    _forwarder(settings, "hook", "webhook", "https://siem.site.example:8443/cortex", tmp_path)
    _forwarder(settings, "hec", "splunk-hec", "https://[2001:db8::5]:8088/services/collector", tmp_path)
    files = host_files(tmp_path / "a", route="", ipv6=None)
    check = run(settings, None, files=files, checks=[check_outbound]).checks[0]
    assert check.status is Status.WARN
    assert ("audit forwarder hook (webhook) → https://siem.site.example:8443/cortex: siem.site.example is a "
            f"hostname, cannot be checked without DNS (not in {files.hosts})") in check.evidence
    assert any("2001:db8::5 is inside the site ranges" in line for line in check.evidence)
    # Listed in the hosts file with an address inside the ranges: checked without a packet.
    files = host_files(tmp_path / "b", route="", ipv6=None, hosts="10.1.2.3 siem.site.example siem # SIEM\n")
    check = run(settings, None, files=files, checks=[check_outbound]).checks[0]
    assert check.status is Status.PASS, check.evidence
    assert any("siem.site.example is 10.1.2.3 in" in line for line in check.evidence)
    # … and with an address outside them: FAIL.
    files = host_files(tmp_path / "c", route="", ipv6=None, hosts="198.51.100.7 SIEM.site.example\n")
    check = run(settings, None, files=files, checks=[check_outbound]).checks[0]
    assert check.status is Status.FAIL
    assert any("siem.site.example is 198.51.100.7 in" in line and "OUTSIDE" in line for line in check.evidence)


def test_site_ranges_from_the_installer_record(settings_of: Any, tmp_path: Path) -> None:
    settings = settings_of()
    _forwarder(settings, "siem", "syslog-tcp", "10.9.8.7:514", tmp_path)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "install.json").write_text('{"version": "0.1.0", "site_ranges": ["10.9.0.0/16"], '
                                                   '"service_user": "nobody", "systemd": false}')
    record = read_install_record(tmp_path / "etc")
    check = run(settings, None, install=record, checks=[check_outbound]).checks[0]
    assert check.status is Status.PASS
    assert check.evidence[0].startswith(f"site ranges: 10.9.0.0/16 (from {tmp_path / 'etc' / 'install.json'})")


# A stand-in for `cortex serve`: its command line names the appliance, it holds the data directory's
# database open (which is how the check tells this installation's processes from others') and listens.
FAKE_SERVER = textwrap.dedent("""
    import socket, sys
    db = open(sys.argv[1], "rb")
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    udp = None
    if sys.argv[2] == "udp":
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
    print(tcp.getsockname()[1], udp.getsockname()[1] if udp else 0, flush=True)
    sys.stdin.read()
""")


class FakeServer:
    def __init__(self, db_path: Path, *, udp: bool = False) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", FAKE_SERVER, str(db_path), "udp" if udp else "-",
                                      "cortex", "--data-dir", "x", "serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        tcp, udp_port = self.proc.stdout.readline().split()
        self.port, self.udp_port = int(tcp), int(udp_port)

    def stop(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture
def fake_server(settings_of: Any) -> Any:
    started: list[FakeServer] = []

    def start(**kwargs: Any) -> FakeServer:
        server = FakeServer(settings_of().db_path, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_the_configured_socket_passes(settings_of: Any, fake_server: Any) -> None:
    server = fake_server()
    check = run(settings_of(port=server.port), None, checks=[check_listening]).checks[0]
    assert check.status is Status.PASS, check.evidence
    assert f"listens on tcp 127.0.0.1:{server.port} (configured)" in evidence(check)
    assert f"pid {server.proc.pid} (" in evidence(check)


def test_a_socket_that_is_not_configured_fails(settings_of: Any, fake_server: Any) -> None:
    server = fake_server(udp=True)
    other = server.port + 1 if server.port < 65535 else server.port - 1
    check = run(settings_of(port=other), None, checks=[check_listening]).checks[0]
    assert check.status is Status.FAIL
    assert f"listens on tcp 127.0.0.1:{server.port}, which is not configured" in evidence(check)
    assert f"listens on udp 127.0.0.1:{server.udp_port}, which is not configured" in evidence(check)
    # Right port, but the service also holds a UDP socket: still FAIL.
    check = run(settings_of(port=server.port), None, checks=[check_listening]).checks[0]
    assert check.status is Status.FAIL and f"tcp 127.0.0.1:{server.port} (configured)" in evidence(check)


def test_another_installations_process_is_not_ours(settings_of: Any, fake_server: Any, tmp_path: Path) -> None:
    """A `cortex serve` of another data directory (a staging install, another test) is left alone."""
    elsewhere = tmp_path / "other.db"
    elsewhere.write_bytes(b"")
    server = FakeServer(elsewhere)
    try:
        check = run(settings_of(port=free_port()), None, checks=[check_listening]).checks[0]
    finally:
        server.stop()
    assert check.status is Status.WARN
    assert "the service is not running (no `cortex serve` process holds" in evidence(check)


def test_the_service_process_user_is_checked(settings_of: Any, fake_server: Any) -> None:
    import os

    server = fake_server()
    check = run(settings_of(port=server.port), None, checks=[check_service_user]).checks[0]
    if os.geteuid() == 0:  # the stand-in runs as root, as this test does
        assert check.status is Status.FAIL
        assert f"pid {server.proc.pid} (" in evidence(check) and "runs as root" in evidence(check)
    else:
        assert check.status is Status.PASS


@pytest.mark.slow
def test_a_real_server_listens_only_where_configured(server_factory: Any, settings_of: Any) -> None:
    settings = settings_of()
    server = server_factory(settings.data_dir, env={"CORTEX_MODEL_ENABLED": "false", "CORTEX_WORKERS": "0"}).start()
    check = run(settings_of(port=server.port), None, checks=[check_listening]).checks[0]
    assert check.status is Status.PASS, check.evidence
    assert f"listens on tcp 127.0.0.1:{server.port} (configured)" in evidence(check)
    assert "-m appliance serve" in evidence(check)
