"""What the steps share: the one error they raise, and safe walks over a parsed (untrusted) site mapping."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class MigrationError(Exception):
    """An old stack that no step can carry to today's model; the message says why, in one line."""


def mappings(value: Any) -> Iterator[dict[str, Any]]:
    """The mappings of a list (a malformed list yields nothing: today's model reports it)."""
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def get(mapping: Any, *keys: str) -> Any:
    """mapping[k1][k2]..., or None where any level is missing or not a mapping."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping
