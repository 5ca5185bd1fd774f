"""Crafting bad sites from the real stacks, for policy and diff tests."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import yaml

from aifactory.stackfile import Stack, parse_stack, stack_path

from .conftest import ROOT


def raw(site: str) -> dict[str, Any]:
    return yaml.safe_load(stack_path(ROOT, site).read_text())


def crafted(site: str, change: Callable[[dict[str, Any]], None]) -> Stack:
    doc = copy.deepcopy(raw(site))
    change(doc["config"]["aifactory:site"])
    path = stack_path(ROOT, site)
    return parse_stack(doc, site, path, f"stacks/Pulumi.{site}.yaml")
