"""Which language a changed file is in, from its name.

Languages with a tree-sitter grammar wheel get structural rules; every language gets pattern rules.
"""

from __future__ import annotations

from pathlib import PurePosixPath

__all__ = ["STRUCTURAL_LANGUAGES", "detect_language", "known_languages"]

# Languages whose grammar wheel the appliance ships (see review/structure.py).
STRUCTURAL_LANGUAGES = frozenset({"python", "java", "javascript", "typescript", "tsx", "go"})

_BY_SUFFIX = {
    ".py": "python", ".pyw": "python", ".pyi": "python",
    ".java": "java",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".rs": "rust",
    ".kt": "kotlin", ".kts": "kotlin",
    ".scala": "scala",
    ".swift": "swift",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell",
    ".ps1": "powershell",
    ".sql": "sql",
    ".yaml": "yaml", ".yml": "yaml",
    ".json": "json",
    ".toml": "toml",
    ".ini": "ini", ".cfg": "ini", ".conf": "ini",
    ".properties": "properties",
    ".env": "dotenv",
    ".xml": "xml",
    ".html": "html", ".htm": "html",
    ".tf": "terraform", ".hcl": "terraform",
    ".md": "markdown",
    ".txt": "text", ".log": "text", ".csv": "text",
    ".pem": "pem", ".key": "pem",
}

_BY_NAME = {
    "dockerfile": "dockerfile",
    "makefile": "make",
    ".env": "dotenv",
    "jenkinsfile": "groovy",
}


def detect_language(path: str) -> str | None:
    """The language id of ``path``, or None when its kind is unknown (pattern rules for "any" still run)."""
    pure = PurePosixPath(path)
    name = pure.name.lower()
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name.startswith(".env."):
        return "dotenv"
    if name.startswith("dockerfile"):
        return "dockerfile"
    return _BY_SUFFIX.get(pure.suffix.lower())


def known_languages() -> frozenset[str]:
    return frozenset(_BY_SUFFIX.values()) | frozenset(_BY_NAME.values())
