"""Bad stacks exit 2 with one line per problem naming the file and the field; nothing is planned."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LAB = "stacks/Pulumi.lab.yaml"


def _edit(workdir: Path, old: str, new: str, name: str = "lab") -> None:
    path = workdir / "stacks" / f"Pulumi.{name}.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


CASES = {
    "unknown key": (
        "    code: lab\n",
        "    code: lab\n    colour: blue\n",
        "aifactory:site.colour: unknown key",
    ),
    "wrong type": (
        "ip_offset: 11",
        "ip_offset: eleven",
        "aifactory:site.pools[0].ip_offset: Input should be a valid integer",
    ),
    "bad CIDR": (
        "storage: {cidr: 172.29.2.0/24}",
        "storage: {cidr: 172.29.2.0/33}",
        "aifactory:site.network.storage.cidr: Input is not a valid IPv4 network",
    ),
    "host bits in CIDR": (
        "storage: {cidr: 172.29.2.0/24}",
        "storage: {cidr: 172.29.2.7/24}",
        "aifactory:site.network.storage.cidr: Input is not a valid IPv4 network",
    ),
    "unknown SKU": (
        "sku: dgx-h100",
        "sku: dgx-a100",
        "aifactory:site.pools[0].sku: unknown SKU 'dgx-a100'; the catalog has: dgx-b200, dgx-h100, dgx-h200",
    ),
    "plaintext secret": (
        "      password:\n        secure: v1:Z05SFWJyVnPXAB79:jKXdv8Cc1kPCu34mxVZ4w6kMSMWMZWODHeBwR7+xpk8=",
        "      password: hunter2",
        "aifactory:bmcCredentials.gpu.password: [secrets.plaintext] plaintext credential",
    ),
    "plaintext S3 secret key": (
        "    secret_access_key:\n      secure: v1:BY8pivftR7u/BK/l:",
        "    secret_access_key: hunter2\n    x_secure: v1:BY8pivftR7u/BK/l:",
        "aifactory:objectStoreCredentials.secret_access_key: [secrets.plaintext] plaintext credential",
    ),
    "bad S3 access key": (
        "access_key_id: AIFACTORYLABOWNER01",
        "access_key_id: 'AKIA; rm -rf /'",
        "aifactory:objectStoreCredentials.access_key_id: required: 8-128 of A-Z a-z 0-9",
    ),
    "evidence bucket without a lock": (
        "role: evidence, classification: internal, object_lock: {days: 30}}",
        "role: evidence, classification: internal}",
        "aifactory:site.storage.object_store.buckets[1]: an evidence bucket needs object_lock with mode COMPLIANCE",
    ),
    "YAML syntax error": (
        "    code: lab\n",
        "    code: [lab\n",
        "YAML syntax error",
    ),
    "bad MAC": (
        'mac: "02:a1:f0:00:00:12"',
        'mac: "02:a1:f0:00:12"',
        "aifactory:site.pools[0].nodes[1].mac: '02:a1:f0:00:12' is not a MAC address",
    ),
    "missing key": (
        "      regulator: Information Regulator (South Africa)\n",
        "",
        "aifactory:site.jurisdiction.regulator: required key is missing",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_bad_stack_exits_2_naming_file_and_field(case, command, workdir, cli):
    old, new, expected = CASES[case]
    _edit(workdir, old, new)
    code, out, err = cli(command, "lab", root=workdir)
    assert code == 2
    assert out == ""  # nothing planned, nothing validated half-way
    lines = err.strip().splitlines()
    assert lines, "no problem reported"
    assert all(line.startswith(f"error: {LAB}: ") for line in lines), lines
    assert any(expected in line for line in lines), lines
    assert "Traceback" not in err


def test_missing_stack(workdir, cli):
    code, out, err = cli("plan", "atlantis", root=workdir)
    assert code == 2
    assert err.strip() == (
        "error: stacks/Pulumi.atlantis.yaml: no stack 'atlantis' (stacks here: de, eg, ke, lab, ma, ng, za)"
    )


def test_every_problem_is_reported_at_once(workdir, cli):
    _edit(workdir, "sku: dgx-h100", "sku: dgx-a100")
    _edit(workdir, 'mac: "02:a1:f0:00:00:12"', 'mac: "zz"')
    _edit(workdir, "ip_offset: 11", "ip_offset: 0")
    code, _, err = cli("validate", "lab", root=workdir)
    assert code == 2
    assert len(err.strip().splitlines()) == 3


def test_credentials_for_every_pool(workdir, cli):
    _edit(workdir, "  aifactory:bmcCredentials:\n    gpu:", "  aifactory:bmcCredentials:\n    cpu:")
    code, _, err = cli("validate", "lab", root=workdir)
    assert code == 2
    assert "aifactory:bmcCredentials.gpu: no BMC credentials for this pool" in err
    assert "aifactory:bmcCredentials.cpu: credentials for a pool the site does not declare" in err


def test_stack_name_must_match_code(workdir, cli):
    (workdir / "stacks" / "Pulumi.lab.yaml").rename(workdir / "stacks" / "Pulumi.lab2.yaml")
    code, _, err = cli("validate", "lab2", root=workdir)
    assert code == 2
    assert "aifactory:site.code: 'lab' does not match the stack name 'lab2'" in err


def test_no_traceback_from_the_real_entry_point(workdir):
    _edit(workdir, "    code: lab\n", "    code: [lab\n")
    proc = subprocess.run(
        [sys.executable, "-m", "aifactory.cli", "--root", str(workdir), "plan", "lab"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"error: {LAB}: line ")
    assert "Traceback" not in proc.stderr
