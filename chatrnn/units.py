"""Parsing of human-friendly quantities on the command line (durations such as ``10m``)."""

from __future__ import annotations

import re

from chatrnn.errors import ChatrnnError

_UNIT_SECONDS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(sec|min|s|m|h|d)?", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``90``, ``110s``, ``10m``, ``1h30m``, ``1.5h``.

    A bare number means seconds, as in ``timeout``; mixed units add up so ``1h30m`` reads naturally.
    """
    s = str(text).strip().lower().replace(" ", "")
    if not s:
        raise ChatrnnError("empty duration; use e.g. 90s, 10m or 1h30m")
    total, pos = 0.0, 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m or m.end() == pos:
            raise ChatrnnError(f"cannot read duration {text!r}; use e.g. 90s, 10m or 1h30m")
        total += float(m.group(1)) * _UNIT_SECONDS[(m.group(2) or "s").lower()]
        pos = m.end()
    if total <= 0:
        raise ChatrnnError(f"duration {text!r} must be positive")
    return total


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration` for display: ``1h02m03s``, ``4m05s``, ``12.3s``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
