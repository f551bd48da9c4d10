"""Checks a pattern rule applies to the value it matched, to cut false positives.

``luhn``: a payment card number (ISO/IEC 7812 check digit). ``ssn``: a US Social Security number in an
issuable range (SSA: no area 000, 666 or 900-999, no group 00, no serial 0000). ``entropy``: a secret
that looks random rather than a placeholder.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

__all__ = ["VALIDATOR_FUNCTIONS", "entropy_bits_per_char", "luhn_valid", "ssn_valid"]


def luhn_valid(value: str) -> bool:
    digits = [int(c) for c in value if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def ssn_valid(value: str) -> bool:
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) != 9:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in {"000", "666"} or area.startswith("9") or group == "00" or serial == "0000":
        return False
    # Numbers the SSA reserved for advertising and documentation are examples, not data.
    return digits not in {"078051120", "219099999", "123456789"}


def entropy_bits_per_char(value: str) -> float:
    if not value:
        return 0.0
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


_PLACEHOLDER_WORDS = ("example", "changeme", "placeholder", "your", "xxxx", "dummy", "redacted", "sample")


def _secret_like(value: str) -> bool:
    lowered = value.lower()
    if len(value) < 12 or any(word in lowered for word in _PLACEHOLDER_WORDS):
        return False
    return entropy_bits_per_char(value) >= 3.0


VALIDATOR_FUNCTIONS: dict[str, Callable[[str], bool]] = {
    "luhn": luhn_valid,
    "ssn": ssn_valid,
    "entropy": _secret_like,
}
