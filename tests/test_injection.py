"""No template evaluation of site data, and no value that adds a line to a config file.

Payloads go into every string field of the lab stack that the grammars admit; the ones the
grammars refuse are refused (test_untrusted covers those). The admitted stack is rendered to an
inventory with `aifactory inventory`, and real ansible-playbook runs (local connection) then:
render every inventory variable through a template, and run the roles' own validation with
values a grammar gap would let through. Nothing may run, and no rendered file may gain a line.
The same hostile stack goes through the real roles on a test host in test_testhosts.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifactory.errors import ConfigError
from aifactory.stackfile import parse_stack

from .conftest import ROOT

MARKER = Path("/tmp/aifactory-injection-ran")
PAYLOADS = (
    "{{ lookup('pipe', 'touch /tmp/aifactory-injection-ran') }}",
    "{% set x = lookup('pipe', 'touch /tmp/aifactory-injection-ran') %}",
    "$(touch /tmp/aifactory-injection-ran)",
    "x; touch /tmp/aifactory-injection-ran #",
    "`touch /tmp/aifactory-injection-ran`",
    "a\nNCCL_NET_PLUGIN=/tmp/evil.so",
    "a\nTrusted: yes",
)
URL_PAYLOADS = ("$(touch$IFS/tmp/aifactory-injection-ran)", ";touch$IFS/tmp/aifactory-injection-ran;", "'$(id)'")


def _string_paths(node: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(node, str):
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _string_paths(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _string_paths(v, (*path, i))]
    return []


def _set(doc: Any, path: tuple, value: str) -> None:
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


def _admits(doc: dict[str, Any]) -> bool:
    try:
        parse_stack(doc, "lab", ROOT / "stacks" / "Pulumi.lab.yaml", "stacks/Pulumi.lab.yaml")
    except ConfigError:
        return False
    return True


def hostile_lab() -> tuple[dict[str, Any], list[tuple[tuple, str]]]:
    """The lab stack with a payload in every string field whose grammar admits one, and which went where.

    URL payloads go only into the mirrors a Debian test host does not fetch from (Ubuntu, CUDA), so
    the same stack still bootstraps the test hosts.
    """
    base = yaml.safe_load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())
    doc = copy.deepcopy(base)
    site = doc["config"]["aifactory:site"]
    planted: list[tuple[tuple, str]] = []
    for path in _string_paths(site):
        original = site
        for k in path:
            original = original[k]
        candidates = [*PAYLOADS]
        if path in (("mirrors", "ubuntu", "url"), ("mirrors", "cuda", "url")):
            candidates = [original + p for p in URL_PAYLOADS]
        for payload in candidates:
            trial = copy.deepcopy(doc)
            _set(trial["config"]["aifactory:site"], path, payload)
            if _admits(trial):
                doc = trial
                site = doc["config"]["aifactory:site"]
                planted.append((path, payload))
                break
    return doc, planted


def test_grammars_admit_payloads_only_where_they_are_harmless_text():
    _, planted = hostile_lab()
    fields = {p[0] for p, _ in planted}
    # Free text (names, law, purpose) admits template-looking text; identifiers, hosts and versions admit none.
    assert ("name",) in {p for p, _ in planted}
    assert not any("\n" in v for _, v in planted), "a value with a line break was admitted"
    assert {"code", "pools", "network", "gpu_stack", "kubernetes"}.isdisjoint(fields - {"tenants", "storage"}), planted
    assert any(p[:2] == ("mirrors", "cuda") for p, _ in planted)


@pytest.fixture
def hostile_checkout(tmp_path: Path) -> Path:
    root = tmp_path / "co"
    root.mkdir()
    for f in ("Pulumi.yaml", "ansible.cfg"):
        shutil.copy(ROOT / f, root / f)
    for d in ("stacks", "roles", "playbooks", "templates", "inventories"):
        shutil.copytree(ROOT / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    doc, _ = hostile_lab()
    (root / "stacks" / "Pulumi.lab.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return root


def _aifactory(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aifactory.cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _playbook(root: Path, playbook: str, inventory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    (root / "probe.yml").write_text(playbook)
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(root / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    return subprocess.run(
        # Local connection: modules run with this interpreter, whatever python3 is on PATH.
        [
            "ansible-playbook",
            "-i",
            str(inventory),
            str(root / "probe.yml"),
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        check=False,
    )


RENDER_EVERY_VARIABLE = """
- name: Render every inventory variable of the site through a template
  hosts: all
  connection: local
  gather_facts: false
  tasks:
    - name: Write each variable the inventory gives this host
      ansible.builtin.copy:
        content: |
          {% for name in names %}
          {{ name }}={{ lookup('ansible.builtin.vars', name) | to_json }}
          {% endfor %}
        dest: "{{ out }}/{{ inventory_hostname }}.txt"
        mode: "0644"
      vars:
        names: "{{ (hostvars[inventory_hostname].keys() | select('match', '^(aifactory|nvidia|cuda|nccl)_') | sort) }}"
"""


def test_inventory_values_are_never_templated_by_ansible(hostile_checkout, tmp_path):
    MARKER.unlink(missing_ok=True)
    proc = _aifactory(hostile_checkout, "inventory", "lab")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "rendered"
    out.mkdir()
    run = _playbook(
        hostile_checkout,
        RENDER_EVERY_VARIABLE,
        hostile_checkout / "inventories" / "lab" / "hosts.yml",
        "-e",
        json.dumps({"out": str(out)}),
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert not MARKER.exists(), "a payload in the stack ran a command on the controller"
    rendered = (out / "lab-gpu-01.txt").read_text()
    # The payload arrives as the literal text the stack holds, not as what it would evaluate to.
    assert "aifactory_site_name=\"{{ lookup('pipe', 'touch /tmp/aifactory-injection-ran') }}\"" in rendered
    assert "$(touch$IFS/tmp/aifactory-injection-ran)" in rendered
    assert all("=" in line for line in rendered.splitlines()), "a value added a line"


ROLE_VALIDATION = """
- name: The roles' own checks, before any file is written
  hosts: all
  connection: local
  gather_facts: false
  tasks:
    - name: Check what nvidia_base writes into apt sources, limits and sysctl
      ansible.builtin.include_role:
        name: nvidia_base
        tasks_from: validate
    - name: Check what nccl writes into /etc/nccl.conf
      ansible.builtin.include_role:
        name: nccl
        tasks_from: validate
"""

GRAMMAR_GAPS = {
    "nccl_socket_ifname": "host0\nNCCL_NET_PLUGIN=/tmp/evil.so",
    "nvidia_base_debian_mirror": "http://172.29.0.1:3142/debian\nTrusted: yes",
    "nvidia_base_cuda_repo_url": "http://172.29.0.1/repos [trusted=yes]",
    "nccl_ib_hca": ["mlx5_0\nNCCL_DEBUG=TRACE"],
    "nccl_extra_env": {"NCCL_DEBUG": "INFO\nNCCL_NET_PLUGIN=/tmp/evil.so"},
    "nvidia_base_memlock": "unlimited\n* hard nofile 1",
    "nvidia_base_sysctl": {"kernel.numa_balancing": "0\nkernel.core_pattern = |/tmp/x"},
}


@pytest.mark.parametrize("variable", sorted(GRAMMAR_GAPS))
def test_roles_refuse_a_value_that_would_add_a_line(variable, tmp_path):
    """Defence in depth: even an inventory not made by aifactory cannot add a line to a config file."""
    root = tmp_path / "co"
    root.mkdir()
    shutil.copy(ROOT / "ansible.cfg", root / "ansible.cfg")
    shutil.copytree(ROOT / "roles", root / "roles")
    inventory = root / "hosts.yml"
    good = {"nccl_package_version": "2.21.5-1+cuda11.0", "nccl_socket_ifname": "host0", "nccl_ib_hca": ["mlx5_0"]}
    host_vars = {**good, variable: GRAMMAR_GAPS[variable]}
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"node-01": host_vars}}}))
    run = _playbook(root, ROLE_VALIDATION, inventory)
    assert run.returncode != 0, run.stdout[-2000:]
    assert "refusing to write it" in run.stdout or "is not" in run.stdout, run.stdout[-2000:]
    assert variable.split("_")[0] in run.stdout
    # And the same inventory with clean values passes the checks.
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"node-01": good}}}))
    clean = _playbook(root, ROLE_VALIDATION, inventory)
    assert clean.returncode == 0, clean.stdout[-2000:]
