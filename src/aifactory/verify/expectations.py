"""What a node must have, derived from its site and from the roles' documented defaults.

Nothing here is typed in twice: versions, fabric settings and the SKU's GPU facts come from
the site model and the catalog; package names, kernel parameters and the memlock limit come
from the roles' defaults/main.yml, the same files Ansible reads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..catalog import SKUS, Source, Threshold
from ..inventory import group_vars_all, group_vars_sku
from ..model import NodeView, Site


@cache
def role_defaults(root: Path, role: str) -> dict[str, Any]:
    return yaml.safe_load((root / "roles" / role / "defaults" / "main.yml").read_text()) or {}


@cache
def role_vars(root: Path, role: str, distribution: str) -> dict[str, Any]:
    """roles/<role>/vars/<Distribution>.yml: the names the role installs there, read by Ansible and by verify."""
    return yaml.safe_load((root / "roles" / role / "vars" / f"{distribution}.yml").read_text()) or {}


def for_branch(table: list[dict[str, Any]], branch: int) -> list[str]:
    """The names a per-branch table gives a driver branch: its first entry at or below it (as the role picks)."""
    for entry in table:
        if entry["from_branch"] <= branch:
            return [n.replace("{branch}", str(branch)) for n in entry["names"]]
    return []


# CPU architectures as the node reports them (uname -m, Ansible's ansible_architecture).
MACHINES = ("x86_64", "aarch64")


@dataclass(frozen=True)
class SkuFacts:
    """What verify checks of a node's system, from the catalog's SKU."""

    name: str
    gpu_count: int
    gpu_product_prefix: str
    nvlinks_per_gpu: int | None  # None: no source states it; the node's GPUs must agree with each other
    nvswitch: bool


@dataclass(frozen=True)
class NodeExpectations:
    site: str
    hostname: str
    sku: SkuFacts
    driver: str
    cuda: str
    cuda_components: str
    nccl_version: str
    # "<distro>/<machine>" -> the driver packages pinned and held there.
    driver_packages: dict[str, list[str]]
    persistenced_package: dict[str, str]
    cuda_packages: dict[str, list[str]]
    nccl_conf: dict[str, str]
    sysctl: dict[str, str]
    memlock: str
    allreduce: Threshold | None
    # A rack-scale SKU's all-reduce figure is a whole rack's: never compared with one tray (reason only).
    rack_allreduce: Threshold | None
    rdma_packages: dict[str, list[str]]
    # rail name -> (RDMA device, netdev), from the catalog's port map: what roles/rdma set up.
    rails: dict[str, tuple[str, str]]
    # distro -> (open kernel modules, DMA-BUF minimum kernel, peermem module), from roles/rdma/vars.
    gpudirect: dict[str, tuple[bool, str, str]]
    gdr_write: Threshold | None
    # nccl-tests' all_reduce_perf as roles/nccl builds it on GPU nodes (its defaults and vars).
    all_reduce_perf: str
    # The compute ports in rail order as (GPU PCI address or "" where the source names GPUs by
    # index, NIC PCI address, RDMA device, netdev), and where they come from: the catalog's NVIDIA
    # table or a node's report recorded in the stack. Empty where neither exists.
    topology: list[tuple[str, str, str, str]]
    topology_source: str
    # Rack-scale trays: the rack, its trays' (address, hostname) in the rack's order (the IMEX node
    # list), who runs IMEX ("dra" or "host"), the IMEX packages per distro, the config folder.
    rack: str
    imex_nodes: list[tuple[str, str]]
    imex_daemon: str
    imex_packages: dict[str, list[str]]
    imex_config_dir: str

    def gpudirect_method(self, distro: str, kernel: str) -> str:
        """DMA-BUF with open modules on a new enough kernel, nvidia-peermem otherwise (the role's rule)."""
        open_modules, minimum, _ = self.gpudirect[distro]
        release = tuple(int(p) for p in kernel.split("-", maxsplit=1)[0].split(".")[:2])
        floor = tuple(int(p) for p in minimum.split(".")[:2])
        return "dma-buf" if open_modules and release >= floor else "nvidia-peermem"

    def cuda_version_code(self) -> int:
        major, minor = self.cuda.split(".")
        return int(major) * 1000 + int(minor) * 10

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> NodeExpectations:
        """The file `aifactory verify` writes for each node's suite: read back without the site or its stack."""
        raw = json.loads(text)

        def threshold(t: dict[str, Any] | None) -> Threshold | None:
            return None if t is None else Threshold(t["value"], t["unit"], Source(**t["source"]))

        return cls(
            **{
                **raw,
                "sku": SkuFacts(**raw["sku"]),
                "allreduce": threshold(raw["allreduce"]),
                "rack_allreduce": threshold(raw["rack_allreduce"]),
                "gdr_write": threshold(raw["gdr_write"]),
                "rails": {k: tuple(v) for k, v in raw["rails"].items()},
                "gpudirect": {k: tuple(v) for k, v in raw["gpudirect"].items()},
                "topology": [tuple(v) for v in raw["topology"]],
                "imex_nodes": [tuple(v) for v in raw["imex_nodes"]],
            }
        )


def expectations(root: Path, site: Site, node: NodeView) -> NodeExpectations:
    base = role_defaults(root, "nvidia_base")
    cuda = role_defaults(root, "cuda_toolkit")
    nccl = role_defaults(root, "nccl")
    g = site.gpu_stack
    major, minor = g.cuda.split(".")
    gv = {**group_vars_all(site), **group_vars_sku(site, node.sku)}
    conf = {"NCCL_SOCKET_IFNAME": gv["nccl_socket_ifname"]}
    if gv["nccl_ib_hca"]:
        conf["NCCL_IB_HCA"] = "=" + ",".join(gv["nccl_ib_hca"])
    if "nccl_ib_gid_index" in gv:
        conf["NCCL_IB_GID_INDEX"] = str(gv["nccl_ib_gid_index"])
    for key, name in (("nccl_mnnvl_enable", "NCCL_MNNVL_ENABLE"), ("nccl_nvls_enable", "NCCL_NVLS_ENABLE")):
        if gv.get(key) is not None:
            conf[name] = str(gv[key])
    sku = SKUS[node.sku]
    deb, ubu = role_vars(root, "nvidia_driver", "Debian"), role_vars(root, "nvidia_driver", "Ubuntu")
    b = g.driver_branch
    rv = {d: role_vars(root, "rdma", d) for d in ("Debian", "Ubuntu")}

    def ubuntu_driver(machine: str) -> list[str]:
        """What roles/nvidia_driver installs on Ubuntu for this branch, SKU and CPU (its packages_ubuntu.yml)."""
        names = for_branch(ubu["nvidia_driver_packages"], b)
        if sku.nvswitch:
            names += for_branch(ubu["nvidia_driver_fabric_manager_packages"], b)
        if sku.nvlink_generation >= 5 and sku.nvswitch:
            if machine in ubu["nvidia_driver_nvsdm_architectures"]:
                names += for_branch(ubu["nvidia_driver_nvsdm_packages"], b)
            names += for_branch(ubu["nvidia_driver_nvlink5_packages"], b)
        return names
    return NodeExpectations(
        site=site.code,
        hostname=node.hostname,
        sku=SkuFacts(sku.name, sku.gpu_count, sku.gpu_product_prefix, sku.nvlinks_per_gpu, sku.nvswitch),
        driver=g.driver,
        cuda=g.cuda,
        cuda_components=g.cuda_components,
        nccl_version=g.nccl_version,
        driver_packages={
            **{f"debian/{m}": list(deb["nvidia_driver_packages"]) for m in MACHINES},
            **{f"ubuntu/{m}": ubuntu_driver(m) for m in MACHINES},
        },
        persistenced_package={"debian": deb["nvidia_driver_persistenced_package"], "ubuntu": ""},
        cuda_packages={
            "debian": list(cuda["cuda_toolkit_packages_debian"][g.cuda_components]),
            "ubuntu": [
                p.replace("{major}", major).replace("{minor}", minor)
                for p in cuda["cuda_toolkit_packages_ubuntu"][g.cuda_components]
            ],
        },
        nccl_conf=conf,
        sysctl={k: str(v) for k, v in base["nvidia_base_sysctl"].items()},
        memlock=str(base["nvidia_base_memlock"]),
        allreduce=sku.allreduce_busbw,
        rack_allreduce=sku.rack_allreduce_busbw,
        rdma_packages={d.lower(): list(rv[d]["rdma_packages"]) for d in rv},
        rails={r["name"]: (r["rdma"], r["netdev"]) for r in gv["rdma_rails"]},
        gpudirect={
            d.lower(): (
                bool(rv[d]["rdma_open_kernel_modules"]),
                str(rv[d]["rdma_dmabuf_min_kernel"]),
                rv[d]["rdma_peermem_module"],
            )
            for d in rv
        },
        gdr_write=sku.gdr_write_gbps,
        all_reduce_perf=(
            f"{nccl['nccl_tests_install_root']}/{gv['nccl_tests_version']}-nccl{g.nccl_version}/build/all_reduce_perf"
        ),
        **topology_of(site, node),
        **imex_of(root, site, node),
    )


def imex_of(root: Path, site: Site, node: NodeView) -> dict[str, Any]:
    """The node's IMEX domain as roles/nvidia_imex writes it (inventory group_vars_rack, the role's tables)."""
    from ..inventory import group_vars_rack

    if not (SKUS[node.sku].mnnvl and node.rack):
        none: dict[str, Any] = {"imex_nodes": [], "imex_daemon": "", "imex_packages": {}, "imex_config_dir": ""}
        return {"rack": node.rack or "", **none}
    members = site.rack_nodes()[node.rack]
    addresses = group_vars_rack(site, node.rack)["nvidia_imex_nodes"]
    branch = site.gpu_stack.driver_branch
    return {
        "rack": node.rack,
        "imex_nodes": [(ip, n.hostname) for ip, n in zip(addresses, members, strict=True)],
        "imex_daemon": group_vars_all(site)["nvidia_imex_daemon"],
        "imex_packages": {
            d.lower(): for_branch(role_vars(root, "nvidia_imex", d)["nvidia_imex_packages"], branch)
            for d in ("Debian", "Ubuntu")
        },
        "imex_config_dir": str(role_defaults(root, "nvidia_imex")["nvidia_imex_config_dir"]),
    }


def topology_of(site: Site, node: NodeView) -> dict[str, Any]:
    """What verify compares a node's own PCI topology with: its SKU's port map, rail by rail."""
    ports = site.port_map(node.sku)
    if ports is None:
        return {"topology": [], "topology_source": ""}
    fabric = site.network.fabric.type
    pool = site.pool(node.pool)
    reported = pool.topology.compute if pool.topology is not None and SKUS[node.sku].ports is None else None
    rows = [
        (reported[i].gpu if reported else "", p.pci, p.rdma, p.netdev(fabric)) for i, p in enumerate(ports.compute)
    ]
    return {"topology": rows, "topology_source": str(ports.source)}
