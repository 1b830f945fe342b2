"""Software versions as comparable tuples: behaviour that changed between releases is a rule with its
version range (``if v >= (0, 20, 0)``), written next to the formula it changes."""

from __future__ import annotations

import re

from .errors import InputError

_VERSION = re.compile(r"v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4}))?")


def version_tuple(text: str, field: str = "workload.version", what: str = "a version",
                  example: str = "0.11.0") -> tuple[int, int, int]:
    """(major, minor, patch) of a version string such as 0.10.2, v0.5.3 or 4.46.3.dev0."""
    m = _VERSION.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise InputError(field, f"{what} is written like {example}, got {str(text)[:40]!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
