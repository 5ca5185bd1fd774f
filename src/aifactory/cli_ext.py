"""Subcommands beyond the site model itself: inventories, bootstrap, test hosts, verify, diff, audit."""

from __future__ import annotations

import argparse
from collections.abc import Callable

REGISTER: list[Callable[[argparse._SubParsersAction], None]] = []
