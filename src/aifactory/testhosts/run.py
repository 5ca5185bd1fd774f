"""One run of test hosts: its id, and every name derived from it.

A run is one checkout's hosts for one site: its id is taken from the checkout's path, the site
and a purpose ("lab" for `make lab` and `testhosts up`, "test" for the test suite), or given with
``--run`` / AIFACTORY_RUN. From the id come the network namespace, the bridge and the state
directory, so two runs never share a name, and `down` of one run touches nothing of another.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..errors import ConfigError, Problem
from ..fsutil import read_model, write_atomic
from ..stackfile import site_name_problem

STATE_ROOT = Path(os.environ.get("AIFACTORY_STATE_DIR", "/var/lib/aifactory/testhosts"))
SHARED = "shared"  # STATE_ROOT/shared: services the runs share (the package proxy)
RUN_ID = re.compile(r"[0-9a-f]{8}")


def run_id_for(root: Path, site: str, purpose: str = "lab") -> str:
    return sha256(f"{root.resolve()}\0{site}\0{purpose}".encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Run:
    """The names of one run: all derived from its id, none typed in anywhere else."""

    id: str
    site: str

    def __post_init__(self) -> None:
        # The site names hosts and a folder that `down` removes as root: both are checked first.
        problem = site_name_problem(self.site)
        if problem:
            raise ConfigError([Problem("--site", "", problem)])
        if not RUN_ID.fullmatch(self.id):
            raise ConfigError([Problem("--run", "", "a run id is 8 hexadecimal digits (as `testhosts status` shows)")])

    @classmethod
    def of(cls, root: Path, site: str, *, run_id: str | None = None, purpose: str = "lab") -> Run:
        chosen = run_id or os.environ.get("AIFACTORY_RUN") or run_id_for(root, site, purpose)
        return cls(chosen, site)

    @property
    def netns(self) -> str:
        return f"aifactory-{self.id}"

    @property
    def bridge(self) -> str:
        # Inside the run's own namespace; still unique, so `ip link` output names its run.
        return f"af-{self.id}"

    @property
    def dir(self) -> Path:
        return STATE_ROOT / self.id

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    def host_dir(self, name: str) -> Path:
        return self.dir / "hosts" / name

    @property
    def rgw_dir(self) -> Path:
        return self.dir / "rgw"

    @property
    def kube_dir(self) -> Path:
        return self.dir / "kube"


_Pid = Annotated[int, Field(ge=0, le=4_194_304)]  # the kernel's pid_max ceiling (PID_MAX_LIMIT)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPv4 = Annotated[str, StringConstraints(pattern=rf"^{_OCTET}(?:\.{_OCTET}){{3}}$")]


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HostState(_State):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")]
    ip: _IPv4
    pid: _Pid = 0


class State(_State):
    """What `up` recorded of a run, read back as untrusted input by `up`, `down` and `status`."""

    run: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}$")]
    site: Annotated[str, StringConstraints(pattern=r"^[a-z](?:[a-z0-9-]{0,10}[a-z0-9])?$")]
    checkout: Annotated[str, StringConstraints(max_length=4096)]
    gateway: _IPv4
    prefix: Annotated[int, Field(ge=8, le=30)]
    hosts: list[HostState] = Field(default_factory=list, max_length=4096)
    relay_pid: _Pid = 0
    relay_port: Annotated[int, Field(ge=0, le=65_535)] = 0  # the shared proxy's port the relay points at
    mirror_pid: _Pid = 0
    rootfs: Annotated[str, StringConstraints(max_length=8192)] = ""  # one per CPU architecture, comma-separated


def load_state(run: Run) -> State | None:
    """The run's state, or None when it has none; a state file that is not whole is one line (ConfigError)."""
    try:
        state = read_model(STATE_ROOT, run.state_file, State, 1 << 20)
    except FileNotFoundError:
        return None
    if state.run != run.id:
        raise ConfigError([Problem(str(run.state_file), "run", f"{state.run!r} is not this run's id {run.id!r}")])
    return state


def save_state(run: Run, state: State) -> None:
    write_atomic(run.state_file, state.model_dump_json(indent=2), root=STATE_ROOT)


def other_runs(run: Run) -> list[str]:
    """Ids of the other runs with a state directory on this machine."""
    if not STATE_ROOT.is_dir():
        return []
    return sorted(p.name for p in STATE_ROOT.iterdir() if RUN_ID.fullmatch(p.name) and p.name != run.id)
