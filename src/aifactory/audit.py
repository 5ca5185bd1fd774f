"""`aifactory audit SITE --out DIR`: a self-contained HTML report and its Markdown twin.

The report is a pure function of its inputs (the stack file, the stack at the compared revision,
this package's source, the templates and the as-of date), and it names the SHA-256 of each and
of all together, so an auditor can check out the same commit, run the same command, and get
the same bytes. It says whether the checkout was clean: on a modified tree the bytes come from
the working tree, and the report names the files that differ from the commit.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import jinja2

from . import catalog, history, tenancy
from .diff import Change, diff_stacks
from .errors import ConfigError, Problem
from .fsutil import refuse_irregular, write_atomic
from .migrations import CURRENT
from .plan import run_plan
from .policies import Result, Severity, evaluate_sites
from .stackfile import Stack, list_stacks, load_stack, stack_path
from .storage import spec

PACKAGE = Path(__file__).resolve().parent
TEMPLATES = ("audit.html.j2", "audit.md.j2")
# One report, two formats: the same name with two suffixes.
TARGETS = (("audit.html.j2", "audit-{site}.html"), ("audit.md.j2", "audit-{site}.md"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Inputs:
    parts: dict[str, str]  # name -> sha256

    @property
    def digest(self) -> str:
        return _sha(json.dumps(self.parts, sort_keys=True).encode())


def collect_inputs(root: Path, site: str, as_of: date, rev: history.Resolved | None) -> Inputs:
    # Every stack is labelled the same way, the audited site's own included.
    parts = {f"stack {site}": _sha(stack_path(root, site).read_bytes()), "as_of": as_of.isoformat()}
    if rev is not None:
        rel = stack_path(root, site).relative_to(root)
        old = history.show(root, rev.commit.sha, str(rel))
        parts[f"stack {site}@{rev.commit.sha}"] = _sha(old or b"")
    code = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        code.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    parts["aifactory source"] = code.hexdigest()
    for name in TEMPLATES:
        parts[f"templates/{name}"] = _sha((root / "templates" / name).read_bytes())
    # Cross-site rules read the other stacks too.
    for other in list_stacks(root):
        if other != site:
            parts[f"stack {other}"] = _sha(stack_path(root, other).read_bytes())
    return Inputs(parts)


# Folders whose every file is an input (an untracked file there changes the report); the report's own output
# written into the checkout is not one.
INPUT_DIRS = ("stacks", "src", "templates")
# A dirty tree's report names this many of the files that differ from the commit, then a count.
CHANGED_SHOWN = 20


def tree_facts(root: Path) -> dict[str, Any]:
    """Whether the report's bytes are the commit's: the checkout's state, as the report states it."""
    tree = history.tree_state(root, INPUT_DIRS)
    return {
        "head": tree.head.sha if tree.head else "unknown",
        "git": tree.head is not None,
        "clean": tree.clean,
        "changed": list(tree.changed[:CHANGED_SHOWN]),
        "more": max(0, len(tree.changed) - CHANGED_SHOWN),
        "count": len(tree.changed),
    }


def _bucket_facts(region: str | None, versioning: bool, lock: dict[str, Any] | None) -> str:
    locked = f"lock {lock['mode']} {lock['days']} d" if lock else "no lock"
    return f"{region or '(default region)'}, versioning {'on' if versioning else 'off'}, {locked}"


def _live_bucket(live: dict[str, Any] | str | None, name: str) -> tuple[Any, str]:
    """The live store's state of bucket ``name`` when it was read and the bucket exists; else why not."""
    state = live.get(name) if isinstance(live, dict) else None
    if state is None:
        return None, "not read"
    if not state.exists:
        return None, "MISSING"
    return state, ""


def storage_rows(stack: Stack, live: dict[str, Any] | str | None) -> tuple[str, list[dict[str, str]]]:
    """Each declared bucket beside what the live store says (``live``: per-bucket state, or why it was not read)."""
    if isinstance(live, dict):
        note = "The store was read when this report was written: each bucket's location, versioning and lock."
    elif isinstance(live, str):
        note = f"The store was not reached: {live}"
    else:
        note = "The live store was not read (aifactory audit --live-store reads it)."
    rows = []
    for b in stack.site.storage.object_store.buckets:
        lock = {"mode": b.object_lock.mode, "days": b.object_lock.days} if b.object_lock else None
        state, said = _live_bucket(live, b.name)
        if state is not None:
            said = _bucket_facts(state.region, state.versioning, state.object_lock)
        rows.append(
            {
                "name": b.name,
                "role": b.role,
                "declared": _bucket_facts(stack.site.storage.object_store.region, b.versioning, lock),
                "live": said,
            }
        )
    return note, rows


def _span(hosts: list[str]) -> str:
    if len(hosts) <= 3:
        return ", ".join(hosts)
    return f"{hosts[0]} … {hosts[-1]}"


def _granted(policy: str | None) -> list[str]:
    """The principals a bucket policy allows anything, as the store returned it (owner aside)."""
    if not policy:
        return []
    try:
        doc = json.loads(policy)
    except ValueError:
        return ["(unreadable policy)"]
    out: list[str] = []
    for st in doc.get("Statement", []):
        if st.get("Effect") == "Allow":
            who = st.get("Principal", {})
            who = who.get("AWS", who) if isinstance(who, dict) else who
            out += who if isinstance(who, list) else [who]
    return sorted(set(out))


def tenant_rows(stack: Stack, live: dict[str, Any] | str | None) -> list[dict[str, Any]]:
    """What the regulator asks of each tenant: its class, nodes, partition, buckets and who may read them.

    "Who may read" is the bucket policy this program sets (the tenant's store user; the site's owner
    account owns every bucket); where the live store was read, its own answer stands beside it.
    """
    site = stack.site
    specs = {s["bucket"]: s for s in spec.site_specs(site)}
    shared = tenancy.shared_nodes(site)
    rows = []
    for t in site.tenants:
        mine = tenancy.nodes_of(site, t)
        if mine:
            nodes = f"{len(mine)} of its own ({_span([n.hostname for n in mine])}), tainted and labelled for it"
        else:
            nodes = f"shared: the {len(shared)} node(s) no tenant holds"
        part = tenancy.partition(site, t)
        if part is None:
            partition = "the site's default partition, shared (shared_fabric: the site says so)"
        elif site.network.fabric.type == "infiniband":
            partition = f"its own InfiniBand partition key {tenancy.pkey_text(part)}"
        else:
            partition = f"its own RoCE VLAN {part}"
        bucket_rows = []
        for b in tenancy.buckets(site, t):
            declared = _granted(specs[b.name]["policy"])
            state, said = _live_bucket(live, b.name)
            if state is not None:
                found = _granted(state.policy)
                grants = ", ".join(found) or "no one"
                said = f"grants {grants}" if found == declared else f"DIFFERENT: grants {grants}"
            bucket_rows.append({"name": b.name, "readers": ", ".join(declared), "live": said})
        rows.append(
            {
                "name": t.name,
                "display_name": t.display_name,
                "classification": t.data_classification,
                "quota": t.gpu_quota,
                "nodes": nodes,
                "partition": partition,
                "principal": tenancy.principal(t),
                "buckets": bucket_rows,
            }
        )
    return rows


def report_context(
    root: Path, stack: Stack, as_of: date, rev: history.Resolved | None, *, live: dict[str, Any] | str | None = None
) -> dict[str, Any]:
    site = stack.site
    stacks = [stack] + [load_stack(root, n) for n in list_stacks(root) if n != stack.name]
    results: list[Result] = evaluate_sites(stacks, only={stack.name}, as_of=as_of)
    changes: list[Change] | None = None
    past: dict[str, Any] | None = None
    if rev is not None:
        old = history.stack_at(root, stack.name, rev)
        changes = diff_stacks(old, stack)
        between = history.between(root, rev.commit.sha, str(stack_path(root, stack.name).relative_to(root)))
        past = {
            "said": rev.said(),
            "format": old.format,
            "upgraded": list(old.migrated),
            "total": between.total,
            "path": between.path,
            "on_history": between.on_history,
            "commits": list(between.touching),
        }
    plan = run_plan(stack)
    inputs = collect_inputs(root, stack.name, as_of, rev)
    tree = tree_facts(root)
    counts = {s.value: sum(1 for r in results if r.severity is s) for s in Severity}
    pools = [
        {
            "name": p.name,
            "sku": p.sku,
            "gpu_model": p.spec.gpu_model,
            "nodes": p.count,
            "gpus": p.count * p.spec.gpu_count,
            "power_kw": round(p.count * p.spec.power_kw, 1) if p.spec.power_kw is not None else "not published",
        }
        for p in site.pools
    ]
    store_note, buckets = storage_rows(stack, live)
    tenants = tenant_rows(stack, live)
    retired = [
        {"name": r.name, "buckets": ", ".join(r.buckets), "until": r.retain_until.isoformat()}
        for r in site.retired_tenants
    ]
    g = site.gpu_stack
    # A date is named by the commit it chose: the report is reproduced from that commit, whatever the history since.
    against = "" if rev is None else f" --against {rev.commit.sha if rev.rule else rev.asked}"
    command = f"aifactory audit {stack.name} --out DIR --as-of {as_of.isoformat()}{against}"
    return {
        "site": site,
        "as_of": as_of.isoformat(),
        "pools": pools,
        "versions": [
            ("NVIDIA driver", g.driver, f"branch R{g.driver_branch}"),
            ("CUDA toolkit", g.cuda, f"minimum driver {catalog.CUDA_MIN_DRIVER.get(g.cuda, '?')}"),
            ("NCCL", g.nccl, f"built for CUDA {g.nccl_cuda}"),
            ("GPU operator chart", g.gpu_operator, "host driver owned by Ansible (driver.enabled: false)"),
            ("Network operator", g.network_operator, ""),
            (
                "MIG",
                g.mig.strategy,
                ", ".join(f"{p.name}: {p.mig_config}" for p in site.pools if p.mig_config) or "no pool configures MIG",
            ),
        ],
        "results": results,
        "counts": counts,
        "verdict": "FAIL" if counts["error"] else "PASS",
        "rev": rev.label if rev else None,
        "past": past,
        "current_format": CURRENT,
        "changes": changes,
        "store_note": store_note,
        "buckets": buckets,
        "tenants": tenants,
        "retired": retired,
        "resources": sorted(plan.counts().items()),
        "resource_total": len(plan.resources),
        "inputs": sorted(inputs.parts.items()),
        "digest": inputs.digest,
        "commit": tree["head"],
        "tree": tree,
        "command": command,
        # Links: an auditor follows each fact to its source in one click.
        "sources": [catalog.CUDA_RELEASE_NOTES, catalog.GPU_OPERATOR_SUPPORT, catalog.DRIVER_LIFECYCLE],
    }


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def md_text(value: object) -> str:
    """A value as Markdown text: HTML and Markdown syntax escaped, one line, table pipes escaped."""
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(value: object) -> str:
    """A value as a Markdown code span: a fence longer than any backtick run in it, pipes escaped for tables."""
    text = " ".join(str(value).split()).replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def check_out_dir(out: Path) -> Path:
    """--out is a directory or does not exist yet; anything else is bad input."""
    if out.exists() and not out.is_dir():
        raise ConfigError([Problem("--out", "", f"{out} exists and is not a directory")])
    return out


def write_report(
    root: Path,
    stack: Stack,
    out: Path,
    as_of: date,
    rev: history.Resolved | None,
    *,
    live: dict[str, Any] | str | None = None,
) -> list[Path]:
    context = report_context(root, stack, as_of, rev, live=live)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root / "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md"] = md_text
    env.filters["code"] = md_code
    rendered = [(env.get_template(name).render(**context), target) for name, target in TARGETS]
    check_out_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError([Problem("--out", "", f"cannot create {out}: {exc.strerror}")]) from None
    targets = [(text, out / target.format(site=stack.name)) for text, target in rendered]
    refuse_irregular([path for _, path in targets], "--out")
    for text, path in targets:
        write_atomic(path, text)
    return [path for _, path in targets]
