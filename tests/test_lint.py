"""Static checks that belong to the suite: ruff, ansible-lint (production profile), committed inventories."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: `make setup` installs the dev extras")
    return found


def test_ruff_clean():
    proc = subprocess.run(
        [_tool("ruff"), "check", "src", "tests", "benchmarks", "stacks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_production_profile():
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
    }
    proc = subprocess.run(
        [_tool("ansible-lint"), "--profile", "production", "--nocolor", "roles", "playbooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_playbook_syntax():
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    proc = subprocess.run(
        [_tool("ansible-playbook"), "--syntax-check", "-i", "inventories/za/hosts.yml", "playbooks/bootstrap.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_committed_inventories_are_in_sync(cli):
    code, out, _ = cli("inventory", "--check")
    assert code == 0, out
