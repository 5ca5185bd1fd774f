"""The typed site model: the single source of truth for a regional AI factory.

A site is declared once, in ``stacks/Pulumi.<site>.yaml`` under the ``aifactory:site`` key.
The Pulumi program, the Ansible inventories, the testinfra expectations and the audit
policies all derive from an instance of :class:`Site`; nothing here is restated elsewhere.

Validation in this module is structural (types, formats, references inside one site).
Judgements about a valid site (residency, version compatibility, network plan) are
policies in :mod:`aifactory.policy`, so that they carry ids and severities.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from .catalog import SKUS, Sku, Version, known_skus
from .iso3166 import COUNTRY_CODES

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


def _country(value: str) -> str:
    if value not in COUNTRY_CODES:
        raise ValueError(f"'{value}' is not an ISO 3166-1 alpha-2 country code")
    return value


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError(f"'{value}' is not a DNS label (lowercase letters, digits and '-', at most 63)")
    return value


def _mac(value: str) -> str:
    value = value.lower()
    if not _MAC.match(value):
        raise ValueError(f"'{value}' is not a MAC address (aa:bb:cc:dd:ee:ff)")
    return value


def _sku(value: str) -> str:
    if value not in SKUS:
        raise ValueError(f"unknown SKU '{value}'; the catalog has: {known_skus()}")
    return value


def _dotted(parts: int) -> object:
    pattern = re.compile(rf"^\d+(\.\d+){{{parts - 1}}}$")

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"'{value}' is not a version with {parts} numeric parts")
        return value

    return check


def _url(schemes: tuple[str, ...]) -> object:
    def check(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in schemes or not (parts.hostname or parts.scheme == "file"):
            raise ValueError(f"'{value}' is not a {'/'.join(schemes)} URL with a host")
        return value

    return check


Country = Annotated[str, AfterValidator(_country)]
DnsLabel = Annotated[str, AfterValidator(_dns_label)]
MacAddress = Annotated[str, AfterValidator(_mac)]
SkuName = Annotated[str, AfterValidator(_sku)]
DriverVersion = Annotated[str, AfterValidator(_dotted(3))]
CudaVersion = Annotated[str, AfterValidator(_dotted(2))]
HttpUrl = Annotated[str, AfterValidator(_url(("http", "https")))]
StateUrl = Annotated[str, AfterValidator(_url(("s3", "https", "http", "file")))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Jurisdiction(Strict):
    law: str = Field(description="Data-protection law the site operates under")
    regulator: str
    data_residency: Country = Field(description="Country in which data, models and control must stay")


class Location(Strict):
    city: str
    facility: str
    region: str = ""


class Endpoint(Strict):
    """A network service the site depends on, and the country it is operated in."""

    url: HttpUrl
    country: Country

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


class AptMirror(Endpoint):
    signing_key_fingerprint: str = Field(
        default="", pattern=r"^([0-9A-F]{40})?$", description="Pinned OpenPGP key, 40 hex digits"
    )


class Registry(Strict):
    """An OCI registry mirror; images are addressed as host/path without a scheme."""

    host: str = Field(pattern=r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._/-]+)?$")
    country: Country


class Mirrors(Strict):
    debian: AptMirror = Field(description="Debian archive mirror (main contrib non-free non-free-firmware)")
    ubuntu: AptMirror = Field(description="Ubuntu archive mirror for DGX OS nodes")
    cuda: AptMirror = Field(description="Mirror of NVIDIA's CUDA apt repository")
    artifacts: Endpoint = Field(description="Mirror of NVIDIA redistributables (NCCL and friends)")
    charts: Endpoint = Field(description="Helm chart repository mirror")
    containers: Registry = Field(description="Container registry mirror")


class Node(Strict):
    bmc: IPv4Address = Field(description="Redfish BMC address")
    mac: MacAddress = Field(description="MAC address of the provisioning (PXE) interface")


class NodePool(Strict):
    name: DnsLabel
    sku: SkuName
    hostname: str = Field(description="Python format string with {site}, {pool} and {index} (1-based)")
    ip_offset: int = Field(
        ge=1, description="Host number of the pool's first node; a node has the same host number on every network"
    )
    nodes: list[Node] = Field(min_length=1)

    @model_validator(mode="after")
    def _scheme_renders(self) -> NodePool:
        if "{index" not in self.hostname:
            raise ValueError(f"hostname scheme '{self.hostname}' must contain {{index}}")
        try:
            sample = self.hostname.format(site="site", pool=self.name, index=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"hostname scheme '{self.hostname}' does not render: {exc}") from None
        _dns_label(sample)
        return self

    @property
    def count(self) -> int:
        return len(self.nodes)

    @property
    def spec(self) -> Sku:
        return SKUS[self.sku]


class Subnet(Strict):
    cidr: IPv4Network
    gateway: IPv4Address | None = None
    vlan: int | None = Field(default=None, ge=1, le=4094)


class ManagementNetwork(Subnet):
    interface: str = Field(description="Node interface carrying the management network (NCCL_SOCKET_IFNAME)")


class Rail(Strict):
    name: DnsLabel
    hca: str = Field(pattern=r"^mlx5_\d+$", description="RDMA device of this rail (NCCL_IB_HCA)")
    interface: str = Field(description="Netdev of this rail on every node")
    cidr: IPv4Network = Field(description="Pod address pool of this rail (nv-ipam)")


class Fabric(Strict):
    type: Literal["infiniband", "roce"]
    link_gbps: int = Field(gt=0)
    mtu: int = Field(default=4092, ge=1280, le=9216)
    per_node_block: int = Field(default=16, ge=2, description="Pod addresses each node takes from a rail pool")
    roce_gid_index: int = Field(default=3, ge=0, description="RoCE v2 GID index (NCCL_IB_GID_INDEX); RoCE only")
    rails: list[Rail] = Field(min_length=1)


class Network(Strict):
    domain: str = Field(pattern=r"^([a-z0-9-]+\.)+[a-z]{2,}$")
    management: ManagementNetwork
    bmc: Subnet
    storage: Subnet
    fabric: Fabric
    pods: IPv4Network
    services: IPv4Network
    dns: list[IPv4Address] = Field(min_length=1)
    ntp: list[str] = Field(min_length=1)


class Replication(Strict):
    endpoint: HttpUrl
    country: Country


class Bucket(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    purpose: str
    versioning: bool = True
    object_lock_days: int | None = Field(default=None, ge=1)
    replication: Replication | None = None


class ObjectStore(Endpoint):
    region: str
    buckets: list[Bucket] = Field(min_length=1)


class StorageClassSpec(Strict):
    name: DnsLabel
    kind: Literal["lustre", "weka", "gpfs", "nfs", "local"]
    provisioner: str
    parameters: dict[str, str] = Field(default_factory=dict)
    default: bool = False
    reclaim_policy: Literal["Retain", "Delete"] = "Retain"


class Storage(Strict):
    object_store: ObjectStore
    classes: list[StorageClassSpec] = Field(min_length=1)


class StateBackend(Strict):
    """Where this stack's Pulumi state lives (pulumi login URL)."""

    url: StateUrl
    country: Country


class Mig(Strict):
    strategy: Literal["none", "single", "mixed"] = "none"
    default_profile: str = "all-disabled"


class GpuStack(Strict):
    driver: DriverVersion
    cuda: CudaVersion = Field(description="CUDA toolkit major.minor")
    nccl: str = Field(
        pattern=r"^\d+\.\d+\.\d+-\d+\+cuda\d+\.\d+$",
        description="NCCL package version as NVIDIA publishes it, e.g. 2.26.5-1+cuda12.8",
    )
    gpu_operator: str = Field(pattern=r"^v\d+\.\d+\.\d+$", description="gpu-operator Helm chart version")
    network_operator: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    mig: Mig = Mig()

    @property
    def driver_branch(self) -> int:
        return int(self.driver.split(".")[0])

    @property
    def nccl_version(self) -> str:
        return self.nccl.split("-")[0]

    @property
    def nccl_cuda(self) -> str:
        return self.nccl.split("+cuda")[1]

    @property
    def cuda_major(self) -> int:
        return int(self.cuda.split(".")[0])

    @property
    def operator_release(self) -> str:
        major, minor, _ = self.gpu_operator.lstrip("v").split(".")
        return f"{major}.{minor}"

    def driver_at_least(self, minimum: str) -> bool:
        return Version.parse(minimum) <= Version.parse(self.driver)


class Tenant(Strict):
    name: DnsLabel
    display_name: str
    gpu_quota: int = Field(ge=0)
    data_classification: Literal["public", "internal", "confidential", "restricted"]
    max_gpus_per_pod: int = Field(default=8, ge=1)


class Kubernetes(Strict):
    context: str = Field(description="kubeconfig context of this site's cluster; the program refuses any other")


class Site(Strict):
    code: DnsLabel
    country: Country
    name: str
    jurisdiction: Jurisdiction
    location: Location
    kubernetes: Kubernetes
    state_backend: StateBackend
    pools: list[NodePool] = Field(min_length=1)
    network: Network
    storage: Storage
    gpu_stack: GpuStack
    mirrors: Mirrors
    tenants: list[Tenant] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Site:
        def dupes_of(names: list[str]) -> list[str]:
            return sorted(n for n, k in Counter(names).items() if k > 1)

        for label, names in (
            ("pool", [p.name for p in self.pools]),
            ("tenant", [t.name for t in self.tenants]),
            ("rail", [r.name for r in self.network.fabric.rails]),
            ("bucket", [b.name for b in self.storage.object_store.buckets]),
            ("storage class", [c.name for c in self.storage.classes]),
        ):
            dupes = dupes_of(names)
            if dupes:
                raise ValueError(f"duplicate {label} name(s): {', '.join(dupes)}")
        defaults = [c.name for c in self.storage.classes if c.default]
        if len(defaults) > 1:
            raise ValueError(f"more than one default storage class: {', '.join(defaults)}")
        dupes = dupes_of([n.hostname for n in self.nodes])
        if dupes:
            raise ValueError(f"hostname scheme yields duplicate hostnames: {', '.join(dupes[:5])}")
        return self

    # Derived views. cached_property needs a writable __dict__, which frozen pydantic models keep.
    @cached_property
    def nodes(self) -> list[NodeView]:
        views: list[NodeView] = []
        for pool in self.pools:
            for i, hw in enumerate(pool.nodes):
                host = pool.ip_offset + i
                hostname = pool.hostname.format(site=self.code, pool=pool.name, index=i + 1)
                views.append(
                    NodeView(
                        hostname=hostname,
                        fqdn=f"{hostname}.{self.network.domain}",
                        pool=pool.name,
                        sku=pool.sku,
                        index=i + 1,
                        host_number=host,
                        management_ip=_nth(self.network.management.cidr, host),
                        storage_ip=_nth(self.network.storage.cidr, host),
                        bmc_ip=hw.bmc,
                        mac=hw.mac,
                    )
                )
        return views

    @property
    def gpu_total(self) -> int:
        return sum(p.count * p.spec.gpu_count for p in self.pools)

    @property
    def node_total(self) -> int:
        return sum(p.count for p in self.pools)

    @property
    def power_kw(self) -> float:
        return round(sum(p.count * p.spec.power_kw for p in self.pools), 1)

    def pool(self, name: str) -> NodePool:
        return next(p for p in self.pools if p.name == name)


class NodeView(BaseModel):
    """One node as every consumer sees it: derived, never declared."""

    model_config = ConfigDict(frozen=True)

    hostname: str
    fqdn: str
    pool: str
    sku: str
    index: int
    host_number: int
    management_ip: IPv4Address | None
    storage_ip: IPv4Address | None
    bmc_ip: IPv4Address
    mac: str


def _nth(net: IPv4Network, host: int) -> IPv4Address | None:
    """The host-th address of a network, or None when it falls outside (a policy reports it)."""
    if host >= net.num_addresses - 1:
        return None
    return net.network_address + host
