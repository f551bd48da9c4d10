"""Where the appliance finds the files it ships with (rules, models manifest, manual, web assets).

In a source checkout they sit at the repository root; in the frozen binary PyInstaller unpacks them
under ``sys._MEIPASS``. Everything else (data, configuration) is a setting, never derived from here.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["package_root", "resource_root"]


def package_root() -> Path:
    """The directory of the ``appliance`` package itself."""
    return Path(__file__).resolve().parent


def resource_root() -> Path:
    """The directory holding ``rules/``, ``models/`` and ``offline-docs/``."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen)
    return package_root().parent
