"""The refusal gate: a burst per source, then counted, then reported."""

from __future__ import annotations

from appliance.audit import RepeatGate


def test_a_source_gets_a_burst_then_is_counted_and_reported() -> None:
    gate = RepeatGate(burst=3, window_seconds=0.2)
    assert [gate.admit("peer-a") for _ in range(5)] == [0, 0, 0, None, None]
    assert gate.admit("peer-b") == 0  # other sources are not affected
    import time

    time.sleep(0.25)
    assert gate.admit("peer-a") == 2  # the next event that passes reports what was held back


def test_memory_stays_bounded() -> None:
    gate = RepeatGate(burst=1, max_keys=100)
    for n in range(1000):
        gate.admit(f"peer-{n}")
    assert len(gate._state) == 100
