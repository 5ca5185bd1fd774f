"""``aifactory mirror manifest SITE`` and ``aifactory mirror check SITE``: what the site's mirrors must serve, and
whether they serve it.

The manifest is derived from the stack alone (no network); `check` asks each of the site's mirrors
for each item and compares what it serves with the catalog's digests.
"""

from __future__ import annotations

import argparse
import json

from .common import gated, root_of, site_args

MIRRORS = ("debian", "ubuntu", "cuda", "artifacts", "charts", "containers")


def cmd_manifest(args: argparse.Namespace) -> int:
    from ..mirror.manifest import manifest
    from ..stackfile import load_stack

    root = root_of(args)
    (name,) = site_args([args.site])
    # No policy gate: an auditor reads the manifest of a site that fails its policies too (it names
    # every artifact without a digest, which is what policy supply.digests refuses).
    m = manifest(root, load_stack(root, name).site)
    print(m.to_json() if args.json else m.to_text(), end="")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ..mirror.check import FAILING, check

    root = root_of(args)
    (stack,) = gated(root, [args.site])
    chosen = set(args.mirror) if args.mirror else None

    def say(finding) -> None:
        if not args.json:
            print(finding.line(), flush=True)

    findings = check(root, stack.site, chosen, timeout=args.timeout, progress=say)
    bad = [f for f in findings if f.status in FAILING]
    if args.json:
        print(json.dumps([f.as_dict() for f in findings], indent=2, sort_keys=True))
    else:
        counts = {s: sum(1 for f in findings if f.status == s) for s in dict.fromkeys(f.status for f in findings)}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        print(f"{stack.site.code}: {len(findings)} item(s) asked of its mirrors: {summary}")
    return 1 if bad else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mirror",
        help="what the site's in-country mirrors must serve (manifest), and whether they serve it (check)",
        description="The manifest lists every apt package, redistributable, image, chart and key a site takes, "
        "with versions and the catalog's digests; check asks the site's mirrors for each.",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    m = verbs.add_parser("manifest", help="everything the site's mirrors must serve, from the stack alone")
    m.add_argument("site", metavar="SITE", help="the site whose mirrors to list")
    m.add_argument("--json", action="store_true", help="JSON (stable order: two revisions diff line by line)")
    m.set_defaults(func=cmd_manifest)
    c = verbs.add_parser("check", help="ask the mirrors for each item; exit 1 on anything missing or different")
    c.add_argument("site", metavar="SITE", help="the site whose mirrors to ask")
    c.add_argument(
        "--mirror", action="append", choices=MIRRORS, metavar="NAME", help=f"only this mirror ({', '.join(MIRRORS)})"
    )
    c.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="per request (default 10)")
    c.add_argument("--json", action="store_true", help="the findings as JSON")
    c.set_defaults(func=cmd_check)
