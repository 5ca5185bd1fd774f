"""The registry: every family's policies in one fixed order, and how they are run on stacks.

Each family module declares its own ``POLICIES``; ``FAMILY_MODULES`` below lists the modules, and
the registry is their policies in that order, each module's in the order it declares them:

    residency, compat, topology, net, secrets, supply, tenants

It is the order ``evaluate`` runs them in (and so the order of an unsorted result list), and the
order of ``CHECK_IDS`` (the audit report's list of checks): the order the checks had in one module
before the families were split, so no report moved. A family module left out of the list is never
run: tests/test_policy.py fails on one. The registry adds one family of its own, ``policies``: its
one check judges the site's ``policies.skip`` list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date
from pathlib import Path
from types import ModuleType

from .. import findings
from ..errors import ConfigError, Problem, natural
from ..grammar import shown
from ..stackfile import SITE_KEY, Stack, load_neighbours
from . import compat, net, residency, secrets, supply, tenants, topology
from .base import Policy, Result, Severity, Subject

FAMILY_MODULES = (residency, compat, topology, net, secrets, supply, tenants)


def _collect(modules: tuple[ModuleType, ...]) -> dict[str, Policy]:
    registry: dict[str, Policy] = {}
    for module in modules:
        for policy in module.POLICIES:
            if policy.name in registry:
                raise ValueError(f"policy {policy.name} is declared twice (again in {module.__name__})")
            registry[policy.name] = policy
    return registry


REGISTRY: dict[str, Policy] = _collect(FAMILY_MODULES)
SKIP_CHECK = "policies.skip"
CHECK_IDS: tuple[str, ...] = (*(c for p in REGISTRY.values() for c in p.checks), SKIP_CHECK)
FAMILIES: tuple[str, ...] = tuple(sorted({c.split(".")[0] for c in CHECK_IDS}))
_UNSKIPPABLE = {c for p in REGISTRY.values() if not p.skippable for c in p.checks} | {SKIP_CHECK}


def _matches(check: str, selector: str) -> bool:
    return check == selector or check.startswith(selector + ".")


def select(only: Iterable[str] | None) -> frozenset[str]:
    """The check ids that --only names (families or ids); an unknown name is bad input."""
    if not only:
        return frozenset(CHECK_IDS)
    chosen: set[str] = set()
    for selector in only:
        hits = {c for c in CHECK_IDS if _matches(c, selector)}
        if not hits:
            raise ConfigError(
                [
                    Problem(
                        "--only", "", f"{shown(selector)} is no policy; known: {', '.join(FAMILIES)} and their checks"
                    )
                ]
            )
        chosen |= hits
    return frozenset(chosen)


def _skips(stack: Stack) -> tuple[dict[str, str], list[Result]]:
    """The site's declared skips (check id -> reason), and errors for skips that are not allowed."""
    skips: dict[str, str] = {}
    problems: list[Result] = []
    for i, skip in enumerate(stack.site.policies.skip):
        path = f"{SITE_KEY}.policies.skip[{i}].id"
        hits = [c for c in CHECK_IDS if _matches(c, skip.id)]
        if not hits:
            problems.append(Result(SKIP_CHECK, Severity.ERROR, stack.name, path, f"{skip.id} is no policy check"))
            continue
        barred = sorted(set(hits) & _UNSKIPPABLE)
        if barred:
            problems.append(
                Result(
                    SKIP_CHECK,
                    Severity.ERROR,
                    stack.name,
                    path,
                    f"{', '.join(barred)} cannot be skipped: residency and secrets hold for every site",
                )
            )
            continue
        for c in hits:
            skips[c] = skip.reason
    return skips, problems


def evaluate(
    stack: Stack,
    as_of: date | None = None,
    others: Iterable[Stack] = (),
    checks: frozenset[str] | None = None,
) -> list[Result]:
    """Every selected check on one stack, with the site's skips applied; passing checks leave an INFO line."""
    subject = Subject(stack, tuple(o for o in others if o.name != stack.name), as_of or date.today())
    checks = checks if checks is not None else frozenset(CHECK_IDS)
    skips, results = _skips(stack)
    for policy in REGISTRY.values():
        if checks.isdisjoint(policy.checks):
            continue
        results.extend(r for r in policy.results(subject) if r.id in checks)
    seen = {r.id for r in results}
    for check in checks:
        if check not in seen:
            results.append(Result(check, Severity.INFO, stack.name, SITE_KEY, "checked: no finding"))
    out = []
    for r in results:
        reason = skips.get(r.id)
        if reason is not None and r.severity in (Severity.ERROR, Severity.WARNING):
            out.append(
                replace(
                    r,
                    severity=Severity.SKIPPED,
                    message=f"{r.message} [skipped by the site: {reason}]",
                    file=stack.shown,
                )
            )
        else:
            out.append(replace(r, file=stack.shown))
    return out


_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.SKIPPED: 2, Severity.INFO: 3}


def evaluate_sites(
    stacks: list[Stack],
    only: set[str] | None = None,
    as_of: date | None = None,
    checks: frozenset[str] | None = None,
) -> list[Result]:
    """The policies on the stacks named in ``only`` (default: all), comparing with every stack given."""
    only = only if only is not None else {s.name for s in stacks}
    results: list[Result] = []
    for s in stacks:
        if s.name in only:
            results.extend(evaluate(s, as_of, stacks, checks))
    return sorted(results, key=lambda r: (r.site, _ORDER[r.severity], r.id, natural(r.path)))


def gate(
    stacks: list[Stack], root: Path, as_of: date | None = None, warn: Callable[[str], None] | None = None
) -> list[Result]:
    """The policy gate of every command that acts on a site: errors stop it (exit 2), warnings print and go on.

    Warnings are folded (one line for a finding many stacks or nodes share) and printed once per command.
    """
    names = [s.name for s in stacks]
    everyone = [*stacks, *load_neighbours(root, names)]
    results = evaluate_sites(everyone, only=set(names), as_of=as_of)
    found = findings.of_results(results, everyone)
    say = warn or findings.warn
    for line in findings.fold(p for severity, p in found if severity == Severity.WARNING.value):
        say(f"warning: {line}")
    errors = [p for severity, p in found if severity == Severity.ERROR.value]
    if errors:
        raise ConfigError(errors)
    return results
