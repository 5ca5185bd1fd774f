"""`pulumi preview` of the lab stack with the real CLI on a local file backend, where the CLI exists."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .conftest import ROOT

PULUMI = shutil.which("pulumi")


@pytest.mark.cli
@pytest.mark.skipif(
    PULUMI is None,
    reason="the pulumi CLI is not on PATH (it cannot be downloaded on these machines); "
    "`aifactory plan` covers the program under Pulumi's mock runtime instead",
)
def test_pulumi_preview_lab_on_a_local_backend(tmp_path):
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{tmp_path}",
        "PULUMI_CONFIG_PASSPHRASE_FILE": str(ROOT / "stacks" / "lab.passphrase"),
        "PULUMI_SKIP_UPDATE_CHECK": "1",
        "PULUMI_HOME": str(tmp_path / "home"),
    }
    subprocess.run([PULUMI, "stack", "select", "--create", "lab"], cwd=ROOT, env=env, check=True)
    proc = subprocess.run(
        [PULUMI, "preview", "--stack", "lab", "--non-interactive", "--diff"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "kubernetes:metal3.io/v1alpha1:BareMetalHost" in proc.stdout
    assert "lab-bmc-password" not in proc.stdout
