"""``aifactory rollout SITE``: a changed GPU stack across a live site, canary first, batch by batch."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .common import add_limit, add_ssh_config, gated, root_of, whole

if TYPE_CHECKING:
    from ..rollout.order import BatchSize
    from ..stackfile import Stack


def _pusher(stack: Stack, root: Path, say: Callable[[str], None]) -> Callable[[list[Path]], list[str]] | None:
    """Pushes records to the site's evidence store; a store that cannot be reached warns, never stops a batch."""
    from ..errors import ConfigError, OperationError
    from ..storage import evidence
    from ..storage import site as storage_site

    if stack.site.storage.object_store.evidence is None:
        say(f"evidence store: {stack.name} declares no evidence bucket; the record stays in runs/")
        return None

    def push(files: list[Path]) -> list[str]:
        try:
            client = storage_site.connect(stack, storage_site.credentials(stack), attempts=2)
            recs = evidence.push(stack, client, root, files, say=lambda _m: None)
        except (ConfigError, OperationError) as exc:
            say(
                f"WARNING: not pushed to the evidence store ({' '.join(str(exc).split())[:300]}); "
                f"push later with `aifactory evidence push {stack.name} FILE...`"
            )
            return []
        say(f"evidence store: {len(recs)} record(s) pushed")
        return [r.key for r in recs]

    return push


def cmd_rollout(args: argparse.Namespace) -> int:
    from ..errors import ConfigError, Problem
    from ..rollout import cluster, engine, record

    root = root_of(args)
    planning = [
        f for f, v in (("--canary", args.canary), ("--batch", args.batch), ("--limit", args.limit)) if v is not None
    ]
    if (args.resume or args.status) and planning:
        raise ConfigError(
            [
                Problem(
                    " ".join(planning), "", "chooses nodes for a new rollout; --resume and --status read the record's"
                )
            ]
        )
    (stack,) = gated(root, [args.site])
    if args.status:
        last = record.latest(root, stack.name)
        if last is None:
            print(f"{stack.name} has had no rollout")
            return 0
        if last.status == record.RUNNING and not record.held(root, stack.name):
            last.reason = "interrupted: no rollout holds the site's lock; `--resume` continues it"
        print(engine.status_text(root, last))
        return 0
    target = engine.Target(
        stack,
        root,
        ssh_config=args.ssh_config,
        push=None if args.dry_run or args.no_evidence else _pusher(stack, root, print),
    )
    with record.locked(root, stack.name):
        service = (
            cluster.DryRun(cluster.skip_reason(stack.site))
            if args.dry_run
            else cluster.for_site(stack.site, args.drain_timeout)
        )
        if args.resume:
            return engine.resume(target, service, args.max_failures)
        opts = engine.Options(
            canary=1 if args.canary is None else args.canary,
            batch=args.batch or batch(DEFAULT_BATCH),
            max_failures=0 if args.max_failures is None else args.max_failures,
            limit=args.limit,
        )
        return engine.start(target, opts, service, dry_run=args.dry_run, restart=args.restart)


DEFAULT_BATCH = "10%"


def batch(text: str) -> BatchSize:
    from ..rollout.order import batch_size

    return batch_size(text)


def count(text: str) -> int:
    """Canary nodes per pool, failures allowed per batch."""
    return whole(text, 0, 100_000)


def drain_timeout(text: str) -> float:
    return float(whole(text, 1, 86_400, " of seconds"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rollout",
        help="converge a changed GPU stack across a live site: canary, then batches, each verified",
        description="Find the nodes whose installed stack differs from SITE's declaration (the roles in check "
        "mode, the versions read from each node), then converge them a batch at a time: a canary of "
        "--canary nodes per pool, then batches of --batch. Each batch is taken out of service (cordon and "
        "drain, where the nodes are Nodes of the site's cluster), converged, verified, and put back; the "
        "rollout stops at the first batch with more than --max-failures failed nodes. The record is in "
        "runs/SITE/rollouts/ID/ and, where the site has one, in its evidence store.",
    )
    p.add_argument("site", metavar="SITE", help="the site to roll")
    p.add_argument(
        "--canary",
        type=count,
        default=None,
        metavar="N",
        help="canary nodes per pool, converged first (default 1; 0: none)",
    )
    p.add_argument(
        "--batch",
        type=batch,
        default=None,
        metavar="N|P%",
        help="nodes per batch after the canary: a count, or a percentage of the nodes to roll (default 10%%)",
    )
    p.add_argument(
        "--max-failures",
        type=count,
        default=None,
        metavar="N",
        help="failed nodes a batch may have before the rollout stops (default 0; --resume keeps the rollout's)",
    )
    add_limit(p)
    add_ssh_config(p)
    p.add_argument(
        "--drain-timeout",
        type=drain_timeout,
        default=600.0,
        metavar="SECONDS",
        help="how long to wait for a node's pods to be evicted (PodDisruptionBudgets allowing) (default 600)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the differences and the order; touch no node")
    mode.add_argument("--resume", action="store_true", help="continue the site's stopped rollout from its record")
    mode.add_argument(
        "--restart", action="store_true", help="abandon the site's stopped rollout (recorded as such) and start anew"
    )
    mode.add_argument("--status", action="store_true", help="print the site's last rollout record and exit")
    p.add_argument(
        "--no-evidence", action="store_true", help="keep the record in runs/ only; do not push it to the evidence store"
    )
    p.set_defaults(func=cmd_rollout)
