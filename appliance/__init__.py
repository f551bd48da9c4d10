"""Cortex Code Appliance: offline AI code review with signed rule packs and a tamper-evident audit log."""

__version__ = "0.1.0"
__all__ = ["__version__"]
