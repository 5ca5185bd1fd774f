"""`aifactory testhosts up|down|status`: the lab site's nodes as local test hosts (the harness's CLI)."""

from __future__ import annotations

import argparse

from .common import gated, root_of


def run_of(args: argparse.Namespace):
    from ..stackfile import check_site_name
    from ..testhosts.run import Run

    check_site_name(args.site, "--site")
    return Run.of(root_of(args), args.site, run_id=args.run)


def cmd_testhosts(args: argparse.Namespace) -> int:
    from ..testhosts import lifecycle

    root = root_of(args)
    run = run_of(args)
    if args.action == "up":
        (stack,) = gated(root, [args.site])
        lifecycle.up(stack, root, run)
        return 0
    if args.action == "down":
        lifecycle.down(run)
        return 0
    st = lifecycle.status(run)
    print(f"run {run.id} (site {run.site}): namespace {run.netns} {'present' if st.namespace else 'absent'}")
    print(
        f"proxy relay: {'running' if st.relay else 'stopped'}; "
        f"artifact mirror: {'running' if st.mirror else 'stopped'}; "
        f"object store: {'running' if st.store else 'stopped'}; "
        f"cluster: {'running' if st.cluster else 'stopped'}"
    )
    for name, ip, running, ssh in st.hosts:
        print(f"host {name} {ip}: {'running' if running else 'stopped'}, ssh {'open' if ssh else 'closed'}")
    for m in st.mounts:
        print(f"mount {m}")
    if st.processes:
        print(f"processes: {' '.join(map(str, st.processes))}")
    if st.anything:
        print(f"ssh settings: {run.ssh_config}")
    else:
        print("nothing running")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "testhosts", help="local systemd-nspawn test hosts playing a site's nodes, in a network of their own"
    )
    p.add_argument(
        "action",
        choices=["up", "down", "status"],
        help="up: start (or keep) the run's hosts and mirrors; down: remove exactly this run; status: list it",
    )
    p.add_argument("--site", default="lab", help="site whose nodes the test hosts play (default: lab)")
    p.add_argument(
        "--run",
        metavar="ID",
        help="run id, 8 hex digits (default: AIFACTORY_RUN, else derived from this checkout and the site)",
    )
    p.set_defaults(func=cmd_testhosts)
