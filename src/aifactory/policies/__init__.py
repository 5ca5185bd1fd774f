"""Policies over site models: residency, version compatibility, network plan, secrets, tenants.

Each check has an id, a severity and a message naming the field, like Google Cluster Toolkit's
validators. They are plain functions over the typed model, so the same code serves
`aifactory validate`, the audit report, and (later) a CrossGuard policy pack under the real CLI.
A passing check yields an INFO result, so an audit can show what was checked, not only what failed.

One module per family of check ids (the id's part before the dot), each declaring its policies:
residency.py, compat.py, topology.py, net.py, secrets.py, supply.py, tenants.py. base.py holds
what they are built from (Severity, Result, Policy, Subject); registry.py gathers every family's
policies in a fixed order and runs them (evaluate, evaluate_sites, select, the site's skips, gate).
"""

from .base import Policy, Result, Severity, Subject, UndeclaredCheck
from .registry import CHECK_IDS, FAMILIES, REGISTRY, SKIP_CHECK, evaluate, evaluate_sites, gate, select

__all__ = [
    "CHECK_IDS",
    "FAMILIES",
    "REGISTRY",
    "SKIP_CHECK",
    "Policy",
    "Result",
    "Severity",
    "Subject",
    "UndeclaredCheck",
    "evaluate",
    "evaluate_sites",
    "gate",
    "select",
]
