"""Running the real Pulumi CLI on a site's stack: its environment, the commands, the preview's JSON.

The CLI runs with the engines' PATH (``aifactory.engines``), so it finds the pinned language host
and Kubernetes provider there and downloads nothing; with the site's state backend (an in-country
``s3://`` store, or a local ``file://`` folder), the passphrase secrets provider, a Pulumi home of
the caller's choosing (the lab keeps one per run, never the user's ``~/.pulumi``) and the
kubeconfig whose context the stack names. The object store's keys reach the state backend as the
AWS SDK's own environment variables, in this process's children only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engines.build import duration
from .engines.locate import Engines
from .errors import OperationError

PROVIDER_FILE = "pulumi-resource-kubernetes"


@dataclass(frozen=True)
class Cli:
    """One project and stack under the real CLI."""

    engines: Engines
    project: Path  # the folder holding Pulumi.yaml
    stack: str
    backend: str
    home: Path
    env_extra: dict[str, str] = field(default_factory=dict, repr=False)
    say: Callable[[str], None] = print

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Only the CLI's own folder (the language host and the SDK's scripts ship beside it): the
        # provider comes from the plugin cache of PULUMI_HOME (install_plugins), as a user's does,
        # and not as an "ambient" plugin from PATH, which the CLI warns about on every run.
        env["PATH"] = os.pathsep.join([str(self.engines.bin("pulumi")), env.get("PATH", "")])
        env.update(
            {
                "PULUMI_BACKEND_URL": self.backend,
                "PULUMI_HOME": str(self.home),
                "PULUMI_SKIP_UPDATE_CHECK": "true",
                # Everything it needs is on PATH; an attempt to download a plugin is an error here.
                "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
                # The language host runs the program with this interpreter (the project's virtualenv).
                "PULUMI_PYTHON_CMD": sys.executable,
                "PULUMI_SKIP_CONFIRMATIONS": "true",
            }
        )
        env.update(self.env_extra)
        return env

    def run(
        self, *args: str, capture: bool = False, check: bool = True, what: str = ""
    ) -> subprocess.CompletedProcess[str]:
        """``pulumi ARGS --stack STACK``; its output streams through unless ``capture``."""
        argv = [self.engines.exe("pulumi"), *args, "--stack", self.stack, "--non-interactive"]
        self.home.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        proc = subprocess.run(
            argv,
            cwd=self.project,
            env=self.env(),
            text=True,
            capture_output=capture,
            check=False,
        )
        took = duration(time.monotonic() - t0)
        if check and proc.returncode != 0:
            tail = _failure_lines((proc.stderr or "") + (proc.stdout or "")) if capture else []
            raise OperationError(
                f"pulumi {' '.join(args[:1])} -s {self.stack} failed (exit {proc.returncode}, {took})"
                + (f": {' | '.join(tail)}" if tail else "")
            )
        if what:
            self.say(f"{what}: {took}")
        return proc

    def install_plugins(self) -> None:
        """The pinned Kubernetes provider in this Pulumi home's plugin cache (`pulumi plugin install --file`)."""
        found = self.engines.found["pulumi-kubernetes"]
        if (self.home / "plugins" / f"resource-kubernetes-{found.version}" / PROVIDER_FILE).is_file():
            return
        exe = str(found.bin / PROVIDER_FILE)
        argv = [self.engines.exe("pulumi"), "plugin", "install", "resource", "kubernetes", found.version, "--file", exe]
        self.home.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(argv, cwd=self.project, env=self.env(), text=True, capture_output=True, check=False)
        if proc.returncode != 0:
            raise OperationError(
                f"pulumi plugin install kubernetes {found.version}: {' | '.join(_failure_lines(proc.stderr))}"
            )

    def select(self) -> None:
        """The stack in the backend, created on first use (its config stays the committed stack file)."""
        self.install_plugins()
        if self.backend.startswith("file://"):
            Path(self.backend.removeprefix("file://")).expanduser().mkdir(parents=True, exist_ok=True)
        argv = [self.engines.exe("pulumi"), "stack", "select", "--create", self.stack, "--non-interactive"]
        self.home.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(argv, cwd=self.project, env=self.env(), text=True, capture_output=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
            raise OperationError(f"pulumi stack select {self.stack} on {self.backend}: {' | '.join(tail)}")

    def preview_json(self, *extra: str) -> dict[str, Any]:
        """``pulumi preview --json``: the steps the engine would take, each with its inputs."""
        proc = self.run("preview", "--json", *extra, capture=True, check=False)
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            doc = None
        if proc.returncode != 0 or not isinstance(doc, dict):
            lines = [ln for ln in (proc.stderr + proc.stdout).strip().splitlines() if ln.strip()][-4:]
            raise OperationError(f"pulumi preview -s {self.stack} failed (exit {proc.returncode}): {' | '.join(lines)}")
        return doc


def _failure_lines(output: str) -> list[str]:
    """What a failed command said: its error lines (the engine's diagnostics), else its last lines."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:") or " error: " in ln]
    return (errors or lines)[-5:]


def changes(preview: dict[str, Any]) -> dict[str, int]:
    """The change summary of a ``pulumi preview --json`` document (op -> count), without "same"."""
    summary = preview.get("changeSummary") or {}
    return {op: int(n) for op, n in summary.items() if op != "same" and int(n)}
