"""`aifactory secret encrypt SITE`: a value for a stack file, encrypted as Pulumi's passphrase provider does."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError, Problem
from .common import root_of, site_args

VALUE_MAX = 1 << 20


def _stdin_value() -> str:
    """All of standard input as one value: a trailing line break is dropped, a second line is refused."""
    stream = getattr(sys.stdin, "buffer", None)
    try:
        raw = stream.read(VALUE_MAX + 1) if stream is not None else sys.stdin.read(VALUE_MAX + 1).encode()
        if len(raw) > VALUE_MAX:  # never cut a value short silently
            raise ConfigError([Problem("<stdin>", "", "larger than 1 MiB: nothing was encrypted")])
        text = raw.decode("utf-8")
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
    from ..policies.secrets import LAB_PASSPHRASE, LAB_SITE
    from ..secrets import Crypter, SecretsError, read_passphrase, read_passphrase_file, salt_problem
    from ..stackfile import display, read_yaml, stack_path

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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("secret", help="encrypt a value for a stack file (Pulumi passphrase provider)")
    p.add_argument("action", choices=["encrypt"], help="encrypt: read one line on standard input, print secure: ...")
    p.add_argument("site", metavar="SITE", help="the stack whose passphrase and salt encrypt the value")
    p.set_defaults(func=cmd_secret)
