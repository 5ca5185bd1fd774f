"""Semantic diffs of site declarations, and of the offline plans they produce.

Sites are compared as their validated models (defaults filled in, addresses normalised), so a
re-ordered list or a reformatted CIDR is not a change. Named lists (pools, tenants, rails,
buckets, storage classes) are matched by name, not by position. Secrets are compared by
ciphertext and reported as changed, never with a value.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import history
from .migrations import CURRENT
from .plan import Plan
from .stackfile import Stack, stack_path

# Lists whose items have a name: matched by it. Nodes are matched by position, which is their
# index and so their hostname.
KEYED = {
    "pools": "name",
    "tenants": "name",
    "rails": "name",
    "buckets": "name",
    "classes": "name",
    "scalable_units": "name",
}

# What must differ between two sites; hidden by --ignore-expected.
EXPECTED_DIFFERENCES = (
    "code",
    "country",
    "name",
    "jurisdiction.*",
    "location.*",
    "kubernetes.context",
    "state_backend.*",
    "network.domain",
    "network.dns",
    "network.ntp",
    "network.*.cidr",
    "network.*.gateway",
    "network.*.vlan",
    "network.pods",
    "network.services",
    "network.fabric.rails[*].cidr",
    "network.fabric.rails[*].interface",
    "pools[*].hostname",
    "pools[*].ip_offset",
    "pools[*].nodes[*]",
    "pools[*].nodes[*].*",
    "mirrors.*.url",
    "mirrors.*.country",
    "mirrors.containers.host",
    "storage.object_store.url",
    "storage.object_store.country",
    "storage.object_store.region",
    "storage.object_store.buckets[*].replication.*",
    "storage.classes[*].parameters.*",
    "tenants[*].display_name",
)

SECRET = "[secret]"  # noqa: S105 - the mask shown for a changed secret


@dataclass(frozen=True)
class Change:
    path: str
    kind: str  # "added", "removed", "changed"
    old: Any = None
    new: Any = None

    def line(self) -> str:
        mark = {"added": "+", "removed": "-", "changed": "~"}[self.kind]
        if self.kind == "changed":
            return f"  {mark} {self.path}: {_show(self.old)} -> {_show(self.new)}"
        value = self.new if self.kind == "added" else self.old
        return f"  {mark} {self.path}" + ("" if value is None else f": {_show(value)}")

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "old": self.old, "new": self.new}


# Text output shortens a list or mapping past this many characters (ending it with "..."); --json never does.
TEXT_WIDTH = 160


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        return text if len(text) <= TEXT_WIDTH else text[: TEXT_WIDTH - 3] + "..."
    return str(value)


def _pairs(
    old: dict[Any, Any], new: dict[Any, Any], label: Callable[[Any], str], codes: tuple[str, str] | None
) -> list[Change]:
    """Items present on one side only are added or removed; items on both sides are diffed further."""
    out: list[Change] = []
    for key in sorted(set(old) | set(new), key=lambda k: (0, k, "") if isinstance(k, int) else (1, 0, str(k))):
        sub = label(key)
        if key not in new:
            out.append(Change(sub, "removed", old=old[key]))
        elif key not in old:
            out.append(Change(sub, "added", new=new[key]))
        else:
            out.extend(diff_values(old[key], new[key], sub, codes))
    return out


def diff_values(old: Any, new: Any, path: str = "", codes: tuple[str, str] | None = None) -> list[Change]:
    """Changes from ``old`` to ``new``. With ``codes`` (site A's and B's), named items whose names differ only
    by the site code (za-checkpoints, ng-checkpoints) are the same item, shown under both real names."""
    if isinstance(old, dict) and isinstance(new, dict):
        return _pairs(old, new, lambda k: f"{path}.{k}" if path else str(k), codes)
    if isinstance(old, list) and isinstance(new, list):
        key = KEYED.get(path.rsplit(".", 1)[-1])
        if key and all(isinstance(x, dict) and key in x for x in old + new):
            a_code, b_code = codes or ("", "")
            by_a = {_generic(x[key], a_code): x for x in old}
            by_b = {_generic(x[key], b_code): x for x in new}

            def label(k: str) -> str:
                a = by_a[k][key] if k in by_a else None
                b = by_b[k][key] if k in by_b else None
                name = b if a is None else a if b is None or a == b else f"{a} -> {b}"
                return f"{path}[{name}]"

            return _pairs(by_a, by_b, label, codes)
        if all(isinstance(x, dict) for x in old + new) and old and new:
            # Positional: a node's index is its hostname.
            return _pairs(dict(enumerate(old)), dict(enumerate(new)), lambda i: f"{path}[{i}]", codes)
    return [] if old == new else [Change(path, "changed", old, new)]


def _generic(value: str, code: str) -> str:
    """A name with its site's code put aside: how named items of two sites are matched."""
    return _code_pattern(code).sub("{site}", value) if code else value


def _code_pattern(code: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(code)}(?![A-Za-z0-9])")


def explained_by_code(change: Change, a_code: str, b_code: str) -> bool:
    """A change that disappears once each side's own site code is put aside (za-default -> ng-default)."""
    if change.kind != "changed":
        return False

    def generic(value: Any, code: str) -> str:
        return _code_pattern(code).sub("{site}", json.dumps(value, sort_keys=True))

    return generic(change.old, a_code) == generic(change.new, b_code)


def _canonical(stack: Stack) -> dict[str, Any]:
    data = stack.site.model_dump(mode="json")
    for pool in data["pools"]:
        pool["count"] = len(pool["nodes"])  # derived, but what a reader of a diff wants to see
    return data


_INDEX = re.compile(r"\[[^\]]*\]")
# fnmatch reads "[*]" as a character class: compare "#" for any list item instead.
_EXPECTED = tuple(p.replace("[*]", "#") for p in EXPECTED_DIFFERENCES)


def expected(path: str) -> bool:
    """Whether a change at this path must differ between two sites (pools[h100a].hostname matches pools[*].hostname)."""
    generic = _INDEX.sub("#", path)
    return any(fnmatch.fnmatchcase(generic, pattern) for pattern in _EXPECTED)


def diff_stacks(a: Stack, b: Stack, ignore_expected: bool = False) -> list[Change]:
    """The site-level changes; ``ignore_expected`` hides what must differ between sites and what only the
    site code explains, and shows everything else with its real values."""
    codes = (a.site.code, b.site.code)
    changes = diff_values(_canonical(a), _canonical(b), codes=codes if ignore_expected else None)
    if ignore_expected:
        changes = [c for c in changes if not expected(c.path) and not explained_by_code(c, *codes)]
    for pool in sorted(set(a.credentials) | set(b.credentials)):
        ca, cb = a.credentials.get(pool), b.credentials.get(pool)
        path = f"bmcCredentials[{pool}]"
        if ca is None or cb is None:
            changes.append(Change(path, "added" if ca is None else "removed", None, None))
            continue
        if ca.username != cb.username:
            changes.append(Change(f"{path}.username", "changed", ca.username, cb.username))
        if ca.password_ciphertext != cb.password_ciphertext and not ignore_expected:
            changes.append(Change(f"{path}.password", "changed", SECRET, SECRET))
    return changes


@dataclass(frozen=True)
class Context:
    """What a diff against a revision compared: the commit and how it was chosen, the old file's format and the
    upgrade steps it went through, the working tree's side, and the commits between; as lines and as JSON."""

    lines: tuple[str, ...]
    doc: dict[str, Any]


def revision_context(root: Path, resolved: history.Resolved, old: Stack, new: Stack) -> Context:
    rel = str(stack_path(root, new.name).relative_to(root))
    lines = [f"{new.name}@{resolved.label}: {resolved.said()}"]
    if old.format < CURRENT:
        lines.append(f"  stack format {old.format}, upgraded to {CURRENT} to compare (src/aifactory/migrations):")
        lines += [f"    {note}" for note in old.migrated]
    tree = history.tree_state(root)
    if tree.head is None:
        now = f"{new.name}: {rel} in the working tree (not a git checkout)"
    else:
        same = "differs from the commit" if rel in tree.changed else "as committed"
        now = f"{new.name}: {rel} in the working tree at {tree.head.short} ({same})"
    lines.append(now)
    between = history.between(root, resolved.commit.sha, rel)
    lines += between.lines()
    doc = {
        "revision": resolved.to_json(),
        "format": old.format,
        "upgraded": list(old.migrated),
        "working_tree": {
            "head": tree.head.sha if tree.head else None,
            "stack_file_as_committed": tree.head is not None and rel not in tree.changed,
        },
        "commits": between.to_json(),
    }
    return Context(tuple(lines), doc)


def diff_plans(a: Plan, b: Plan) -> list[Change]:
    ra = {r.key: r for r in a.resources}
    rb = {r.key: r for r in b.resources}
    out: list[Change] = []
    for key in sorted(set(ra) | set(rb)):
        if key not in rb:
            out.append(Change(key, "removed", old=None))
        elif key not in ra:
            out.append(Change(key, "added", new=None))
        else:
            out.extend(
                Change(f"{key} {c.path}", c.kind, c.old, c.new) for c in diff_values(ra[key].inputs, rb[key].inputs)
            )
    return out


def render_text(title: str, changes: list[Change], context: Context | None = None) -> str:
    lines = list(context.lines) if context else []
    lines.append(f"{title}: {len(changes)} change(s)" if changes else f"{title}: no changes")
    lines += [c.line() for c in changes]
    return "\n".join(lines) + "\n"


def render_json(a: str, b: str, changes: list[Change], kind: str, context: Context | None = None) -> str:
    doc: dict[str, Any] = {"a": a, "b": b, "kind": kind, "changes": [c.to_json() for c in changes]}
    if context:
        doc["history"] = context.doc
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
