"""The typed site model: the single source of truth for a regional AI factory.

A site is declared once, in ``stacks/Pulumi.<site>.yaml`` under the ``aifactory:site`` key.
The Pulumi program, the Ansible inventories, the testinfra expectations and the audit
policies all derive from an instance of :class:`Site`; nothing here is restated elsewhere.

Validation in this module is structural (types, formats, references inside one site).
Judgements about a valid site (residency, version compatibility, network plan) are
policies in :mod:`aifactory.policies`, so that they carry ids and severities.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import date
from functools import cache, cached_property
from ipaddress import IPv4Address, IPv4Network
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from . import grammar
from .catalog import (
    DRA_DRIVER_RELEASES,
    GPU_OPERATOR_IMAGES,
    NETWORK_OPERATOR_IMAGES,
    SKUS,
    Port,
    PortMap,
    Sku,
    Source,
    Version,
    known_skus,
)
from .grammar import FieldError, shown
from .iso3166 import COUNTRY_CODES


def _country(value: str) -> str:
    if value not in COUNTRY_CODES:
        raise ValueError(f"{shown(value)} is not an ISO 3166-1 alpha-2 country code")
    return value


def _sku(value: str) -> str:
    if value not in SKUS:
        raise ValueError(f"unknown SKU {shown(value)}; the catalog has: {known_skus()}")
    return value


Country = Annotated[str, AfterValidator(_country)]
DnsLabel = Annotated[str, AfterValidator(grammar.dns_label)]
SiteCode = Annotated[str, AfterValidator(grammar.site_code)]
HostOrIp = Annotated[str, AfterValidator(grammar.normal_host)]
Domain = Annotated[str, AfterValidator(grammar.domain)]
MacAddress = Annotated[str, AfterValidator(grammar.mac)]
SkuName = Annotated[str, AfterValidator(_sku)]
DriverVersion = Annotated[str, AfterValidator(grammar.dotted(3))]
CudaVersion = Annotated[str, AfterValidator(grammar.dotted(2))]
HttpUrl = Annotated[str, AfterValidator(grammar.url(("http", "https")))]
StateUrl = Annotated[str, AfterValidator(grammar.url(("s3", "https", "file")))]
Text = Annotated[str, AfterValidator(grammar.free_text)]
IfName = Annotated[str, AfterValidator(grammar.ifname)]
RdmaDevice = Annotated[str, AfterValidator(grammar.rdma_device)]
Fingerprint = Annotated[str, AfterValidator(grammar.fingerprint)]
RegistryHost = Annotated[str, AfterValidator(grammar.registry)]
QualifiedName = Annotated[str, AfterValidator(grammar.qualified_name)]
ParamValue = Annotated[str, AfterValidator(grammar.param_value)]
KubeContext = Annotated[str, AfterValidator(grammar.kube_context)]
S3Region = Annotated[str, AfterValidator(grammar.s3_region)]
BucketName = Annotated[str, AfterValidator(grammar.bucket_name)]
S3User = Annotated[str, AfterValidator(grammar.s3_user)]
HostnameScheme = Annotated[str, AfterValidator(grammar.hostname_scheme)]
PciAddress = Annotated[
    str,
    AfterValidator(
        grammar.pattern(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", "a PCI address as sysfs names it (0000:18:00.0)")
    ),
]
NcclVersion = Annotated[
    str,
    AfterValidator(
        grammar.pattern(
            r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}-[0-9]{1,3}\+cuda[0-9]{1,3}\.[0-9]{1,3}",
            "an NCCL package version as NVIDIA publishes it (e.g. 2.26.5-1+cuda12.8)",
        )
    ),
]


def _catalogued(known: Mapping[str, object], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in known:
            raise ValueError(
                f"{what} {shown(value)} is not one this project has checked against its upstream "
                f"release files; checked: {', '.join(known)}"
            )
        return value

    return check


ChartVersion = Annotated[
    str,
    AfterValidator(grammar.pattern(r"v[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}", "a chart version (vX.Y.Z)")),
    AfterValidator(_catalogued(GPU_OPERATOR_IMAGES, "gpu-operator chart")),
]
DraDriverVersion = Annotated[
    str,
    AfterValidator(grammar.pattern(r"[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}", "a chart version (X.Y.Z)")),
    AfterValidator(_catalogued(DRA_DRIVER_RELEASES, "DRA driver release")),
]
KubeVersion = Annotated[
    str,
    AfterValidator(grammar.pattern(r"1\.[0-9]{1,3}\.[0-9]{1,3}", "a Kubernetes release (1.Y.Z)")),
]
OperatorVersion = Annotated[
    str,
    AfterValidator(grammar.pattern(r"[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}", "a version (X.Y.Z)")),
    AfterValidator(_catalogued(NETWORK_OPERATOR_IMAGES, "network operator release")),
]
MigProfile = Annotated[
    str, AfterValidator(grammar.pattern(r"[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?", "a MIG configuration name"))
]
PolicyId = Annotated[
    str, AfterValidator(grammar.pattern(r"[a-z]+(?:\.[a-z0-9-]+)?", "a policy id (family or family.check)"))
]
# Bounds are the real systems' where they have one; elsewhere generous but finite, so that no
# value overflows a float, a protobuf number or an address computation downstream.
MAX_NODES_PER_POOL = 100_000
MAX_HOST_NUMBER = 2**24


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class InCountry(Strict):
    """What makes an endpoint in-country: proven from its name or address, never from a declared country."""

    dns_suffixes: list[Domain] = Field(
        min_length=1,
        max_length=64,
        description="DNS zones operated in the country, e.g. za.aifactory.internal: an endpoint named under one is "
        "in-country (policy residency.in-country); none may cover a global public service (residency.suffixes)",
    )
    networks: list[IPv4Network] = Field(
        default_factory=list,
        max_length=256,
        description="IPv4 ranges operated in the country: an endpoint whose address is inside one is in-country "
        "(policy residency.in-country); none wider than a /8 (residency.suffixes)",
    )


class Jurisdiction(Strict):
    law: Text = Field(description="Data-protection law the site operates under (one line); printed in the audit report")
    regulator: Text = Field(description="The authority that enforces that law (one line); printed in the audit report")
    data_residency: Country = Field(
        description="Country (ISO 3166-1 alpha-2) in which data, models and control must stay: every endpoint, the "
        "state backend and the site itself are checked against it (policy residency); label aifactory.io/jurisdiction "
        "on nodes, tenant namespaces and bucket tags"
    )
    in_country: InCountry = Field(
        description="What proves an endpoint is in that country: its name or its address, never its declared "
        "country; no two countries may claim the same zone or range (policy residency.claims-sites)"
    )


class Location(Strict):
    city: Text = Field(
        description="City of the data centre (one line); printed in the audit report and by aifactory sites"
    )
    facility: Text = Field(description="The data centre building or hall (one line); printed in the audit report")
    region: Text | None = Field(
        default=None, description="Province or state (one line); printed in the audit report where set"
    )


class Endpoint(Strict):
    """A network service the site depends on, and the country it is operated in."""

    url: HttpUrl = Field(
        description="The service's http(s) URL, read where the field holding it says; its host must be proven "
        "in-country by jurisdiction.in_country and be no global public service (policy residency)"
    )
    country: Country = Field(
        description="Country (ISO 3166-1 alpha-2) the service is operated in; must be jurisdiction.data_residency "
        "(policy residency.in-country)"
    )

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


class AptMirror(Endpoint):
    signing_key_fingerprint: Fingerprint = Field(
        default="",
        description="OpenPGP fingerprint (40 hex digits) of the key the repository is signed with; read for "
        "mirrors.cuda only: inventory nvidia_base_cuda_repo_key_fingerprint, which roles/nvidia_base pins, and "
        "policy supply.cuda-key, which requires NVIDIA's key",
    )


class Registry(Strict):
    """An OCI registry mirror; images are addressed as host/path without a scheme."""

    host: RegistryHost = Field(
        description="The registry as images are addressed, host[:port][/path] without a scheme: the GPU operator's, "
        "network operator's and DRA driver's images are pulled from under it by their upstream paths; its host "
        "must be proven in-country (policy residency)"
    )
    country: Country = Field(
        description="Country (ISO 3166-1 alpha-2) the registry is operated in; must be jurisdiction.data_residency "
        "(policy residency.in-country)"
    )

    @property
    def hostname(self) -> str:
        return self.host.split("/")[0].split(":")[0]


class Mirrors(Strict):
    debian: AptMirror = Field(
        description="Debian archive mirror (main contrib non-free non-free-firmware): the apt source of Debian nodes "
        "(inventory nvidia_base_debian_mirror); the lab builds its test hosts through it"
    )
    ubuntu: AptMirror = Field(
        description="Ubuntu archive mirror: the apt source of Ubuntu (DGX OS) nodes (inventory "
        "nvidia_base_ubuntu_mirror)"
    )
    cuda: AptMirror = Field(
        description="Mirror of NVIDIA's CUDA apt repository, the source of the driver, CUDA and NCCL packages on "
        "Ubuntu nodes (inventory nvidia_base_cuda_repo_url)"
    )
    artifacts: Endpoint = Field(
        description="Mirror of NVIDIA redistributables: Debian nodes take NCCL from URL/nccl/ and GPU nodes "
        "nccl-tests from URL/nccl-tests/ (inventory nccl_artifacts_url)"
    )
    charts: Endpoint = Field(
        description="Helm chart repository mirror: pulumi up installs the gpu-operator and DRA driver charts from it"
    )
    containers: Registry = Field(
        description="Container registry mirror: every image of the cluster's NVIDIA components is pulled from it"
    )


class Node(Strict):
    bmc: IPv4Address = Field(
        description="Redfish BMC address: the node's BareMetalHost reaches it as redfish://ADDRESS; inside "
        "network.bmc (policy net.bmc), unique in the site (net.unique)"
    )
    mac: MacAddress = Field(
        description="MAC address of the provisioning (PXE) interface: the BareMetalHost's bootMACAddress, "
        "inventory aifactory_boot_mac; unique in the site (policy net.unique)"
    )


class ReportedPort(Strict):
    """A compute port as a node reported it: the NIC function nearest to one GPU on the PCI tree."""

    gpu: PciAddress = Field(description="the GPU this port sits beside")
    pci: PciAddress = Field(description="the NIC function")
    rdma: RdmaDevice = Field(
        description="its RDMA device as the node names it (e.g. mlx5_0): the rail's entry in nccl_ib_hca and "
        "rdma_rails of the SKU's group_vars"
    )
    netdev: IfName = Field(
        description="its network interface, in the mode the port runs: the rail's netdev in rdma_rails and the "
        "NicClusterPolicy's RDMA device selector (ifNames)"
    )


class Topology(Strict):
    """A pool's compute ports in rail order, read from one of its nodes (`aifactory topology SITE --node HOST`).

    For SKUs whose port table no NVIDIA source gives (DGX B200, GB200 trays): the names are the
    node's, never invented. Rail N runs over ``compute[N]``; verify compares every node of the pool
    with it and fails a node whose own topology differs, naming both.
    """

    reported_by: DnsLabel = Field(description="the node it was read from")
    compute: list[ReportedPort] = Field(
        min_length=1,
        max_length=64,
        description="the compute ports in rail order (rail N runs over compute[N]), as aifactory topology printed "
        "them; verify fails a node of the pool whose own differ",
    )


class Rack(Strict):
    """A physical rack of a pool's nodes; on a rack-scale SKU (GB200 NVL72) also one NVLink domain.

    ``trays`` are the pool's node indexes (1-based, as ``{index}`` in the hostname scheme) of the
    compute trays the rack holds. The rack drives the IMEX domain (nodes_config.cfg), the
    nvidia.com/gpu.clique expectation, the aifactory.io/rack label and the rollout's batches.
    """

    name: DnsLabel = Field(
        description="The rack's name, unique in the site: node label aifactory.io/rack and inventory group "
        "rack_NAME; on a rack-scale SKU also its NVLink domain, which a rollout keeps in one batch"
    )
    trays: list[Annotated[int, Field(ge=1, le=MAX_NODES_PER_POOL)]] = Field(
        min_length=1,
        max_length=1024,
        description="The pool's node indexes (1-based, as {index}) of the rack's compute trays, in the order of its "
        "IMEX node list (nvidia_imex_nodes); a tray sits in one rack; a rack-scale SKU's rack holds the SKU's count "
        "(policy topology.rack-size)",
    )


class ScalableUnit(Strict):
    """A scalable unit: nodes behind one set of rail leaf switches (node label aifactory.io/scalable-unit)."""

    name: DnsLabel = Field(description="The unit's name, unique in the site (the label's value), e.g. su1")
    nodes: int = Field(ge=1, le=MAX_NODES_PER_POOL, description="How many of the pool's nodes it holds, in pool order")


class NodePool(Strict):
    name: DnsLabel = Field(
        description="The pool's name, unique in the site: {pool} in hostnames, inventory group pool_NAME, node label "
        "aifactory.io/pool, and the key of its BMC credentials (aifactory:bmcCredentials.NAME, Secret SITE-NAME-bmc)"
    )
    sku: SkuName = Field(
        description="The pool's system, a SKU of the catalog (src/aifactory/catalog): its GPUs, compute NICs, port "
        "table and minimum driver and CUDA (policy compat.sku-driver); inventory group sku_SKU, node label "
        "aifactory.io/sku"
    )
    hostname: HostnameScheme = Field(
        description="Hostname scheme of the pool's nodes from {site}, {pool} and {index} (1-based, optional zero-pad "
        "width as in {index:03d}); every hostname it renders must be a DNS label, unique in the site"
    )
    ip_offset: int = Field(
        ge=1,
        le=MAX_HOST_NUMBER,
        description="Host number of the pool's first node; a node has the same host number on every network",
    )
    nodes: list[Node] = Field(
        min_length=1,
        max_length=MAX_NODES_PER_POOL,
        description="The pool's nodes in order: node N (1-based) is {index} N and has host number ip_offset + N - 1; "
        "pulumi up declares one Metal3 BareMetalHost for each",
    )
    scalable_units: list[ScalableUnit] = Field(
        min_length=1,
        max_length=MAX_NODES_PER_POOL,
        description="The pool's nodes, in order, by the scalable unit they are cabled to: the first `nodes` of "
        "them in the first unit, and so on; together they hold every node of the pool",
    )
    mig_config: MigProfile | None = Field(
        default=None,
        description="MIG configuration of this pool's nodes (node label nvidia.com/mig.config); unset: MIG off",
    )
    topology: Topology | None = Field(
        default=None,
        description="compute ports as a node of the pool reported them, where the catalog has no port table",
    )
    racks: list[Rack] = Field(
        default_factory=list,
        max_length=4096,
        description="Which of the pool's nodes each rack holds; on a rack-scale SKU each rack is one NVLink domain",
    )

    @model_validator(mode="after")
    def _trays_in_one_rack(self) -> NodePool:
        """Every tray a rack names is a node of the pool, and no tray is in two racks (or twice in one)."""
        seen: dict[int, str] = {}
        for i, rack in enumerate(self.racks):
            for k, tray in enumerate(rack.trays):
                if tray > len(self.nodes):
                    raise FieldError(
                        ("racks", i, "trays", k),
                        f"rack {rack.name} names tray {tray}, but pool {self.name} has {len(self.nodes)} node(s)",
                    )
                if tray in seen:
                    other = seen[tray]
                    where = f"racks {other} and {rack.name}" if other != rack.name else f"rack {rack.name} twice"
                    raise FieldError(
                        ("racks", i, "trays", k),
                        f"tray {tray} of pool {self.name} is in {where}: a tray sits in one rack",
                    )
                seen[tray] = rack.name
        return self

    @model_validator(mode="after")
    def _units_hold_every_node(self) -> NodePool:
        held = sum(u.nodes for u in self.scalable_units)
        if held != len(self.nodes):
            more = len(self.nodes) - held
            hint = (
                f"nodes {held + 1}-{len(self.nodes)} are in no unit: add them to one, or add a unit of {more}"
                if more > 0
                else f"remove {-more} from the units, or add nodes"
            )
            raise FieldError(
                ("scalable_units",), f"the units hold {held} nodes, the pool has {len(self.nodes)}: {hint}"
            )
        dupes = sorted(n for n, k in Counter(u.name for u in self.scalable_units).items() if k > 1)
        if dupes:
            raise FieldError(("scalable_units",), f"unit(s) {', '.join(dupes)} named twice in the pool")
        return self

    def unit_of(self) -> list[str]:
        """Each node's scalable unit, in pool order."""
        return [u.name for u in self.scalable_units for _ in range(u.nodes)]

    @property
    def count(self) -> int:
        return len(self.nodes)

    @cached_property
    def rack_of(self) -> dict[int, str]:
        """Node index (1-based) -> the rack holding it."""
        return {tray: rack.name for rack in self.racks for tray in rack.trays}

    @property
    def spec(self) -> Sku:
        return SKUS[self.sku]

    def hostname_of(self, site: str, index: int) -> str:
        return self.hostname.format(site=site, pool=self.name, index=index)


class Subnet(Strict):
    cidr: IPv4Network = Field(
        description="The network's IPv4 prefix; it overlaps no other network of the site or of another "
        "(policy net.overlap, net.overlap-sites); on management and storage a node's address is its host number in "
        "it (net.capacity), on bmc every node's bmc address is inside it (net.bmc)"
    )
    gateway: IPv4Address | None = Field(
        default=None,
        description="The network's gateway, inside cidr (policy net.gateway); the lab's test-host bridge takes the "
        "management gateway's address; no role configures it on nodes",
    )
    vlan: int | None = Field(
        default=None,
        ge=1,
        le=4094,
        description="802.1Q VLAN id (1-4094) of the network on the site's switches; recorded and diffed, nothing "
        "aifactory renders reads it",
    )


class ManagementNetwork(Subnet):
    interface: IfName = Field(description="Node interface carrying the management network (NCCL_SOCKET_IFNAME)")


class Rail(Strict):
    """One compute rail: rail N runs over the compute port beside GPU N (the SKU's port map in the catalog)."""

    name: DnsLabel = Field(
        description="The rail's name, unique in the site: its nv-ipam IPPool and NetworkAttachmentDefinition, the "
        "RDMA resource rdma/rdma_NAME ('-' as '_') pods request, and its entry in rdma_rails of the SKU's group_vars"
    )
    cidr: IPv4Network = Field(
        description="Pod address pool of this rail (nv-ipam IPPool subnet): it must hold a per_node_block for every "
        "node of the site (policy net.capacity)"
    )


class Fabric(Strict):
    type: Literal["infiniband", "roce"] = Field(
        description="The compute fabric: IPoIB or macvlan rail attachments, InfiniBand partition keys or RoCE VLANs "
        "for tenants, the ports' netdev names; inventory rdma_fabric (roles/rdma), node label aifactory.io/fabric"
    )
    link_gbps: int = Field(
        gt=0,
        le=3200,
        description="Line rate of each compute port, in Gb/s (e.g. 400); printed in the audit report, not checked "
        "against the nodes",
    )
    mtu: int = Field(
        default=4092,
        ge=1280,
        le=9216,
        description="MTU of the rails' pod interfaces, in bytes: set on RoCE's macvlan attachments; the InfiniBand "
        "(IPoIB) attachments do not take it",
    )
    per_node_block: int = Field(
        default=16,
        ge=2,
        le=65536,
        description="Pod addresses each node takes from a rail pool (nv-ipam IPPool perNodeBlockSize)",
    )
    roce_gid_index: int | None = Field(
        default=None,
        ge=0,
        le=255,
        description="RoCE only: force NCCL_IB_GID_INDEX; unset lets NCCL (>= 2.21) find the RoCE v2 GID itself",
    )
    rails: list[Rail] = Field(
        min_length=1,
        max_length=64,
        description="The compute rails in order, rail N over the compute port beside GPU N: as many as the widest "
        "SKU of the site has compute NICs (policy net.rails)",
    )


class Network(Strict):
    domain: Domain = Field(
        description="DNS domain of the nodes: a node's FQDN is HOSTNAME.DOMAIN (the lab's test hosts' /etc/hosts)"
    )
    management: ManagementNetwork = Field(
        description="The nodes' management network: each node's address on it is ansible_host in the inventory, "
        "its managementIp in the stack outputs and, on rack-scale trays, its entry in the rack's IMEX node list"
    )
    bmc: Subnet = Field(description="The network of the nodes' BMCs, which Metal3 reaches over Redfish")
    storage: Subnet = Field(
        description="The storage network: each node's address on it is aifactory_storage_ip in the inventory; tenant "
        "pods may reach the object store on it where its URL names a host, not an address"
    )
    fabric: Fabric = Field(description="The compute fabric (InfiniBand or RoCE) and its rails, as pods reach them")
    pods: IPv4Network = Field(
        description="The cluster's pod network; it overlaps no other network (policy net.overlap) and holds one /24 "
        "per node (net.capacity); aifactory does not configure the cluster's CNI with it"
    )
    services: IPv4Network = Field(
        description="The cluster's Service (ClusterIP) range; it overlaps no other network (policy net.overlap); "
        "the lab's kube-apiserver takes it as --service-cluster-ip-range"
    )
    dns: list[IPv4Address] = Field(
        min_length=1,
        max_length=16,
        description="The site's DNS resolvers; each address must be inside jurisdiction.in_country.networks (policy "
        "residency.in-country); no role configures them on nodes",
    )
    ntp: list[HostOrIp] = Field(
        min_length=1,
        max_length=16,
        description="The site's NTP servers, names or IPv4 addresses; each must be proven in-country and no public "
        "service (policy residency); no role configures them on nodes",
    )


class Replication(Strict):
    endpoint: HttpUrl = Field(
        description="http(s) URL of the store the bucket is replicated to; its host must be proven in-country "
        "(policy residency); aifactory does not set the replication up on the store"
    )
    country: Country = Field(
        description="Country (ISO 3166-1 alpha-2) of that store; must be jurisdiction.data_residency (policy "
        "residency.in-country)"
    )


DataClassification = Literal["public", "internal", "confidential", "restricted"]


class ObjectLock(Strict):
    """S3 object lock: every new object version is retained this long; set only when the bucket is created."""

    # COMPLIANCE: nobody, root included, can delete or shorten it before it expires (what auditors rely on).
    mode: Literal["COMPLIANCE", "GOVERNANCE"] = Field(
        default="COMPLIANCE",
        description="S3 retention mode: COMPLIANCE, no user (the owner included) can delete or shorten it; "
        "GOVERNANCE, a user allowed s3:BypassGovernanceRetention can; the evidence bucket must be COMPLIANCE",
    )
    # 100 years bounds it well beyond any record-keeping law.
    days: int = Field(
        ge=1,
        le=36500,
        description="Default retention of every new object version, in days (the bucket's DefaultRetention); "
        "evidence push sets each record's retain-until date from it",
    )


class Lifecycle(Strict):
    """Lifecycle rules the bucket carries (S3 lifecycle configuration)."""

    abort_multipart_days: int | None = Field(
        default=7,
        ge=1,
        le=3650,
        description="Days after which an unfinished multipart upload is aborted (rule aifactory-abort-multipart); "
        "null: never",
    )
    noncurrent_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        description="Days after which an overwritten or deleted version expires (rule aifactory-noncurrent, on "
        "versioned buckets only); unset: kept",
    )
    expire_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        description="Days after which current objects expire (rule aifactory-expire); unset: never",
    )


class Bucket(Strict):
    name: BucketName = Field(
        description="S3 bucket name (Amazon's general purpose bucket naming rules), unique on the store; created "
        "and converged by pulumi up and aifactory storage apply"
    )
    purpose: Text = Field(description="What the bucket holds, for people (one line); not sent to the store")
    # evidence: the site's evidence store (no deletes by policy, object lock required); one per site.
    role: Literal["data", "checkpoints", "evidence", "state"] = Field(
        default="data",
        description="Bucket tag aifactory.io/bucket-role (data and checkpoints differ by it alone); evidence: the "
        "site's one evidence store (aifactory evidence, COMPLIANCE lock, deletes denied by its policy); state: "
        "Pulumi state, kept by pulumi destroy",
    )
    classification: DataClassification = Field(
        default="confidential",
        description="Data class of what the bucket holds: bucket tag aifactory.io/data-classification; confidential "
        "and restricted buckets get the store's encryption where it declares one (storage.object_store.encryption)",
    )
    versioning: bool = Field(
        default=True,
        description="S3 versioning: true keeps every version of each object; false leaves it off (suspended where "
        "it was on); object_lock needs it",
    )
    object_lock: ObjectLock | None = Field(
        default=None,
        description="S3 object lock, which a store enables only when it creates the bucket (a bucket made without "
        "it must be recreated); required on the evidence bucket",
    )
    lifecycle: Lifecycle = Field(
        default_factory=Lifecycle,
        description="The bucket's S3 lifecycle rules, converged by pulumi up and storage apply",
    )
    replication: Replication | None = Field(
        default=None, description="Where the bucket is replicated to, declared for the residency policy"
    )

    @model_validator(mode="after")
    def _lock_needs_versions(self) -> Bucket:
        if self.object_lock is not None and not self.versioning:
            raise ValueError("object_lock needs versioning: true (S3 locks object versions)")
        if self.role == "evidence" and (self.object_lock is None or self.object_lock.mode != "COMPLIANCE"):
            raise ValueError("an evidence bucket needs object_lock with mode COMPLIANCE, so no record can be removed")
        return self


class ObjectStore(Endpoint):
    region: S3Region = Field(description="the store's region: the only location constraint it accepts")
    encryption: Literal["none", "AES256", "aws:kms"] = Field(
        default="none",
        description="server-side encryption the store applies (S3 default bucket encryption); none: the store "
        "cannot, and policy tenants.encryption says so for confidential and restricted data",
    )
    principals: list[S3User] = Field(
        default_factory=list,
        max_length=64,
        description="the site's own store users (besides the owner) allowed to read and write its buckets",
    )
    buckets: list[Bucket] = Field(
        min_length=1,
        max_length=1000,
        description="The site's own buckets (tenants' come from tenants[].buckets); at most one with role evidence",
    )

    @model_validator(mode="after")
    def _one_evidence_store(self) -> ObjectStore:
        evidence = [b.name for b in self.buckets if b.role == "evidence"]
        if len(evidence) > 1:
            raise ValueError(f"one evidence bucket per site, not {len(evidence)} ({', '.join(evidence)})")
        return self

    @property
    def evidence(self) -> Bucket | None:
        return next((b for b in self.buckets if b.role == "evidence"), None)


class StorageClassSpec(Strict):
    name: DnsLabel = Field(description="The StorageClass's name, unique in the site; pulumi up creates it")
    kind: Literal["lustre", "weka", "gpfs", "nfs", "local"] = Field(
        description="The filesystem behind the class: local binds volumes WaitForFirstConsumer and allows no "
        "expansion; the others bind Immediate and allow expansion"
    )
    provisioner: QualifiedName = Field(
        description="The StorageClass's provisioner: the CSI driver's name (e.g. exa.csi.ddn.com), or "
        "kubernetes.io/no-provisioner for local volumes; aifactory does not install the driver"
    )
    parameters: dict[QualifiedName, ParamValue] = Field(
        default_factory=dict,
        max_length=64,
        description="The StorageClass's parameters, passed to the provisioner as written; empty: none sent",
    )
    default: bool = Field(
        default=False,
        description="The cluster's default StorageClass (annotation storageclass.kubernetes.io/is-default-class); "
        "at most one",
    )
    reclaim_policy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="The StorageClass's reclaimPolicy: Retain keeps a volume when its claim is deleted, Delete "
        "removes it",
    )


class Storage(Strict):
    object_store: ObjectStore = Field(
        description="The site's in-country S3 store, reached through boto3: its endpoint, region, encryption, users "
        "and buckets"
    )
    classes: list[StorageClassSpec] = Field(
        min_length=1, max_length=64, description="The cluster's StorageClasses, one per entry"
    )


class StateBackend(Strict):
    """Where this stack's Pulumi state lives (pulumi login URL)."""

    url: StateUrl = Field(
        description="The backend as pulumi login takes it: s3://BUCKET?endpoint=HOST (the in-country store), "
        "https:// or file://; its host must be proven in-country (policy residency.state-backend); the lab runs "
        "the Pulumi CLI with it"
    )
    country: Country = Field(
        description="Country (ISO 3166-1 alpha-2) the backend is operated in; must be jurisdiction.data_residency "
        "(policy residency.state-backend)"
    )


class Mig(Strict):
    """How MIG devices are exposed (GPU operator mig.strategy); each pool chooses its profile (mig_config)."""

    strategy: Literal["none", "single", "mixed"] = Field(
        default="none",
        description="The GPU operator chart's mig.strategy; anything but none enables its MIG manager, which applies "
        "each pool's mig_config",
    )


class GpuStack(Strict):
    driver: DriverVersion = Field(
        description="NVIDIA driver version X.Y.Z, e.g. 580.95.05: inventory nvidia_driver_version, which "
        "roles/nvidia_driver pins and holds; checked against CUDA, each SKU and the GPU operator (policy compat)"
    )
    cuda: CudaVersion = Field(
        description="CUDA toolkit major.minor, e.g. 13.0: inventory cuda_toolkit_version (roles/cuda_toolkit); the "
        "driver must meet its minimum (policy compat.cuda-driver)"
    )
    cuda_components: Literal["toolkit", "runtime"] = Field(
        default="toolkit",
        description="what of CUDA the nodes get: the whole toolkit (compiler, libraries, tools), or the runtime "
        "libraries only, for nodes whose workloads bring their own compiler (roles/cuda_toolkit/defaults)",
    )
    nccl: NcclVersion = Field(
        description="NCCL package version as NVIDIA publishes it, e.g. 2.26.5-1+cuda12.8: inventory "
        "nccl_package_version (roles/nccl); built for the site's CUDA major (policy compat.nccl-cuda)"
    )
    gpu_operator: ChartVersion = Field(
        description="gpu-operator Helm chart version vX.Y.Z, one the catalog has checked: pulumi up installs it from "
        "mirrors.charts; it must support the driver's branch (policy compat.operator-driver)"
    )
    network_operator: OperatorVersion = Field(
        description="NVIDIA Network Operator release X.Y.Z, one the catalog has checked: the images of the "
        "NicClusterPolicy pulumi up creates (policy supply.digests); aifactory does not install the operator"
    )
    mig: Mig = Field(default=Mig(), description="MIG settings of the GPU operator")
    dra_driver: DraDriverVersion | None = Field(
        default=None,
        description="NVIDIA's DRA driver for GPUs (nvidia-dra-driver-gpu chart), for ComputeDomains on rack-scale "
        "pools; it then runs IMEX per ComputeDomain and the host service is masked",
    )

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


# Node numbers of a pool, 1-based as its hostnames count them: "7" or "9-20".
NodeRange = Annotated[str, AfterValidator(grammar.node_range)]


class NodeSet(Strict):
    """Nodes a tenant holds alone: a whole pool, some of its scalable units, or a range of its nodes."""

    pool: DnsLabel = Field(description="The pool the nodes belong to")
    scalable_units: list[DnsLabel] = Field(
        default_factory=list, max_length=1024, description="Units of the pool (its scalable_units names); all of them"
    )
    nodes: NodeRange | None = Field(
        default=None, description='Node numbers of the pool, 1-based as its hostnames: "9-20" or "7"'
    )

    @model_validator(mode="after")
    def _one_way(self) -> NodeSet:
        if self.scalable_units and self.nodes:
            raise ValueError("name scalable_units or nodes, not both")
        return self


class TenantBucket(Strict):
    """A bucket of the tenant's own; its settings follow the tenant's data classification (tenancy.py)."""

    name: BucketName = Field(description="Bucket name, unique on the site's store")
    purpose: Text = Field(description="What the tenant keeps there")


class Tenant(Strict):
    name: DnsLabel = Field(
        description="The tenant's name, unique in the site: its namespace, the label and taint aifactory.io/tenant "
        "on the nodes it holds, and the default of its principal and bucket"
    )
    display_name: Text = Field(
        description="The tenant's name for people (one line): namespace annotation aifactory.io/display-name, audit"
    )
    gpu_quota: int = Field(
        ge=0,
        le=10_000_000,
        description="GPUs the tenant's pods may request in all (ResourceQuota requests.nvidia.com/gpu); quotas fit "
        "the site (policy tenants.quota) and the tenant's nodes (tenants.node-quota)",
    )
    data_classification: DataClassification = Field(
        description="The data class of the tenant's work: namespace label aifactory.io/data-classification; decides "
        "its isolation and its buckets' settings (tenancy.py; policies tenants.nodes, tenants.partition, "
        "tenants.encryption)"
    )
    max_gpus_per_pod: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Most GPUs one container of the tenant may request (LimitRange max nvidia.com/gpu); policy "
        "tenants.pod-size warns past the largest node",
    )
    nodes: list[NodeSet] = Field(
        default_factory=list,
        max_length=1024,
        description="Nodes the tenant holds alone (tainted and labelled for it); restricted and confidential "
        "tenants must have some, other tenants share the nodes nobody holds",
    )
    partition: int | None = Field(
        default=None,
        ge=2,
        le=0x7FFE,
        description="The tenant's compute-fabric partition: an InfiniBand partition key (2-0x7ffe) or a RoCE "
        "VLAN (2-4094); unset: allocated from the tenant's name (tenancy.partition)",
    )
    shared_fabric: bool = Field(
        default=False,
        description="Reach the rails through the site's shared partition instead of one of its own (public and "
        "internal tenants only; the audit shows it)",
    )
    principal: S3User | None = Field(
        default=None, description="The tenant's own object-store user; unset: the tenant's name"
    )
    buckets: list[TenantBucket] = Field(
        default_factory=list,
        max_length=256,
        description="The tenant's buckets, granted to its principal alone; unset: one, SITE-TENANT",
    )


class RetiredTenant(Strict):
    """A tenant removed from the site whose data is kept: its buckets stay declared, granted to no one."""

    name: DnsLabel = Field(description="The tenant's name when it was on the site")
    buckets: list[BucketName] = Field(min_length=1, max_length=256, description="Its buckets, kept on the store")
    retain_until: date = Field(description="The day its data may be deleted (by hand: aifactory deletes no bucket)")


class Kubernetes(Strict):
    context: KubeContext = Field(description="kubeconfig context of this site's cluster; the program refuses any other")
    version: KubeVersion | None = Field(
        default=None, description="the cluster's Kubernetes release; the DRA driver needs one it supports"
    )
    nodes_joined: bool = Field(
        default=True,
        description="whether the site's nodes are Nodes of that cluster (rollouts cordon and drain them); "
        "false where they run no kubelet, as the lab's test hosts",
    )


class PolicySkip(Strict):
    id: PolicyId = Field(description="A policy check id (e.g. compat.driver-eol) or family")
    reason: Text = Field(description="Why this site may skip it; shown in every audit")


class Policies(Strict):
    skip: list[PolicySkip] = Field(
        default_factory=list,
        max_length=64,
        description="Checks this site skips: their errors and warnings are reported as skipped, with the reason; "
        "residency and secrets cannot be skipped",
    )


class Site(Strict):
    code: SiteCode = Field(
        description="The site's code, the stack's name (stacks/Pulumi.CODE.yaml): {site} in hostnames, label "
        "aifactory.io/site, inventory group site_CODE"
    )
    country: Country = Field(
        description="Country (ISO 3166-1 alpha-2) the site is in; must be jurisdiction.data_residency (policy "
        "residency.in-country); inventory aifactory_country, stack output country"
    )
    name: Text = Field(
        description="The site's name for people (one line): the audit report's title, inventory aifactory_site_name"
    )
    jurisdiction: Jurisdiction = Field(description="The law the site is under and the country its data stays in")
    location: Location = Field(description="Where the site is, for the audit report")
    kubernetes: Kubernetes = Field(description="The site's Kubernetes cluster, as pulumi up and rollouts reach it")
    state_backend: StateBackend = Field(description="Where Pulumi keeps this stack's state (pulumi login URL)")
    pools: list[NodePool] = Field(
        min_length=1, max_length=256, description="The site's node pools: nodes of one SKU, named by one scheme"
    )
    network: Network = Field(description="The site's networks, compute fabric, DNS and NTP")
    storage: Storage = Field(description="The in-country object store and the cluster's storage classes")
    gpu_stack: GpuStack = Field(
        description="The NVIDIA software every node and the cluster run: driver, CUDA, NCCL, operators, MIG"
    )
    mirrors: Mirrors = Field(description="The in-country mirrors every package, chart and image comes from")
    tenants: list[Tenant] = Field(
        default_factory=list,
        max_length=10_000,
        description="The site's tenants, each kept apart by its nodes, fabric partition and buckets (tenancy.py)",
    )
    retired_tenants: list[RetiredTenant] = Field(
        default_factory=list,
        max_length=10_000,
        description="Tenants that left the site whose buckets are kept, granted to no one (policy tenants.retired)",
    )
    policies: Policies = Field(default=Policies(), description="Exceptions to the policy checks, each with its reason")

    @model_validator(mode="after")
    def _unique_names(self) -> Site:
        def dupes_of(names: list[str]) -> list[str]:
            return sorted(n for n, k in Counter(names).items() if k > 1)

        for label, key, names in (
            ("pool", "pools", [p.name for p in self.pools]),
            ("rack", "pools", [r.name for p in self.pools for r in p.racks]),
            ("tenant", "tenants", [t.name for t in self.tenants] + [t.name for t in self.retired_tenants]),
            ("rail", "network.fabric.rails", [r.name for r in self.network.fabric.rails]),
            ("bucket", "storage.object_store.buckets", [b.name for b in self.storage.object_store.buckets]),
            ("storage class", "storage.classes", [c.name for c in self.storage.classes]),
        ):
            dupes = dupes_of(names)
            if dupes:
                raise FieldError(tuple(key.split(".")), f"duplicate {label} name(s): {', '.join(dupes)}")
        defaults = [c.name for c in self.storage.classes if c.default]
        if len(defaults) > 1:
            raise FieldError(("storage", "classes"), f"more than one default storage class: {', '.join(defaults)}")
        self._hostnames_render()
        dupes = dupes_of([n.hostname for n in self.nodes])
        if dupes:
            raise FieldError(("pools",), f"hostname schemes yield duplicate hostnames: {', '.join(dupes[:5])}")
        return self

    def _hostnames_render(self) -> None:
        """Every node's hostname, rendered from its pool's scheme, is a DNS label."""
        for i, pool in enumerate(self.pools):
            for index in range(1, pool.count + 1):
                name = pool.hostname_of(self.code, index)
                if len(name) > 63 or not grammar.dns_label_ok(name):
                    raise FieldError(
                        ("pools", i, "hostname"),
                        f"scheme {shown(pool.hostname)} renders {shown(name)} for node {index}: not a DNS label "
                        "(a-z, 0-9 and '-', at most 63)",
                    )

    # Derived views. cached_property needs a writable __dict__, which frozen pydantic models keep.
    @cached_property
    def nodes(self) -> list[NodeView]:
        views: list[NodeView] = []
        for pool in self.pools:
            units = pool.unit_of()
            for i, hw in enumerate(pool.nodes):
                host = pool.ip_offset + i
                hostname = pool.hostname_of(self.code, i + 1)
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
                        rack=pool.rack_of.get(i + 1),
                        nvlink_domain=pool.rack_of.get(i + 1) if pool.spec.mnnvl else None,
                        scalable_unit=units[i],
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
        """Power of the pools whose SKU's power the catalog states (see power_unknown for the rest)."""
        return round(sum(p.count * p.spec.power_kw for p in self.pools if p.spec.power_kw is not None), 1)

    @property
    def power_unknown(self) -> list[str]:
        """Pools whose SKU's power no NVIDIA source held here states: left out of power_kw, never guessed."""
        return [p.name for p in self.pools if p.spec.power_kw is None]

    def pool(self, name: str) -> NodePool:
        return next(p for p in self.pools if p.name == name)

    @cached_property
    def _rack_nodes(self) -> dict[str, list[NodeView]]:
        by_index = {(n.pool, n.index): n for n in self.nodes}
        return {
            rack.name: [by_index[(pool.name, tray)] for tray in rack.trays]
            for pool in self.pools
            for rack in pool.racks
        }

    def rack_nodes(self) -> dict[str, list[NodeView]]:
        """Each rack's nodes, in the order the rack lists its trays (the IMEX domain's order)."""
        return self._rack_nodes

    def port_map(self, sku: str) -> PortMap | None:
        """The SKU's compute ports: NVIDIA's table from the catalog, else what a pool's node reported.

        None where neither exists (policy net.port-map reports it). Pools of one SKU that reported
        different names are refused by net.port-map; the first pool's report stands here.
        """
        ports = SKUS[sku].ports
        if ports is not None:
            return ports
        pool = next((p for p in self.pools if p.sku == sku and p.topology is not None), None)
        if pool is None or pool.topology is None:
            return None
        return PortMap(
            tuple(
                # The node reported the netdev in the mode its port runs: one name serves both.
                Port(f"beside GPU {port.gpu}", port.pci, port.rdma, port.netdev, port.netdev, "compute", i)
                for i, port in enumerate(pool.topology.compute)
            ),
            Source(f"reported by {pool.topology.reported_by} (pool {pool.name}, pools[].topology of the stack)"),
        )

    def rail_ports(self, sku: str) -> tuple[Port, ...] | None:
        """The compute ports the rails run over on nodes of this SKU (rail N: the port beside GPU N).

        None where neither the catalog nor a pool's reported topology names them (policy net.port-map).
        """
        ports = self.port_map(sku)
        rails = min(len(self.network.fabric.rails), SKUS[sku].compute_nics)
        return None if ports is None else ports.compute[:rails]

    @property
    def rail_skus(self) -> list[str]:
        """SKUs in this site whose rails are known (catalog or reported), in pool order."""
        return list(dict.fromkeys(p.sku for p in self.pools if self.port_map(p.sku) is not None))


def ipam_blocks(cidr: IPv4Network, block: int) -> int:
    """Per-node blocks nv-ipam can hand out from a rail pool.

    Its allocator starts at network+1 and refuses a block that would end on the broadcast address
    (Mellanox/nvidia-k8s-ipam pkg/ipam-controller/allocator/allocator.go), so a /23 with 16 per
    node holds 31 blocks, not 32.
    """
    return max(0, (cidr.num_addresses - 2) // block)


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
    rack: str | None = None
    # The multi-node NVLink domain (IMEX domain) the node is in: its rack, on rack-scale SKUs.
    nvlink_domain: str | None = None
    scalable_unit: str


def _nth(net: IPv4Network, host: int) -> IPv4Address | None:
    """The host-th address of a network, or None when it falls outside (a policy reports it)."""
    if host >= net.num_addresses - 1:
        return None
    return net.network_address + host


def _element(annotation: object) -> object:
    """The model or list type inside Annotated[...] and Optional[...]."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            (annotation,) = [a for a in get_args(annotation) if a is not type(None)]
        else:
            return annotation


@cache
def field_path(*parts: str | int) -> str:
    """A path into the site model (``pools[0].sku``), built from the model's own field names.

    Every name must be a field of the model it is read from and every index must follow a list
    field, so a renamed field fails here, in any test that reaches the finding, rather than leaving
    an audit pointing at a field that no longer exists.
    """
    current: object = Site
    out = ""
    for part in parts:
        if isinstance(part, int):
            if get_origin(current) is not list:
                raise ValueError(f"{out or 'the site'} is not a list: no index {part}")
            current = _element(get_args(current)[0])
            out += f"[{part}]"
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            raise ValueError(f"{out or 'the site'} has no field {part!r}")
        current = _element(current.model_fields[part].annotation)
        out += f".{part}" if out else part
    return out
