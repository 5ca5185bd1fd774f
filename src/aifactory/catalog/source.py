"""Where a fact comes from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """Where a fact comes from, so an auditor can check it."""

    title: str
    url: str = ""

    def __str__(self) -> str:
        return f"{self.title} ({self.url})" if self.url else self.title
