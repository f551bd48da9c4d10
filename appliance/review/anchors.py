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

A capture on an identifier token (``(identifier) @v``, ``[(property_identifier) (field_identifier)] @v``)
gives a tighter anchor. Lexers are maximal-munch: an identifier token never has ``[A-Za-z0-9_]`` right
after it, nor before it, unless the token before is a number or an f-string conversion (``1iv`` or
``{x!riv}`` in broken code, lexed as ``1`` or ``!r``, then ``iv``). So ``(#eq? @v "iv")`` need only
be searched where ``iv`` stands as a word, and not inside ``private``; and a ``#match?`` anchored at its
start (every alternative opens with ``^``) or its end gets the same boundary on that side. Every other
capture keeps the plain substring anchor.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

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
# Leaf tokens of the grammars whose text is one identifier as the lexer sees it.
_IDENTIFIER_TOKENS = frozenset({
    "identifier", "property_identifier", "field_identifier", "type_identifier", "package_identifier",
    "shorthand_property_identifier", "shorthand_property_identifier_pattern", "statement_identifier",
})
# What may stand before and after an identifier token: not a character every grammar takes into an
# identifier; or, before it, a token that ends in such characters: a number (``1iv``) or a Python
# f-string conversion (``{x!riv}``), both only in code that does not compile.
_BEFORE_WORD = r"(?:^|[^A-Za-z0-9_]|[0-9][A-Za-z0-9_]*|![A-Za-z])"
_AFTER_WORD = r"(?:[^A-Za-z0-9_]|$)"
_CAPTURE = re.compile(r"@([\w.-]+)")
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


def _syntax(regex: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """Index, character and group depth of each character of ``regex`` from ``start`` that is neither
    escaped nor inside a character class; a group's own parentheses are at the depth around it."""
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
        else:
            depth -= c == ")"
            yield i, c, depth
            depth += c == "("
        i += 1


def _group_end(regex: str, start: int) -> int | None:
    """The index just past the group opened at ``start``; None when it is not closed."""
    return next((i + 1 for i, c, depth in _syntax(regex, start) if c == ")" and depth == 0), None)


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


_SEXP_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[()\[\]]|@[\w.-]+|[^\s()\[\]"@]+')


def _token_captures(pattern: str) -> set[str]:
    """The captures of ``pattern`` that only ever capture an identifier token."""
    verdicts: dict[str, bool] = {}
    # The open groups, outermost first: each is its opening bracket and its elements so far, an element
    # being ("word", text), ("string", text) or ("group", whether it matches identifier tokens only).
    stack: list[tuple[str, list[tuple[str, str | bool]]]] = [("(", [])]
    for token in _SEXP_TOKEN.findall(pattern):
        opener, elements = stack[-1]
        if token in ("(", "["):
            stack.append((token, []))
        elif token in (")", "]") and len(stack) > 1:
            stack.pop()
            if opener == "(":
                is_token = len(elements) == 1 and elements[0][0] == "word" and elements[0][1] in _IDENTIFIER_TOKENS
            else:  # an alternation: every alternative (a wildcard ``_`` too) must be an identifier token
                alternatives = [e for e in elements if not (e[0] == "word" and str(e[1]).endswith(":"))]
                is_token = bool(alternatives) and all(e == ("group", True) for e in alternatives)
            stack[-1][1].append(("group", is_token))
        elif token.startswith("@"):
            predicate = bool(elements) and elements[0][0] == "word" and str(elements[0][1]).startswith("#")
            if not predicate:
                previous = elements[-1] if elements else ("word", "")
                verdicts[token[1:]] = verdicts.get(token[1:], True) and previous == ("group", True)
        elif token.startswith('"'):
            elements.append(("string", token))
        elif token not in ("*", "+", "?", "."):
            elements.append(("word", token))
    return {name for name, is_token in verdicts.items() if is_token}


def _alternatives(regex: str) -> list[str]:
    """The top-level alternatives of ``regex``."""
    bars = [i for i, c, depth in _syntax(regex) if c == "|" and depth == 0]
    return [regex[i + 1:j] for i, j in zip([-1, *bars], [*bars, len(regex)], strict=True)]


def _anchored_sides(regex: str) -> tuple[bool, bool]:
    """Whether every match of ``regex`` starts at the start of the text, and whether it ends at the end."""
    flags = re.match(r"(?:\(\?[a-zA-Z]+\))*", regex)
    body = regex[flags.end() if flags else 0:]
    start = end = True
    for alternative in _alternatives(body):
        escapes = len(alternative[:-1]) - len(alternative[:-1].rstrip("\\"))  # backslashes before the last
        start = start and alternative.startswith(("^", "\\A"))
        end = end and ((alternative.endswith("$") and escapes % 2 == 0)
                       or (alternative.endswith("Z") and escapes % 2 == 1))
    return start, end


def _bounded(anchor: str, start: bool, end: bool) -> str:
    return (_BEFORE_WORD if start else "") + "(?:" + anchor + ")" + (_AFTER_WORD if end else "")


def pattern_anchors(pattern: str, quantifiers: Mapping[str, str]) -> list[str]:
    """RE2 regexes that must all be found in a file for ``pattern`` (one pattern of a query) to match there.

    ``quantifiers`` maps each capture of the pattern to its quantifier ("" one, "+", "?", "*"); only
    predicates on captures every match has count. An empty list: nothing is known, the pattern always runs.
    """
    anchors = []
    pattern = _strip_comments(pattern)
    tokens = _token_captures(pattern)
    for match in _PREDICATE.finditer(pattern):
        kind, capture = match.group(1), match.group(2)
        values = [_unescape(s) for s in _STRING.findall(match.group(3))]
        if quantifiers.get(capture) not in ("", "+"):
            continue
        if kind == "match?":
            widened = widen_regex(values[0]) if len(values) == 1 else None
            if widened and capture in tokens:
                widened = _bounded(widened, *_anchored_sides(values[0]))
            if widened:
                anchors.append(widened)
        elif kind == "eq?" and len(values) != 1:
            continue
        elif values:
            literal = "|".join(re2.escape(v) for v in values)
            anchors.append(_bounded(literal, True, True) if capture in tokens else literal)
    return anchors
