"""Commands for the site's data, read by planners and auditors: sites, validate, plan, diff, audit.

None of them reaches a node; only `audit --live-store` reaches the network, and only when asked.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, Problem
from .common import gated, root_of, site_args

if TYPE_CHECKING:
    from .. import history
    from ..stackfile import Stack


def cmd_sites(args: argparse.Namespace) -> int:
    from ..stackfile import list_stacks, load_stack

    root = root_of(args)
    problems: list[Problem] = []
    rows = []
    for name in list_stacks(root):
        try:
            site = load_stack(root, name).site
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        g = site.gpu_stack
        skus = "+".join(sorted({p.sku for p in site.pools}))
        rows.append(
            (
                site.code,
                site.country,
                site.location.city,
                str(site.node_total),
                str(site.gpu_total),
                skus,
                site.network.fabric.type,
                f"driver {g.driver} cuda {g.cuda} nccl {g.nccl_version} operator {g.gpu_operator}",
            )
        )
    header = ("SITE", "CC", "CITY", "NODES", "GPUS", "SKU", "FABRIC", "VERSIONS")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    if problems:
        raise ConfigError(problems)
    return 0


def validate_sites(root: Path, names: Sequence[str], only: Sequence[str] | None = None, verbose: bool = False) -> bool:
    """Run the policies over these sites and their interconnected neighbours; print the findings; all passed?"""
    from .. import findings
    from ..policies import Severity, evaluate_sites, select
    from ..stackfile import load_neighbours, load_stacks

    checks = select(only)
    stacks = load_stacks(root, site_args(names))
    # Cross-site rules (CIDR overlap between interconnected sites) look at every stack.
    everyone = [*stacks, *load_neighbours(root, [s.name for s in stacks])]
    results = evaluate_sites(everyone, only={s.name for s in stacks}, checks=checks)
    shown = [s.value for s in Severity if s is not Severity.INFO or verbose]
    findings.print_findings(findings.of_results(results, everyone), shown)
    failed = {r.site for r in results if r.severity is Severity.ERROR}
    for s in stacks:
        print(f"{s.name}: {'FAIL' if s.name in failed else 'ok'}")
    return not failed


def cmd_validate(args: argparse.Namespace) -> int:
    from ..stackfile import list_stacks

    root = root_of(args)
    return 0 if validate_sites(root, args.sites or list_stacks(root), args.only, args.verbose) else 2


def _plan_one(root: str, site: str, as_json: bool, inputs: bool, manifests: str | None) -> tuple[str, list[str]]:
    """One site's plan, rendered: run in its own process by `plan --all` (the mock runtime is per process)."""
    from ..plan import render_json, render_text, run_plan
    from ..stackfile import load_stack

    plan = run_plan(load_stack(Path(root), site))
    written: list[str] = []
    if manifests:
        from .. import manifests as kube

        written = [str(p) for p in kube.write(plan, Path(manifests))]
    return (render_json(plan) if as_json else render_text(plan, show_inputs=inputs)), written


def cmd_plan(args: argparse.Namespace) -> int:
    from ..stackfile import list_stacks

    root = root_of(args)
    if args.all == (args.site is not None):
        raise ConfigError([Problem("plan", "", "give one SITE or --all")])
    names = list_stacks(root) if args.all else [args.site]
    stacks = gated(root, names)  # every site passes the gate before any is planned
    manifests = str(args.manifests) if args.manifests else None
    if manifests:
        from ..manifests import precheck

        precheck(Path(manifests), [s.name for s in stacks])
    jobs = [(str(root), s.name, args.json, args.inputs, manifests) for s in stacks]
    if len(jobs) == 1:
        results = [_plan_one(*jobs[0])]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # Sites plan independently: one fresh process each ("spawn": no state shared with this one).
        workers = min(len(jobs), os.cpu_count() or 1)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_plan_one, *zip(*jobs, strict=True)))
    for _text, written in results:
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
    if args.json and len(results) > 1:
        import json

        doc = {s.name: json.loads(text) for s, (text, _) in zip(stacks, results, strict=True)}
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write("\n".join(text for text, _ in results))
    return 0


def _revision(root: Path, rev: str | None, since: str | None, option: str = "--rev") -> history.Resolved | None:
    """What --rev (a revision or a date) or --since (a date) names, resolved on the commit history."""
    from .. import history

    if rev is not None and since is not None:
        raise ConfigError([Problem(option, "", f"give {option} or --since, not both")])
    if since is not None:
        return history.resolve_date(root, since, "--since")
    return history.resolve(root, rev, option) if rev is not None else None


def cmd_diff(args: argparse.Namespace) -> int:
    from .. import diff, history
    from ..plan import run_plan
    from ..policies import gate
    from ..stackfile import load_stack
    from .common import site_args

    root = root_of(args)
    site_args([args.site] + ([args.other] if args.other else []))
    asked = args.rev is not None or args.since is not None
    if asked and args.other:
        raise ConfigError([Problem("diff", "", "give either a second site or --rev/--since, not both")])
    if not asked and not args.other:
        raise ConfigError(
            [Problem("diff", "", "give a second site (diff A B), a revision (--rev REV) or a date (--since DATE)")]
        )
    context = None
    resolved = _revision(root, args.rev, args.since)
    if resolved is not None:
        a = history.stack_at(root, args.site, resolved)
        b = load_stack(root, args.site)
        label_a, label_b = f"{args.site}@{resolved.label}", args.site
        context = diff.revision_context(root, resolved, a, b)
    else:
        a, b = load_stack(root, args.site), load_stack(root, args.other)
        label_a, label_b = args.site, args.other
    if args.plan:
        # A plan runs the program: both sides pass the policy gate first, the past as well as today.
        gate([a, b], root)
        changes = diff.diff_plans(run_plan(a), run_plan(b))
        kind = "plan"
    else:
        changes = diff.diff_stacks(a, b, ignore_expected=args.ignore_expected)
        kind = "site"
    if args.json:
        sys.stdout.write(diff.render_json(label_a, label_b, changes, kind, context))
    else:
        title = f"{'plan of ' if args.plan else ''}{label_a} -> {label_b}"
        if args.ignore_expected and not args.plan:
            title += " (expected site differences hidden)"
        sys.stdout.write(diff.render_text(title, changes, context))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from datetime import date

    from ..audit import check_out_dir, write_report
    from ..grammar import shown
    from .common import gated, site_args

    root = root_of(args)
    try:
        as_of = date.fromisoformat(args.as_of) if args.as_of else date.today()
    except ValueError:
        raise ConfigError([Problem("--as-of", "", f"{shown(args.as_of)} is not a date (YYYY-MM-DD)")]) from None
    out = check_out_dir(Path(args.out))
    against = _revision(root, args.against, args.since, "--against")
    if args.even_if_failing:
        # An auditor may want the record of a failing site: the report is written, the gate runs after.
        from ..stackfile import load_stack

        stack = load_stack(root, site_args([args.site])[0])
    else:
        (stack,) = gated(root, [args.site])
    live: dict | str | None = None
    if args.live_store:
        live = _live_store(stack)
    for path in write_report(root, stack, out, as_of, against, live=live):
        print(path)
    if args.even_if_failing:
        from ..policies import gate

        gate([stack], root, as_of)
    return 0


def _live_store(stack: Stack) -> dict | str:
    """What the site's store says of each bucket, or why it could not be read (the report says which)."""
    from ..storage import s3
    from ..storage import site as storage_site

    try:
        client = storage_site.connect(stack, storage_site.credentials(stack), attempts=2)
        return storage_site.check(stack, client).live
    except ConfigError as exc:
        return "; ".join(p.message for p in exc.problems)
    except s3.StoreError as exc:
        return str(exc)


def cmd_reference(_args: argparse.Namespace) -> int:
    from ..reference import render

    sys.stdout.write(render())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sites", help="one line per site: country, city, nodes, GPUs, SKUs, fabric, versions")
    p.set_defaults(func=cmd_sites)

    p = sub.add_parser("reference", help="every field of the site file, from the schema itself (docs/site-file.md)")
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("validate", help="check stack files and run the policies; exit 2 on any error")
    p.add_argument("sites", nargs="*", metavar="SITE", help="sites to check (default: every stack in stacks/)")
    p.add_argument("-v", "--verbose", action="store_true", help="also print the checks that passed")
    p.add_argument(
        "--only",
        action="append",
        metavar="POLICY",
        help="only this policy family or check (repeatable), e.g. residency, compat.cuda-driver",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="every resource the Pulumi program would register, offline (mock runtime)")
    p.add_argument("site", nargs="?", metavar="SITE", help="the site to plan")
    p.add_argument(
        "--all", action="store_true", help="plan every site, in parallel processes (JSON: one object per site)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable plan")
    p.add_argument("--inputs", action="store_true", help="text mode: print each resource's inputs too")
    p.add_argument(
        "--manifests",
        type=Path,
        metavar="DIR",
        help="also write the Kubernetes objects (DIR/SITE.yaml) and Helm values for any validator to read",
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("diff", help="semantic diff of two sites, or of a site against a git revision")
    p.add_argument("site", metavar="SITE", help="first site (with --rev: the site to compare with its past)")
    p.add_argument("other", nargs="?", metavar="OTHER", help="second site")
    p.add_argument(
        "--rev",
        metavar="REV",
        help="compare SITE as it was at this git revision (a commit, a tag, or a date YYYY-MM-DD) with today's; "
        "an old stack format is upgraded to compare",
    )
    p.add_argument(
        "--since",
        metavar="DATE",
        help="compare SITE as it was at the last commit before DATE (YYYY-MM-DD, midnight UTC, or "
        "YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM]) on HEAD's first-parent history; the commit chosen is printed",
    )
    p.add_argument("--plan", action="store_true", help="diff the offline plans: resources and their inputs")
    p.add_argument(
        "--ignore-expected",
        action="store_true",
        help="hide what must differ between sites (code, city, CIDRs, hostnames, mirrors)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the differences as JSON, values in full (text shortens a list or mapping past 160 characters)",
    )
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("audit", help="self-contained HTML + Markdown audit report of a site")
    p.add_argument("site", metavar="SITE", help="the site to report on")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="directory for the report (audit-SITE.html and audit-SITE.md)"
    )
    p.add_argument(
        "--against", metavar="REV", help="include the diff against this git revision (a commit, a tag or a date)"
    )
    p.add_argument("--since", metavar="DATE", help="include the diff against the last commit before DATE")
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
