"""One run of test hosts: its id, and every name derived from it.

A run is one checkout's hosts for one site: its id is taken from the checkout's path, the site
and a purpose ("lab" for `make lab` and `testhosts up`, "test" for the test suite), or given with
``--run`` / AIFACTORY_RUN. From the id come the network namespace, the bridge and the state
directory, so two runs never share a name, and `down` of one run touches nothing of another.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from pathlib import Path

from ..errors import ConfigError, Problem
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


@dataclass
class HostState:
    name: str
    ip: str
    pid: int = 0


@dataclass
class State:
    run: str
    site: str
    checkout: str
    gateway: str
    prefix: int
    hosts: list[HostState] = field(default_factory=list)
    relay_pid: int = 0
    mirror_pid: int = 0
    rootfs: str = ""


def load_state(run: Run) -> State | None:
    try:
        raw = json.loads(run.state_file.read_text())
        raw["hosts"] = [HostState(**h) for h in raw.get("hosts", [])]
        return State(**raw)
    except (OSError, ValueError, TypeError):
        return None


def save_state(run: Run, state: State) -> None:
    run.dir.mkdir(parents=True, exist_ok=True)
    tmp = run.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(run.state_file)


def other_runs(run: Run) -> list[str]:
    """Ids of the other runs with a state directory on this machine."""
    if not STATE_ROOT.is_dir():
        return []
    return sorted(p.name for p in STATE_ROOT.iterdir() if RUN_ID.fullmatch(p.name) and p.name != run.id)
