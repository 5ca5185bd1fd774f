"""Secrets: every credential a Pulumi secret, under the site's own passphrase (family ``secrets``).

The stack loader already refuses plaintext credentials; this records, per pool, that its BMC
password is a Pulumi secret, and refuses a site whose encryptionsalt opens with the lab's public
passphrase (the lab.passphrase file beside the stacks, tried with secrets.py's Pulumi passphrase
provider). These checks cannot be skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..secrets import SecretsError, read_passphrase_file, verifies
from ..stackfile import CREDENTIALS_KEY, Stack
from .base import Policy, Result, Severity

LAB_SITE = "lab"
LAB_PASSPHRASE = "lab.passphrase"  # noqa: S105 - the name of the lab's public passphrase file


def _lab_passphrase(path: Path) -> str | None:
    try:
        return read_passphrase_file(path)
    except (OSError, ValueError, SecretsError):  # absent or unreadable: nothing to compare with
        return None


def check_secrets(stack: Stack) -> Iterator[Result]:
    """The loader refuses plaintext credentials; this records, per pool, what was checked, and refuses lab keys."""
    for pool in stack.site.pools:
        if pool.name in stack.credentials:
            yield Result(
                "secrets.bmc", Severity.INFO, stack.name, f"{CREDENTIALS_KEY}.{pool.name}.password", "Pulumi secret"
            )
    if stack.name == LAB_SITE or not stack.encryptionsalt:
        return
    lab_passphrase = _lab_passphrase(stack.path.parent / LAB_PASSPHRASE)
    if lab_passphrase is None:
        # A project without the lab (a country team's own repository) has no lab key to compare with.
        yield Result(
            "secrets.lab-passphrase",
            Severity.INFO,
            stack.name,
            "encryptionsalt",
            f"no {LAB_PASSPHRASE} to compare with",
        )
    elif verifies(lab_passphrase, stack.encryptionsalt):
        yield Result(
            "secrets.lab-passphrase",
            Severity.ERROR,
            stack.name,
            "encryptionsalt",
            f"this stack's secrets open with the public lab passphrase ({LAB_PASSPHRASE}): re-key it with the "
            "site's own passphrase, held in country",
        )
    else:
        yield Result("secrets.lab-passphrase", Severity.INFO, stack.name, "encryptionsalt", "not the lab passphrase")


POLICIES = (
    Policy(
        "secrets",
        "Every credential is a Pulumi secret, under the site's own passphrase",
        "site",
        ("secrets.bmc", "secrets.lab-passphrase"),
        lambda s: check_secrets(s.stack),
        skippable=False,
    ),
)
