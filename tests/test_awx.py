"""The hand-off to AWX / Ansible Automation Platform: an execution environment and the inventories as its source."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, SITES

BIN = Path(sys.executable).parent


def _pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[<>=!~]", d, maxsplit=1)[0]: d for d in deps}


@pytest.mark.skipif(not (BIN / "ansible-builder").exists(), reason="ansible-builder is not installed (dev extras)")
def test_ansible_builder_creates_the_build_context_offline(tmp_path):
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert ee["version"] == 3
    env = {**os.environ, "no_proxy": "*", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    done = subprocess.run(
        [
            str(BIN / "ansible-builder"),
            "create",
            "-f",
            str(ROOT / "execution-environment.yml"),
            "--context",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    build = (tmp_path / "Dockerfile").read_text()
    pins = _pins()
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="(.*)"$', build, re.M).group(1)
    # The same version ranges as the project pins: one fact, checked against its one home.
    assert refs.split() == [pins["ansible-core"], pins["ansible-runner"]]
    assert re.search(r"^ARG EE_BASE_IMAGE=", build, re.M)  # the site's mirror overrides it with --build-arg
    assert "ansible-galaxy collection install" not in build  # no collection: see the next test
    assert "openssh-clients" in (tmp_path / "_build" / "bindep.txt").read_text()


def test_the_roles_need_no_collection_beyond_ansible_builtin():
    modules = set()
    for path in [
        *ROOT.glob("roles/*/tasks/*.yml"),
        *ROOT.glob("roles/*/handlers/*.yml"),
        *ROOT.glob("playbooks/*.yml"),
    ]:
        for task in yaml.safe_load(path.read_text()) or []:
            if isinstance(task, dict):
                modules |= {k for k in task if k.count(".") == 2}
    assert modules and all(m.startswith("ansible.builtin.") for m in modules), sorted(modules)


@pytest.mark.parametrize("site", SITES)
def test_each_inventory_is_an_awx_inventory_source_with_its_group_vars(site):
    """AWX imports a project inventory source with ansible-inventory: the host and its group_vars must come with it."""
    inventory = shutil.which("ansible-inventory", path=str(BIN)) or "ansible-inventory"
    done = subprocess.run(
        [inventory, "-i", str(ROOT / "inventories" / site / "hosts.yml"), "--list"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    hostvars = doc["_meta"]["hostvars"]
    from aifactory.stackfile import load_stack

    stack = load_stack(ROOT, site)
    assert set(hostvars) == {n.hostname for n in stack.site.nodes}
    first = hostvars[stack.site.nodes[0].hostname]
    # Values from the stack arrive still marked unsafe: AWX's import does not make them templates.
    assert first["nvidia_driver_version"] == {"__ansible_unsafe": stack.site.gpu_stack.driver}
    host = first["ansible_host"]
    host = host["__ansible_unsafe"] if isinstance(host, dict) else host
    assert host == str(stack.site.nodes[0].management_ip)
