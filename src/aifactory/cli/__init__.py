"""aifactory: the command line over the site model.

Exit status: 0 success, 1 an operation failed (a host, a check), 2 bad input (a stack file,
an argument). Bad input is printed one problem per line, naming the file and the field.

One module per audience:
    sitedata    sites, validate, plan, diff, audit    (planners and auditors; no node is touched)
    operations  inventory, bootstrap, verify          (SREs, against a site's nodes)
    rollout     rollout                               (SREs: a changed stack, batch by batch)
    storage     storage, evidence                     (the site's in-country object store)
    mirror      mirror manifest, mirror check         (what the site's mirrors must serve, and do)
    secret      secret                                (values for stack files)
    testhosts   testhosts                             (the local test-host harness)
    lab         lab                                   (the whole job on the lab site)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import ConfigError, OperationError
from . import lab, mirror, operations, rollout, secret, sitedata, storage, testhosts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aifactory", description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="project checkout (default: found from the current directory)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (sitedata, operations, rollout, storage, mirror, secret, testhosts, lab):
        module.register(sub)
    describe(sub)
    return parser


def describe(sub: argparse._SubParsersAction) -> None:
    """Give every subcommand (and its verbs) its one-line help as the description its --help prints."""
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, parser in sub.choices.items():
        if not parser.description and helps.get(name):
            parser.description = str(helps[name])
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                describe(action)


def main(argv: Sequence[str] | None = None) -> int:
    from .. import findings

    parser = build_parser()
    args = parser.parse_args(argv)
    findings.begin_command()
    try:
        from ..environment import check

        check()
        return args.func(args)
    except ConfigError as exc:
        for line in findings.fold(exc.problems):
            print(f"error: {line}", file=sys.stderr)
        return 2
    except OperationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last guard: a bug prints one line, not a traceback
        if os.environ.get("AIFACTORY_DEBUG"):
            raise
        from ..grammar import shown

        print(
            f"error: internal error ({type(exc).__name__}: {shown(str(exc), 200)}); "
            "set AIFACTORY_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
