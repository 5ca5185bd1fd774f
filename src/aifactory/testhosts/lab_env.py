"""The lab stack's passphrase: public on purpose, so the lab runs on a fresh machine unasked."""

from __future__ import annotations

import os
from pathlib import Path


def passphrase_env(root: Path, site_code: str) -> dict[str, str]:
    """The environment with the stack passphrase: the caller's, else the lab's public file for the lab."""
    env = dict(os.environ)
    if site_code == "lab" and not ({"PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"} & set(env)):
        env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(root / "stacks" / "lab.passphrase")
    return env
