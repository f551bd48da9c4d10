"""The rule engine: compiled packs matched against the added lines of a diff.

Pattern rules run on RE2 (linear time: no pack can hang the appliance with a catastrophic regex). All
patterns sit in one ``re2.Set``, which tells per file which patterns can match at all; only those run,
over the file's added lines joined into one text. Structural rules are tree-sitter queries, one per rule
and language; the text anchors of their predicates (see :mod:`appliance.review.anchors`), all in one
``re2.Set`` per language, tell per file which queries can match at all, and only those run over the file's
syntax tree. A pack whose rule does not compile is refused as a whole, with the rule id and the reason;
the other packs still run.
"""

from __future__ import annotations

import bisect
import fnmatch
import functools
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import re2
from tree_sitter import Query, QueryCursor, QueryError

from appliance.errors import PackError
from appliance.review.anchors import pattern_anchors
from appliance.review.languages import STRUCTURAL_LANGUAGES
from appliance.review.models import FileChange, Finding, ParsedDiff, Severity, Source
from appliance.review.ruleset import VALIDATORS, PackSpec, RuleSpec
from appliance.review.structure import grammar, new_side_source, parser_for
from appliance.review.validators import VALIDATOR_FUNCTIONS

__all__ = ["RuleSet", "compile_pack", "fingerprint"]

_SNIPPET_CHARS = 240
_STRICTER = {Severity.INFO: Severity.LOW, Severity.LOW: Severity.MEDIUM, Severity.MEDIUM: Severity.HIGH,
             Severity.HIGH: Severity.CRITICAL}
# Bounds on one file's structural matching, so a hostile query cannot run away on a large file.
_MATCH_LIMIT = 4096


def _re2_options() -> Any:
    options = re2.Options()
    options.max_mem = 64 << 20
    options.log_errors = False
    return options


def _compile_re2(pattern: str) -> Any:
    # Patterns are per line: ^ and $ anchor at line boundaries of the joined text.
    return re2.compile("(?m)" + pattern, _re2_options())


def fingerprint(rule_id: str, path: str, text: str) -> str:
    """Stable across line shifts: the rule, the file and the line's text without surrounding space."""
    return hashlib.sha256(f"{rule_id}\0{path}\0{' '.join(text.split())}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CompiledRule:
    spec: RuleSpec
    pack: PackSpec
    regex: Any | None
    regex_not: Any | None
    validator: Callable[[str], bool] | None
    value_group: str | int
    pattern_counts: tuple[tuple[str, int], ...] = ()  # language -> patterns in this rule's query
    queries: tuple[tuple[str, Query], ...] = ()  # language -> the compiled query
    # language -> per pattern, the RE2 anchors a file must all contain for the pattern to match
    anchors: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = ()

    def applies_to(self, change: FileChange) -> bool:
        languages = self.spec.languages
        if languages and change.language not in languages:
            return False
        include, exclude = _globs(self.spec.paths_include), _globs(self.spec.paths_exclude)
        if include is not None and not include.match(change.path):
            return False
        return exclude is None or not exclude.match(change.path)


@functools.lru_cache(maxsize=4096)
def _globs(globs: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for a list of ``fnmatch`` globs (case-sensitive, ``*`` crosses ``/``); None for none."""
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs))


# Compiling tree-sitter queries is the expensive part of loading packs (native work, seconds for a few
# hundred rules), so compiled packs are kept per process, keyed by the pack's content digest: an unchanged
# pack is never compiled twice. So are the per-language anchor sets, keyed by their content.
_CACHE_LOCK = threading.Lock()
_PACK_CACHE: OrderedDict[tuple[str, str], list[CompiledRule] | PackError] = OrderedDict()
_ANCHOR_CACHE: OrderedDict[tuple[str, str], Any] = OrderedDict()
_CACHE_SIZE = 64


def _cached(cache: OrderedDict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
    with _CACHE_LOCK:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    value = make()
    with _CACHE_LOCK:
        cache[key] = value
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    return value


def compile_pack(pack: PackSpec) -> list[CompiledRule]:
    """Compile every rule of ``pack`` (cached by the pack's content digest when it has one).

    Raises:
        PackError: see :func:`_compile_pack`.
    """
    if not pack.digest:
        return _compile_pack(pack)

    def make() -> list[CompiledRule] | PackError:
        try:
            return _compile_pack(pack)
        except PackError as exc:
            return exc

    result = _cached(_PACK_CACHE, (pack.id, pack.digest), make)
    if isinstance(result, PackError):
        raise PackError(result.message, pack_id=result.pack_id, rule_id=result.rule_id)
    # The specs (and their pack) are those of this load; the compiled matchers are shared.
    return [CompiledRule(spec=s, pack=pack, regex=r.regex, regex_not=r.regex_not, validator=r.validator,
                         value_group=r.value_group, pattern_counts=r.pattern_counts, queries=r.queries,
                         anchors=r.anchors)
            for s, r in zip(pack.rules, result, strict=True)]


def _compile_pack(pack: PackSpec) -> list[CompiledRule]:
    """Compile every rule of ``pack``.

    Raises:
        PackError: a rule's pattern or query does not compile, or names an unknown validator or language;
            the error names the pack and the rule.
    """
    compiled = []
    seen: set[str] = set()
    for spec in pack.rules:
        def refuse(reason: str, spec: RuleSpec = spec) -> PackError:
            return PackError(f"rule pack {pack.id} refused: rule {spec.id}: {reason}", pack_id=pack.id,
                             rule_id=spec.id)

        if spec.id in seen:
            raise refuse("the rule id appears twice in the pack")
        seen.add(spec.id)
        regex = regex_not = None
        value_group: str | int = 0
        try:
            if spec.pattern is not None:
                regex = _compile_re2(spec.pattern)
                if "value" in (getattr(regex, "groupindex", None) or {}):
                    value_group = "value"
            if spec.pattern_not is not None:
                regex_not = _compile_re2(spec.pattern_not)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", errors="replace")
            raise refuse(f"pattern does not compile with RE2: {reason}") from exc
        if spec.validator is not None and spec.validator not in VALIDATORS:
            raise refuse(f"unknown validator {spec.validator!r} (known: {', '.join(sorted(VALIDATORS))})")
        if spec.queries and (spec.validator or spec.redact):
            # A structural match has no matched value to validate or mask: refuse rather than ignore.
            raise refuse("validator and redact apply to pattern rules only; this rule is a query rule")
        unreachable = sorted(set(spec.queries) - set(spec.languages))
        if spec.languages and unreachable:
            raise refuse(f"the {', '.join(unreachable)} query never runs: languages lists only "
                         f"{', '.join(spec.languages)}")
        counts, queries, anchors = [], [], []
        for language, source in spec.queries.items():
            if language not in STRUCTURAL_LANGUAGES:
                raise refuse(f"no tree-sitter grammar for language {language!r} "
                             f"(available: {', '.join(sorted(STRUCTURAL_LANGUAGES))})")
            try:
                query = Query(grammar(language), source)
            except QueryError as exc:
                raise refuse(f"{language} query does not compile: {exc}") from exc
            if "finding" not in [query.capture_name(i) for i in range(query.capture_count)]:
                raise refuse(f"{language} query has no @finding capture to say where the finding is")
            counts.append((language, query.pattern_count))
            queries.append((language, query))
            anchors.append((language, _query_anchors(source, query)))
        compiled.append(CompiledRule(
            spec=spec, pack=pack, regex=regex, regex_not=regex_not,
            validator=VALIDATOR_FUNCTIONS[spec.validator] if spec.validator else None,
            value_group=value_group, pattern_counts=tuple(counts), queries=tuple(queries),
            anchors=tuple(anchors)))
    return compiled


def _query_anchors(source: str, query: Query) -> tuple[tuple[str, ...], ...]:
    """Per pattern of ``query``, the anchors a file must contain for it to match (empty: always runs)."""
    data = source.encode("utf-8")
    names = [query.capture_name(i) for i in range(query.capture_count)]
    result = []
    for pattern in range(query.pattern_count):
        text = data[query.start_byte_for_pattern(pattern):query.end_byte_for_pattern(pattern)]
        quantifiers = {}
        for index, name in enumerate(names):
            try:
                quantifiers[name] = query.capture_quantifier(pattern, index)
            except SystemError:  # the capture is not in this pattern
                continue
        result.append(tuple(pattern_anchors(text.decode("utf-8"), quantifiers)))
    return tuple(result)


class _Structural:
    """One language's structural rules and the anchor set that picks, per file, the queries to run."""

    def __init__(self, language: str, rules: list[CompiledRule]) -> None:
        self.rules = rules
        self.queries = [dict(rule.queries)[language] for rule in rules]
        patterns: list[str] = []
        index: dict[str, int] = {}
        # Per rule: None (some pattern has no anchor, the query always runs) or, per pattern, the anchor
        # indexes that must all be present.
        self.needs: list[list[frozenset[int]] | None] = []
        for rule in rules:
            per_pattern = dict(rule.anchors).get(language, ())
            if not per_pattern or any(not anchors for anchors in per_pattern):
                self.needs.append(None)
                continue
            needs = []
            for anchors in per_pattern:
                for anchor in anchors:
                    if anchor not in index:
                        index[anchor] = len(patterns)
                        patterns.append(anchor)
                needs.append(frozenset(index[a] for a in anchors))
            self.needs.append(needs)
        key = (language, hashlib.sha256("\0".join(patterns).encode()).hexdigest())
        self.anchor_set: _TextFilter | None = _cached(_ANCHOR_CACHE, key,
                                                      functools.partial(_TextFilter.build, patterns))

    def candidates(self, text: str) -> list[int]:
        """The rules whose query can match in a file with ``text``."""
        present = self.anchor_set.search(text) if self.anchor_set is not None else None
        if present is None:
            return list(range(len(self.rules)))
        return [i for i, needs in enumerate(self.needs)
                if needs is None or any(pattern <= present for pattern in needs)]


class _TextFilter:
    """Which of many RE2 patterns occur in a text, in one pass (``re2.Set``).

    The set also holds an empty pattern, which occurs in every text: RE2 answers "no match" when its DFA
    runs out of memory, and a missing sentinel turns that into "unknown" (run everything) rather than
    silently skipping rules.
    """

    def __init__(self, matcher: Any, sentinel: int) -> None:
        self._matcher = matcher
        self._sentinel = sentinel

    @classmethod
    def build(cls, patterns: list[str]) -> _TextFilter | None:
        """None (every rule runs) when there is nothing to filter or RE2 cannot build the set."""
        if not patterns:
            return None
        matcher = re2.Set.SearchSet(_re2_options())
        try:
            for pattern in patterns:
                matcher.Add(pattern)
            matcher.Add("")
            matcher.Compile()
        except Exception:
            return None
        return cls(matcher, len(patterns))

    def search(self, text: str) -> set[int] | None:
        """The indexes of the patterns found in ``text``; None if RE2 could not tell."""
        found = set(self._matcher.Match(text) or ())
        if self._sentinel not in found:
            return None
        found.discard(self._sentinel)
        return found


class RuleSet:
    """The compiled, active rules of one or more packs, ready to match diffs. Safe to share between threads."""

    def __init__(self, packs: list[PackSpec], rules: list[CompiledRule], refused: list[PackError], *,
                 strict: bool = False, selection: dict[str, Any] | None = None) -> None:
        self.packs = packs
        self.rules = rules
        self.refused = refused
        # Strict severities (the government template): every finding one level more severe.
        self.strict = strict
        self.selection = selection or {"scope": "all"}
        self._pattern_rules = [r for r in rules if r.regex is not None and not r.spec.queries]
        self._prefilter = _TextFilter.build(["(?m)" + (r.spec.pattern or "") for r in self._pattern_rules])
        by_language: dict[str, list[CompiledRule]] = {}
        for rule in rules:
            for language in rule.spec.queries:
                by_language.setdefault(language, []).append(rule)
        self._structural = {language: _Structural(language, lang_rules)
                            for language, lang_rules in by_language.items()}

    @classmethod
    def compile(cls, packs: Iterable[PackSpec]) -> RuleSet:
        """Compile ``packs``; a pack that does not compile is left out and listed in ``refused``."""
        active: list[PackSpec] = []
        rules: list[CompiledRule] = []
        refused: list[PackError] = []
        for pack in packs:
            try:
                compiled = compile_pack(pack)
            except PackError as exc:
                refused.append(exc)
                continue
            except Exception as exc:  # a pack must never stop the appliance: refuse it and go on
                refused.append(PackError(f"rule pack {pack.id} refused: it could not be compiled ({exc!r})",
                                         pack_id=pack.id))
                continue
            active.append(pack)
            rules.extend(compiled)
        return cls(active, rules, refused)

    def only(self, pack_id: str) -> RuleSet:
        """The subset of this rule set that belongs to one pack."""
        return self.select([pack_id])

    def select(self, pack_ids: list[str], *, strict: bool = False, selection: dict[str, Any] | None = None) -> RuleSet:
        """The packs named (in this rule set's order), optionally with strict severities."""
        wanted = set(pack_ids)
        return RuleSet([p for p in self.packs if p.id in wanted], [r for r in self.rules if r.pack.id in wanted],
                       list(self.refused), strict=strict, selection=selection)

    def for_repository(self, repository: str) -> RuleSet:
        """A fixed rule set serves every repository (the catalog of active packs selects per repository)."""
        return self

    def provenance(self) -> list[dict[str, object]]:
        return [p.provenance() for p in self.packs]

    # --- matching ---------------------------------------------------------------------------------

    def match(self, diff: ParsedDiff) -> list[Finding]:
        findings: list[Finding] = []
        for change in diff.reviewable:
            findings.extend(self.match_file(change))
        return findings

    def match_file(self, change: FileChange) -> list[Finding]:
        added = change.added_lines
        if not added:
            return []
        found: dict[tuple[str, str, int], Finding] = {}
        self._match_patterns(change, added, found)
        if change.language in self._structural:
            self._match_structure(change, frozenset(line.number for line in added), found)
        return list(found.values())

    def _emit(self, rule: CompiledRule, change: FileChange, line: int, text: str, value: str | None,
              found: dict[tuple[str, str, int], Finding]) -> None:
        key = (rule.pack.id, rule.spec.id, line)
        if key in found:
            return
        snippet = text.strip()
        if rule.spec.redact and value:
            snippet = snippet.replace(value, value[:4] + "…(redacted)")
        spec = rule.spec
        severity = _STRICTER.get(spec.severity, spec.severity) if self.strict else spec.severity
        found[key] = Finding(
            source=Source.RULE, rule_id=spec.id, path=change.path, line=line, severity=severity,
            title=spec.title, message=spec.message, cwe=spec.cwe, fix=spec.fix or None,
            snippet=snippet[:_SNIPPET_CHARS], pack_id=rule.pack.id, pack_version=rule.pack.display_version,
            fingerprint=fingerprint(spec.id, change.path, text),
            extra={"controls": [f"{framework}|{control}" for framework, control in spec.controls]})

    def _accept(self, rule: CompiledRule, line_text: str, match: Any) -> str | None:
        """The matched value when ``match`` is a finding, else None."""
        value = match.group(rule.value_group) or match.group(0)
        if rule.validator is not None and not rule.validator(value):
            return None
        if rule.regex_not is not None and rule.regex_not.search(line_text):
            return None
        return value

    def _match_patterns(self, change: FileChange, added: list[Any],
                        found: dict[tuple[str, str, int], Finding]) -> None:
        texts = [line.text for line in added]
        joined = "\n".join(texts)
        present = self._prefilter.search(joined) if self._prefilter is not None else None
        candidates = present if present is not None else range(len(self._pattern_rules))
        if not candidates:
            return
        starts = [0]
        for text in texts[:-1]:
            starts.append(starts[-1] + len(text) + 1)
        for index in sorted(candidates):
            rule = self._pattern_rules[index]
            if rule.regex is None or not rule.applies_to(change):
                continue
            crossed = False
            for match in rule.regex.finditer(joined):
                start, end = match.span()
                if start == end:
                    continue
                if "\n" in joined[start:end]:
                    crossed = True
                    break
                row = bisect.bisect_right(starts, start) - 1
                value = self._accept(rule, texts[row], match)
                if value is not None:
                    self._emit(rule, change, added[row].number, texts[row], value, found)
            if crossed:
                # A pattern reached across a line break (e.g. through \s): match line by line instead.
                for row, text in enumerate(texts):
                    for match in rule.regex.finditer(text):
                        if match.start() == match.end():
                            continue
                        value = self._accept(rule, text, match)
                        if value is not None:
                            self._emit(rule, change, added[row].number, text, value, found)
                            break

    def _match_structure(self, change: FileChange, added: frozenset[int],
                         found: dict[tuple[str, str, int], Finding]) -> None:
        language = change.language or ""
        structural = self._structural[language]
        source = new_side_source(change)
        decoded = source.decode("utf-8", errors="replace")
        chosen = [i for i in structural.candidates(decoded) if structural.rules[i].applies_to(change)]
        if not chosen:
            return
        tree = parser_for(language).parse(source)
        lines = decoded.split("\n")
        for i in chosen:
            rule = structural.rules[i]
            cursor = QueryCursor(structural.queries[i], match_limit=_MATCH_LIMIT)
            for _pattern, captures in cursor.matches(tree.root_node):
                nodes = captures.get("finding")
                if not nodes:
                    continue
                node = nodes[0]
                first, last = node.start_point.row + 1, node.end_point.row + 1
                line = next((n for n in range(first, last + 1) if n in added), None)
                if line is None:
                    continue
                text = lines[line - 1] if line - 1 < len(lines) else ""
                if rule.regex_not is not None and rule.regex_not.search(text):
                    continue
                self._emit(rule, change, line, text, None, found)
