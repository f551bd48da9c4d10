"""A gate on refusal events that anyone can provoke without credentials (unknown API tokens, forged
forms, bad setup tokens, throttled sign-ins): each source gets a burst per window, the rest is counted
and reported on the next event that passes. The audit trail stays complete in substance (every refusal
is counted) without letting an anonymous client fill the disk or starve the single writer."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

__all__ = ["RepeatGate"]


class RepeatGate:
    def __init__(self, burst: int = 10, window_seconds: float = 60.0, max_keys: int = 10_000) -> None:
        self.burst = burst
        self.window = window_seconds
        self.max_keys = max_keys
        self._state: OrderedDict[str, tuple[float, int, int]] = OrderedDict()  # key -> (start, passed, held)
        self._lock = threading.Lock()

    def admit(self, key: str) -> int | None:
        """None when this event is held back; otherwise how many were held back since the last one."""
        now = time.monotonic()
        with self._lock:
            start, passed, held = self._state.pop(key, (now, 0, 0))
            if now - start >= self.window:
                start, passed = now, 0
            if passed >= self.burst:
                self._state[key] = (start, passed, held + 1)
                return None
            self._state[key] = (start, passed + 1, 0)
            while len(self._state) > self.max_keys:
                self._state.popitem(last=False)
            return held

