"""Real collectors for the forwarding tests: rsyslogd (the Debian package) on 127.0.0.1, and a small HTTP
collector that checks webhook signatures and Splunk HEC tokens the way a SIEM's receiver would."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import free_port

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


def rsyslog_available(tls: bool = False) -> bool:
    if not Path(RSYSLOGD).exists():
        return False
    if not tls:
        return True
    return any(Path(p).exists() for p in ("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so",
                                          "/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so",
                                          "/usr/lib/rsyslog/lmnsd_gtls.so"))


def make_ca(folder: Path, name: str = "Site Test CA") -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "collector")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


class Rsyslog:
    """rsyslogd in the foreground, listening on 127.0.0.1 only, writing each message's MSG to one file."""

    def __init__(self, folder: Path, *, tls: tuple[Path, Path, Path] | None = None) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        (folder / "work").mkdir(exist_ok=True)
        self.port = free_port()
        self.out = folder / "received.log"
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = folder / "rsyslog.conf"
        driver = ""
        module = 'module(load="imtcp")'
        if tls:
            ca, cert, key = tls
            driver = (f'global(DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{ca}" '
                      f'DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")\n')
            module = 'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")'
        self.config.write_text(
            f'global(workDirectory="{folder / "work"}")\n{driver}{module}\n'
            f'input(type="imtcp" port="{self.port}" address="127.0.0.1")\n'
            'template(name="msgonly" type="string" string="%msg%\\n")\n'
            f'*.* action(type="omfile" file="{self.out}" template="msgonly")\n')

    def start(self) -> Rsyslog:
        with (self.folder / "rsyslogd.log").open("ab") as log:
            self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(self.config), "-i", str(self.folder / "pid")],
                                         stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        import socket

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"rsyslogd exited: {(self.folder / 'rsyslogd.log').read_text()[-2000:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise AssertionError("rsyslogd did not listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def events(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        found = []
        for line in self.out.read_text(encoding="utf-8").splitlines():
            line = line.lstrip("\ufeff").strip()
            if line:
                found.append(json.loads(line))
        return found

    def wait_for(self, seq: int, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.events()
            if got and max(e["seq"] for e in got) >= seq:
                return got
            time.sleep(0.2)
        raise AssertionError(f"rsyslog did not receive seq {seq} in {timeout}s; got "
                             f"{sorted({e['seq'] for e in self.events()})[-5:]}")


class HttpCollector:
    """A webhook / HEC receiver on 127.0.0.1 that keeps what it accepts; ``fail`` makes it answer 503."""

    def __init__(self) -> None:
        collector = self
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail = False

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if collector.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                collector.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                answer = b'{"text":"Success","code":0}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
