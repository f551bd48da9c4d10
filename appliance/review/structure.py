"""tree-sitter grammars (one wheel per language, nothing fetched at run time) and the text they parse.

A diff carries only hunks, not whole files. The new side is rebuilt with every hunk line at its real
line number and blank lines between hunks, so node positions are file line numbers; tree-sitter's
error recovery copes with the gaps. When the source provides the whole new file (a local repository),
that is parsed instead.
"""

from __future__ import annotations

import functools

import tree_sitter_go
import tree_sitter_java
import tree_sitter_javascript
import tree_sitter_python
import tree_sitter_typescript
from tree_sitter import Language, Parser

from appliance.review.models import FileChange

__all__ = ["grammar", "new_side_source", "parser_for"]

_LOADERS = {
    "python": tree_sitter_python.language,
    "java": tree_sitter_java.language,
    "javascript": tree_sitter_javascript.language,
    "typescript": tree_sitter_typescript.language_typescript,
    "tsx": tree_sitter_typescript.language_tsx,
    "go": tree_sitter_go.language,
}


@functools.cache
def grammar(language: str) -> Language:
    """The tree-sitter language for ``language`` (KeyError when the appliance has no grammar for it)."""
    return Language(_LOADERS[language]())


def parser_for(language: str) -> Parser:
    # Parsers are cheap and not safe to share between threads: one per call.
    return Parser(grammar(language))


def new_side_source(change: FileChange) -> bytes:
    """The new side of ``change`` as bytes, with each line at its file line number."""
    if change.new_text is not None:
        return change.new_text.encode("utf-8", errors="replace")
    lines: dict[int, str] = {}
    for hunk in change.hunks:
        for kind, _, new, text in hunk.lines:
            if kind != "-" and new is not None:
                lines[new] = text
    if not lines:
        return b""
    last = max(lines)
    return ("\n".join(lines.get(n, "") for n in range(1, last + 1)) + "\n").encode("utf-8", errors="replace")
