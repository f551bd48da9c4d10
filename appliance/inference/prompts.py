"""The review prompt and the JSON schema that constrains the model's answer.

The system prompt is identical for every chunk of every review, so llama.cpp reuses its evaluated
prefix (the KV cache of the common prompt start) from one chunk to the next. The schema is compiled to
a llama.cpp grammar: the answer always parses, names only files and line numbers from the chunk, and
its length is bounded, so a small model cannot ramble past the token budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_FINDINGS_PER_CHUNK", "PROMPT_VERSION", "SYSTEM_PROMPT", "ChunkLine", "PromptChunk",
           "findings_schema", "render_chunk"]

PROMPT_VERSION = "cortex-review/1"
MAX_FINDINGS_PER_CHUNK = 3
MESSAGE_MAX_CHARS = 200

SYSTEM_PROMPT = (
    "You are a meticulous security and correctness reviewer of code changes. You are shown parts of a "
    "unified diff. Lines starting with '+' were added, '-' removed, ' ' are unchanged context; each line "
    "of the new file carries its line number. Report only real defects introduced by ADDED lines: "
    "injection, hard-coded secrets, unsafe deserialization, broken crypto, missing authorization, "
    "resource leaks, crashes, wrong logic. For each, give the file, the added line's number, a severity "
    "(high, medium or low) and one precise sentence saying what is wrong and why. Do not report style, "
    "naming or formatting. If nothing is wrong, answer with an empty findings list. Answer in JSON only."
)


@dataclass(frozen=True)
class ChunkLine:
    kind: str  # "+", "-" or " "
    new_line: int | None
    text: str


@dataclass(frozen=True)
class PromptChunk:
    """Consecutive hunks (or part of one) of one file, sized to fit the context window."""

    path: str
    language: str | None
    lines: tuple[ChunkLine, ...]

    @property
    def added_numbers(self) -> list[int]:
        return [ln.new_line for ln in self.lines if ln.kind == "+" and ln.new_line is not None]


def render_chunk(chunk: PromptChunk) -> str:
    width = max((len(str(ln.new_line)) for ln in chunk.lines if ln.new_line is not None), default=1)
    out = [f"File: {chunk.path}" + (f" ({chunk.language})" if chunk.language else "")]
    for ln in chunk.lines:
        number = str(ln.new_line).rjust(width) if ln.new_line is not None else " " * width
        out.append(f"{ln.kind}{number} | {ln.text}")
    return "\n".join(out)


def findings_schema(paths: list[str], lines: list[int]) -> dict[str, Any]:
    """JSON schema for one chunk's answer; file and line are limited to what the chunk added."""
    return {
        "type": "object",
        "properties": {
            "findings": {
                "type": "array",
                "maxItems": MAX_FINDINGS_PER_CHUNK,
                "items": {
                    "type": "object",
                    "properties": {
                        "file": {"enum": paths},
                        "line": {"enum": lines},
                        "severity": {"enum": ["high", "medium", "low"]},
                        "message": {"type": "string", "minLength": 12, "maxLength": MESSAGE_MAX_CHARS},
                    },
                    "required": ["file", "line", "severity", "message"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["findings"],
        "additionalProperties": False,
    }
