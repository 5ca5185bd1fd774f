"""Stack format versions, and the steps that upgrade an older stack file to today's model.

Every shape a stack file has had on main stays readable, the way Kubespray's upgrade notes and
Terraform's state upgraders carry old inputs forward: ``diff SITE --rev REV`` and ``audit
--against REV`` read a revision of any age through the steps below, then validate it as today's
:class:`~aifactory.model.Site`. A working-tree stack is never upgraded silently: it must declare
the current format (``aifactory:stackFormat``), and an older one is refused with the steps that
upgrade it by hand (each step's ``how``).

Formats, each named by the commit that introduced its shape:

    1  c620c59  the first stacks: rails name their HCA and netdev, gpu_stack.mig.default_profile,
                buckets' object_lock_days, no jurisdiction.in_country
    2  eb7cdc4  jurisdiction.in_country (the zones and ranges that prove residency)
    3  2de7f20  rails carry only name and cidr (ports come from the catalog); per-pool mig_config
    4  dab6d38  buckets' role, classification, object_lock {mode, days} and lifecycle
               (978a6df's gpu_stack.cuda_components and a4d5b35's kubernetes.nodes_joined are
               optional keys with defaults: still format 4)
    5  this one each pool declares its scalable_units; the file declares aifactory:stackFormat
               (issue 21's pools[].racks and pools[].topology, gpu_stack.dra_driver and
               kubernetes.version are optional keys with defaults, like cuda_components in 4: still
               format 5; a format-5 file without them reads as it did, tests/test_blackwell.py)

Files before format 5 declare no version: their format is read from their shape (:func:`shape_of`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import v1_to_v2, v2_to_v3, v3_to_v4, v4_to_v5
from .common import MigrationError

__all__ = [
    "CURRENT",
    "FORMAT_KEY",
    "STEPS",
    "MigrationError",
    "Step",
    "Upgraded",
    "declared_format",
    "shape_of",
    "upgrade",
]

FORMAT_KEY = "aifactory:stackFormat"
CURRENT = 5


@dataclass(frozen=True)
class Step:
    """One upgrade: format ``source`` to ``source + 1``; ``introduced`` is the commit whose shape it reads."""

    source: int
    introduced: str  # the full hash (a short one could grow ambiguous as the history does)
    what: str  # what changed, in the words of the upgrade note
    how: str  # what to change by hand in a working-tree file of the old format
    run: Callable[[dict[str, Any]], list[str]]

    @property
    def name(self) -> str:
        return f"{self.source}->{self.source + 1}"


_MODULES = (v1_to_v2, v2_to_v3, v3_to_v4, v4_to_v5)
STEPS: tuple[Step, ...] = tuple(Step(m.SOURCE, m.INTRODUCED, m.WHAT, m.HOW, m.upgrade) for m in _MODULES)
assert [s.source for s in STEPS] == list(range(1, CURRENT)), "one step per format, in order"


@dataclass(frozen=True)
class Upgraded:
    """What a read through the steps did: the format found, whether declared, a note per step that changed something."""

    found: int
    declared: bool
    notes: tuple[str, ...]


def declared_format(config: dict[str, Any]) -> int | None:
    """The format a stack's config declares, or None where it declares none; bad values raise MigrationError."""
    if FORMAT_KEY not in config:
        return None
    value = config[FORMAT_KEY]
    if isinstance(value, bool) or not isinstance(value, int):
        raise MigrationError(f"{FORMAT_KEY} must be a whole number from 1 to {CURRENT}")
    if not 1 <= value <= CURRENT:
        newer = value > CURRENT
        relation = "newer than" if newer else "not one of"
        raise MigrationError(
            f"format {value} is {relation} the formats this checkout reads (1 to {CURRENT})"
            + ("; read it with a newer aifactory" if newer else "")
        )
    return value


def _site(config: dict[str, Any]) -> dict[str, Any]:
    site = config.get("aifactory:site")
    return site if isinstance(site, dict) else {}


def shape_of(config: dict[str, Any]) -> int:
    """The oldest format whose marks an undeclared file carries (files before format 5 declared none)."""
    for module in _MODULES:
        if module.carries(_site(config)):
            return module.SOURCE
    return CURRENT


def upgrade(config: dict[str, Any]) -> Upgraded:
    """Upgrade a stack's ``config`` mapping in place to format CURRENT; MigrationError says why it cannot be.

    A step only changes what it finds of its old shape, so a hand-edited file that mixes shapes
    reads as well as one that does not.
    """
    declared = declared_format(config)
    found = declared if declared is not None else shape_of(config)
    notes: list[str] = []
    site = config.get("aifactory:site")
    if not isinstance(site, dict):
        raise MigrationError("aifactory:site is missing or not a mapping: nothing to upgrade")
    for step in STEPS[found - 1 :]:
        try:
            said = step.run(site)
        except MigrationError as exc:
            raise MigrationError(f"step {step.name} ({step.what}): {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # An old file that is malformed in its own format: say where the step stopped, in one line.
            why = f"{type(exc).__name__}: {exc}"
            raise MigrationError(f"step {step.name} ({step.what}) cannot read it ({why})") from None
        notes += [f"{step.name} (shape of {step.introduced[:7]}): {n}" for n in said]
    config[FORMAT_KEY] = CURRENT
    return Upgraded(found, declared is not None, tuple(notes))
