"""Where diffs come from besides an upload: a local git repository, or a whole tree (a scan)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from appliance.errors import ValidationError
from appliance.review.languages import detect_language
from appliance.review.models import FileChange, Hunk

__all__ = ["file_as_added", "git_diff", "tree_as_diff"]

# Directories a scan never descends into.
_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".tox",
                        ".mypy_cache", ".pytest_cache", "dist", "build", "target", "vendor"})
_MAX_SCAN_FILE = 1 << 20


def file_as_added(path: str, text: str) -> FileChange:
    """A whole file as if every line were added (rule examples, scans)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    hunk = Hunk(new_start=1, new_length=len(lines), header="",
                lines=tuple(("+", None, n, line.rstrip("\r")) for n, line in enumerate(lines, 1)))
    return FileChange(path=path, old_path=None, change="added", language=detect_language(path),
                      hunks=[hunk] if lines else [], new_text=text)


def _git(repo: Path, *args: str) -> bytes:
    try:
        # git from PATH, arguments as a list (no shell); refs were checked not to start with '-'.
        proc = subprocess.run(["git", "-C", str(repo), *args],  # noqa: S603, S607
                              capture_output=True, check=False, timeout=300)
    except FileNotFoundError as exc:
        raise ValidationError("git is not installed on this host; export the diff with `git diff` elsewhere "
                              "and pass it with --diff") from exc
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise ValidationError(f"git {' '.join(args[:2])} failed in {repo}: {message[-1] if message else 'no output'}")
    return proc.stdout


def git_diff(repo: Path, base: str, head: str, *, context: int = 3) -> bytes:
    """The changes on ``head`` since it branched from ``base`` (``git diff base...head``), as a merge request shows."""
    try:
        _git(repo, "rev-parse", "--git-dir")
    except ValidationError as exc:
        raise ValidationError(f"{repo} is not a git repository") from exc
    for ref in (base, head):
        if ref.startswith("-"):
            raise ValidationError(f"{ref!r} is not a revision")
        try:
            _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except ValidationError as exc:
            raise ValidationError(f"{ref!r} is not a commit, branch or tag in {repo}") from exc
    return _git(repo, "diff", "--no-color", "--no-ext-diff", "--find-renames", f"--unified={context}",
                f"{base}...{head}", "--")


def _tree_files(root: Path) -> list[Path]:
    if (root / ".git").exists():
        try:
            listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
            return sorted(root / name for name in listed.decode("utf-8", errors="replace").split("\0") if name)
        except ValidationError:
            pass
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        found.extend(Path(dirpath) / name for name in sorted(filenames))
    return found


def tree_as_diff(root: Path) -> tuple[bytes, list[str]]:
    """A unified diff that adds every text file under ``root`` (the diff from the empty tree).

    Returns the diff and the files left out (binary, too large, unreadable), with the reason.
    """
    if not root.is_dir():
        raise ValidationError(f"{root} is not a directory")
    parts: list[bytes] = []
    skipped: list[str] = []
    for path in _tree_files(root):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink() or not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            skipped.append(f"{rel}: unreadable ({exc.strerror})")
            continue
        if len(data) > _MAX_SCAN_FILE:
            skipped.append(f"{rel}: larger than {_MAX_SCAN_FILE >> 20} MB")
            continue
        if b"\0" in data[:8192]:
            parts.append(f"diff --git a/{rel} b/{rel}\nnew file mode 100644\n"
                         f"Binary files /dev/null and b/{rel} differ\n".encode())
            continue
        if not data:
            continue
        lines = data.split(b"\n")
        missing_newline = lines[-1] != b""
        if not missing_newline:
            lines.pop()
        body = b"".join(b"+" + line + b"\n" for line in lines)
        header = (f"diff --git a/{rel} b/{rel}\nnew file mode 100644\n--- /dev/null\n+++ b/{rel}\n"
                  f"@@ -0,0 +1,{len(lines)} @@\n")
        parts.append(header.encode() + body + (b"\\ No newline at end of file\n" if missing_newline else b""))
    return b"".join(parts), skipped
