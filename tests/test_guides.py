"""The operating guides, followed: their YAML blocks applied to a copy of the site, their answers checked."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from aifactory import labels
from aifactory.plan import run_plan
from aifactory.stackfile import load_stack

from .conftest import ROOT

GUIDE = ROOT / "docs" / "guides" / "add-a-scalable-unit.md"
BMH = "kubernetes:metal3.io/v1alpha1:BareMetalHost"


def blocks(text: str) -> list[Any]:
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def quoted_errors(text: str) -> list[list[str]]:
    """The error lines the guide quotes, each as its pieces between elisions (… or ...)."""
    lines = re.findall(r"^\s+(error: .*)$", text, re.M)
    return [[p.strip() for p in re.split(r"…|\.\.\.", line) if p.strip()] for line in lines]


def says(output: str, pieces: list[str]) -> bool:
    return all(p in output for p in pieces) and sum(map(len, pieces)) > 40


def project(where: Path, doc: dict[str, Any]) -> Path:
    """A project holding only the changed za (no lab passphrase: a country team's checkout need not have it)."""
    (where / "stacks").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Pulumi.yaml", where / "Pulumi.yaml")
    (where / "stacks" / "Pulumi.za.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return where


def test_adding_a_scalable_unit_as_the_guide_says(tmp_path, cli):
    text = GUIDE.read_text()
    (pool,), credentials, rails = blocks(text)
    su1_error, capacity_error = quoted_errors(text)
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.za.yaml").read_text())
    site = doc["config"]["aifactory:site"]
    before = load_stack(ROOT, "za").site
    # "one line per node: 32 in all": the nodes the guide elides follow the two it shows.
    shown = len(pool["nodes"])
    assert shown == 2 and pool["scalable_units"] == [{"name": "su2", "nodes": 32}]
    first = int(pool["nodes"][0]["bmc"].rsplit(".", 1)[1])
    pool["nodes"] += [{"bmc": f"10.16.4.{first + i}", "mac": f"b8:3f:d2:20:00:{i + 1:02x}"} for i in range(shown, 32)]
    site["pools"].append(pool)
    # The guide's ciphertext is elided; the pool's credentials take the site's existing one.
    ((name, entry),) = credentials.items()
    entry["password"] = copy.deepcopy(doc["config"]["aifactory:bmcCredentials"]["h100a"]["password"])
    doc["config"]["aifactory:bmcCredentials"][name] = entry

    # su1 again is refused, as quoted.
    reused = copy.deepcopy(doc)
    reused["config"]["aifactory:site"]["pools"][-1]["scalable_units"][0]["name"] = "su1"
    code, out, err = cli("validate", "za", root=project(tmp_path / "reused", reused))
    assert code == 2 and says(out + err, su1_error), out + err

    # The rails as they were: the capacity error, saying the prefix that fits.
    code, out, err = cli("validate", "za", root=project(tmp_path / "narrow", doc))
    said = out + err
    assert code == 2 and says(said, capacity_error), said
    assert "net.scalable-units] su1" not in said

    # The guide's rails: za is ok, and the plan has the unit's 32 hosts, labelled su2.
    site["network"]["fabric"]["rails"] = rails
    where = project(tmp_path / "widened", doc)
    code, out, err = cli("validate", "za", root=where)
    assert code == 0 and "za: ok" in out, out + err
    after = load_stack(where, "za")
    hosts = {r.name: r for r in run_plan(after).of_type(BMH)}
    added = sorted(set(hosts) - {n.hostname for n in before.nodes})
    assert added == [f"za-jnb1-h200-{i:03d}" for i in range(1, 33)], added
    assert {hosts[h].inputs["metadata"]["labels"][labels.SCALABLE_UNIT] for h in added} == {"su2"}
    node = next(n for n in after.site.nodes if n.hostname == "za-jnb1-h200-001")
    assert str(node.management_ip).endswith(".61")
