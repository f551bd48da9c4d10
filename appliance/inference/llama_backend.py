"""The in-process llama.cpp backend: the only module that imports llama_cpp.

A ``Llama`` object is not safe to use from two threads at once; :class:`LlamaBackend` serializes calls
with a lock, so one loaded model is shared by every worker thread of the process.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_cpp import Llama

__all__ = ["Completion", "LlamaBackend", "ModelClosedError"]


class ModelClosedError(RuntimeError):
    """The model was closed (the process is stopping): the caller's work must be handed back, not failed."""


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str


class LlamaBackend:
    """One GGUF model loaded with llama.cpp."""

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int, seed: int = 0) -> None:
        self.path = path
        self.n_ctx = n_ctx
        self._lock = threading.Lock()
        # llama.cpp prints its load log to stderr from C; keep the service log readable.
        with contextlib.redirect_stderr(io.StringIO()):
            self._llama: Llama | None = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads,
                                n_threads_batch=n_threads, seed=seed, verbose=False)

    def _model(self) -> Llama:
        if self._llama is None:
            raise ModelClosedError("the model was closed while the review ran (the service is stopping)")
        return self._llama

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._model().metadata)

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return len(self._model().tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def chat_json(self, system: str, user: str, schema: dict[str, Any], *, max_tokens: int) -> Completion:
        """One chat completion at temperature 0 whose output is constrained to ``schema``."""
        with self._lock:
            started = time.perf_counter()
            result: Any = self._model().create_chat_completion(
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                response_format={"type": "json_object", "schema": schema},
                temperature=0.0, top_k=1, repeat_penalty=1.1, max_tokens=max_tokens, seed=0)
            elapsed = time.perf_counter() - started
        choice = result["choices"][0]
        usage = result.get("usage", {})
        return Completion(text=choice["message"]["content"] or "", prompt_tokens=usage.get("prompt_tokens", 0),
                          completion_tokens=usage.get("completion_tokens", 0), seconds=elapsed,
                          finish_reason=choice.get("finish_reason") or "")

    def complete_raw(self, prompt: str, *, max_tokens: int) -> Completion:
        """A plain completion, for measuring the engine against the bare library on the same prompt."""
        with self._lock:
            started = time.perf_counter()
            result: Any = self._model().create_completion(prompt, temperature=0.0, top_k=1, max_tokens=max_tokens,
                                                        seed=0)
            elapsed = time.perf_counter() - started
        usage = result.get("usage", {})
        return Completion(text=result["choices"][0]["text"], prompt_tokens=usage.get("prompt_tokens", 0),
                          completion_tokens=usage.get("completion_tokens", 0), seconds=elapsed,
                          finish_reason=result["choices"][0].get("finish_reason") or "")

    def close(self) -> None:
        # Close explicitly: left to the finalizer, llama.cpp's teardown can raise at interpreter shutdown.
        with self._lock:
            llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()
