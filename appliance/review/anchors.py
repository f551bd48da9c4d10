"""Text anchors for tree-sitter patterns: what a file's text must contain for a pattern to match at all.

Most structural rules name what they look for in predicates: ``(#eq? @fn "eval")``,
``(#any-of? @m "info" "warn")``, ``(#match? @v "(?i)^(ssn|dob)$")``. A predicate on a capture that every
match has (quantifier one or one-or-more) holds only if the captured node's text passes it, and that text
is part of the file, so the file's text must contain the literal or a match of the regex. The engine
searches a file once with all anchors of a language (one ``re2.Set``) and runs only the queries whose
anchors are all present: a few of a hundred rules per file instead of all of them.

The anchors must never skip a file a query would match (that would lose findings), so the translation is
conservative: each regex becomes a RE2 regex that matches *at least* wherever Python's ``re.search`` (which
tree-sitter uses for ``#match?``) matches inside a node's text. Zero-width assertions (``^ $ \\b \\B \\A
\\Z`` and look-arounds) are dropped, since a node's boundaries are not the file's; ``\\w``, ``\\d`` and
``\\s`` are widened to their Unicode meaning in Python. A regex RE2 cannot express (back-references,
atomic groups, verbose mode) gives no anchor, and a pattern with no anchor always runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import re2

__all__ = ["pattern_anchors", "widen_regex"]

_PREDICATE = re.compile(r'\(#(match\?|eq\?|any-of\?)\s+@([\w.-]+)((?:\s+"(?:[^"\\]|\\.)*")+)\s*\)')
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_QUERY_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}

# Python's Unicode classes (str patterns), spelled for RE2, which is ASCII-only for \w \d \s.
_WORD = r"\p{L}\p{N}_"
_DIGIT = r"\p{Nd}"
_SPACE = r"\s\p{Z}\x{1c}-\x{1f}\x{85}"
_ASSERTIONS = set("bBAZz")
_FLAGS_OK = set("imsu")


def _unescape(text: str) -> str:
    """A tree-sitter query string literal's value."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(_QUERY_ESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _strip_comments(pattern: str) -> str:
    """The pattern without ``;`` comments (which may quote predicates that are not there)."""
    out, i, in_string = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < len(pattern):
                out.append(pattern[i + 1])
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            out.append(c)
        elif c == ";":
            while i < len(pattern) and pattern[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _group_end(regex: str, start: int) -> int | None:
    """The index just past the group opened at ``start``; None when it is not closed."""
    depth, i, in_class = 0, start, False
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if regex.startswith(("[]", "[^]"), i):
                i += 2 if regex[i + 1] == "]" else 3
                continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def widen_regex(regex: str) -> str | None:
    """A RE2 regex that finds a match in any text where Python's ``re.search(regex)`` finds one inside a
    substring of it; None when that cannot be written for RE2."""
    out: list[str] = []
    i, n = 0, len(regex)
    in_class = negated = False
    while i < n:
        c = regex[i]
        if c == "\\":
            if i + 1 >= n:
                return None
            e = regex[i + 1]
            if in_class:
                if e in "WDS" and negated:
                    return None  # RE2's ASCII \W is wider than Python's, so its complement is narrower
                out.append({"w": _WORD, "d": _DIGIT, "s": _SPACE}.get(e, regex[i:i + 2]))
            elif e in _ASSERTIONS:
                pass
            elif e in "wds":
                out.append("[" + {"w": _WORD, "d": _DIGIT, "s": _SPACE}[e] + "]")
            elif e.isdigit() and e != "0":
                return None  # a back-reference
            else:
                out.append(regex[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class, i = True, i + 1
            out.append("[")
            negated = i < n and regex[i] == "^"
            if negated:
                out.append("^")
                i += 1
            if i < n and regex[i] == "]":
                out.append("]")
                i += 1
            continue
        if c in "^$":
            i += 1
            continue
        if c == "{" and regex.startswith("{,", i):
            return None  # Python's {,n} is RE2's literal text
        if regex.startswith(("(?=", "(?!", "(?<=", "(?<!"), i):
            # A look-around is an assertion like ^ or \b: dropping it only widens the match.
            end = _group_end(regex, i)
            if end is None:
                return None
            i = end
            continue
        if regex.startswith("(?", i):
            flags = re.match(r"\(\?([a-zA-Z]*)(?:-[a-zA-Z]*)?[:)]", regex[i:])
            named = regex.startswith("(?P<", i)
            if not named and (flags is None or set(flags.group(1)) - _FLAGS_OK):
                return None  # atomic groups, comments, verbose or ASCII mode
        out.append(c)
        i += 1
    widened = "".join(out)
    try:
        re2.compile(widened)
    except re2.error:
        return None
    return widened


def pattern_anchors(pattern: str, quantifiers: Mapping[str, str]) -> list[str]:
    """RE2 regexes that must all be found in a file for ``pattern`` (one pattern of a query) to match there.

    ``quantifiers`` maps each capture of the pattern to its quantifier ("" one, "+", "?", "*"); only
    predicates on captures every match has count. An empty list: nothing is known, the pattern always runs.
    """
    anchors = []
    for match in _PREDICATE.finditer(_strip_comments(pattern)):
        kind, capture = match.group(1), match.group(2)
        values = [_unescape(s) for s in _STRING.findall(match.group(3))]
        if quantifiers.get(capture) not in ("", "+"):
            continue
        if kind == "match?":
            widened = widen_regex(values[0]) if len(values) == 1 else None
            if widened:
                anchors.append(widened)
        elif kind == "eq?" and len(values) != 1:
            continue
        elif values:
            anchors.append("|".join(re2.escape(v) for v in values))
    return anchors
