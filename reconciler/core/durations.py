"""Durations as written in manifests ("30s", "500ms", "2m", "1h30m") and their value in seconds."""

from __future__ import annotations

import re

DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h))+$"
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration string; raises ValueError for anything that is not one."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 500ms, 30s, 2m, 1h)")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
