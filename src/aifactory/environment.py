"""Every environment variable aifactory reads, in one place, each checked before any command runs.

A variable is input like an argument: a typo in AIFACTORY_ROOT must not make `validate` pass on
zero sites, and a path that Ansible will split on ``:`` must not reach it. The CLI calls
:func:`check` first; a bad value is one line naming the variable, exit 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from .errors import ConfigError, Problem

# A path handed to Ansible, SSH or a child process through the environment: no control character,
# and no ':' (ANSIBLE_ROLES_PATH and PATH are ':'-separated lists; a ':' would split the path).
SAFE_PATH = re.compile(r"/[\x20-\x39\x3b-\x7e]{0,4000}", re.ASCII)


def safe_path(path: Path, what: str) -> Path:
    """An absolute path that survives being put in a ':'-separated variable or an argument list."""
    if not SAFE_PATH.fullmatch(str(path)):
        from .grammar import shown

        raise ConfigError(
            [Problem(what, "", f"{shown(str(path))}: an absolute path of printable ASCII without ':' is needed")]
        )
    return path


def project_problem(path: Path) -> str | None:
    """Why ``path`` is not an aifactory project (Pulumi.yaml and stacks/Pulumi.<site>.yaml), or None."""
    if not path.is_dir():
        return "no such directory"
    if not (path / "Pulumi.yaml").is_file():
        return "not an aifactory project (no Pulumi.yaml)"
    stacks = path / "stacks"
    if not stacks.is_dir() or not any(stacks.glob("Pulumi.*.yaml")):
        return "not an aifactory project with stacks (no stacks/Pulumi.<site>.yaml)"
    return None


def project(path: Path, what: str) -> Path:
    resolved = safe_path(path.resolve(), what)
    problem = project_problem(resolved)
    if problem:
        raise ConfigError([Problem(what, "", f"{path}: {problem}")])
    return resolved


def _one_of(*values: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in values else f"must be {' or '.join(values)}"

    return check


def _absolute(value: str) -> str | None:
    return None if SAFE_PATH.fullmatch(value) else "must be an absolute path of printable ASCII without ':'"


def _project(value: str) -> str | None:
    resolved = Path(value).resolve()
    if not SAFE_PATH.fullmatch(str(resolved)):
        return "must name a path of printable ASCII without ':'"
    return project_problem(resolved)


def _run_id(value: str) -> str | None:
    return None if re.fullmatch(r"[0-9a-f]{8}", value, re.ASCII) else "a run id is 8 hexadecimal digits"


# name -> what checks it, and what it does (the README's trust section lists the same).
VARIABLES: dict[str, tuple[Callable[[str], str | None], str]] = {
    "AIFACTORY_ROOT": (_project, "the project checkout (default: found from the current directory)"),
    "AIFACTORY_MITOGEN": (_one_of("0", "1"), "0: bootstrap with Ansible's own strategy instead of Mitogen's"),
    "AIFACTORY_DEBUG": (_one_of("0", "1"), "1: an internal error prints its traceback"),
    "AIFACTORY_STATE_DIR": (_absolute, "test-host state (default /var/lib/aifactory/testhosts)"),
    "AIFACTORY_CACHE_DIR": (_absolute, "rootfs, package and artifact caches (default /var/cache/aifactory)"),
    "AIFACTORY_RUN": (_run_id, "the test-host run id (default: derived from the checkout)"),
    "AIFACTORY_DCGM_LEVEL": (_one_of("1", "2", "3"), "verify's dcgmi diag level on GPU nodes (default 1)"),
}


def check(env: Mapping[str, str] | None = None) -> None:
    """Refuse the first command of a run whose environment sets any of :data:`VARIABLES` to a bad value."""
    env = os.environ if env is None else env
    problems = []
    for name, (rule, _what) in VARIABLES.items():
        if name in env:
            why = rule(env[name])
            if why:
                from .grammar import shown

                problems.append(Problem(name, "", f"{shown(env[name])}: {why}"))
    if problems:
        raise ConfigError(problems)
