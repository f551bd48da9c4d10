"""Exports of a range of the log (JSON Lines or CSV) that verify on their own, offline, elsewhere.

An export carries, in order: a header (appliance id, key id and public key, the range), every event of the
range with its chain fields, the purge gaps inside the range and the markers that declared them, the
checkpoints whose size falls in the range plus one signed for the range's last event, and a last
``signature`` record: Ed25519 over ``cortex-audit-export/v1 sha256:<hex>``, the SHA-256 of every byte
before that record. Verification re-checks the chain from the range's first event, holds it to the
checkpoints, and checks the file signature: a changed, reordered, cut or re-chained export fails.

Retention archives use the same format with ``kind = "archive"``: their events need not be contiguous
(only the purged ones), so each event is checked against its own hash and, where seqs follow each other,
its link; the archive's checkpoint and file signature vouch for the rest.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from appliance import clock
from appliance.audit.chain import COLUMNS, canonical_details, event_hash
from appliance.audit.checkpoints import Checkpoint, stored_checkpoints
from appliance.audit.keys import AuditKey, PublicKey, load_public_key
from appliance.audit.log import iter_rows, load_gaps
from appliance.audit.verify import Gap, Problem, VerifyReport, verify_rows
from appliance.errors import ValidationError
from appliance.store import Transaction

__all__ = ["FORMAT", "ExportInfo", "parse_export", "verify_export", "verify_export_file", "write_export",
           "write_export_file"]

FORMAT = "cortex-audit-export/v1"
FORMATS = ("jsonl", "csv")
CSV_COLUMNS = ("record", *COLUMNS, "prev_hash", "hash", "extra")
_SEQ = COLUMNS.index("seq")
_DETAILS = COLUMNS.index("details")


@dataclass
class ExportInfo:
    format: str
    kind: str
    first_seq: int | None
    last_seq: int | None
    events: int = 0
    checkpoints: int = 0
    gaps: int = 0
    sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "kind": self.kind, "from_seq": self.first_seq, "to_seq": self.last_seq,
                "events": self.events, "checkpoints": self.checkpoints, "gaps": self.gaps, "sha256": self.sha256}


def _csv_cell(value: Any) -> Any:
    """NULL is ``\\N``; text starting with a backslash gets one more, so the two never meet."""
    if value is None:
        return "\\N"
    if isinstance(value, str) and value.startswith("\\"):
        return "\\" + value
    return value


def _csv_value(text: str) -> Any:
    if text == "\\N":
        return None
    return text[1:] if text.startswith("\\") else text


def _signed_message(digest: str) -> bytes:
    return f"{FORMAT} sha256:{digest}".encode("ascii")


class _Writer:
    """Writes records in one format while hashing every byte written."""

    def __init__(self, out: IO[bytes], fmt: str) -> None:
        self.out = out
        self.fmt = fmt
        self.digest = hashlib.sha256()
        self._text = io.StringIO()
        self._csv = csv.writer(self._text, lineterminator="\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(CSV_COLUMNS)
            self._flush()

    def _flush(self) -> None:
        data = self._text.getvalue().encode("utf-8")
        self._text.seek(0)
        self._text.truncate()
        self.digest.update(data)
        self.out.write(data)

    def record(self, kind: str, *, row: Sequence[Any] | None = None, extra: dict[str, Any] | None = None,
               flush: bool = True) -> None:
        if self._csv is not None:
            values: list[Any] = [kind]
            values += list(row) if row is not None else [""] * (len(COLUMNS) + 2)
            values = [values[0], *(_csv_cell(v) if row is not None else v for v in values[1:-1]), values[-1]]
            values.append(json.dumps(extra, ensure_ascii=False, separators=(",", ":")) if extra else "")
            self._csv.writerow(values)
        else:
            obj: dict[str, Any] = {"record": kind}
            if row is not None:
                obj.update(zip((*COLUMNS, "prev_hash", "hash"), row, strict=True))
                obj["details"] = json.loads(obj["details"])
            if extra:
                obj.update(extra)
            self._text.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
        if flush or self._text.tell() > 1 << 16:
            self._flush()

    def finish(self, key: AuditKey) -> str:
        self._flush()
        digest = self.digest.hexdigest()
        self.record("signature", extra={"sha256": digest, "key": key.key_id,
                                        "signature": key.sign(_signed_message(digest))})
        return digest


def write_export(tx: Transaction, key: AuditKey, out: IO[bytes], *, fmt: str = "jsonl", first: int = 1,
                 last: int | None = None, seqs: Sequence[int] | None = None, kind: str = "export",
                 extra_checkpoints: Sequence[Checkpoint] = ()) -> ExportInfo:
    """Write events ``first``..``last`` (or exactly ``seqs``, for an archive) from the snapshot ``tx``.

    Raises:
        ValidationError: an unknown format or an empty range.
    """
    if fmt not in FORMATS:
        raise ValidationError(f"export format must be jsonl or csv, got {fmt!r}")
    head = tx.scalar("SELECT MAX(seq) FROM audit_events") or 0
    last = min(last if last is not None else head, head)
    if seqs is not None:
        first, last = (min(seqs), max(seqs)) if seqs else (0, -1)
    if seqs is None and first <= last:
        # The range's ends as present events (a retention purge may have removed the seqs asked for).
        bounds = tx.rows("SELECT MIN(seq), MAX(seq) FROM audit_events WHERE seq >= ? AND seq <= ?", (first, last))[0]
        first, last = (bounds[0], bounds[1]) if bounds[0] is not None else (first, first - 1)
    if first > last:
        raise ValidationError(f"no audit events in the range {first}..{last} (the log ends at seq {head})")
    writer = _Writer(out, fmt)
    info = ExportInfo(fmt, kind, first, last)
    writer.record("header", extra={"format": FORMAT, "kind": kind, "appliance": key.appliance_id,
                                   "key": key.key_id, "public_key": key.public.pem(), "from_seq": first,
                                   "to_seq": last, "exported_at": clock.now_iso()})
    wanted = set(seqs) if seqs is not None else None
    last_row: Sequence[Any] | None = None
    for row in iter_rows(tx, first=first, last=last):
        if wanted is not None and row[_SEQ] not in wanted:
            continue
        writer.record("event", row=row, flush=False)
        info.events += 1
        last_row = row
    if kind == "export":
        every_gap = load_gaps(tx)
        cited = {g.marker_seq for g in every_gap if g.last_seq >= first and g.first_seq <= last}
        # All the gaps of each marker cited, so the marker's digest over its ranges can be checked.
        gaps = [g for g in every_gap if g.marker_seq in cited]
        markers_needed = {seq for seq in cited if not first <= seq <= last}
        for gap in gaps:
            writer.record("gap", extra={"first_seq": gap.first_seq, "last_seq": gap.last_seq,
                                        "last_hash": gap.last_hash, "marker_seq": gap.marker_seq})
            info.gaps += 1
        for seq in sorted(markers_needed):
            details = tx.scalar("SELECT details FROM audit_events WHERE seq = ?", (seq,))
            writer.record("marker", extra={"seq": seq, "marker": json.loads(details or "{}")})
    # An archive carries only the checkpoint that covers all its events; an export those in its range.
    checkpoints = [] if kind == "archive" else list(stored_checkpoints(tx, since=first, up_to=last))
    checkpoints += [cp for cp in extra_checkpoints if cp.size not in {c.size for c in checkpoints}]
    if last_row is not None and kind == "export" and last_row[_SEQ] not in {c.size for c in checkpoints}:
        checkpoints.append(Checkpoint.sign(key, last_row[_SEQ], last_row[-1]))
    for cp in sorted(checkpoints, key=lambda c: c.size):
        writer.record("checkpoint", extra={"size": cp.size, "text": cp.text()})
        info.checkpoints += 1
    info.sha256 = writer.finish(key)
    return info


def write_export_file(path: Path, write: Any) -> Path:
    """Run ``write(fh)`` into ``path`` durably (aside, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    with tmp.open("wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path


# --- reading and verifying ----------------------------------------------------------------------------


@dataclass
class ParsedExport:
    header: dict[str, Any]
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    markers: dict[int, dict[str, Any]] = field(default_factory=dict)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    signature: dict[str, Any] | None = None
    signed_sha256: str = ""  # of the bytes before the signature record


def _row_from_json(obj: dict[str, Any], line: int) -> tuple[Any, ...]:
    try:
        values = [obj[c] for c in COLUMNS] + [obj["prev_hash"], obj["hash"]]
    except KeyError as exc:
        raise ValidationError(f"line {line}: event record lacks {exc.args[0]!r}") from exc
    details = values[_DETAILS]
    if not isinstance(details, dict):
        raise ValidationError(f"line {line}: details must be a JSON object")
    values[_DETAILS] = canonical_details(details)
    return tuple(values)


def _row_from_csv(values: list[str], line: int) -> tuple[Any, ...]:
    row: list[Any] = [_csv_value(v) for v in values[1:len(COLUMNS) + 3]]
    try:
        row[_SEQ] = int(row[_SEQ])
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"line {line}: seq is not a number") from exc
    return tuple(row)


def _take(parsed: ParsedExport, kind: str, extra: dict[str, Any], row: tuple[Any, ...] | None, line: int,
          origin: str) -> None:
    if kind == "header":
        if extra.get("format") != FORMAT:
            raise ValidationError(f"line {line}: not a {FORMAT} export")
        parsed.header = extra
    elif kind == "event" and row is not None:
        parsed.rows.append(row)
    elif kind == "gap":
        parsed.gaps.append(Gap(int(extra["first_seq"]), int(extra["last_seq"]), str(extra["last_hash"]),
                               int(extra["marker_seq"])))
    elif kind == "marker":
        parsed.markers[int(extra["seq"])] = dict(extra["marker"])
    elif kind == "checkpoint":
        parsed.checkpoints.append(Checkpoint.parse(str(extra["text"]), origin=f"{origin} line {line}"))
    else:
        raise ValidationError(f"line {line}: unknown record {kind!r}")


def parse_export(data: bytes, origin: str = "export") -> ParsedExport:
    """Parse an export or archive file (JSON Lines or CSV, told apart by the first byte).

    Raises:
        ValidationError: the file is malformed (names the line), or its signature record is missing.
    """
    marker = b'\n{"record":"signature"' if data[:1] == b"{" else b"\nsignature,"
    cut = data.rfind(marker)
    if cut < 0:
        raise ValidationError(f"{origin} has no signature record at its end: it is not an export, or it was cut")
    signed, tail = data[:cut + 1], data[cut + 1:]
    parsed = ParsedExport(header={})
    parsed.signed_sha256 = hashlib.sha256(signed).hexdigest()
    try:
        text = signed.decode("utf-8")
        tail_text = tail.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{origin} is not UTF-8 text") from exc
    try:
        if data[:1] == b"{":
            for number, line in enumerate(text.splitlines(), start=1):
                obj = json.loads(line)
                if not isinstance(obj, dict) or "record" not in obj:
                    raise ValidationError(f"{origin} line {number}: not an export record")
                kind = obj.pop("record")
                row = _row_from_json(obj, number) if kind == "event" else None
                _take(parsed, kind, obj, row, number, origin)
            last = json.loads(tail_text)
            last.pop("record", None)
            parsed.signature = last
        else:
            reader = csv.reader(io.StringIO(text, newline=""))
            heading = next(reader, None)
            if heading is None or tuple(heading) != CSV_COLUMNS:
                raise ValidationError(f"{origin} line 1: expected the columns {','.join(CSV_COLUMNS)}")
            for values in reader:
                number = reader.line_num
                if len(values) != len(CSV_COLUMNS):
                    raise ValidationError(f"{origin} line {number}: {len(values)} fields, expected "
                                          f"{len(CSV_COLUMNS)}")
                extra = json.loads(values[-1]) if values[-1] else {}
                row = _row_from_csv(values, number) if values[0] == "event" else None
                _take(parsed, values[0], extra, row, number, origin)
            tail_values = next(csv.reader(io.StringIO(tail_text, newline="")))
            parsed.signature = json.loads(tail_values[-1])
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, ValidationError):
            raise
        raise ValidationError(f"{origin} is malformed: {exc}") from exc
    if not parsed.header:
        raise ValidationError(f"{origin} has no header record")
    return parsed


def _verify_archive(parsed: ParsedExport, report: VerifyReport) -> None:
    """Each purged event matches its hash; consecutive ones link; all lie within the checkpoint."""
    prev: tuple[Any, ...] | None = None
    for row in parsed.rows:
        seq = row[_SEQ]
        if event_hash(row[-2], row) != row[-1]:
            report.fail(Problem(seq, "modified", f"archived event {seq} does not match its hash"))
            return
        if prev is not None and seq <= prev[_SEQ]:
            report.fail(Problem(seq, "reordered", f"archived event {seq} comes after {prev[_SEQ]}"))
            return
        if prev is not None and seq == prev[_SEQ] + 1 and row[-2] != prev[-1]:
            report.fail(Problem(seq, "modified", f"archived event {seq} does not link to event {prev[_SEQ]}"))
            return
        report.events += 1
        report.size, report.head = seq, row[-1]
        prev = row
    report.first_seq = parsed.rows[0][_SEQ] if parsed.rows else None


def verify_export(data: bytes, *, public: PublicKey | None = None, origin: str = "export") -> VerifyReport:
    """Verify an export or archive on its own. Without ``public`` the key embedded in the file is used, and
    the report says so (compare its id with the appliance's published key id)."""
    try:
        parsed = parse_export(data, origin)
    except ValidationError as exc:
        report = VerifyReport()
        report.fail(Problem(0, "malformed", exc.message))
        return report
    header = parsed.header
    if public is None:
        public = load_public_key_text(str(header.get("public_key", "")))
        note = f"signatures checked with the key embedded in the file (key id {public.key_id if public else '?'}); " \
               "pass the appliance's public key to pin it"
    else:
        note = f"signatures checked with the given public key (key id {public.key_id})"
    if header.get("kind") == "archive":
        report = VerifyReport()
        _verify_archive(parsed, report)
        for cp in parsed.checkpoints:
            if public is None or not cp.verifies_with(public):
                report.fail(Problem(cp.size, "bad_signature", f"the archive's checkpoint at size {cp.size} does "
                                    "not verify"))
            elif report.size > cp.size:
                report.fail(Problem(report.size, "inserted", f"archived event {report.size} lies beyond its "
                                    f"checkpoint (size {cp.size})"))
            else:
                report.checkpoints += 1
                report.newest_checkpoint = cp.size
        if not parsed.checkpoints:
            report.fail(Problem(report.size, "malformed", "the archive carries no checkpoint"))
    else:
        report = verify_rows(parsed.rows, gaps=parsed.gaps, checkpoints=parsed.checkpoints, public=public,
                             appliance_id=header.get("appliance"), from_genesis=header.get("from_seq") == 1,
                             markers=parsed.markers)
        if report.ok and parsed.rows and report.newest_checkpoint != report.size:
            report.fail(Problem(report.size, "truncated", "no checkpoint covers the export's last event"))
        if report.ok and parsed.rows and header.get("to_seq") != report.size:
            report.fail(Problem(report.size + 1, "truncated", f"the export ends at seq {report.size}, its header "
                                f"says {header.get('to_seq')}"))
    signature = parsed.signature or {}
    if signature.get("sha256") != parsed.signed_sha256:
        report.fail(Problem(0, "modified", "the file changed after it was exported (its SHA-256 differs from the "
                            "signed one)"))
    elif public is None or not public.verify(str(signature.get("signature", "")),
                                             _signed_message(parsed.signed_sha256)):
        report.fail(Problem(0, "bad_signature", "the export's signature does not verify"))
    report.notes.append(note)
    return report


def load_public_key_text(pem: str) -> PublicKey | None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None
    return PublicKey(key) if isinstance(key, Ed25519PublicKey) else None


def verify_export_file(path: Path, public_key_file: Path | None = None) -> VerifyReport:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}") from exc
    public = load_public_key(public_key_file) if public_key_file else None
    return verify_export(data, public=public, origin=str(path))

