"""Subcommands beyond the site model itself: inventories, bootstrap, test hosts, verify, diff, audit."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, Problem

if TYPE_CHECKING:  # imported lazily at run time: the CLI starts without loading them
    from .bootstrap import RunResult
    from .stackfile import Stack
    from .verify.runner import NodeResult

REGISTER: list[Callable[[argparse._SubParsersAction], None]] = []


def _root(args: argparse.Namespace) -> Path:
    from .cli import root_of

    return root_of(args)


def _register(fn: Callable[[argparse._SubParsersAction], None]) -> Callable[[argparse._SubParsersAction], None]:
    REGISTER.append(fn)
    return fn


def _positive(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 256")
    return value


# -- inventory ----------------------------------------------------------------------------


def cmd_inventory(args: argparse.Namespace) -> int:
    from . import inventory
    from .cli import gated
    from .stackfile import list_stacks

    root = _root(args)
    stacks = gated(root, args.sites or list_stacks(root))
    if args.check:
        stale = [(s.name, p, why) for s in stacks for p, why in inventory.drift(s, root)]
        for name, path, why in stale:
            print(f"{path.relative_to(root)}: {why} (run `aifactory inventory {name}`)")
        if stale:
            return 1
        print(f"inventories in sync with their stacks: {', '.join(s.name for s in stacks)}")
        return 0
    for s in stacks:
        changed = inventory.write(s, root)
        print(f"{s.name}: {len(changed)} file(s) written" + "".join(f"\n  {p.relative_to(root)}" for p in changed))
    return 0


@_register
def _inventory(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inventory", help="render inventories/SITE from the stack (all sites when none named)")
    p.add_argument("sites", nargs="*", metavar="SITE")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if any inventory is out of sync")
    p.set_defaults(func=cmd_inventory)


# -- test hosts ---------------------------------------------------------------------------


def cmd_testvm(args: argparse.Namespace) -> int:
    from . import testvm
    from .cli import gated
    from .stackfile import check_site_name

    root = _root(args)
    check_site_name(args.site, "--site")
    if args.action == "up":
        (stack,) = gated(root, [args.site])
        testvm.up(stack, root)
        return 0
    if args.action == "down":
        testvm.down(args.site)
        return 0
    st = testvm.status(args.site)
    print(f"bridge {testvm.Layout(args.site).bridge}: {'up' if st.bridge else 'absent'}")
    print(
        f"package proxy: {'running' if st.proxy else 'stopped'}; "
        f"artifact mirror: {'running' if st.mirror else 'stopped'}"
    )
    for name, ip, running, ssh in st.hosts:
        print(f"host {name} {ip}: {'running' if running else 'stopped'}, ssh {'open' if ssh else 'closed'}")
    for m in st.mounts:
        print(f"mount {m}")
    if st.processes:
        print(f"processes: {' '.join(map(str, st.processes))}")
    if not st.anything:
        print("nothing running")
    return 0


@_register
def _testvm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("testvm", help="systemd-nspawn test hosts for the lab site: up, down, status")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--site", default="lab", help="site whose nodes the test hosts play (default: lab)")
    p.set_defaults(func=cmd_testvm)


# -- bootstrap ----------------------------------------------------------------------------


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from .bootstrap import prune_runs, run_playbook, summary
    from .cli import gated

    root = _root(args)
    (stack,) = gated(root, [args.site])
    result = run_playbook(stack, root, limit=args.limit, check=args.check)
    print(summary(result))
    prune_runs(root, stack.name)
    return 1 if result.failed_hosts or result.rc != 0 else 0


@_register
def _bootstrap(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bootstrap", help="install the site's driver, CUDA and NCCL on its nodes (Ansible)")
    p.add_argument("site", metavar="SITE")
    p.add_argument("--limit", metavar="HOSTS", help="Ansible host pattern, e.g. lab-gpu-01")
    p.add_argument("--check", action="store_true", help="check mode: report what would change, change nothing")
    p.set_defaults(func=cmd_bootstrap)


# -- verify -------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    from .cli import gated
    from .verify import runner

    root = _root(args)
    (stack,) = gated(root, [args.site])
    results = runner.run(stack, root, limit=args.limit, parallel=args.parallel)
    print(runner.table(results))
    if args.junit:
        runner.write_junit(results, stack.name, Path(args.junit))
    if args.json:
        runner.write_json(results, stack.name, Path(args.json))
    return 1 if any(r.failed for r in results) else 0


@_register
def _verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check every node has what its site declares (testinfra)")
    p.add_argument("site", metavar="SITE")
    p.add_argument("--limit", metavar="HOSTS", help="comma-separated hostname patterns, e.g. 'lab-gpu-0[12]'")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML (one testsuite per node)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument(
        "--parallel", type=_positive, default=16, metavar="N", help="nodes checked at once, 1 to 256 (default 16)"
    )
    p.set_defaults(func=cmd_verify)


# -- the main job, end to end on the lab site ---------------------------------------------


def cmd_lab(args: argparse.Namespace) -> int:
    import time

    from . import inventory, testvm
    from .bootstrap import run_playbook, summary
    from .cli import gated
    from .errors import OperationError
    from .plan import run_plan
    from .storage import evidence
    from .storage import site as storage_site
    from .verify import runner

    root = _root(args)
    site = args.site
    t0 = time.monotonic()

    def step(title: str) -> None:
        print(f"\n== {title} ({time.monotonic() - t0:.0f} s)", flush=True)

    step(f"validate {site} and the sites it is interconnected with")
    (stack,) = gated(root, [site])
    print(f"{site}: policies passed")
    step(f"plan {site} offline (Pulumi mock runtime)")
    plan = run_plan(stack)
    out = plan.outputs
    print(f"{len(plan.resources)} resources; {out['gpus']['total']} GPUs on {len(out['nodes'])} nodes")
    step(f"inventory of {site}")
    changed = inventory.write(stack, root)
    print(f"{len(changed)} file(s) rewritten" if changed else "in sync with the stack")
    try:
        step("test hosts up")
        testvm.up(stack, root)
        step("bootstrap (first run)")
        first = run_playbook(stack, root)
        print(summary(first))
        if first.failed_hosts:
            return 1
        step("bootstrap (second run: must change nothing)")
        second = run_playbook(stack, root, quiet=True)
        print(summary(second))
        if second.failed_hosts or second.changed_total:
            raise OperationError(f"the second run changed {second.changed_total} thing(s): roles not idempotent")
        step("verify")
        results = runner.run(stack, root)
        print(runner.table(results))
        step(f"object store of {site}: apply, then check")
        client = _lab_store(stack, root)
        applied = storage_site.apply(stack, client)
        if any(r.error for r in applied):
            return 1
        report = storage_site.check(stack, client)
        print("store as declared" if report.clean else "\n".join(str(d) for d in report.drift))
        step("evidence: record the run, push it, prove it")
        files = _write_evidence(root, stack, first, results, report.live)
        evidence.push(stack, client, files)
        proofs = evidence.check(stack, client, say=lambda _m: None)
        bad = [p for p in proofs if p.problems]
        print(f"{len(proofs) - len(bad)} of {len(proofs)} record(s) in the evidence store proven")
        if any(r.failed for r in results) or not report.clean or bad:
            return 1
    finally:
        if not args.keep:
            step("test hosts down")
            testvm.down(site)
    print(f"\nlab run complete in {time.monotonic() - t0:.0f} s")
    return 0


def _lab_store(stack: Stack, root: Path) -> Any:
    from .storage import site as storage_site
    from .testvm import lab_passphrase_env

    creds = storage_site.credentials(stack, lab_passphrase_env(root, stack.site.code))
    return storage_site.connect(stack, creds)


def _write_evidence(
    root: Path, stack: Stack, run: RunResult, results: list[NodeResult], live: dict[str, Any]
) -> list[Path]:
    """The run's records: audit report, verify results (JUnit and JSON) and the bootstrap summary."""
    import time
    from datetime import date

    from .audit import write_report
    from .bootstrap import summary
    from .storage.cli import EVIDENCE_SUFFIX
    from .verify import runner

    out = root / "runs" / stack.name / (time.strftime("%Y%m%dT%H%M%S") + EVIDENCE_SUFFIX)
    out.mkdir(parents=True, exist_ok=True)
    files = list(write_report(root, stack, out, date.today(), None, live=live))
    runner.write_junit(results, stack.name, out / "verify.xml")
    runner.write_json(results, stack.name, out / "verify.json")
    (out / "bootstrap-summary.txt").write_text(summary(run) + "\n")
    files += [out / "verify.xml", out / "verify.json", out / "bootstrap-summary.txt"]
    print(f"{len(files)} record(s) written to {out.relative_to(root)}")
    return files


@_register
def _lab(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lab",
        help="the whole job on the lab site: validate, plan, inventory, hosts, bootstrap, verify, storage, evidence",
    )
    p.add_argument("--site", default="lab", help=argparse.SUPPRESS)
    p.add_argument("--keep", action="store_true", help="leave the test hosts running at the end")
    p.set_defaults(func=cmd_lab)


# -- auditors: diff and audit -------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    import sys

    from . import diff
    from .cli import gated, site_args
    from .plan import run_plan
    from .stackfile import load_stack

    root = _root(args)
    site_args([args.site] + ([args.other] if args.other else []))
    if args.rev is not None and args.other:
        raise ConfigError([Problem("diff", "", "give either a second site or --rev, not both")])
    if args.rev is None and not args.other:
        raise ConfigError([Problem("diff", "", "give a second site (diff A B) or a revision (diff SITE --rev REV)")])
    if args.rev is not None:
        a = diff.stack_at_revision(root, args.site, args.rev)
        b = load_stack(root, args.site)
        label_a, label_b = f"{args.site}@{args.rev}", args.site
    else:
        a, b = load_stack(root, args.site), load_stack(root, args.other)
        label_a, label_b = args.site, args.other
    if args.plan:
        # A plan runs the program: both sides pass the policy gate first.
        from .policy import gate

        gate([a], root)
        if args.other:
            gated(root, [args.other])
        changes = diff.diff_plans(run_plan(a), run_plan(b))
        kind = "plan"
    else:
        changes = diff.diff_stacks(a, b, ignore_expected=args.ignore_expected)
        kind = "site"
    if args.json:
        sys.stdout.write(diff.render_json(label_a, label_b, changes, kind))
    else:
        title = f"{'plan of ' if args.plan else ''}{label_a} -> {label_b}"
        if args.ignore_expected and not args.plan:
            title += " (expected site differences hidden)"
        sys.stdout.write(diff.render_text(title, changes))
    return 0


@_register
def _diff(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="semantic diff of two sites, or of a site against a git revision")
    p.add_argument("site", metavar="SITE")
    p.add_argument("other", nargs="?", metavar="OTHER", help="second site")
    p.add_argument("--rev", metavar="REV", help="compare SITE as it was at this git revision with today's")
    p.add_argument("--plan", action="store_true", help="diff the offline plans: resources and their inputs")
    p.add_argument(
        "--ignore-expected",
        action="store_true",
        help="hide what must differ between sites (code, city, CIDRs, hostnames, mirrors)",
    )
    p.add_argument("--json", action="store_true", help="print the differences as JSON (values in full)")
    p.set_defaults(func=cmd_diff)


def cmd_audit(args: argparse.Namespace) -> int:
    from datetime import date

    from .audit import check_out_dir, write_report
    from .cli import gated, site_args
    from .grammar import shown

    root = _root(args)
    try:
        as_of = date.fromisoformat(args.as_of) if args.as_of else date.today()
    except ValueError:
        raise ConfigError([Problem("--as-of", "", f"{shown(args.as_of)} is not a date (YYYY-MM-DD)")]) from None
    out = check_out_dir(Path(args.out))
    if args.against is not None:
        from .diff import resolve_revision

        resolve_revision(root, args.against, "--against")
    if args.even_if_failing:
        # An auditor may want the record of a failing site: the report is written, the gate runs after.
        from .stackfile import load_stack

        stack = load_stack(root, site_args([args.site])[0])
    else:
        (stack,) = gated(root, [args.site])
    live: dict | str | None = None
    if args.live_store:
        live = _live_store(stack)
    for path in write_report(root, stack, out, as_of, args.against, live=live):
        print(path)
    if args.even_if_failing:
        from .policy import gate

        gate([stack], root, as_of)
    return 0


def _live_store(stack: Stack) -> dict | str:
    """What the site's store says of each bucket, or why it could not be read (the report says which)."""
    from .storage import s3
    from .storage import site as storage_site

    try:
        client = storage_site.connect(stack, storage_site.credentials(stack), attempts=2)
        return storage_site.check(stack, client).live
    except ConfigError as exc:
        return "; ".join(p.message for p in exc.problems)
    except s3.StoreError as exc:
        return str(exc)


@_register
def _audit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="self-contained HTML + Markdown audit report of a site")
    p.add_argument("site", metavar="SITE")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="directory for the report (audit-SITE.html and audit-SITE.md)"
    )
    p.add_argument("--against", metavar="REV", help="include the diff against this git revision")
    p.add_argument("--as-of", metavar="YYYY-MM-DD", help="date the policies judge against (default today)")
    p.add_argument(
        "--live-store",
        action="store_true",
        help="read the site's object store and show each bucket's location, versioning and lock beside the stack's",
    )
    p.add_argument(
        "--even-if-failing",
        action="store_true",
        help="write the report of a site that fails its policies too (the exit status is still 2)",
    )
    p.set_defaults(func=cmd_audit)


# -- object storage and evidence ----------------------------------------------------------


@_register
def _storage(sub: argparse._SubParsersAction) -> None:
    from .storage.cli import register

    register(sub)
