"""What every policy family is built from: severities, results, the Policy record and its subject.

A family module (residency.py, compat.py, ...) holds its checks as plain functions over the typed
model and declares them in ``POLICIES``; registry.py gathers those into one registry. Nothing here
knows a family.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date

from ..model import Site
from ..stackfile import SITE_KEY, Stack


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    SKIPPED = "skipped"
    INFO = "ok"


@dataclass(frozen=True)
class Result:
    id: str
    severity: Severity
    site: str
    path: str
    message: str
    file: str = ""

    def line(self) -> str:
        """The finding as every command prints it (findings.py adds the line and host, and folds repeats)."""
        return f"{self.severity.value}: {self.file or self.site}: {self.path}: [{self.id}] {self.message}"


def report(pid: str, sev: Severity, site: Site, path: str, msg: str) -> Result:
    """A result of check ``pid`` on a site's field: ``path`` as model.field_path gives it, '' for the site."""
    return Result(pid, sev, site.code, f"{SITE_KEY}.{path}" if path else SITE_KEY, msg)


@dataclass(frozen=True)
class Subject:
    """What a policy judges: one stack, the other sites it is interconnected with, and the date."""

    stack: Stack
    others: tuple[Stack, ...]
    as_of: date


SCOPES = ("site", "cross-site")


class UndeclaredCheck(RuntimeError):
    """A policy reported a check id it does not declare: a bug in the policy, never a passing check."""


@dataclass(frozen=True)
class Policy:
    """A validator in the manner of Cluster Toolkit's: a name, a scope and the check ids it reports.

    The scope decides what the policy sees: a "site" policy judges one stack alone (its subject has
    no other sites), a "cross-site" policy also sees every other stack it is compared with.
    """

    name: str
    title: str
    scope: str
    checks: tuple[str, ...]
    run: Callable[[Subject], Iterable[Result]]
    skippable: bool = True

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"policy {self.name}: scope {self.scope!r} is none of {', '.join(SCOPES)}")

    def results(self, subject: Subject) -> Iterator[Result]:
        """What the policy finds on the subject its scope allows; an id it does not declare is a bug."""
        if self.scope == "site":
            subject = replace(subject, others=())
        for r in self.run(subject):
            if r.id not in self.checks:
                raise UndeclaredCheck(
                    f"policy {self.name} reported {r.id!r}, which it does not declare ({', '.join(self.checks)})"
                )
            yield r
