"""Semantic diffs on crafted pairs and on a temporary git history."""

from __future__ import annotations

import json
import subprocess

from aifactory.diff import TEXT_WIDTH, diff_stacks, render_text
from aifactory.stackfile import load_stack

from .conftest import ROOT
from .helpers import crafted


def paths(changes):
    return {(c.path, c.kind) for c in changes}


def test_identical_sites_have_no_changes():
    assert diff_stacks(load_stack(ROOT, "ke"), load_stack(ROOT, "ke")) == []


def test_named_lists_are_matched_by_name_not_position():
    a = load_stack(ROOT, "za")

    def reorder_and_edit(site):
        site["tenants"].reverse()
        site["tenants"][0]["gpu_quota"] = 16  # gov-llm after the reverse
        site["network"]["fabric"]["rails"].reverse()

    changes = diff_stacks(a, crafted("za", reorder_and_edit))
    assert [(c.path, c.old, c.new) for c in changes] == [("tenants[gov-llm].gpu_quota", 32, 16)]


def test_added_and_removed_items_are_named():
    def edit(site):
        site["tenants"] = [t for t in site["tenants"] if t["name"] != "wits-ai"]
        site["tenants"].append(
            {"name": "uct-astro", "display_name": "UCT astronomy", "gpu_quota": 8, "data_classification": "public"}
        )
        site["storage"]["object_store"]["buckets"].append({"name": "za-models", "purpose": "released models"})
        site["pools"][0]["nodes"].pop()
        site["pools"][0]["scalable_units"][-1]["nodes"] -= 1

    changes = diff_stacks(load_stack(ROOT, "za"), crafted("za", edit))
    assert {
        ("tenants[wits-ai]", "removed"),
        ("tenants[uct-astro]", "added"),
        ("storage.object_store.buckets[za-models]", "added"),
        ("pools[h100a].nodes[31]", "removed"),
        ("pools[h100a].count", "changed"),
        ("pools[h100a].scalable_units[su1].nodes", "changed"),
    } == paths(changes)


def test_site_against_site_hides_what_must_differ():
    changes = diff_stacks(load_stack(ROOT, "za"), load_stack(ROOT, "ng"), ignore_expected=True)
    found = {c.path for c in changes}
    assert "gpu_stack.driver" in found
    assert "network.fabric.type" in found
    assert "pools[h100a].count" in found
    for hidden in (
        "code",
        "country",
        "location.city",
        "network.management.cidr",
        "pools[h100a].hostname",
        "mirrors.debian.url",
    ):
        assert hidden not in found
    assert not any(c.path.startswith("pools[h100a].nodes[") for c in changes)
    # Buckets named after their site are matched across sites.
    assert not any("buckets[" in c.path and c.kind in ("added", "removed") for c in changes)
    everything = {c.path for c in diff_stacks(load_stack(ROOT, "za"), load_stack(ROOT, "ng"))}
    assert {"code", "location.city", "network.management.cidr"} <= everything


def test_ignore_expected_shows_real_values_and_hides_only_what_the_site_code_explains():
    def edit(site):
        site["storage"]["object_store"]["buckets"][0]["purpose"] = "training data of za, kept in za"

    a = crafted("za", edit)
    b = crafted("za", lambda s: None)
    changes = diff_stacks(load_stack(ROOT, "za"), load_stack(ROOT, "ng"), ignore_expected=True)
    text = render_text("za -> ng", changes)
    assert "{site}" not in text  # every value is one of the two files' own
    # Buckets named after their site are one item under both real names (their purposes differ).
    assert "storage.object_store.buckets[za-checkpoints -> ng-checkpoints].purpose" in {c.path for c in changes}
    # Within one site: a value that differs by more than a site code is shown, with its real text.
    shown = diff_stacks(b, a, ignore_expected=True)
    purpose = [c for c in shown if c.path.endswith(".purpose")]
    assert len(purpose) == 1 and purpose[0].new == "training data of za, kept in za"
    # Between sites: a value that differs only by each side's own code is hidden.
    from aifactory.diff import Change, explained_by_code

    assert explained_by_code(Change("x", "changed", "za-default", "ng-default"), "za", "ng")
    assert not explained_by_code(Change("x", "changed", "za-default", "ng-scratch"), "za", "ng")
    assert not explained_by_code(Change("x", "changed", "pizza-default", "ping-default"), "za", "ng")


def test_text_shortens_only_values_past_its_documented_width(cli):
    code, out, _ = cli("diff", "za", "ng")
    assert code == 0
    values = [line.split(": ", 1)[1] for line in out.splitlines()[1:] if line.startswith(("  -", "  +"))]
    long = [v for v in values if v.endswith("...")]
    assert long and all(len(v) == TEXT_WIDTH for v in long)
    assert any(len(v) < TEXT_WIDTH and not v.endswith("...") for v in values)  # shorter values in full


def test_json_values_are_never_shortened(cli):
    code, out, _ = cli("diff", "za", "ng", "--json")
    assert code == 0
    doc = json.loads(out)
    longest = max(len(json.dumps(c["old"] if c["old"] is not None else c["new"])) for c in doc["changes"])
    assert longest > TEXT_WIDTH and "..." not in out


def test_changed_secret_shows_changed_never_its_value(workdir, cli, monkeypatch):
    import io

    passphrase = (ROOT / "stacks" / "lab.passphrase").read_text().strip()
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", passphrase)
    monkeypatch.setattr("sys.stdin", io.StringIO("rotated-password\n"))
    code, out, _ = cli("secret", "encrypt", "lab", root=workdir)
    assert code == 0
    new_secret = out.strip().removeprefix("secure: ")
    path = workdir / "stacks" / "Pulumi.lab.yaml"
    text = path.read_text()
    old_secret = text.split("secure: ")[1].split()[0]
    _git(workdir, "init", "-q")
    _git(workdir, "add", "-A")
    _git(workdir, "commit", "-qm", "before rotation")
    path.write_text(text.replace(old_secret, new_secret))
    code, out, _ = cli("diff", "lab", "--rev", "HEAD", "--json", root=workdir)
    assert code == 0
    doc = json.loads(out)
    assert doc["changes"] == [
        {"path": "bmcCredentials[gpu].password", "kind": "changed", "old": "[secret]", "new": "[secret]"}
    ]
    assert "rotated-password" not in out and new_secret not in out and old_secret not in out


def _git(where, *args):
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@localhost",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@localhost",
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(["git", "-C", str(where), *args], check=True, env=env)


def _rev(where, rev):
    return subprocess.run(
        ["git", "-C", str(where), "rev-parse", rev], capture_output=True, text=True, check=True
    ).stdout.strip()


def _date(where, rev):
    return subprocess.run(
        ["git", "-C", str(where), "log", "-1", "--format=%cI", rev], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_diff_against_a_tag_in_a_temporary_history(workdir, cli):
    _git(workdir, "init", "-q")
    _git(workdir, "add", "-A")
    _git(workdir, "commit", "-qm", "approved")
    _git(workdir, "tag", "approved-2026-q3")
    path = workdir / "stacks" / "Pulumi.ke.yaml"
    text = path.read_text()
    text = text.replace("driver: 570.172.08", "driver: 580.95.05")
    text = text.replace(
        "gpu_quota: 48, data_classification: internal}", "gpu_quota: 40, data_classification: internal}"
    )
    path.write_text(text)
    _git(workdir, "commit", "-qam", "driver upgrade")
    code, out, _ = cli("diff", "ke", "--rev", "approved-2026-q3", root=workdir)
    assert code == 0
    approved, upgrade = (_rev(workdir, r) for r in ("approved-2026-q3", "HEAD"))
    lines = out.splitlines()
    assert lines[0].startswith(f"ke@approved-2026-q3: approved-2026-q3 is {approved[:7]} of 20")
    assert lines[0].endswith(" by t")
    assert lines[1:] == [
        f"ke: stacks/Pulumi.ke.yaml in the working tree at {upgrade[:7]} (as committed)",
        "commits from it to HEAD on HEAD's first-parent history: 1, 1 changed stacks/Pulumi.ke.yaml:",
        f"  {upgrade[:7]} {_date(workdir, upgrade)} t: driver upgrade",
        "ke@approved-2026-q3 -> ke: 2 change(s)",
        "  ~ gpu_stack.driver: 570.172.08 -> 580.95.05",
        "  ~ tenants[agri-models].gpu_quota: 48 -> 40",
    ]
    code, out, _ = cli("diff", "ke", "--rev", "approved-2026-q3", "--plan", "--json", root=workdir)
    doc = json.loads(out)
    assert doc["kind"] == "plan"
    assert {c["path"] for c in doc["changes"]} == {
        "kubernetes:core/v1:ResourceQuota::agri-models-gpu-quota spec.hard.requests.nvidia.com/gpu"
    }
    code, _, err = cli("diff", "ke", "--rev", "no-such-tag", root=workdir)
    assert code == 2
    assert err.startswith("error: --rev: 'no-such-tag' names no commit")


def test_plan_diff_between_sites_lists_added_and_removed_resources(cli):
    code, out, _ = cli("diff", "ng", "ke", "--plan", "--json")
    doc = json.loads(out)
    kinds = {c["path"]: c["kind"] for c in doc["changes"]}
    assert kinds["kubernetes:metal3.io/v1alpha1:BareMetalHost::ke-nbo1-h200-01"] == "added"
    assert kinds["kubernetes:metal3.io/v1alpha1:BareMetalHost::ng-lgs1-gpu-01"] == "removed"


def test_diff_needs_a_second_site_or_a_revision(cli):
    assert cli("diff", "ke")[0] == 2
    assert cli("diff", "ke", "ng", "--rev", "HEAD")[0] == 2
