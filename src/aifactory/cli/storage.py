"""``aifactory storage apply|check SITE`` and ``aifactory evidence push|list|check SITE``.

Both go through the policy gate first (a site that fails its policies reaches no store), read the
store's keys from the stack (``aifactory:objectStoreCredentials``, the secret decrypted with the
stack's passphrase) and print one line per bucket or record.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from .common import gated, root_of

EVIDENCE_SUFFIX = "-evidence"


def _site(args: argparse.Namespace) -> tuple[Path, Any, Any]:
    from ..storage import site

    root = root_of(args)
    (stack,) = gated(root, [args.site])
    return root, stack, site.connect(stack, site.credentials(stack))


def apply_store(stack: Any, client: Any) -> bool:
    """Create and converge the declared buckets, one line each; whether all are as declared."""
    from ..storage import site
    from ..storage.spec import site_specs

    store = stack.site.storage.object_store
    count = len(site_specs(stack.site))
    print(f"storage apply {stack.site.code}: {count} bucket(s) at {store.url} (region {store.region})")
    results = site.apply(stack, client)
    failed = [r.bucket for r in results if r.error]
    extra = site.extra_buckets(stack, client) if not failed else []
    for name in extra:
        print(f"site {stack.site.code}, bucket {name}: on the store but not declared; left as it is (never deleted)")
    changed = sum(1 for r in results if r.actions)
    print(
        f"{len(results) - len(failed)} of {len(results)} bucket(s) as declared ({changed} changed)"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return not failed


def cmd_storage_apply(args: argparse.Namespace) -> int:
    _root, stack, client = _site(args)
    return 0 if apply_store(stack, client) else 1


def check_store(stack: Any, client: Any, as_json: bool = False) -> Any:
    """Compare the live store with the declaration and print the report; the report (a CheckReport)."""
    from ..storage import site

    report = site.check(stack, client)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, sort_keys=True, default=str))
        return report
    for name, live in sorted(report.live.items()):
        ds = [d for d in report.drift if d.bucket == name]
        if not live.exists:
            print(f"site {report.site}, bucket {name}: MISSING")
            continue
        lock = f"lock {live.object_lock['mode']} {live.object_lock['days']}d" if live.object_lock else "no lock"
        facts = f"{live.region}, versioning {'on' if live.versioning else 'off'}, {lock}"
        print(f"site {report.site}, bucket {name}: {'DRIFT' if ds else 'ok'} ({facts})")
        for d in ds:
            print(f"  {d}" + ("" if d.repairable else " (apply cannot repair this)"))
    for name in report.extra:
        print(f"site {report.site}, bucket {name}: EXTRA (on the store, not declared)")
    print("store as declared" if report.clean else f"{len(report.drift)} drift(s), {len(report.extra)} extra bucket(s)")
    return report


def cmd_storage_check(args: argparse.Namespace) -> int:
    _root, stack, client = _site(args)
    return 0 if check_store(stack, client, args.json).clean else 1


# An evidence folder as `aifactory lab` names it: runs/<site>/<stamp>-evidence.
EVIDENCE_DIR = re.compile(r"[0-9]{8}T[0-9]{6}" + re.escape(EVIDENCE_SUFFIX), re.ASCII)


def latest_evidence(root: Path, site: str) -> list[Path]:
    """Every entry of the newest evidence folder (evidence.stage refuses any that is not a regular file)."""
    from ..fsutil import entries, is_dir

    found = [(n, st) for n, st in entries(root, ("runs", site)) if EVIDENCE_DIR.fullmatch(n)]
    for n, st in found:
        if not is_dir(st):
            from ..errors import ConfigError, Problem

            raise ConfigError(
                [Problem(str(root / "runs" / site / n), "", "not a folder (a symbolic link?): never followed")]
            )
    runs = sorted(n for n, _st in found)
    if not runs:
        return []
    newest = root / "runs" / site / runs[-1]
    return [newest / n for n, _st in entries(root, ("runs", site, runs[-1]))]


def cmd_evidence_push(args: argparse.Namespace) -> int:
    from ..errors import ConfigError, Problem
    from ..storage import evidence

    root, stack, client = _site(args)
    files = [Path(f) for f in args.files] or latest_evidence(root, stack.site.code)
    if not files:
        raise ConfigError(
            [Problem("FILES", "", f"none given, and runs/{stack.site.code}/ holds no *{EVIDENCE_SUFFIX} directory")]
        )
    recs = evidence.push(stack, client, root, files)
    print(f"{len(recs)} record(s) in the evidence store of {stack.site.code}")
    return 0


def cmd_evidence_list(args: argparse.Namespace) -> int:
    from ..storage import evidence

    _root, stack, client = _site(args)
    recs = evidence.records(stack, client)
    for r in recs:
        print(f"{r.day}  {r.sha256}  {r.size:>10}  {r.name}")
    print(f"{len(recs)} record(s)")
    return 0


def prove_evidence(stack: Any, client: Any, quiet: bool = False) -> bool:
    """Download every record again and prove it; whether all were proven."""
    from ..storage import evidence

    proofs = evidence.check(stack, client, **({"say": lambda _m: None} if quiet else {}))
    bad = [p for p in proofs if p.problems]
    print(f"{len(proofs) - len(bad)} of {len(proofs)} record(s) proven" + (f"; {len(bad)} FAILED" if bad else ""))
    return not bad


def cmd_evidence_check(args: argparse.Namespace) -> int:
    _root, stack, client = _site(args)
    return 0 if prove_evidence(stack, client) else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "storage",
        help="the site's in-country S3 buckets: apply the declaration, or check the live store against it",
        description="Create and converge (apply) or compare (check) the buckets a site declares, with boto3 "
        "against its in-country S3 endpoint. Keys: aifactory:objectStoreCredentials in the stack.",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    a = verbs.add_parser("apply", help="create and converge every declared bucket; never deletes one")
    a.add_argument("site", metavar="SITE", help="the site whose buckets to converge")
    a.set_defaults(func=cmd_storage_apply)
    c = verbs.add_parser("check", help="report drift from the declaration; exit 1 on any")
    c.add_argument("site", metavar="SITE", help="the site whose store to check")
    c.add_argument("--json", action="store_true", help="print the live state and the drift as JSON")
    c.set_defaults(func=cmd_storage_check)

    e = sub.add_parser(
        "evidence",
        help="the site's evidence store: push records under object lock, list them, prove their hashes",
        description="Records go to the site's evidence bucket under SITE/DATE/SHA256/NAME, with their SHA-256 "
        "in the object's metadata and the bucket's COMPLIANCE retention.",
    )
    ev = e.add_subparsers(dest="verb", required=True, metavar="VERB")
    ep = ev.add_parser("push", help="upload files (default: the newest run's evidence directory)")
    ep.add_argument("site", metavar="SITE", help="the site whose evidence store receives the records")
    ep.add_argument("files", nargs="*", metavar="FILE", help="records to push (default: the newest run's evidence)")
    ep.set_defaults(func=cmd_evidence_push)
    el = ev.add_parser("list", help="one line per record: date, SHA-256, size, name")
    el.add_argument("site", metavar="SITE", help="the site whose evidence store to list")
    el.set_defaults(func=cmd_evidence_list)
    ec = ev.add_parser(
        "check", help="download every record again and prove its hash and retention; exit 1 if any fails"
    )
    ec.add_argument("site", metavar="SITE", help="the site whose evidence store to check")
    ec.set_defaults(func=cmd_evidence_check)
