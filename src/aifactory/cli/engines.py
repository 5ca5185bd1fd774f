"""`aifactory engines build|status`: the pinned engines (Pulumi CLI, provider, Kubernetes, etcd, helm)."""

from __future__ import annotations

import argparse

from .common import root_of


def cmd_engines(args: argparse.Namespace) -> int:
    from ..engines import locate
    from ..engines.build import duration
    from ..engines.recipes import BY_NAME

    root = root_of(args)
    if args.action == "build":
        engines = locate.ensure(root, args.names or None)
        for f in engines.found.values():
            print(f"{f.name} {f.version}: {f.bin} ({'on PATH' if f.how == 'PATH' else f.how})")
        return 0
    pins = locate.root_engines(root)
    ambient = locate.pulumi_on_path(pins["pulumi"].version)
    missing = 0
    for name in args.names or list(BY_NAME):
        p = pins[name]
        if ambient is not None and name in locate.PULUMI_DISTRIBUTION:
            print(f"{name} {p.version}: the pulumi on PATH ({ambient})")
            continue
        manifest = p.built()
        if manifest is None:
            missing += 1
            print(f"{name} {p.version}: not built (key {p.key}); `aifactory engines build {name}`")
        else:
            took = duration(float(manifest.get("seconds", 0)))  # type: ignore[arg-type]
            print(f"{name} {p.version}: {p.bin} (built {manifest.get('built')} with Go {manifest.get('go')} in {took})")
    return 1 if missing else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "engines", help="the pinned Pulumi CLI, Kubernetes provider, kube-apiserver, etcd, helm: built once per machine"
    )
    p.add_argument(
        "action",
        choices=["build", "status"],
        help="build: build what this machine lacks (minutes, the first time); status: what is built (exit 1: not all)",
    )
    p.add_argument("names", nargs="*", metavar="ENGINE", help="engines to act on (default: all)")
    p.set_defaults(func=cmd_engines)
