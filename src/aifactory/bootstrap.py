"""Run playbooks/bootstrap.yml on a site's nodes through ansible-runner's Python API.

Live per-task progress, a per-host summary (ok / changed / failed / unreachable), a non-zero
exit when any host failed, and every run's artifacts (events, stdout, the command) kept in
runs/<site>/<timestamp>/ for the record.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .environment import safe_path
from .errors import OperationError
from .fsutil import entries, is_dir, make_dirs
from .inventory import check_current, hosts_file, hosts_matching
from .stackfile import Stack

PLAYBOOK = "playbooks/bootstrap.yml"
COUNTS = ("ok", "changed", "failures", "dark", "skipped")


@dataclass
class HostSummary:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass
class RunResult:
    status: str
    rc: int
    artifacts: Path
    hosts: dict[str, HostSummary] = field(default_factory=dict)
    seconds: float = 0.0
    # host -> the tasks that changed (or, in check mode, would change) something on it
    changes: dict[str, list[str]] = field(default_factory=dict)
    # host -> why it failed or could not be reached, in Ansible's words
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(h for h, s in self.hosts.items() if s.failed or s.unreachable)

    @property
    def changed_total(self) -> int:
        return sum(s.changed for s in self.hosts.values())


class _Progress:
    """Prints one line per task and one per host result, as events arrive; keeps what changed and failed."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self.out = out
        self.changes: dict[str, list[str]] = {}
        self.reasons: dict[str, str] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        host = data.get("host", "")
        if kind == "playbook_on_task_start":
            self.out(f"TASK {data.get('task', '')}")
        elif kind == "runner_on_ok":
            res = data.get("res", {})
            state = "changed" if res.get("changed") else "ok"
            if res.get("changed"):
                task = str(data.get("task", ""))
                self.changes.setdefault(host, []).append(f"{data['role']} : {task}" if data.get("role") else task)
            msg = (
                " ".join(str(res.get("msg", "")).split()) if data.get("task_action") == "ansible.builtin.debug" else ""
            )
            self.out(f"  {state:11s} {host}" + (f": {msg}" if msg else ""))
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            reason = _reason(data.get("res", {}))
            self.reasons[host] = f"{data.get('task', '')}: {reason}"
            self.out(f"  FAILED      {host}: {reason}")
        elif kind == "runner_on_unreachable":
            self.reasons[host] = f"unreachable: {_reason(data.get('res', {}))}"
            self.out(f"  UNREACHABLE {host}: {data.get('res', {}).get('msg', '')}")
        elif kind == "runner_on_skipped":
            self.out(f"  skipped     {host}")
        return True


def _reason(res: dict[str, Any]) -> str:
    text = res.get("msg") or res.get("stderr") or res.get("module_stderr") or ""
    return " ".join(str(text).split())[:300]


def strategy_env() -> dict[str, str]:
    """Mitogen's linear strategy when it is installed, unless AIFACTORY_MITOGEN=0.

    benchmarks/converge_bench.py: a no-op converge of 32 test hosts took 89.6 s under Mitogen 0.3.54
    against 120.0 s with Ansible's own linear strategy (pipelining and SSH multiplexing on in both);
    the whole test-host suite passes under it. Plain `ansible-playbook` and AWX keep ansible.cfg's
    strategy: Mitogen is the controller's choice, not the playbook's.
    """
    if os.environ.get("AIFACTORY_MITOGEN", "1") == "0":
        return {}
    try:
        import ansible_mitogen
    except ImportError:
        return {}
    plugins = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": "mitogen_linear"}


def run_playbook(
    stack: Stack,
    root: Path,
    *,
    limit: str | None = None,
    check: bool = False,
    ssh_config: Path | None = None,
    say: Callable[[str], None] = print,
    quiet: bool = False,
) -> RunResult:
    """Run the playbook; ``ssh_config`` is an ssh_config(5) file for reaching the nodes (test hosts write one)."""
    import ansible_runner

    inventory = hosts_file(root, stack.name)
    check_current(stack, root)
    if limit:  # a pattern that selects nothing is bad input, not an empty run
        hosts_matching(stack, root, limit, inventory_checked=True)
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
    run_dir = make_dirs(root, root / "runs" / stack.name / stamp)  # no symlink under runs/ is followed
    cmdline = ["--diff"] + (["--check"] if check else [])
    envvars = {
        # ':'-separated lists in Ansible's reading: the root is checked to hold no ':' (environment.safe_path).
        "ANSIBLE_ROLES_PATH": str(safe_path(root, "the project root") / "roles"),
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        # ansible-runner calls ansible-playbook from PATH: make it this interpreter's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    envvars.update(strategy_env())
    if ssh_config:
        # ansible.cfg's ssh_args are replaced, not added to: the file carries its own multiplexing.
        # Ansible splits ssh_args with shlex: quoted, the path stays one word whatever it holds.
        envvars["ANSIBLE_SSH_ARGS"] = f"-F {shlex.quote(str(safe_path(ssh_config, '--ssh-config')))}"
        say(f"SSH settings: {ssh_config}")
    progress = _Progress((lambda _line: None) if quiet else say)
    say(
        f"bootstrap {stack.name}{' (check mode)' if check else ''}: {PLAYBOOK} on {limit or 'all nodes'}"
        f" (strategy {envvars.get('ANSIBLE_STRATEGY', 'linear')}); artifacts in {run_dir}"
    )
    start = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(run_dir),
        project_dir=str(root),
        playbook=str(root / PLAYBOOK),
        inventory=str(inventory),
        limit=limit,
        cmdline=" ".join(cmdline),
        envvars=envvars,
        event_handler=progress,
        quiet=True,
        rotate_artifacts=0,
        timeout=3600,
    )
    result = RunResult(
        runner.status,
        runner.rc,
        Path(runner.config.artifact_dir),
        seconds=time.monotonic() - start,
        changes=progress.changes,
        reasons=progress.reasons,
    )
    stats = runner.stats or {}
    for key, attr in zip(COUNTS, ("ok", "changed", "failed", "unreachable", "skipped"), strict=True):
        for host, n in (stats.get(key) or {}).items():
            setattr(result.hosts.setdefault(host, HostSummary()), attr, n)
    if not result.hosts and runner.rc != 0:
        stdout = Path(runner.config.artifact_dir) / "stdout"
        tail = stdout.read_text()[-1500:] if stdout.is_file() else ""
        raise OperationError(f"ansible-playbook exited {runner.rc} before reaching any host:\n{tail}")
    return result


def summary(result: RunResult) -> str:
    width = max([4, *(len(h) for h in result.hosts)])
    lines = [f"{'HOST'.ljust(width)}  {'ok':>4} {'changed':>7} {'failed':>6} {'unreachable':>11} {'skipped':>7}"]
    for host in sorted(result.hosts):
        s = result.hosts[host]
        lines.append(f"{host.ljust(width)}  {s.ok:4d} {s.changed:7d} {s.failed:6d} {s.unreachable:11d} {s.skipped:7d}")
    verdict = "FAILED on " + ", ".join(result.failed_hosts) if result.failed_hosts else "ok"
    lines.append(f"{verdict} in {result.seconds:.1f} s; artifacts: {result.artifacts}")
    return "\n".join(lines)


# A bootstrap's run folder, as run_playbook names it: runs/<site>/<stamp>-<pid>. Nothing else under
# runs/ is ever pruned: the evidence folders (<stamp>-evidence) and rollouts/ are records.
RUN_DIR = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9]{1,10}", re.ASCII)


def prune_runs(root: Path, site: str, keep: int = 20) -> None:
    """Delete all but the ``keep`` newest bootstrap run folders: real folders named as run_playbook names them."""
    runs = sorted(name for name, st in entries(root, ("runs", site)) if RUN_DIR.fullmatch(name) and is_dir(st))
    for old in runs[:-keep]:
        shutil.rmtree(root / "runs" / site / old, ignore_errors=True)  # fd-based: follows no symlink inside
