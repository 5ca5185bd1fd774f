"""`aifactory lab`: the whole job on the lab site, end to end, on local test hosts.

Each step calls the function its own command calls (engines build, validate, plan, inventory,
testhosts up, `pulumi up` and a preview with no changes under the real CLI, bootstrap twice,
verify, storage apply and check, evidence push and check, `pulumi destroy`), then takes the hosts
down. The object store and the cluster live in the run's network namespace, so the steps that
reach them run inside it.
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OperationError
from .common import gated, root_of
from .operations import bootstrap, verify, write_inventories
from .sitedata import validate_sites
from .storage import EVIDENCE_SUFFIX, apply_store, check_store, prove_evidence

if TYPE_CHECKING:
    from ..bootstrap import RunResult
    from ..stackfile import Stack


def evidence_dir(root: Path, site: str) -> Path:
    from ..fsutil import make_dirs

    return make_dirs(root, root / "runs" / site / (time.strftime("%Y%m%dT%H%M%S") + EVIDENCE_SUFFIX))


def cmd_lab(args: argparse.Namespace) -> int:
    from ..engines import locate
    from ..manifests import objects
    from ..plan import run_plan
    from ..testhosts import kube, lifecycle, netns
    from ..testhosts.run import Run
    from . import lab_pulumi

    root = root_of(args)
    site = args.site
    t0 = time.monotonic()

    def step(title: str) -> None:
        print(f"\n== {title} ({time.monotonic() - t0:.0f} s)", flush=True)

    step(f"validate {site} and the sites it is interconnected with")
    if not validate_sites(root, [site]):
        return 2
    (stack,) = gated(root, [site])
    step("engines: the pinned Pulumi CLI, language host, Kubernetes provider, Kubernetes, etcd, helm")
    engines = locate.ensure(root)
    step(f"plan {site} offline (Pulumi mock runtime)")
    plan = run_plan(stack)
    print(
        f"{len(plan.resources)} resources; {plan.outputs['gpus']['total']} GPUs on {len(plan.outputs['nodes'])} nodes"
    )
    step(f"inventory of {site}")
    write_inventories(root, [stack])
    run = Run.of(root, site, run_id=args.run)
    records = evidence_dir(root, site)
    try:
        step("test hosts up")
        lifecycle.up(stack, root, run)
        step(f"pulumi up -s {site}, then pulumi preview: the real CLI, state in the lab's own object store")
        client = _client(root, stack)
        cli = lab_pulumi.cli_for(root, stack, run, engines)
        netns.inside(run.netns, lambda: lab_pulumi.ensure_state_bucket(stack, client))
        netns.inside(run.netns, lambda: lab_pulumi.up_and_preview(cli))
        step("bootstrap (first run)")
        first = bootstrap(stack, root, ssh_config=run.ssh_config)
        if first.failed_hosts:
            return 1
        step("bootstrap (second run: must change nothing)")
        second = bootstrap(stack, root, ssh_config=run.ssh_config, quiet=True)
        if second.failed_hosts or second.changed_total:
            raise OperationError(f"the second run changed {second.changed_total} thing(s): roles not idempotent")
        step("verify")
        results = verify(
            stack, root, ssh_config=run.ssh_config, junit=records / "verify.xml", json_out=records / "verify.json"
        )
        # The store is in the run's network: its steps run there; the records are written here, since
        # the audit report runs the Pulumi program, whose event loop belongs to the main thread.
        step(f"object store of {site}: apply, then check")
        report = netns.inside(run.netns, lambda: apply_store(stack, client) and check_store(stack, client))
        if not report:
            return 1
        step("evidence: record the run, push it, prove it")
        files = _records(root, stack, first, records, report.live)
        proven = netns.inside(run.netns, lambda: _push_and_prove(stack, client, root, files))
        if any(r.failed for r in results) or not report.clean or not proven:
            return 1
        step(f"pulumi destroy -s {site}: every object of the stack removed from the cluster")
        netns.inside(run.netns, lambda: lab_pulumi.destroy(cli))
        cp = kube.load(run.kube_dir)
        if cp is None:
            raise OperationError("the lab's control plane stopped during the run")
        left = netns.inside(run.netns, lambda: lab_pulumi.leftovers(cp.client(), plan))
        if left:
            raise OperationError(f"pulumi destroy left {len(left)} object(s) in the cluster: {', '.join(left[:5])}")
        print(f"none of the {len(objects(plan))} Kubernetes objects of the stack is left in the cluster")
    finally:
        if not args.keep:
            step("test hosts down")
            lifecycle.down(run)
    print(f"\nlab run complete in {time.monotonic() - t0:.0f} s")
    return 0


def _client(root: Path, stack: Stack) -> Any:
    from ..storage import site as storage_site
    from ..testhosts.lab_env import passphrase_env

    return storage_site.connect(stack, storage_site.credentials(stack, passphrase_env(root, stack.site.code)))


def _records(root: Path, stack: Stack, first: RunResult, records: Path, live: dict[str, Any]) -> list[Path]:
    """The run's records beside verify's: the audit report (with the live store) and the bootstrap summary."""
    from ..audit import write_report
    from ..bootstrap import summary
    from ..fsutil import write_atomic

    write_atomic(records / "bootstrap-summary.txt", summary(first) + "\n", root=root)
    write_report(root, stack, records, date.today(), None, live=live)
    files = sorted(records.iterdir())  # all of them: evidence.stage refuses any that is not a regular file
    print(f"{len(files)} record(s) written to {records.relative_to(root)}")
    return files


def _push_and_prove(stack: Stack, client: Any, root: Path, files: list[Path]) -> bool:
    from ..storage import evidence

    evidence.push(stack, client, root, files)
    return prove_evidence(stack, client, quiet=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lab",
        help="the whole job on the lab site: validate, plan, inventory, hosts, bootstrap, verify, storage, evidence",
    )
    p.add_argument("--site", default="lab", help=argparse.SUPPRESS)
    p.add_argument("--run", metavar="ID", help="test-host run id (default: derived from this checkout)")
    p.add_argument("--keep", action="store_true", help="leave the test hosts running at the end")
    p.set_defaults(func=cmd_lab)
