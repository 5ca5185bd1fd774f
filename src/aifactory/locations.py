"""Where a field of a stack file was written: its line, and for a node the host name it renders.

The loader notes each mapping's and list's lines while it builds them (:class:`Positions`); a
message's field path (``aifactory:site.pools[1].nodes[9].bmc``) is walked through the parsed
document to find its line, and a node's path names its host, so a person reads
``(za-jnb1-h200-010, line 212)`` beside the index path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from . import grammar
from .errors import Problem

if TYPE_CHECKING:
    from .model import Site

SITE_KEY = "aifactory:site"
_TOKEN = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


class Positions:
    """Lines of the mappings and lists the loader built, by object identity (the objects are kept alive here).

    Compact, since every node of a 100,000-node stack is a mapping: one number per mapping whose keys
    all sit on its first line (a flow mapping) or one per line (block style), packing that line, the
    key count and which of the two; a tuple of lines for the others and for lists. A mapping that an
    upgrade step changed (its key count differs) answers with its own first line.
    """

    _KEYS = 1 << 19  # key counts the packed form holds

    def __init__(self) -> None:
        self._at: dict[int, tuple[Any, int | tuple[int, ...]]] = {}

    def note_mapping(self, data: dict[str, Any], node: Any) -> None:
        first = node.start_mark.line + 1
        lines = [k.start_mark.line + 1 for k, _ in node.value]
        count = len(lines)
        entry: int | tuple[int, ...]
        if count >= self._KEYS:
            entry = tuple(lines)
        elif not lines or lines[-1] == first:  # keys never go back a line: the last on the first means all are
            entry = (first << 20) | (count << 1)
        elif lines == list(range(first, first + count)):
            entry = (first << 20) | (count << 1) | 1
        else:
            entry = tuple(lines)
        self._at[id(data)] = (data, entry)

    def note_sequence(self, data: list[Any], node: Any) -> None:
        self._at[id(data)] = (data, tuple(n.start_mark.line + 1 for n in node.value))

    def line(self, container: Any, key: str | int | None = None) -> int | None:
        """The line of ``container[key]`` (of the container itself when key is None or unknown)."""
        found = self._at.get(id(container))
        if found is None or found[0] is not container:
            return None
        entry = found[1]
        if isinstance(entry, tuple):
            if isinstance(container, list):
                index = key if isinstance(key, int) and 0 <= key < len(entry) else None
            else:
                index = _index(container, key) if len(container) == len(entry) else None
            return entry[index] if index is not None else (entry[0] if entry else None)
        first, count, one_per_line = entry >> 20, (entry >> 1) & (self._KEYS - 1), entry & 1
        index = _index(container, key) if one_per_line and len(container) == count else None
        return first + index if index is not None else first


def _index(mapping: dict[str, Any], key: str | int | None) -> int | None:
    return next((i for i, k in enumerate(mapping) if k == key), None) if isinstance(key, str) else None


def split_path(path: str) -> list[str | int]:
    """A message's field path as keys and indices: 'a.b[2].c' -> ['a', 'b', 2, 'c']."""
    return [int(index) if index else key for index, key in _TOKEN.findall(path)]


@dataclass(frozen=True)
class Locator:
    """Finds lines and host names in one parsed stack file (``doc``: the whole file, as parsed)."""

    doc: Any
    positions: Positions | None = None
    site: Site | None = None

    def _walk(self, tokens: list[str | int]) -> tuple[Any, list[tuple[Any, str | int]]]:
        """The value at the path (or None) and the (container, key) steps that exist on the way."""
        value = self.doc
        if tokens and isinstance(value, dict) and tokens[0] not in value and isinstance(value.get("config"), dict):
            value = value["config"]  # config keys are named without "config."
        steps: list[tuple[Any, str | int]] = []
        for token in tokens:
            found = (isinstance(value, dict) and isinstance(token, str) and token in value) or (
                isinstance(value, list) and isinstance(token, int) and 0 <= token < len(value)
            )
            if not found:
                return None, steps
            steps.append((value, token))
            value = value[token]  # type: ignore[index]
        return value, steps

    def written(self, path: str) -> Any:
        """The value at a field path as the file wrote it (before the model normalised it), or None."""
        tokens = split_path(path)
        value, steps = self._walk(tokens)
        return value if len(steps) == len(tokens) else None

    def line(self, path: str) -> int | None:
        if self.positions is None:
            return None
        _, steps = self._walk(split_path(path))
        for container, key in reversed(steps):
            found = self.positions.line(container, key)
            if found is not None:
                return found
        return None

    def host(self, path: str) -> str:
        """The host name a node's path stands for (pools[i].nodes[k]), or ''."""
        tokens = split_path(path)
        if len(tokens) < 5 or tokens[:2] != [SITE_KEY, "pools"] or tokens[3] != "nodes":
            return ""
        i, k = tokens[2], tokens[4]
        if not isinstance(i, int) or not isinstance(k, int):
            return ""
        if self.site is not None:
            if i < len(self.site.pools) and k < self.site.pools[i].count:
                return self.site.pools[i].hostname_of(self.site.code, k + 1)
            return ""
        return _raw_host(self.written(SITE_KEY), i, k)

    def place(self, problem: Problem) -> Problem:
        """The problem with its line and host filled in, where the path leads to them."""
        if not problem.path or problem.line is not None:
            return problem
        return replace(problem, line=self.line(problem.path), host=problem.host or self.host(problem.path))


def _raw_host(site: Any, i: int, k: int) -> str:
    """A node's host name from a site that failed validation: only from values that pass their grammars."""
    try:
        pool = site["pools"][i]
        if not isinstance(pool.get("nodes"), list) or k >= len(pool["nodes"]):
            return ""
        scheme = grammar.hostname_scheme(pool["hostname"])
        name = scheme.format(site=grammar.site_code(site["code"]), pool=grammar.dns_label(pool["name"]), index=k + 1)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError):
        return ""
    return name if len(name) <= 63 and grammar.dns_label_ok(name) else ""
