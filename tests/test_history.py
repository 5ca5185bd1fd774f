"""The auditor's whole history: every revision of every stack on main reads and diffs against today;
dates resolve on the commit history (never the reflog) and say what they chose; both sides of a plan
diff pass the gate; an audit says whether its bytes are a commit's."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from aifactory.diff import diff_stacks
from aifactory.stackfile import load_stack

from .conftest import ROOT
from .test_diff import _git

CURRENT = 5  # the stack format of today's files (aifactory.migrations.CURRENT; a test checks they agree)


def _rev(where: Path, rev: str) -> str:
    return _out("rev-parse", rev, where=where).strip()


def _out(*args: str, where: Path = ROOT) -> str:
    return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, check=True).stdout


def _stack_files() -> list[str]:
    """Every stack file that any commit on this history has held."""
    names = _out("log", "--format=", "--name-only", "--", "stacks/Pulumi.*.yaml").split()
    return sorted(set(names))


def _require_history() -> None:
    if _out("rev-parse", "--is-shallow-repository").strip() == "true":
        pytest.fail("this clone is shallow: the history test needs the whole history (git fetch --unshallow)")


def test_every_revision_of_every_stack_reads_and_diffs_against_today():
    from aifactory import history

    _require_history()
    files = _stack_files()
    assert len(files) >= 6, files
    read: dict[str, list[int]] = {}
    for rel in files:
        site = Path(rel).name.removeprefix("Pulumi.").removesuffix(".yaml")
        today = load_stack(ROOT, site) if (ROOT / rel).is_file() else None
        for sha in _out("log", "--format=%H", "--", rel).split():
            old = history.stack_at(ROOT, site, history.resolve(ROOT, sha))
            assert 1 <= old.format <= CURRENT
            assert bool(old.migrated) == (old.format < CURRENT), (rel, sha, old.migrated)
            if today is not None:
                diff_stacks(old, today)  # compares: no error
            read.setdefault(site, []).append(old.format)
    # Each of the first six stacks has had four revisions on main, the lab six; the oldest of each is
    # format 1. A stack added later (de) reads from its own first revision on.
    first_six = {"eg", "ke", "lab", "ma", "ng", "za"}
    assert all(len(read[s]) >= 4 and read[s][-1] == 1 for s in first_six), read
    assert set(read) >= first_six | {"de"}


@pytest.mark.parametrize("site", ["ke", "lab"])
def test_diff_against_the_first_commit_of_a_stack_works_from_the_command_line(site, cli):
    first = _out("log", "--format=%H", "--", f"stacks/Pulumi.{site}.yaml").split()[-1]
    code, out, err = cli("diff", site, "--rev", first)
    assert code == 0, err
    assert f"stack format 1, upgraded to {CURRENT} to compare" in out
    assert "error" not in err


def test_upgrades_keep_what_each_old_shape_meant():
    """ke at its first commit against ke after the fourth shape change: what the steps carried over is no change."""
    from aifactory import history

    old = history.stack_at(ROOT, "ke", history.resolve(ROOT, "c620c59"))
    later = history.stack_at(ROOT, "ke", history.resolve(ROOT, "dab6d38"))
    changes = {c.path: (c.old, c.new) for c in diff_stacks(old, later)}
    assert changes == {
        "jurisdiction.in_country.dns_suffixes": (
            ["nbo1.ke.aifactory.internal", "s3.msa1.ke.aifactory.internal"],
            ["ke.aifactory.internal"],
        ),
        "jurisdiction.in_country.networks": ([], ["10.48.0.0/12"]),
        "storage.classes[lustre-scratch].provisioner": ("lustre.csi.ddn.com", "exa.csi.ddn.com"),
        "storage.classes[lustre-scratch].parameters.fsname": ("kescratch", None),
        "storage.classes[lustre-scratch].parameters.mgsAddress": ("10.48.8.5@o2ib", None),
        "storage.classes[lustre-scratch].parameters.exaFS": (None, "10.48.8.5@o2ib:/kescratch"),
        "storage.classes[lustre-scratch].parameters.mountPoint": (None, "/exaFS"),
        "storage.object_store.buckets[ke-checkpoints].role": ("data", "checkpoints"),
        "storage.object_store.buckets[ke-evidence].role": ("data", "evidence"),
        "storage.object_store.buckets[ke-evidence].classification": ("confidential", "internal"),
        "storage.object_store.buckets[ke-pulumi-state].role": ("data", "state"),
        "storage.object_store.buckets[ke-pulumi-state].lifecycle.noncurrent_days": (None, 90),
    }
    # gpu_stack.mig.default_profile became the pool's mig_config, object_lock_days an object lock, the rails'
    # device names went to the catalog, and the units are the ones the old labels had: none of it a change.
    assert old.site.pools[0].mig_config == "all-1g.18gb"
    assert old.site.storage.object_store.buckets[2].object_lock.days == 2555
    assert [u.name for u in old.site.pools[0].scalable_units] == ["su1"]
    assert [n.split(" ", 1)[0] for n in old.migrated] == ["1->2", "2->3", "2->3", "3->4", "4->5"]
    assert (old.format, later.format) == (1, 4)


def test_each_step_joins_two_formats_and_names_the_commit_whose_shape_it_reads():
    from aifactory import migrations
    from aifactory.migrations import STEPS, shape_of

    _require_history()
    assert migrations.CURRENT == CURRENT
    package = ROOT / "src" / "aifactory" / "migrations"
    assert [s.source for s in STEPS] == list(range(1, CURRENT))
    for step in STEPS:
        module = package / f"v{step.source}_to_v{step.source + 1}.py"
        assert module.is_file(), module
        assert step.introduced in module.read_text(), f"{module.name} does not name the commit it reads"
        assert re.fullmatch(r"[0-9a-f]{40}", step.introduced), step.introduced
        sha = _out("rev-parse", "--verify", f"{step.introduced}^{{commit}}").strip()
        assert _out("merge-base", "--is-ancestor", sha, "HEAD") == ""  # on this history
        for rel in _out("ls-tree", "--name-only", sha, "stacks/").split():
            if rel.endswith(".yaml"):
                config = yaml.safe_load(_out("show", f"{sha}:{rel}"))["config"]
                assert shape_of(config) == step.source, (step.name, rel)


def test_todays_stacks_declare_the_current_format():
    for rel in _stack_files():
        if (ROOT / rel).is_file():
            assert yaml.safe_load((ROOT / rel).read_text())["config"]["aifactory:stackFormat"] == CURRENT, rel


# -- revisions that cannot be read, and working-tree files of an old format ------------------------


def _history_of(workdir: Path, *texts: str) -> None:
    """A temporary history of ke: one commit per text, then today's file back in the working tree."""
    path = workdir / "stacks" / "Pulumi.ke.yaml"
    today = path.read_text()
    _git(workdir, "init", "-q")
    _git(workdir, "add", "-A")
    _git(workdir, "commit", "-qm", "today")
    for i, text in enumerate(texts):
        path.write_text(text)
        _git(workdir, "commit", "-qam", f"revision {i}")
    path.write_text(today)


def _format_4(text: str) -> str:
    """Today's ke as an unversioned file of format 4 (before scalable units were declared)."""
    text = re.sub(r"\n  aifactory:stackFormat: 5[^\n]*", "", text)
    return re.sub(r"\n        scalable_units: [^\n]*", "", text)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda t: t.replace("aifactory:stackFormat: 5", "aifactory:stackFormat: 9"), "format 9 is newer than"),
        (lambda t: t.replace("aifactory:stackFormat: 5", "aifactory:stackFormat: five"), "must be a whole number"),
        (
            lambda t: _format_4(t).replace(
                "object_lock: {days: 2555}", "object_lock: {days: 2555}, object_lock_days: 9"
            ),
            "step 3->4 (object lock with a mode): bucket ke-evidence: both object_lock_days and object_lock",
        ),
        (
            lambda t: _format_4(t).replace("sku: dgx-h200", "sku: dgx-a100"),
            "format 4, upgraded to format 5, is refused by today's model: ",
        ),
    ],
    ids=["newer-format", "bad-format", "both-locks", "refused-after-upgrade"],
)
def test_a_revision_that_cannot_be_upgraded_says_why_in_one_line(edit, words, workdir, cli):
    today = (workdir / "stacks" / "Pulumi.ke.yaml").read_text()
    _history_of(workdir, edit(today), today)
    code, out, err = cli("diff", "ke", "--rev", "HEAD~1", root=workdir)
    assert (code, out) == (2, "")
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: stacks/Pulumi.ke.yaml@HEAD~1: ") and words in lines[0], lines


def test_a_working_tree_stack_of_an_older_format_is_refused_with_the_steps_that_upgrade_it(workdir, cli):
    path = workdir / "stacks" / "Pulumi.ke.yaml"
    today = path.read_text()
    path.write_text(_format_4(today))
    code, out, err = cli("validate", "ke", root=workdir)
    assert (code, out) == (2, "")
    assert "aifactory:stackFormat: declares no format; its shape is format 4, and this checkout reads format 5" in err
    assert "step 4->5: give each pool scalable_units" in err
    # The same file in the history reads, upgraded.
    path.write_text(today)
    _history_of(workdir, _format_4(today))
    code, out, err = cli("diff", "ke", "--rev", "HEAD", root=workdir)
    assert code == 0, err
    assert "stack format 4, upgraded to 5 to compare" in out and "4->5 (shape of dab6d38): scalable units" in out


def test_a_stack_that_forgets_to_declare_its_format_is_told_which_to_declare(workdir, cli):
    path = workdir / "stacks" / "Pulumi.lab.yaml"
    path.write_text(re.sub(r"\n  aifactory:stackFormat: 5[^\n]*", "", path.read_text()))
    code, _, err = cli("validate", "lab", root=workdir)
    assert code == 2
    assert "declares no format; its shape is format 5" in err and "declare aifactory:stackFormat: 5" in err


# -- time as an auditor names it --------------------------------------------------------------------


def _last_before(when: datetime) -> str:
    """Independently of the code under test: the last first-parent commit committed before ``when``."""
    for line in _out("log", "--first-parent", "--format=%H %ct", "HEAD").splitlines():
        sha, stamp = line.split()
        if int(stamp) < when.timestamp():
            return sha
    raise AssertionError("no commit before the date")


@pytest.mark.parametrize("how", [("--since", "2026-11-24"), ("--rev", "2026-11-24")])
def test_a_date_names_the_commit_it_chose(how, cli):
    _require_history()
    expected = _last_before(datetime(2026, 11, 24, tzinfo=UTC))
    date = _out("log", "-1", "--format=%cI", expected).strip()
    code, out, err = cli("diff", "ke", *how)
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith(f"ke@{expected[:7]}: 2026-11-24 is {expected[:7]} of {date} by ")
    assert first.endswith("the last commit before 2026-11-24T00:00:00+00:00 on HEAD's first-parent history")
    assert f"ke@{expected[:7]} -> ke: " in out
    code, out, _ = cli("diff", "ke", *how, "--json")
    doc = json.loads(out)
    assert doc["history"]["revision"]["commit"] == expected
    assert doc["history"]["revision"]["date"] == date
    assert doc["history"]["format"] == 1


@pytest.mark.parametrize("rev", ["HEAD@{1 month ago}", "@{yesterday}", "main@{1}", "@{-1}", "HEAD@{2026-11-24}"])
def test_reflog_revisions_are_refused_never_resolved_to_head(rev, cli, tmp_path):
    for args in (["diff", "ke", "--rev", rev], ["audit", "ke", "--out", str(tmp_path / "o"), "--against", rev]):
        code, out, err = cli(*args)
        assert (code, out) == (2, ""), err
        assert "reads git's reflog" in err and "--since" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("date", "words"),
    [
        ("garbage", "is not a date"),
        ("yesterday", "is not a date"),
        ("2026-13-45", "is not a date"),
        ("2026-11-24 junk", "is not a date"),
        ("2020-01-01", "is before every commit on HEAD's first-parent history; the first is c620c59 of 2026-11-23"),
    ],
)
def test_a_date_git_would_read_loosely_is_refused(date, words, cli):
    code, out, err = cli("diff", "ke", "--since", date)
    assert (code, out) == (2, "")
    assert err.startswith("error: --since: ") and words in err, err


def test_gits_warnings_reach_the_user(workdir, cli):
    _git(workdir, "init", "-q")
    _git(workdir, "add", "-A")
    _git(workdir, "commit", "-qm", "one")
    _git(workdir, "tag", "approved")
    _git(workdir, "branch", "approved")
    code, _, err = cli("diff", "ke", "--rev", "approved", root=workdir)
    assert code == 0
    assert "warning: git: refname 'approved' is ambiguous." in err


def test_the_commits_between_are_listed_in_the_diff_and_its_json(workdir, cli):
    path = workdir / "stacks" / "Pulumi.ke.yaml"
    text = path.read_text()
    _history_of(
        workdir, text.replace("gpu_quota: 48,", "gpu_quota: 40,"), text.replace("gpu_quota: 48,", "gpu_quota: 44,")
    )
    _git(workdir, "commit", "-q", "--allow-empty", "-m", "unrelated")
    code, out, _ = cli("diff", "ke", "--rev", "HEAD~3", "--json", root=workdir)
    assert code == 0
    commits = json.loads(out)["history"]["commits"]
    assert commits["total"] == 3 and commits["on_history"]
    assert [c["subject"] for c in commits["changed_the_file"]] == ["revision 1", "revision 0"]
    assert all(c["author"] == "t" and re.fullmatch(r"[0-9a-f]{40}", c["commit"]) for c in commits["changed_the_file"])
    # The working tree holds today's file again, which differs from the last commit.
    code, out, _ = cli("diff", "ke", "--rev", "HEAD~3", root=workdir)
    assert "ke: stacks/Pulumi.ke.yaml in the working tree at " in out and "(differs from the commit)" in out
    assert "commits from it to HEAD on HEAD's first-parent history: 3, 2 changed stacks/Pulumi.ke.yaml:" in out


# -- both sides of a plan diff pass the gate ----------------------------------------------------------

_PUBLIC = (
    'charts: {url: "https://charts.nbo1.ke.aifactory.internal/nvidia"',
    'charts: {url: "https://helm.ngc.nvidia.com/nvidia"',
)


def test_a_plan_diff_gates_todays_side(workdir, cli):
    path = workdir / "stacks" / "Pulumi.ke.yaml"
    _history_of(workdir)
    path.write_text(path.read_text().replace(*_PUBLIC))
    assert cli("plan", "ke", root=workdir)[0] == 2
    code, out, err = cli("diff", "ke", "--rev", "HEAD", "--plan", root=workdir)
    assert (code, out) == (2, "")
    assert "error: stacks/Pulumi.ke.yaml: aifactory:site.mirrors.charts.url: [residency.public-service]" in err


def test_a_plan_diff_gates_the_past_side(workdir, cli):
    path = workdir / "stacks" / "Pulumi.ke.yaml"
    _history_of(workdir, path.read_text().replace(*_PUBLIC))
    code, out, err = cli("diff", "ke", "--rev", "HEAD", "--plan", root=workdir)
    assert (code, out) == (2, "")
    assert "error: stacks/Pulumi.ke.yaml@HEAD: aifactory:site.mirrors.charts.url: [residency.public-service]" in err


def test_a_plan_diff_of_an_old_revision_reports_its_shared_scalable_unit(cli):
    """ma before format 5: its two pools' first nodes were all su1; the gate says so of the past side."""
    code, out, err = cli("diff", "ma", "--rev", "dab6d38", "--plan")
    assert (code, out) == (2, "")
    assert "stacks/Pulumi.ma.yaml@dab6d38: aifactory:site.pools[1].scalable_units[0].name: [net.scalable-units]" in err
    assert "su1 is also a unit of pool h100a" in err


# -- the audit report: which commit, which tree, which commits since ----------------------------------


def _audit(cli, root: Path, out: Path, *extra: str) -> str:
    code, _, err = cli("audit", "eg", "--out", str(out), "--as-of", "2026-11-23", *extra, root=root)
    assert code == 0, err
    return (out / "audit-eg.md").read_text() + (out / "audit-eg.html").read_text()


def test_the_audit_says_when_its_bytes_come_from_a_modified_working_tree(workdir, cli, tmp_path):
    shutil.copytree(ROOT / "templates", workdir / "templates")
    _git(workdir, "init", "-q")
    _git(workdir, "add", "-A")
    _git(workdir, "commit", "-qm", "approved")
    head = _rev(workdir, "HEAD")
    report = _audit(cli, workdir, tmp_path / "clean")
    assert f"At commit `{head}`, with a clean working tree" in report and "not clean" not in report
    stack = workdir / "stacks" / "Pulumi.eg.yaml"
    stack.write_text(stack.read_text().replace("gpu_quota: 48", "gpu_quota: 40"))
    (workdir / "templates" / "extra.j2").write_text("new\n")
    report = _audit(cli, workdir, tmp_path / "dirty")
    assert "**The working tree was not clean.** These bytes come from the working tree, not from commit" in report
    assert "Files that differ from the commit (2): `stacks/Pulumi.eg.yaml`, `templates/extra.j2`" in report
    assert f"commit `{head}` with 2 file(s) changed in the working tree" in report
    assert "<strong>The working tree was not clean.</strong>" in report


def test_the_audit_lists_the_commits_since_the_revision_it_compares(workdir, cli, tmp_path):
    shutil.copytree(ROOT / "templates", workdir / "templates")
    _git(workdir, "init", "-q")
    _git(workdir, "add", "-A")
    _git(workdir, "commit", "-qm", "approved")
    stack = workdir / "stacks" / "Pulumi.eg.yaml"
    stack.write_text(stack.read_text().replace("driver: 580.95.05", "driver: 580.105.08"))
    _git(workdir, "commit", "-qam", "driver | update *now*")
    new = _rev(workdir, "HEAD")
    report = _audit(cli, workdir, tmp_path / "a", "--against", "HEAD~1")
    assert "1 commit(s) from it to the audited commit on HEAD's first-parent history; 1 changed" in report
    assert f"| `{new[:7]}` | {_out('log', '-1', '--format=%cI', new, where=workdir).strip()} | t | " in report
    assert "driver \\| update \\*now\\*" in report  # the subject is untrusted text: escaped for Markdown
    assert "gpu_stack.driver" in report
