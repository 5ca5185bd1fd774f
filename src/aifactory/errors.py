"""Errors that reach the user as one line per problem, never as a traceback."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = re.compile(r"(\d+)")


def natural(text: str) -> tuple[str | int, ...]:
    """A sort key that orders nodes[3] before nodes[10] (numbers as numbers, not as text)."""
    return tuple(int(part) if part.isdigit() else part for part in _NUMBER.split(text))


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    path: str
    message: str
    line: int | None = None  # the line of the stack file the path leads to, where known
    host: str = ""  # the node's host name, for a node's field

    @property
    def where(self) -> str:
        """The host and line, as a message ends: '(za-jnb1-h100-004, line 42)'."""
        parts = [p for p in (self.host, f"line {self.line}" if self.line else "") if p]
        return f" ({', '.join(parts)})" if parts else ""

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}{self.where}"

    def sort_key(self) -> tuple[object, ...]:
        return (natural(self.file), self.line or 0, natural(self.path), self.message)


class ConfigError(Exception):
    """One or more problems in the user's input; the CLI prints them and exits 2."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class OperationError(Exception):
    """A run that started and failed (a host unreachable, a tool missing); exit 1."""
