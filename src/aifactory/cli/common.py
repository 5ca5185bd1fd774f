"""What every command shares: the project root, site arguments, the policy gate, option types."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..stackfile import Stack


def root_of(args: argparse.Namespace) -> Path:
    """The project checkout: --root, else $AIFACTORY_ROOT or the one found from here; a project with stacks."""
    from ..environment import project
    from ..stackfile import project_root

    return project(Path(args.root), "--root") if args.root else project_root()


def site_args(names: Sequence[str]) -> list[str]:
    """Site arguments, each checked before it names a file, and each once."""
    from ..stackfile import check_site_name, unique

    return unique([check_site_name(n) for n in names])


def gated(root: Path, names: Sequence[str]) -> list[Stack]:
    """Load the stacks a command acts on and put them through the policy gate (errors: exit 2)."""
    from ..policies import gate
    from ..stackfile import load_stacks

    stacks = load_stacks(root, site_args(names))
    gate(stacks, root)
    return stacks


_DIGITS = re.compile(r"[0-9]{1,12}", re.ASCII)


def whole(text: str, low: int, high: int, unit: str = "") -> int:
    """A whole number from ``low`` to ``high``, or an argparse error that says which.

    ASCII digits only: Python's int() also takes '٣', '1_000', ' 3' and '+3', none of which a
    person means as a count here.
    """
    if not _DIGITS.fullmatch(text):
        from ..grammar import shown

        raise argparse.ArgumentTypeError(f"{shown(text, 40)} is not a whole number{unit} (ASCII digits 0-9)")
    value = int(text)
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}{unit}")
    return value


def positive(text: str) -> int:
    return whole(text, 1, 256)


LIMIT_HELP = "Ansible host pattern, as ansible-playbook --limit reads it (e.g. lab-gpu-01, 'pool_*:!lab-gpu-02')"


# Ansible host patterns (docs: "Patterns: targeting hosts and groups"): names, groups, wildcards,
# ':' / ',' unions, '!' exclusion, '&' intersection, '[N:M]' slices. Not '@FILE' (Ansible reads the
# hosts from that file) nor '~regex', nor a leading '-' (an option), nor an empty pattern (all hosts).
_LIMIT = re.compile(r"[A-Za-z0-9_.*?\[\]][A-Za-z0-9_.*?:,!&\[\]-]{0,3999}", re.ASCII)


def limit_pattern(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("empty: name the hosts or groups (leave --limit out for every node)")
    if not _LIMIT.fullmatch(text) or text.endswith(("!", "&", ":", ",")):
        from ..grammar import shown

        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not an Ansible host pattern of names, groups and * ? : , ! & [ ] "
            "(no @FILE, no ~regex, no spaces)"
        )
    return text


def add_limit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=limit_pattern, metavar="PATTERN", help=LIMIT_HELP)


def ssh_config_file(text: str) -> Path:
    """An ssh_config(5) file: it exists and is a regular file, and its path survives any argument list."""
    import stat

    from ..environment import SAFE_PATH

    path = Path(text).resolve()
    if not SAFE_PATH.fullmatch(str(path)):
        from ..grammar import shown

        raise argparse.ArgumentTypeError(f"{shown(text)}: a path of printable ASCII without ':' is needed")
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise argparse.ArgumentTypeError(f"{path}: not a regular file")
    return path


def add_ssh_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ssh-config",
        type=ssh_config_file,
        metavar="FILE",
        help="ssh_config(5) file for reaching the nodes (`aifactory testhosts up` prints the test hosts' one)",
    )
