"""aifactory: the command line over the site model.

Exit status: 0 success, 1 an operation failed (a host, a check), 2 bad input (a stack file,
an argument). Bad input is printed one problem per line, naming the file and the field.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import ConfigError, OperationError, Problem

Handler = Callable[[argparse.Namespace], int]


def root_of(args: argparse.Namespace) -> Path:
    from .stackfile import project_root

    return Path(args.root).resolve() if args.root else project_root()


def cmd_sites(args: argparse.Namespace) -> int:
    from .stackfile import list_stacks, load_stack

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


def site_args(names: Sequence[str]) -> list[str]:
    """Site arguments, each checked before it names a file, and each once."""
    from .stackfile import check_site_name, unique

    return unique([check_site_name(n) for n in names])


def cmd_validate(args: argparse.Namespace) -> int:
    from .policy import Severity, evaluate_sites, select
    from .stackfile import list_stacks, load_neighbours, load_stacks

    root = root_of(args)
    checks = select(args.only)
    names = site_args(args.sites) if args.sites else list_stacks(root)
    stacks = load_stacks(root, names)
    # Cross-site rules (CIDR overlap between interconnected sites) look at every stack.
    everyone = [*stacks, *load_neighbours(root, [s.name for s in stacks])]
    results = evaluate_sites(everyone, only={s.name for s in stacks}, checks=checks)
    errors = 0
    for r in results:
        if r.severity is Severity.ERROR:
            errors += 1
        if r.severity not in (Severity.INFO,) or args.verbose:
            print(r.line())
    for s in stacks:
        print(
            f"{s.name}: {'FAIL' if any(r.site == s.name and r.severity is Severity.ERROR for r in results) else 'ok'}"
        )
    return 2 if errors else 0


def gated(root: Path, names: Sequence[str]) -> list:
    """Load the stacks a command acts on and put them through the policy gate (errors: exit 2)."""
    from .policy import gate
    from .stackfile import load_stacks

    stacks = load_stacks(root, site_args(names))
    gate(stacks, root)
    return stacks


def cmd_plan(args: argparse.Namespace) -> int:
    from .plan import render_json, render_text, run_plan

    (stack,) = gated(root_of(args), [args.site])
    plan = run_plan(stack)
    if args.manifests:
        from . import manifests

        for path in manifests.write(plan, args.manifests):
            print(f"wrote {path}", file=sys.stderr)
    sys.stdout.write(render_json(plan) if args.json else render_text(plan, show_inputs=args.inputs))
    return 0


def _stdin_value() -> str:
    """All of standard input as one value: a trailing line break is dropped, a second line is refused."""
    stream = getattr(sys.stdin, "buffer", None)
    try:
        text = stream.read(1 << 20).decode("utf-8") if stream is not None else sys.stdin.read(1 << 20)
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem("<stdin>", "", f"not UTF-8 text (byte {exc.start})")]) from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ConfigError([Problem("<stdin>", "", "no value to encrypt (give it on standard input)")])
    if "\n" in text or "\r" in text:
        raise ConfigError(
            [Problem("<stdin>", "", "more than one line: a secret value here is one line (nothing was encrypted)")]
        )
    return text


def cmd_secret(args: argparse.Namespace) -> int:
    from .policy import LAB_PASSPHRASE, LAB_SITE
    from .secrets import Crypter, SecretsError, read_passphrase, read_passphrase_file, salt_problem
    from .stackfile import display, read_yaml, stack_path

    root = root_of(args)
    path = stack_path(root, site_args([args.site])[0])
    shown = display(path, root)
    doc = read_yaml(path, shown)
    state = doc.get("encryptionsalt") if isinstance(doc, dict) else None
    if not state:
        raise ConfigError([Problem(shown, "encryptionsalt", "missing: this stack has no passphrase provider yet")])
    problem = salt_problem(state)
    if problem:
        raise ConfigError([Problem(shown, "encryptionsalt", problem)])
    try:
        passphrase = read_passphrase()
        if args.site != LAB_SITE:
            lab = root / "stacks" / LAB_PASSPHRASE
            if lab.is_file() and read_passphrase_file(lab) == passphrase:
                raise ConfigError(
                    [Problem(shown, "encryptionsalt", f"refusing the public lab passphrase for site {args.site}")]
                )
        crypter = Crypter.from_state(passphrase, state)
    except SecretsError as exc:
        raise ConfigError([Problem(shown, "encryptionsalt", str(exc))]) from None
    print(f"secure: {crypter.encrypt(_stdin_value())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aifactory", description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="project checkout (default: found from the current directory)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sites", help="one line per site: country, city, nodes, GPUs, versions")
    p.set_defaults(func=cmd_sites)

    p = sub.add_parser("validate", help="check stack files and run the policies; exit 2 on any error")
    p.add_argument("sites", nargs="*", metavar="SITE")
    p.add_argument("-v", "--verbose", action="store_true", help="also print the checks that passed")
    p.add_argument(
        "--only",
        action="append",
        metavar="POLICY",
        help="only this policy family or check (repeatable), e.g. residency, compat.cuda-driver",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="every resource the Pulumi program would register, offline (mock runtime)")
    p.add_argument("site", metavar="SITE")
    p.add_argument("--json", action="store_true", help="machine-readable plan")
    p.add_argument("--inputs", action="store_true", help="text mode: print each resource's inputs too")
    p.add_argument(
        "--manifests",
        type=Path,
        metavar="DIR",
        help="also write the Kubernetes objects (DIR/SITE.yaml) and Helm values for any validator to read",
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("secret", help="encrypt a value for a stack file (Pulumi passphrase provider)")
    p.add_argument("action", choices=["encrypt"])
    p.add_argument("site", metavar="SITE")
    p.set_defaults(func=cmd_secret)

    for register in _extensions():
        register(sub)
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


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:
    from . import cli_ext

    return cli_ext.REGISTER


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
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
        from .grammar import shown

        print(
            f"error: internal error ({type(exc).__name__}: {shown(str(exc), 200)}); "
            "set AIFACTORY_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
