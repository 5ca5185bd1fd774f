"""Format 3 -> 4: a bucket's object lock names its mode.

Reads the shape of 2de7f20, where a bucket had ``object_lock_days: N``; dab6d38 made it
``object_lock: {mode, days}`` (and added the optional role, classification and lifecycle, whose
defaults are what a format-3 bucket meant).
"""

from __future__ import annotations

from typing import Any

from .common import MigrationError, get, mappings

SOURCE = 3
INTRODUCED = "2de7f20c2de5081d98830d0676677ff54ef163f8"  # 2de7f20: the commit whose shape this step reads
WHAT = "object lock with a mode"
HOW = "write each bucket's object_lock_days: N as object_lock: {days: N} (mode COMPLIANCE, the default)"


def carries(site: dict[str, Any]) -> bool:
    return any("object_lock_days" in b for b in mappings(get(site, "storage", "object_store", "buckets")))


def upgrade(site: dict[str, Any]) -> list[str]:
    changed = []
    for bucket in mappings(get(site, "storage", "object_store", "buckets")):
        if "object_lock_days" not in bucket:
            continue
        name = bucket.get("name")
        if "object_lock" in bucket:
            raise MigrationError(f"bucket {name}: both object_lock_days and object_lock")
        days = bucket["object_lock_days"]
        # The lock takes the old key's place, so messages about it name the line the file wrote it on.
        items = [(k, v) if k != "object_lock_days" else ("object_lock", {"days": days}) for k, v in bucket.items()]
        bucket.clear()
        bucket.update(items if days is not None else [(k, v) for k, v in items if k != "object_lock"])
        if days is not None:
            changed.append(f"{name} ({days} d)")
    if not changed:
        return []
    return [
        f"object_lock_days of {', '.join(changed)} read as object_lock in mode COMPLIANCE, today's default: "
        "the format before dab6d38 named no mode"
    ]
