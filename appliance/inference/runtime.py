"""The process's one model: resolved from the registry, verified, loaded once and shared.

A missing, corrupt or unloadable model never stops the appliance: the runtime records why it is
unavailable, readiness reports that reason, and reviews run rules-only saying "model unavailable".
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from appliance.audit import Actor, AuditTag, record_event
from appliance.config import Settings
from appliance.errors import ModelError
from appliance.inference.llama_backend import LlamaBackend
from appliance.inference.registry import ModelEntry, find_model, verify_model_file
from appliance.store import Database

__all__ = ["ModelRuntime"]

log = logging.getLogger(__name__)


class ModelRuntime:
    """Holds the active model of this process and its status: disabled, loading, ready or unavailable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.status = "not loaded"
        self.reason = ""
        self.entry: ModelEntry | None = None
        self.backend: LlamaBackend | None = None
        self.load_seconds: float | None = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.status == "ready" and self.backend is not None

    def load(self, db: Database) -> None:
        """Resolve, verify (sha256) and load the configured model; never raises for a bad model."""
        with self._lock:
            if self.backend is not None:
                return
            if not self.settings.model_enabled:
                self.status, self.reason = "disabled", "the model is switched off (model_enabled = false)"
                return
            self.status, self.reason = "loading", ""
            started = time.perf_counter()
            entry: ModelEntry | None = None
            try:
                entry = find_model(db, self.settings, self.settings.model)
                verify_model_file(entry)
                threads = self.settings.model_threads or len(os.sched_getaffinity(0))
                context = min(self.settings.model_context, entry.context or self.settings.model_context)
                self.backend = LlamaBackend(entry.file, n_ctx=context, n_threads=threads)
            except ModelError as exc:
                self.status, self.reason = "unavailable", exc.message
            except Exception as exc:
                where = entry.file if entry else self.settings.model
                self.status, self.reason = "unavailable", f"llama.cpp could not load {where}: {exc}"
            else:
                self.entry = entry
                self.status = "ready"
                self.load_seconds = time.perf_counter() - started
            self.entry = entry
        if self.status == "unavailable":
            log.warning("model unavailable: %s", self.reason)
        with db.write() as tx:
            if self.status == "ready" and entry is not None:
                record_event(tx, AuditTag.MODELS_MODEL_LOADED, Actor.system(), target=f"model:{entry.id}",
                             details={"sha256": entry.sha256, "file": str(entry.file),
                                      "seconds": round(self.load_seconds or 0, 3)})
            else:
                record_event(tx, AuditTag.MODELS_MODEL_UNAVAILABLE, Actor.system(),
                             target=f"model:{self.settings.model}", outcome="failure",
                             details={"reason": self.reason})

    def describe(self) -> dict[str, Any]:
        """Status and identity of the model, for readiness and for a review's provenance."""
        info: dict[str, Any] = {"status": self.status, "configured": self.settings.model}
        if self.reason:
            info["reason"] = self.reason
        if self.entry is not None and self.available:
            info.update({"id": self.entry.id, "name": self.entry.name, "sha256": self.entry.sha256,
                         "plumbing": self.entry.plumbing, "license": self.entry.license})
            if self.backend is not None:
                info["context"] = self.backend.n_ctx
        return info

    def close(self) -> None:
        """Release the model. Waits for a generation in progress; later calls raise ModelClosedError."""
        with self._lock:
            backend, self.backend = self.backend, None
            if self.status == "ready":
                self.status = "closed"
        if backend is not None:
            backend.close()
