"""The hash chain: ``hash = SHA-256(prev_hash ‖ canonical(event))``.

``prev_hash`` is the previous event's hash as 64 lowercase hex characters (64 zeros before the first
event); ``canonical(event)`` is the RFC 8785 (JSON Canonicalization Scheme) serialization, in UTF-8, of
the object

    {"action", "actor_display", "actor_id", "actor_kind", "actor_name", "at", "details", "outcome",
     "seq", "source_addr", "target"}

with ``details`` the event's details object. The recorder stores ``details`` as its RFC 8785 text, so the
canonical event is assembled here from the stored text without parsing it again: verification runs at
hundreds of thousands of events a second. ``tests/audit/test_chain.py`` checks the result is byte for byte
what the ``rfc8785`` package produces for the same object.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785

__all__ = ["COLUMNS", "GENESIS", "canonical_details", "canonical_event", "clean_text", "event_hash",
           "event_object"]

GENESIS = "0" * 64
# The hashed fields, in RFC 8785 key order (all ASCII, so UTF-16 order is byte order).
COLUMNS = ("action", "actor_display", "actor_id", "actor_kind", "actor_name", "at", "details", "outcome", "seq",
           "source_addr", "target")

# RFC 8785 §3.2.2.2 serializes strings as ECMAScript's JSON.stringify does: '"' and '\' escaped, the
# control characters as \b \t \n \f \r or \u00xx (lowercase hex), everything else literal. That is exactly
# what CPython's C encoder does with ensure_ascii off, for text without lone surrogates (clean_text).
_quote = json.encoder.encode_basestring


def clean_text(value: str) -> str:
    """Text that is valid Unicode: a lone surrogate (never valid UTF-8) becomes its ``\\udxxx`` spelling."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {clean_text(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


_SAFE_INT = 2**53 - 1


def _plain(value: Any) -> bool:
    """Values whose RFC 8785 form is exactly CPython's sorted, compact JSON: text, safe integers, booleans,
    null, lists of them and objects with ASCII keys (code point order is then UTF-16 order). Floats are not:
    RFC 8785 prints them as ECMAScript does."""
    if value is None or isinstance(value, str | bool):
        return True
    if isinstance(value, int):
        return -_SAFE_INT <= value <= _SAFE_INT
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and k.isascii() and _plain(v) for k, v in value.items())
    return False


def canonical_details(details: Mapping[str, Any]) -> str:
    """The RFC 8785 text of a details object (as stored in ``audit_events.details``).

    Raises:
        ValueError: a value JSON cannot carry exactly (NaN, an integer beyond ±2^53, an unknown type).
    """
    value = _clean(dict(details))
    if _plain(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return rfc8785.dumps(value).decode("utf-8")
    except (rfc8785.CanonicalizationError, TypeError) as exc:
        raise ValueError(f"audit details cannot be serialized canonically: {exc}") from exc


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return str(_quote(str(value)))


def canonical_event(row: Sequence[Any]) -> bytes:
    """RFC 8785 bytes of one event, ``row`` starting with the values of :data:`COLUMNS` in that order, with
    ``details`` as its stored canonical text (further items, such as the chain fields, are ignored)."""
    action, display, actor_id, kind, name, at, details, outcome, seq, addr, target = row[:11]
    try:  # the columns' own types (seq an integer, the NOT NULL ones text): the common, fast path
        if type(seq) is not int:
            raise TypeError(seq)
        text = ('{"action":' + _quote(action) + ',"actor_display":' + _quote(display) + ',"actor_id":'
                + ("null" if actor_id is None else _quote(actor_id)) + ',"actor_kind":' + _quote(kind)
                + ',"actor_name":' + _quote(name) + ',"at":' + _quote(at) + ',"details":' + details
                + ',"outcome":' + _quote(outcome) + ',"seq":' + str(seq) + ',"source_addr":'
                + ("null" if addr is None else _quote(addr)) + ',"target":' + _quote(target) + "}")
    except TypeError:  # anything else (an export someone edited): still serialized, so it fails its hash
        text = (f'{{"action":{_text(action)},"actor_display":{_text(display)},"actor_id":{_text(actor_id)},'
                f'"actor_kind":{_text(kind)},"actor_name":{_text(name)},"at":{_text(at)},"details":{details},'
                f'"outcome":{_text(outcome)},"seq":{_text(seq)},"source_addr":{_text(addr)},'
                f'"target":{_text(target)}}}')
    return text.encode("utf-8")


def event_hash(prev_hash: str, row: Sequence[Any]) -> str:
    """``SHA-256(prev_hash ‖ canonical(event))`` as lowercase hex (``prev_hash`` as its 64 hex characters)."""
    return hashlib.sha256(str(prev_hash).encode("ascii", "replace") + canonical_event(row)).hexdigest()


def event_object(row: Mapping[str, Any]) -> dict[str, Any]:
    """The event as a JSON object (details parsed), with its chain fields when present."""
    out = {name: row.get(name) for name in COLUMNS}
    details = row.get("details")
    out["details"] = json.loads(details) if isinstance(details, str) else (details or {})
    for extra in ("prev_hash", "hash"):
        if extra in row:
            out[extra] = row[extra]
    return out
