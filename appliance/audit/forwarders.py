"""Forwarding the log to the site's own collectors, each with a cursor persisted in the database.

Kinds:

- ``syslog-tcp``: RFC 5424 messages over TCP with octet-counting framing (RFC 6587 §3.4.1);
- ``syslog-tls``: the same over TLS (RFC 5425), the collector's certificate checked against ``ca_file`` (or
  the system's trust store) and its name against the target's host;
- ``webhook``: ``POST`` of a JSON batch with ``X-Cortex-Signature: sha256=<HMAC-SHA256>`` over
  ``<X-Cortex-Timestamp>.<body>``, the key read from ``secret_file``;
- ``splunk-hec``: Splunk HTTP Event Collector JSON to an on-prem URL, the token read from ``secret_file``.

Delivery is at least once and in order: a batch is sent, confirmed, and only then does the cursor move,
in one transaction. Syslog has no acknowledgement, so the sender half-closes the connection after a batch
and waits for the collector to close its side: the collector has then read everything sent. A batch that
fails is sent again, whole, on the next attempt (a collector may see an event twice, never miss one). A
forwarder going from working to failing, and back, is audited once each way, not on every retry.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance import clock
from appliance.audit.chain import COLUMNS
from appliance.audit.models import Actor
from appliance.audit.recorder import record_event
from appliance.audit.tags import AuditTag
from appliance.audit.verify import ROW_SQL
from appliance.errors import ConflictError, NotFoundError, ValidationError
from appliance.store import Database

__all__ = ["KINDS", "ForwardError", "Forwarder", "add_forwarder", "deliver", "list_forwarders",
           "remove_forwarder", "syslog_frame"]

KINDS = ("syslog-tcp", "syslog-tls", "webhook", "splunk-hec")
# RFC 5424 §6.2.1: facility 13 is "log audit"; severity 6 informational, 4 warning.
_FACILITY = 13
# RFC 5612 reserves enterprise number 32473 for documentation and examples; sites can map it as they like.
_SD_ID = "cortex@32473"
_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


class ForwardError(Exception):
    """A batch could not be delivered; the message says why (connection refused, certificate, HTTP 500…)."""


@dataclass(frozen=True)
class Forwarder:
    id: int
    name: str
    kind: str
    target: str
    ca_file: str | None
    secret_file: str | None
    cursor_seq: int
    delivered: int
    last_success_at: str | None
    last_attempt_at: str | None
    last_error: str | None
    failing: bool

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Forwarder:
        return cls(row["id"], row["name"], row["kind"], row["target"], row["ca_file"], row["secret_file"],
                   row["cursor_seq"], row["delivered"], row["last_success_at"], row["last_attempt_at"],
                   row["last_error"], bool(row["failing"]))

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _check_target(kind: str, target: str) -> None:
    if kind in ("syslog-tcp", "syslog-tls"):
        match = _HOSTPORT.match(target)
        if not match or not 0 < int(match.group(2)) < 65536:
            raise ValidationError(f"a {kind} target is host:port (e.g. 192.0.2.10:6514), got {target!r}")
    else:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError(f"a {kind} target is an http(s) URL, got {target!r}")


def add_forwarder(db: Database, *, name: str, kind: str, target: str, actor: Actor, ca_file: str | None = None,
                  secret_file: str | None = None, from_now: bool = False) -> Forwarder:
    """Register a collector (audited). It receives the whole log from seq 1, or only new events."""
    if kind not in KINDS:
        raise ValidationError(f"forwarder kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name):
        raise ValidationError("a forwarder name is 1-64 letters, digits, '.', '_' or '-'")
    _check_target(kind, target)
    if kind in ("webhook", "splunk-hec") and not secret_file:
        what = "the HMAC key" if kind == "webhook" else "the HEC token"
        raise ValidationError(f"a {kind} forwarder needs --secret-file ({what})")
    for label, path in (("ca_file", ca_file), ("secret_file", secret_file)):
        if path and not Path(path).is_file():
            raise ValidationError(f"{label} {path} does not exist")
    with db.write() as tx:
        if tx.scalar("SELECT 1 FROM audit_forwarders WHERE name = ?", (name,)):
            raise ConflictError(f"a forwarder named {name!r} exists already")
        cursor = int(tx.scalar("SELECT MAX(seq) FROM audit_events") or 0) if from_now else 0
        forwarder_id = tx.insert("audit_forwarders", {
            "name": name, "kind": kind, "target": target, "ca_file": ca_file, "secret_file": secret_file,
            "created_at": clock.now_iso(), "cursor_seq": cursor})
        record_event(tx, AuditTag.AUDIT_FORWARDER_ADDED, actor, target=f"forwarder:{name}",
                     details={"kind": kind, "target": target, "ca_file": ca_file, "secret_file": secret_file,
                              "from_seq": cursor + 1})
        row = tx.one("SELECT * FROM audit_forwarders WHERE id = ?", (forwarder_id,))
    if row is None:  # unreachable: inserted above in the same transaction
        raise NotFoundError(f"forwarder {name!r} vanished")
    return Forwarder.from_row(row)


def remove_forwarder(db: Database, name: str, *, actor: Actor) -> None:
    with db.write() as tx:
        row = tx.one("SELECT * FROM audit_forwarders WHERE name = ?", (name,))
        if row is None:
            raise NotFoundError(f"no forwarder named {name!r}")
        tx.execute("DELETE FROM audit_forwarders WHERE id = ?", (row["id"],))
        record_event(tx, AuditTag.AUDIT_FORWARDER_REMOVED, actor, target=f"forwarder:{name}",
                     details={"kind": row["kind"], "target": row["target"], "cursor_seq": row["cursor_seq"]})


def list_forwarders(db: Database) -> list[Forwarder]:
    with db.read() as tx:
        return [Forwarder.from_row(r) for r in tx.query("SELECT * FROM audit_forwarders ORDER BY id")]


# --- message formats ---------------------------------------------------------------------------------


def _event_json(row: tuple[Any, ...]) -> dict[str, Any]:
    event = dict(zip((*COLUMNS, "prev_hash", "hash"), row, strict=True))
    event["details"] = json.loads(event["details"])
    return event


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def syslog_frame(row: tuple[Any, ...], hostname: str) -> bytes:
    """One RFC 5424 message (MSG is the event as one line of JSON, after a BOM), framed by octet count."""
    event = _event_json(row)
    severity = 6 if event["outcome"] == "success" else 4
    host = re.sub(r"[^!-~]", "-", hostname)[:255] or "-"
    header = (f"<{_FACILITY * 8 + severity}>1 {event['at']} {host} cortex - audit "
              f'[{_SD_ID} seq="{event["seq"]}" hash="{event["hash"]}" action="{event["action"]}"] ')
    message = header.encode("ascii") + b"\xef\xbb\xbf" + _dumps(event)
    return f"{len(message)} ".encode("ascii") + message


def _await_close(sock: socket.socket, target: str, timeout: float) -> None:
    """Half-close and wait for the collector to close its side: it has then read all we sent."""
    sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sock.recv(4096):
            return
    raise ForwardError(f"{target} did not close the connection within {timeout:g} s")


def _send_syslog(forwarder: Forwarder, rows: list[tuple[Any, ...]], timeout: float) -> None:
    host, _, port = forwarder.target.rpartition(":")
    host = host.strip("[]")
    payload = b"".join(syslog_frame(r, socket.gethostname()) for r in rows)
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as exc:
        raise ForwardError(f"{forwarder.target}: {exc.strerror or exc}") from exc
    try:
        if forwarder.kind == "syslog-tcp":
            sock.sendall(payload)
            _await_close(sock, forwarder.target, timeout)
            return
        # RFC 5425: TLS, the collector's certificate checked (CERT_REQUIRED, host name or IP address matched).
        context = ssl.create_default_context(cafile=forwarder.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        tls = context.wrap_socket(sock, server_hostname=host)  # owns the descriptor from here on
        sock = tls
        tls.sendall(payload)
        try:
            # close_notify both ways (RFC 5425 §4.4); a collector that answers by closing the connection has also
            # read everything before our close_notify.
            sock = tls.unwrap()
        except ssl.SSLEOFError:
            return
        _await_close(sock, forwarder.target, timeout)
    except ssl.SSLCertVerificationError as exc:
        raise ForwardError(f"the certificate of {forwarder.target} does not verify: {exc.verify_message}") from exc
    except (OSError, ssl.SSLError) as exc:
        raise ForwardError(f"{forwarder.target}: {exc.strerror or exc}") from exc
    finally:
        sock.close()


def _secret(forwarder: Forwarder) -> bytes:
    try:
        return Path(forwarder.secret_file or "").read_bytes().strip()
    except OSError as exc:
        raise ForwardError(f"cannot read secret_file {forwarder.secret_file}: {exc.strerror}") from exc


def _post(forwarder: Forwarder, body: bytes, headers: dict[str, str], timeout: float) -> bytes:
    url = urlsplit(forwarder.target)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    conn: http.client.HTTPConnection
    if url.scheme == "https":
        conn = http.client.HTTPSConnection(url.hostname or "", url.port, timeout=timeout,
                                           context=ssl.create_default_context(cafile=forwarder.ca_file))
    else:
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        data = response.read(65536)
        if not 200 <= response.status < 300:
            raise ForwardError(f"{forwarder.target} answered HTTP {response.status}: {data[:200]!r}")
        return data
    except ssl.SSLCertVerificationError as exc:
        raise ForwardError(f"the certificate of {forwarder.target} does not verify: {exc.verify_message}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise ForwardError(f"{forwarder.target}: {getattr(exc, 'strerror', None) or exc}") from exc
    finally:
        conn.close()


def webhook_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def _send_webhook(forwarder: Forwarder, rows: list[tuple[Any, ...]], timeout: float, appliance_id: str) -> None:
    body = _dumps({"appliance": appliance_id, "events": [_event_json(r) for r in rows]})
    timestamp = str(int(time.time()))
    _post(forwarder, body, {"X-Cortex-Timestamp": timestamp,
                            "X-Cortex-Signature": webhook_signature(_secret(forwarder), timestamp, body)}, timeout)


def _send_hec(forwarder: Forwarder, rows: list[tuple[Any, ...]], timeout: float) -> None:
    host = socket.gethostname()
    body = b"\n".join(_dumps({"time": clock.from_iso(e["at"]).timestamp(), "host": host, "source": "cortex-appliance",
                              "sourcetype": "cortex:audit", "event": e}) for e in map(_event_json, rows))
    answer = _post(forwarder, body, {"Authorization": "Splunk " + _secret(forwarder).decode("utf-8", "replace")},
                   timeout)
    try:
        code = json.loads(answer or b"{}").get("code", 0)
    except ValueError:
        code = 0
    if code != 0:
        raise ForwardError(f"{forwarder.target} refused the batch: {answer[:200]!r}")


def deliver(db: Database, forwarder_id: int, *, appliance_id: str, batch: int = 500, timeout: float = 10.0) -> int:
    """Send the next batch after the forwarder's cursor; returns how many events were delivered.

    Raises:
        ForwardError: the batch was not delivered (the cursor did not move; the failure is recorded).
    """
    with db.read() as tx:
        row = tx.one("SELECT * FROM audit_forwarders WHERE id = ?", (forwarder_id,))
        if row is None:
            return 0
        forwarder = Forwarder.from_row(row)
        rows = tx.rows(f"{ROW_SQL} WHERE seq > ? ORDER BY seq LIMIT ?", (forwarder.cursor_seq, batch))
    if not rows:
        return 0
    try:
        if forwarder.kind in ("syslog-tcp", "syslog-tls"):
            _send_syslog(forwarder, rows, timeout)
        elif forwarder.kind == "webhook":
            _send_webhook(forwarder, rows, timeout, appliance_id)
        else:
            _send_hec(forwarder, rows, timeout)
    except ForwardError as exc:
        with db.write() as tx:
            was = tx.scalar("SELECT failing FROM audit_forwarders WHERE id = ?", (forwarder_id,))
            tx.execute("UPDATE audit_forwarders SET failing = 1, last_error = ?, last_attempt_at = ? WHERE id = ?",
                       (str(exc)[:500], clock.now_iso(), forwarder_id))
            if was == 0:
                record_event(tx, AuditTag.AUDIT_FORWARDER_FAILING, Actor.system(), target=f"forwarder:{forwarder.name}",
                             outcome="failure", details={"error": str(exc)[:500], "cursor_seq": forwarder.cursor_seq})
        raise
    last = rows[-1][COLUMNS.index("seq")]
    now = clock.now_iso()
    with db.write() as tx:
        changed = tx.execute("UPDATE audit_forwarders SET cursor_seq = ?, delivered = delivered + ?, failing = 0, "
                             "last_error = NULL, last_success_at = ?, last_attempt_at = ? "
                             "WHERE id = ? AND cursor_seq = ?",
                             (last, len(rows), now, now, forwarder_id, forwarder.cursor_seq))
        if changed and forwarder.failing:
            record_event(tx, AuditTag.AUDIT_FORWARDER_RECOVERED, Actor.system(), target=f"forwarder:{forwarder.name}",
                         details={"cursor_seq": last, "after_error": forwarder.last_error})
    return len(rows)
