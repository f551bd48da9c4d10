"""Read a rule pack folder (``pack.toml`` plus ``rules/*.toml``) into a :class:`PackSpec`.

The format is documented in offline-docs/rule-packs.md. Every error names the file, the rule and the
field, and says what was expected. Loading checks the shape; compiling (``review.engine``) checks that
patterns and queries are valid.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.errors import PackError
from appliance.review.languages import known_languages
from appliance.review.models import Severity
from appliance.review.ruleset import ExampleSpec, PackSpec, RuleSpec

__all__ = ["discover_packs", "load_pack", "pack_digest"]

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,80}$")
_PACK_KEYS = {"id", "version", "display_version", "name", "description", "publisher", "frameworks", "product",
              "channel", "min_appliance_version", "issued", "expires"}
_VERSION = re.compile(r"^\d+(\.\d+){0,2}$")
_RULE_KEYS = {"id", "title", "severity", "message", "fix", "cwe", "languages", "pattern", "pattern_not", "query",
              "validator", "redact", "paths_include", "paths_exclude", "controls", "example"}
_EXAMPLE_KEYS = {"file", "code", "expect", "line"}


def pack_digest(folder: Path) -> str:
    """sha256 over every file of the pack (relative path and content), in path order."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        data = path.read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _read_toml(path: Path, pack_id: str | None) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PackError(f"cannot read {path}: {exc}", pack_id=pack_id) from exc
    except tomllib.TOMLDecodeError as exc:
        raise PackError(f"{path} is not valid TOML: {exc}", pack_id=pack_id) from exc


def _expect(value: Any, kind: type | tuple[type, ...], what: str, where: str, pack_id: str,
            rule_id: str | None = None) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise PackError(f"{where}: {what} must be {names}, got {value!r}", pack_id=pack_id, rule_id=rule_id)
    return value


def _str_list(value: Any, what: str, where: str, pack_id: str, rule_id: str | None = None) -> tuple[str, ...]:
    _expect(value, list, what, where, pack_id, rule_id)
    for item in value:
        _expect(item, str, f"each entry of {what}", where, pack_id, rule_id)
    return tuple(value)


def _controls(raw: Any, frameworks: tuple[str, ...], where: str, pack_id: str,
              rule_id: str) -> tuple[tuple[str, str], ...]:
    """``controls = { "PCI DSS v4.0" = ["3.5.1"], CWE = ["CWE-798"] }``: every framework is one the pack
    declares, so compliance reports can group findings by framework and control."""
    _expect(raw, dict, "controls (a table of framework = [control ids])", where, pack_id, rule_id)
    pairs: list[tuple[str, str]] = []
    for framework, ids in raw.items():
        if framework not in frameworks:
            raise PackError(f"{where}: controls name the framework {framework!r}, which pack.toml's frameworks "
                            f"({', '.join(frameworks) or 'none'}) does not list", pack_id=pack_id, rule_id=rule_id)
        for control in _str_list(ids, f"controls.{framework}", where, pack_id, rule_id):
            pairs.append((framework, control))
    return tuple(pairs)


def _load_rule(raw: dict[str, Any], pack_id: str, where: str, frameworks: tuple[str, ...]) -> RuleSpec:
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        raise PackError(f"{where}: a rule needs an id of letters, digits, '.', '_' or '-' (got {rule_id!r})",
                        pack_id=pack_id)
    where = f"{where}, rule {rule_id}"
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise PackError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}", pack_id=pack_id, rule_id=rule_id)
    for required in ("title", "severity", "message"):
        if required not in raw:
            raise PackError(f"{where}: the field {required!r} is required", pack_id=pack_id, rule_id=rule_id)
    try:
        severity = Severity(raw["severity"])
    except ValueError as exc:
        raise PackError(f"{where}: severity must be one of {', '.join(s.value for s in Severity)}, "
                        f"got {raw['severity']!r}", pack_id=pack_id, rule_id=rule_id) from exc
    has_pattern = "pattern" in raw
    has_query = "query" in raw
    if has_pattern == has_query:
        raise PackError(f"{where}: a rule has exactly one matcher, either 'pattern' (RE2) or a 'query' table "
                        "(tree-sitter, one query per language)", pack_id=pack_id, rule_id=rule_id)
    queries: dict[str, str] = {}
    if has_query:
        _expect(raw["query"], dict, "query", where, pack_id, rule_id)
        for language, source in raw["query"].items():
            queries[language] = _expect(source, str, f"query.{language}", where, pack_id, rule_id)
    languages = _str_list(raw.get("languages", []), "languages", where, pack_id, rule_id)
    unknown_languages = set(languages) - known_languages()
    if unknown_languages:
        raise PackError(f"{where}: unknown language(s) {', '.join(sorted(unknown_languages))}",
                        pack_id=pack_id, rule_id=rule_id)
    if queries and not languages:
        languages = tuple(queries)
    cwe = raw.get("cwe")
    if cwe is not None:
        _expect(cwe, int, "cwe", where, pack_id, rule_id)
    examples = []
    examples_raw = raw.get("example", [])
    if not isinstance(examples_raw, list):
        raise PackError(f"{where}: examples are written as [[rule.example]] tables", pack_id=pack_id, rule_id=rule_id)
    for index, ex in enumerate(examples_raw, 1):
        ex_where = f"{where}, example {index}"
        _expect(ex, dict, "example", ex_where, pack_id, rule_id)
        unknown = set(ex) - _EXAMPLE_KEYS
        if unknown:
            raise PackError(f"{ex_where}: unknown field(s) {', '.join(sorted(unknown))}",
                            pack_id=pack_id, rule_id=rule_id)
        expect = ex.get("expect")
        if expect not in ("finding", "clean"):
            raise PackError(f"{ex_where}: expect must be 'finding' or 'clean', got {expect!r}",
                            pack_id=pack_id, rule_id=rule_id)
        line = ex.get("line")
        if line is not None:
            _expect(line, int, "line", ex_where, pack_id, rule_id)
        examples.append(ExampleSpec(
            file=_expect(ex.get("file"), str, "file", ex_where, pack_id, rule_id),
            code=_expect(ex.get("code"), str, "code", ex_where, pack_id, rule_id),
            expect=expect, line=line))
    return RuleSpec(
        id=rule_id,
        pack_id=pack_id,
        title=_expect(raw["title"], str, "title", where, pack_id, rule_id),
        severity=severity,
        message=" ".join(_expect(raw["message"], str, "message", where, pack_id, rule_id).split()),
        fix=" ".join(_expect(raw.get("fix", ""), str, "fix", where, pack_id, rule_id).split()),
        cwe=cwe,
        languages=languages,
        pattern=_expect(raw["pattern"], str, "pattern", where, pack_id, rule_id) if has_pattern else None,
        pattern_not=_expect(raw["pattern_not"], str, "pattern_not", where, pack_id, rule_id)
        if "pattern_not" in raw else None,
        queries=queries,
        validator=_expect(raw["validator"], str, "validator", where, pack_id, rule_id) if "validator" in raw else None,
        redact=bool(_expect(raw.get("redact", False), bool, "redact", where, pack_id, rule_id)),
        paths_include=_str_list(raw.get("paths_include", []), "paths_include", where, pack_id, rule_id),
        paths_exclude=_str_list(raw.get("paths_exclude", []), "paths_exclude", where, pack_id, rule_id),
        controls=_controls(raw.get("controls", {}), frameworks, where, pack_id, rule_id),
        examples=tuple(examples),
    )


def load_pack(folder: Path) -> PackSpec:
    """Load the pack in ``folder``.

    Raises:
        PackError: the folder is not a pack or a file in it does not follow the format.
    """
    folder = Path(folder)
    manifest = folder / "pack.toml"
    if not manifest.is_file():
        raise PackError(f"{folder} is not a rule pack: it has no pack.toml")
    meta = _read_toml(manifest, None)
    pack_id = meta.get("id")
    if not isinstance(pack_id, str) or not _ID.match(pack_id):
        raise PackError(f"{manifest}: id must be lower-case letters, digits and '-', got {pack_id!r}")
    unknown = set(meta) - _PACK_KEYS
    if unknown:
        raise PackError(f"{manifest}: unknown field(s) {', '.join(sorted(unknown))}", pack_id=pack_id)
    version = _expect(meta.get("version"), int, "version (an integer that only goes up)", str(manifest), pack_id)
    if version < 1:
        raise PackError(f"{manifest}: version must be 1 or more, got {version}", pack_id=pack_id)
    frameworks = _str_list(meta.get("frameworks", []), "frameworks", str(manifest), pack_id)
    minimum = _expect(meta.get("min_appliance_version", "0.0.0"), str, "min_appliance_version", str(manifest),
                      pack_id)
    if not _VERSION.match(minimum):
        raise PackError(f"{manifest}: min_appliance_version must look like 1.2.3, got {minimum!r}", pack_id=pack_id)
    stamps: dict[str, datetime | None] = {}
    for key in ("issued", "expires"):
        value = meta.get(key)
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise PackError(f"{manifest}: {key} must be a TOML date-time with a time zone, e.g. "
                            f"2026-11-24T00:00:00Z, got {value!r}", pack_id=pack_id)
        stamps[key] = value
    rules: list[RuleSpec] = []
    rule_files = sorted((folder / "rules").glob("*.toml")) if (folder / "rules").is_dir() else []
    if not rule_files:
        raise PackError(f"{folder}: a pack keeps its rules in rules/*.toml and this one has none", pack_id=pack_id)
    for path in rule_files:
        data = _read_toml(path, pack_id)
        unknown = set(data) - {"rule"}
        if unknown:
            raise PackError(f"{path}: a rule file holds only [[rule]] tables, found {', '.join(sorted(unknown))}",
                            pack_id=pack_id)
        if not data.get("rule"):
            raise PackError(f"{path} holds no [[rule]] tables; remove the file or add rules", pack_id=pack_id)
        if not isinstance(data["rule"], list) or not all(isinstance(r, dict) for r in data["rule"]):
            raise PackError(f"{path}: rules are written as [[rule]] tables (an array of tables), not [rule]",
                            pack_id=pack_id)
        for raw in data["rule"]:
            rules.append(_load_rule(raw, pack_id, str(path.relative_to(folder.parent)), frameworks))
    return PackSpec(
        id=pack_id,
        version=version,
        display_version=str(meta.get("display_version", version)),
        name=_expect(meta.get("name", pack_id), str, "name", str(manifest), pack_id),
        description=_expect(meta.get("description", ""), str, "description", str(manifest), pack_id).strip(),
        publisher=_expect(meta.get("publisher", ""), str, "publisher", str(manifest), pack_id),
        frameworks=frameworks,
        product=_expect(meta.get("product", "cortex-code-appliance"), str, "product", str(manifest), pack_id),
        channel=_expect(meta.get("channel", "stable"), str, "channel", str(manifest), pack_id),
        min_appliance_version=minimum,
        issued=stamps["issued"],
        expires=stamps["expires"],
        rules=tuple(rules),
        digest=pack_digest(folder),
        path=folder,
    )


def discover_packs(rules_dir: Path) -> tuple[list[PackSpec], list[PackError]]:
    """Load every pack folder under ``rules_dir``; malformed packs come back as errors, not exceptions."""
    packs: list[PackSpec] = []
    errors: list[PackError] = []
    if not rules_dir.is_dir():
        return packs, [PackError(f"the rules directory {rules_dir} does not exist")]
    for folder in sorted(p for p in rules_dir.iterdir() if (p / "pack.toml").is_file()):
        try:
            packs.append(load_pack(folder))
        except PackError as exc:
            if exc.pack_id is None:
                exc.pack_id = folder.name
            errors.append(exc)
        except Exception as exc:  # a pack must never stop the appliance: refuse it and go on
            errors.append(PackError(f"rule pack in {folder} refused: it could not be read ({exc!r})",
                                    pack_id=folder.name))
    return packs, errors
