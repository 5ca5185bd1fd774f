"""What every command shares: the project root, site arguments, the policy gate, option types."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..stackfile import Stack


def root_of(args: argparse.Namespace) -> Path:
    from ..stackfile import project_root

    return Path(args.root).resolve() if args.root else project_root()


def site_args(names: Sequence[str]) -> list[str]:
    """Site arguments, each checked before it names a file, and each once."""
    from ..stackfile import check_site_name, unique

    return unique([check_site_name(n) for n in names])


def gated(root: Path, names: Sequence[str]) -> list[Stack]:
    """Load the stacks a command acts on and put them through the policy gate (errors: exit 2)."""
    from ..policy import gate
    from ..stackfile import load_stacks

    stacks = load_stacks(root, site_args(names))
    gate(stacks, root)
    return stacks


def whole(text: str, low: int, high: int, unit: str = "") -> int:
    """A whole number from ``low`` to ``high``, or an argparse error that says which."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number{unit}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}{unit}")
    return value


def positive(text: str) -> int:
    return whole(text, 1, 256)


LIMIT_HELP = "Ansible host pattern, as ansible-playbook --limit reads it (e.g. lab-gpu-01, 'pool_*:!lab-gpu-02')"


def add_limit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", metavar="PATTERN", help=LIMIT_HELP)


def add_ssh_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ssh-config",
        type=Path,
        metavar="FILE",
        help="ssh_config(5) file for reaching the nodes (`aifactory testhosts up` prints the test hosts' one)",
    )
