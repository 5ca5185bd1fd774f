"""Format 2 -> 3: rails name no devices, and MIG is chosen per pool.

Reads the shape of eb7cdc4, where each rail named its HCA (``hca``) and netdev (``interface``)
and ``gpu_stack.mig.default_profile`` set one MIG configuration for every node. 2de7f20 derives
a rail's ports from the catalog's port map of each pool's SKU (rail N: the port beside GPU N) and
moved the MIG configuration to each pool's ``mig_config``.
"""

from __future__ import annotations

from typing import Any

from .common import get, mappings

SOURCE = 2
INTRODUCED = "eb7cdc4fbe33c6cd25d9dc37fe43229754273d7c"  # eb7cdc4: the commit whose shape this step reads
WHAT = "rails without devices; MIG per pool"
HOW = (
    "remove hca and interface from network.fabric.rails (the catalog's port map names them); "
    "replace gpu_stack.mig.default_profile with mig_config on each pool that runs MIG"
)

# What the old default meant: the MIG manager's "all-disabled" configuration, i.e. MIG off.
_MIG_OFF = "all-disabled"


def carries(site: dict[str, Any]) -> bool:
    rails = list(mappings(get(site, "network", "fabric", "rails")))
    mig = get(site, "gpu_stack", "mig")
    return any("hca" in r or "interface" in r for r in rails) or (isinstance(mig, dict) and "default_profile" in mig)


def _span(values: list[str]) -> str:
    return values[0] if len(values) == 1 else f"{values[0]} ... {values[-1]}"


def upgrade(site: dict[str, Any]) -> list[str]:
    notes: list[str] = []
    rails = list(mappings(get(site, "network", "fabric", "rails")))
    hcas = [str(r.pop("hca")) for r in rails if "hca" in r]
    netdevs = [str(r.pop("interface")) for r in rails if "interface" in r]
    if hcas or netdevs:
        written = "; ".join(
            part for part in (hcas and f"hca {_span(hcas)}", netdevs and f"interface {_span(netdevs)}") if part
        )
        notes.append(
            f"network.fabric.rails[*] named their devices ({written}): dropped, as since 2de7f20 the "
            "catalog's port map of each pool's SKU names them"
        )
    mig = get(site, "gpu_stack", "mig")
    if isinstance(mig, dict) and "default_profile" in mig:
        profile = mig.pop("default_profile")
        strategy = mig.get("strategy", "none")
        pools = [p for p in mappings(site.get("pools")) if "mig_config" not in p]
        if profile == _MIG_OFF or strategy == "none":
            notes.append(f"gpu_stack.mig.default_profile {profile} dropped: MIG was off (strategy {strategy})")
        else:
            for pool in pools:
                pool["mig_config"] = profile
            names = ", ".join(str(p.get("name")) for p in pools) or "none"
            notes.append(f"gpu_stack.mig.default_profile {profile} became mig_config of pools {names}")
    return notes
