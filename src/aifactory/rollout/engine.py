"""The rollout loop: discover what differs, order it, then per batch take out, converge, verify, put back.

What differs is asked of the nodes, never of a cache: the roles run in check mode over the nodes
(anything the roles own counts, not only the versions), and each node's driver, CUDA and NCCL
versions are read from dpkg and the NCCL library for the record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .. import inventory
from ..bootstrap import prune_runs, run_playbook
from ..errors import ConfigError, OperationError, Problem
from ..model import NodeView
from ..stackfile import Stack, display
from ..verify import runner
from ..verify.expectations import expectations
from ..verify.probe import read_versions
from . import record
from .cluster import Cluster, DrainError, Service
from .order import Batch, BatchSize, order
from .record import BatchRecord, NodeOutcome, Rollout

Say = Callable[[str], None]
PROBE_PARALLEL = 16
DRAIN_PARALLEL = 16


@dataclass
class Options:
    canary: int = 1
    batch: BatchSize = field(default_factory=lambda: BatchSize(10, True))
    max_failures: int = 0
    limit: str | None = None


@dataclass
class Target:
    stack: Stack
    root: Path
    ssh_config: Path | None = None
    say: Say = print
    push: Callable[[list[Path]], list[str]] | None = None  # evidence store, when the site has one

    @property
    def site(self) -> str:
        return self.stack.name


def declared(stack: Stack, root: Path) -> record.Declared:
    """What the rollout converges to: the stack's GPU stack, and a digest of all the roles receive."""
    g = stack.site.gpu_stack
    digest = hashlib.sha256()
    for r in inventory.render(stack, root):
        digest.update(str(r.path.relative_to(root)).encode() + b"\0" + r.text.encode() + b"\0")
    return record.Declared(
        driver=g.driver, cuda=f"{g.cuda} ({g.cuda_components})", nccl=g.nccl, inventory_sha256=digest.hexdigest()
    )


def _declared_line(d: record.Declared) -> str:
    return f"driver {d.driver}, CUDA {d.cuda}, NCCL {d.nccl}"


def versions(t: Target, nodes: list[NodeView]) -> dict[str, dict[str, str]]:
    def one(n: NodeView) -> dict[str, str]:
        try:
            return read_versions(str(n.management_ip), expectations(t.root, t.stack.site, n), t.ssh_config)
        except Exception as exc:  # an unreachable node is recorded as such, not a crash of the rollout
            return {"error": " ".join(str(exc).split())[:300]}

    if not nodes:
        return {}
    with ThreadPoolExecutor(min(PROBE_PARALLEL, len(nodes))) as pool:
        return dict(zip((n.hostname for n in nodes), pool.map(one, nodes), strict=True))


def _versions_text(v: dict[str, str]) -> str:
    if "error" in v:
        return f"unreadable ({v['error']})"
    return ", ".join(f"{k} {v[k]}" for k in ("driver", "cuda", "nccl") if k in v)


@dataclass
class Discovery:
    nodes: list[NodeView]  # the nodes the rollout looked at
    differing: list[NodeView]
    differences: dict[str, dict[str, object]]


def discover(t: Target, limit: str | None) -> Discovery:
    nodes = runner.select(t.stack, t.root, limit)
    t.say(f"reading {len(nodes)} node(s): the roles in check mode, then the installed versions")
    check = run_playbook(
        t.stack, t.root, limit=limit, check=True, ssh_config=t.ssh_config, say=lambda _m: None, quiet=True
    )
    would = sum(1 for tasks in check.changes.values() if tasks)
    t.say(f"  check mode: {would} node(s) would change ({check.seconds:.0f} s)")
    if check.failed_hosts:
        reasons = "; ".join(f"{h}: {check.reasons.get(h, 'failed')}" for h in check.failed_hosts[:5])
        raise OperationError(
            f"cannot tell what differs on {hosts_text(check.failed_hosts)}: check mode failed ({reasons}); "
            f"fix the node or leave it out with --limit. Artifacts: {check.artifacts}"
        )
    found = versions(t, nodes)
    differing = [n for n in nodes if check.changes.get(n.hostname)]
    differences = {
        n.hostname: {"would_change": check.changes[n.hostname], "versions": found[n.hostname]} for n in differing
    }
    return Discovery(nodes, differing, differences)


def hosts_text(hosts: list[str] | tuple[str, ...], shown: int = 8) -> str:
    """A host list for a terminal: whole up to ``shown`` hosts, else its ends and the count."""
    if len(hosts) <= shown:
        return ", ".join(hosts)
    return f"{', '.join(hosts[:3])}, ... {', '.join(hosts[-2:])} ({len(hosts)} nodes)"


def print_plan(
    t: Target, d: record.Declared, found: Discovery, batches: list[Batch], opts: Options, *, service: str
) -> None:
    say = t.say
    n, total = len(found.differing), len(found.nodes)
    say(f"\n{n} of {total} node(s) differ from {t.site}'s declaration ({_declared_line(d)}):")
    # Nodes with the same versions and the same pending changes print once: a site is mostly alike.
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for host, diff in found.differences.items():
        changes, versions = diff["would_change"], diff["versions"]
        assert isinstance(changes, list) and isinstance(versions, dict)
        groups.setdefault((_versions_text(versions), tuple(changes)), []).append(host)
    for (versions_text, changes), hosts in groups.items():
        say(f"  {hosts_text(hosts)}: installed {versions_text}")
        for task in changes[:8]:
            say(f"      would change: {task}")
        if len(changes) > 8:
            say(f"      ... and {len(changes) - 8} more task(s)")
    say(
        f"\norder (canary {opts.canary} per pool, batches of {opts.batch}; "
        f"stop at a batch with more than {opts.max_failures} failure(s)):"
    )
    for b in batches:
        say(f"  {b.name:9s} {hosts_text(b.nodes)}")
    domains = sorted({n.nvlink_domain for n in found.differing if n.nvlink_domain})
    if domains:
        say(f"NVLink domains kept whole, one batch each (IMEX spans the rack): {', '.join(domains)}")
    say(f"out of service before each batch: {service}")


def start(t: Target, opts: Options, service: Service, *, dry_run: bool = False, restart: bool = False) -> int:
    prev = record.latest(t.root, t.site, t.stack.site)
    if prev and prev.status in (record.STOPPED, record.RUNNING) and not dry_run:
        if not restart:
            raise ConfigError(
                [
                    Problem(
                        "SITE",
                        "",
                        f"rollout {prev.id} of {t.site} is {prev.status} ({prev.reason or 'interrupted'}): "
                        f"continue it with `aifactory rollout {t.site} --resume`, or abandon it and start over "
                        "with --restart",
                    )
                ]
            )
        prev.status, prev.ended = record.ABANDONED, record.now()
        prev.reason = f"abandoned by --restart: {prev.reason}"
        record.save(t.root, prev)
        t.say(f"rollout {prev.id} marked abandoned")
    d = declared(t.stack, t.root)
    found = discover(t, opts.limit)
    if not found.differing:
        t.say(
            f"all {len(found.nodes)} node(s) of {t.site} match the declaration ({_declared_line(d)}): nothing to roll"
        )
        return 0
    batches = order(found.differing, opts.canary, opts.batch, lambda n: n.nvlink_domain)
    print_plan(
        t, d, found, batches, opts, service=f"SKIPPED: {service.skipped}" if service.skipped else "cordon, then drain"
    )
    if dry_run:
        t.say("\ndry run: no node was touched")
        return 0
    rollout = Rollout(
        id=record.new_id(t.root, t.site),
        site=t.site,
        stack_file=display(t.stack.path, t.root),
        declared=d,
        options=record.Options(
            canary=opts.canary, batch=str(opts.batch), max_failures=opts.max_failures, limit=opts.limit
        ),
        plan=batches,
        differences=found.differences,
    )
    path = record.save(t.root, rollout)
    t.say(f"\nrollout {rollout.id}: record {path.relative_to(t.root)}")
    return execute(t, rollout, service)


def resume(t: Target, service: Service, max_failures: int | None) -> int:
    prev = record.latest(t.root, t.site, t.stack.site)
    if prev is None:
        raise ConfigError([Problem("--resume", "", f"{t.site} has no rollout to resume (runs/{t.site}/rollouts/)")])
    if prev.status in (record.COMPLETED, record.ABANDONED):
        t.say(f"rollout {prev.id} of {t.site} is {prev.status} ({prev.ended}): nothing to resume")
        return 0
    d = declared(t.stack, t.root)
    if d != prev.declared:
        old = prev.declared.model_dump()
        changed = [k for k, v in d.model_dump().items() if v != old[k]]
        raise ConfigError(
            [
                Problem(
                    display(t.stack.path, t.root),
                    "",
                    f"changed since rollout {prev.id} started ({', '.join(changed)}): its batches were chosen "
                    f"for the old declaration; start a new rollout with `aifactory rollout {t.site} --restart`",
                )
            ]
        )
    if max_failures is not None:
        prev.options.max_failures = max_failures
    left = prev.plan[prev.next_batch :]
    t.say(
        f"resuming rollout {prev.id} of {t.site} ({prev.reason or 'interrupted'}): "
        f"{len(left)} batch(es) left, from {left[0].name if left else 'none'}"
    )
    prev.status, prev.reason, prev.ended = record.RUNNING, "", ""
    record.save(t.root, prev)
    return execute(t, prev, service)


def _verify_text(r: runner.NodeResult) -> str:
    if r.error:
        return f"FAIL: {r.error}"
    bad = [f"{c}: {v.message}" for c, v in sorted(r.checks.items()) if v.status == runner.FAIL]
    return "FAIL: " + "; ".join(bad) if bad else "pass"


def run_batch(t: Target, rollout: Rollout, planned: Batch, service: Service) -> BatchRecord:
    nodes = list(planned.nodes)
    batch = BatchRecord(index=planned.index, kind=planned.kind, nodes=nodes, started=record.now())
    views = {n.hostname: n for n in t.stack.site.nodes}
    t.say(f"\n== {batch.name}: {hosts_text(nodes)}")
    before = versions(t, [views[h] for h in nodes])
    for h in nodes:
        batch.outcomes[h] = NodeOutcome(versions_before=before[h])
    ready = []

    def take_out(h: str) -> tuple[str, str, DrainError | None]:
        try:
            return h, service.take_out(h), None
        except DrainError as exc:
            return h, "", exc

    # The batch's drains run side by side: each waits on its own pods and PodDisruptionBudgets.
    with ThreadPoolExecutor(min(DRAIN_PARALLEL, len(nodes))) as pool:
        for h, said, error in pool.map(take_out, nodes):
            o = batch.outcomes[h]
            if error is None:
                o.out_of_service = said
                ready.append(h)
            else:
                o.out_of_service, o.failed = f"FAILED: {error}", True
                o.converge = o.verify = "not run: the node could not be taken out of service"
            t.say(f"  {h}: {o.out_of_service}")
    _keep_cordons(t, rollout, service)  # saved before converging: a crash here must not lose whose cordon it is
    if ready:
        result = run_playbook(t.stack, t.root, limit=",".join(ready), ssh_config=t.ssh_config, say=t.say)
        batch.bootstrap_artifacts = str(result.artifacts)
        for h in ready:
            o = batch.outcomes[h]
            s = result.hosts.get(h)
            if s is None or s.failed or s.unreachable:
                o.converge, o.failed = f"FAILED: {result.reasons.get(h, 'no result from ansible-playbook')}", True
            else:
                o.converge = f"ok ({s.changed} changed)"
        checked = runner.run(
            t.stack, t.root, ",".join(ready), ssh_config=t.ssh_config, say=lambda m: t.say("  " + m.strip())
        )
        for r in checked:
            o = batch.outcomes[r.node.hostname]
            o.verify = _verify_text(r)
            o.failed = o.failed or r.failed
        after = versions(t, [views[h] for h in ready])
        for h in ready:
            o = batch.outcomes[h]
            o.versions_after = after[h]
            if o.failed:
                o.back_in_service = (
                    f"SKIPPED: {service.skipped}" if service.skipped else "left cordoned: the node failed this batch"
                )
            else:
                try:
                    o.back_in_service = service.put_back(h)
                except DrainError as exc:
                    o.back_in_service, o.failed = f"FAILED: {exc}", True
    _keep_cordons(t, rollout, service)
    batch.failures = [h for h in nodes if batch.outcomes[h].failed]
    batch.passed = len(batch.failures) <= rollout.options.max_failures
    batch.ended = record.now()
    return batch


def _keep_cordons(t: Target, rollout: Rollout, service: Service) -> None:
    if isinstance(service, Cluster):
        rollout.cordoned_by_operator = sorted(service.cordoned_by_operator)
        rollout.cordoned_by_rollout = sorted(service.cordoned_by_rollout)
        record.save(t.root, rollout)


def execute(t: Target, rollout: Rollout, service: Service) -> int:
    if isinstance(service, Cluster):
        service.cordoned_by_operator = set(rollout.cordoned_by_operator)
        service.cordoned_by_rollout = set(rollout.cordoned_by_rollout)
    for pos in range(rollout.next_batch, len(rollout.plan)):
        batch = run_batch(t, rollout, rollout.plan[pos], service)
        rollout.batches.append(batch)
        if batch.passed:
            rollout.next_batch = pos + 1
        files = [record.save_batch(t.root, rollout, batch)]
        t.say(batch_summary(batch))
        if not batch.passed:
            untouched = [h for later in rollout.plan[pos + 1 :] for h in later.nodes]
            rollout.status, rollout.ended = record.STOPPED, record.now()
            rollout.reason = (
                f"{batch.name}: {len(batch.failures)} failure(s), more than --max-failures "
                f"{rollout.options.max_failures} ({hosts_text(batch.failures)})"
            )
            files.append(record.save(t.root, rollout))
            _push(t, rollout, files)
            t.say(
                f"\nSTOPPED: {rollout.reason}.\n"
                + "".join(f"  {h}: {_why(batch.outcomes[h])}\n" for h in batch.failures)
                + (f"untouched: {hosts_text(untouched)}\n" if untouched else "")
                + f"Fix the cause, then `aifactory rollout {t.site} --resume`; "
                f"record: {record.path_of(t.root, rollout).relative_to(t.root)}"
            )
            return 1
        record.save(t.root, rollout)
        _push(t, rollout, files)
    failed = [h for b in rollout.last_tries().values() for h in b.failures]
    rollout.status, rollout.ended = record.COMPLETED, record.now()
    if failed:
        rollout.reason = (
            f"{len(failed)} node(s) failed within --max-failures and stay out of service: {hosts_text(failed)}"
        )
    path = record.save(t.root, rollout)
    _push(t, rollout, [path])
    done = sum(len(b.nodes) for b in rollout.plan) - len(failed)
    t.say(f"\nrollout {rollout.id} completed: {done} node(s) on {_declared_line(rollout.declared)}")
    prune_runs(t.root, t.site)
    if failed:
        t.say(f"FAILED: {rollout.reason}; fix them, then `aifactory rollout {t.site}` rolls what still differs")
        return 1
    return 0


def _why(o: NodeOutcome) -> str:
    for label, text in (("out of service", o.out_of_service), ("converge", o.converge), ("verify", o.verify)):
        if text.startswith("FAIL"):
            return f"{label}: {text}"
    return o.back_in_service


def _push(t: Target, rollout: Rollout, files: list[Path]) -> None:
    if t.push is None:
        return
    keys = t.push(files)
    if keys:
        rollout.evidence.extend(keys)
        record.save(t.root, rollout)


def batch_summary(batch: BatchRecord) -> str:
    width = max(len(h) for h in batch.nodes)
    lines = [f"{batch.name}: {'passed' if batch.passed else 'FAILED'} ({batch.started} .. {batch.ended})"]
    for h in batch.nodes:
        o = batch.outcomes[h]
        before, after = _versions_text(o.versions_before), _versions_text(o.versions_after) if o.versions_after else "-"
        state = "FAILED" if o.failed else "ok"
        lines.append(f"  {h.ljust(width)}  {state:6s}  {before}  ->  {after}")
        if o.failed:
            lines.append(f"  {' ' * width}          {_why(o)}")
    return "\n".join(lines)


def status_text(root: Path, rollout: Rollout) -> str:
    lines = [
        f"rollout {rollout.id} of {rollout.site}: {rollout.status}"
        + (f" ({rollout.reason})" if rollout.reason else ""),
        f"  declared: {_declared_line(rollout.declared)}",
        f"  started {rollout.started}" + (f", ended {rollout.ended}" if rollout.ended else ""),
        f"  options: canary {rollout.options.canary} per pool, batches of {rollout.options.batch}, "
        f"max failures {rollout.options.max_failures}",
    ]
    tried = rollout.last_tries()
    for planned in rollout.plan:
        b = tried.get(planned.index)
        state = "not started" if b is None else ("passed" if b.passed else "FAILED")
        lines.append(f"  {planned.name:9s} {state:11s} {hosts_text(planned.nodes)}")
        if b is not None and b.failures:
            lines += [f"              {h}: {_why(b.outcomes[h])}" for h in b.failures]
    lines.append(f"  record: {record.path_of(root, rollout).relative_to(root)}")
    if rollout.evidence:
        lines.append(f"  evidence store: {len(rollout.evidence)} record(s)")
    return "\n".join(lines)
