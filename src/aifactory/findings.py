"""Findings as a person reads them: one format everywhere, repeats folded into one line, each warning once.

Every command prints a problem as ``SEVERITY: FILE: PATH: [CHECK] MESSAGE (HOST, line N)``: load
errors, policy results, the gate's warnings. Findings that differ only by a list index (29 nodes
outside one too-small subnet) or only by their file (one warning for five sites) fold into one line
that names the count and the first places, in numeric order. A warning is printed once per command,
however many times the command meets it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import Problem, natural

if TYPE_CHECKING:
    from .stackfile import Stack

SHOWN = 3  # places a folded line names before "and N more"
_INDEX = re.compile(r"\[\d+\]")
_VARIES = "…"

_said: set[str] = set()


def begin_command() -> None:
    """A new command: every warning may be printed once again (the CLI calls this; tests run many commands)."""
    _said.clear()


def warn(line: str) -> None:
    """Print a warning line on standard error unless this command printed it already."""
    if line not in _said:
        _said.add(line)
        print(line, file=sys.stderr)


def of_results(results: Iterable[Any], stacks: Sequence[Stack]) -> list[tuple[str, Problem]]:
    """Policy results as (severity, Problem), each placed at its line and host in its stack file."""
    by_file = {s.shown: s for s in stacks}
    out = []
    for r in results:
        problem = Problem(r.file or r.site, r.path, f"[{r.id}] {r.message}")
        stack = by_file.get(r.file)
        out.append((r.severity.value, stack.place(problem) if stack else problem))
    return out


def _generic(path: str) -> str:
    return _INDEX.sub("[*]", path)


def _template(messages: list[list[str]]) -> list[str] | None:
    """The words all messages share, with the words that vary marked; None when they are not alike."""
    if len({len(m) for m in messages}) != 1:
        return None
    words = [w[0] if len(set(w)) == 1 else _VARIES for w in zip(*messages, strict=True)]
    varying = words.count(_VARIES)
    return words if varying * 3 <= len(words) else None


def _place(p: Problem, files: bool, paths: bool, values: list[str]) -> str:
    parts = []
    if files:
        parts.append(p.file)
    if p.host:
        parts.append(p.host)
    elif paths:
        parts.append(p.path)
    if p.line:
        parts.append(f"line {p.line}")
    text = " ".join(parts) or p.path
    return f"{text}: {' '.join(values)}" if values else text


def _folded(group: list[Problem]) -> list[str]:
    group = sorted(group, key=lambda p: (natural(p.file), natural(p.path)))
    split = [p.message.split(" ") for p in group]
    words = _template(split)
    if words is None:  # same field, unlike messages: fold only the identical ones
        by_message: dict[str, list[Problem]] = {}
        for p in group:
            by_message.setdefault(p.message, []).append(p)
        if len(by_message) == len(group):
            return [str(p) for p in group]
        return [line for same in by_message.values() for line in _folded(same)]
    files = len({p.file for p in group}) > 1
    paths = len({p.path for p in group}) > 1
    varying = [i for i, w in enumerate(words) if w == _VARIES]
    places = [_place(p, files, paths, [m[i] for i in varying]) for p, m in zip(group, split, strict=True)]
    noun = "nodes" if all(p.host for p in group) else "stacks" if files and not paths else "places"
    shown = "; ".join(places[:SHOWN]) + (f"; and {len(places) - SHOWN} more" if len(places) > SHOWN else "")
    head = ": ".join(part for part in ((None if files else group[0].file), _generic(group[0].path)) if part)
    return [f"{head}: {' '.join(words)}: {len(group)} {noun}: {shown}"]


def fold(problems: Iterable[Problem]) -> list[str]:
    """The problems as lines, repeats folded, in the order of each line's first place (numeric, not text)."""
    groups: dict[tuple[str, str], list[Problem]] = {}
    for p in dict.fromkeys(problems):  # the same problem twice is one problem
        check = p.message.split(" ", 1)[0] if p.message.startswith("[") else ""
        groups.setdefault((_generic(p.path), check), []).append(p)
    keyed = []
    for members in groups.values():
        first = min(members, key=Problem.sort_key)
        if len(members) == 1 or not first.path:  # a file-level problem (unreadable, not UTF-8) stands alone
            keyed.extend((p.sort_key(), [str(p)]) for p in members)
        else:
            keyed.append((first.sort_key(), _folded(members)))
    return [line for _, lines in sorted(keyed, key=lambda kv: kv[0]) for line in lines]


def print_findings(findings: Iterable[tuple[str, Problem]], severities: Iterable[str], out: Any = None) -> None:
    """Print findings of the given severities, most severe first, each severity folded on its own.

    A warning printed here counts as said: the gate of the same command (as `lab` runs it after
    validating) does not print it again.
    """
    items = list(findings)
    for severity in severities:
        for line in fold(p for s, p in items if s == severity):
            print(f"{severity}: {line}", file=out or sys.stdout)
            _said.add(f"{severity}: {line}")
