"""Policies over site models: residency, version compatibility, network plan, secrets, tenants.

Each check has an id, a severity and a message naming the field, like Google Cluster Toolkit's
validators. They are plain functions over the typed model, so the same code serves
`aifactory validate`, the audit report, and (later) a CrossGuard policy pack under the real CLI.
A passing check yields an INFO result, so an audit can show what was checked, not only what failed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from . import catalog, findings, grammar, tenancy
from .catalog import Version, supply
from .errors import ConfigError, Problem, natural
from .grammar import shown
from .model import Site, field_path, ipam_blocks
from .secrets import SecretsError, read_passphrase_file, verifies
from .stackfile import CREDENTIALS_KEY, SITE_KEY, Stack, load_neighbours


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    SKIPPED = "skipped"
    INFO = "ok"


@dataclass(frozen=True)
class Result:
    id: str
    severity: Severity
    site: str
    path: str
    message: str
    file: str = ""

    def line(self) -> str:
        """The finding as every command prints it (findings.py adds the line and host, and folds repeats)."""
        return f"{self.severity.value}: {self.file or self.site}: {self.path}: [{self.id}] {self.message}"


# Hosts of global public services: a site configured to pull from or write to them sends
# traffic, and possibly data, out of its jurisdiction.
PUBLIC_SERVICE_SUFFIXES = (
    "nvcr.io",
    "ngc.nvidia.com",
    "nvidia.com",
    "amazonaws.com",
    "googleapis.com",
    "azure.com",
    "windows.net",
    "docker.io",
    "docker.com",
    "ghcr.io",
    "quay.io",
    "pypi.org",
    "pythonhosted.org",
    "debian.org",
    "ubuntu.com",
    "github.com",
    "githubusercontent.com",
    "pulumi.com",
    "helm.sh",
)

_P = SITE_KEY


def _r(pid: str, sev: Severity, site: Site, path: str, msg: str) -> Result:
    return Result(pid, sev, site.code, f"{_P}.{path}" if path else _P, msg)


def _public(host: str) -> bool:
    host = host.lower()
    return any(host == s or host.endswith("." + s) for s in PUBLIC_SERVICE_SUFFIXES)


def endpoints(site: Site) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """(field, host, declared country) of every service the site talks to; the field as the model's names.

    Each field sits beside a ``country`` field of the same model, which declares where it runs.
    """
    m = site.mirrors
    for name in ("debian", "ubuntu", "cuda", "artifacts", "charts"):
        ep = getattr(m, name)
        yield ("mirrors", name, "url"), ep.host, ep.country
    yield ("mirrors", "containers", "host"), m.containers.hostname, m.containers.country
    store = site.storage.object_store
    yield ("storage", "object_store", "url"), store.host, store.country
    for i, b in enumerate(store.buckets):
        if b.replication:
            host = urlsplit(b.replication.endpoint).hostname or ""
            yield ("storage", "object_store", "buckets", i, "replication", "endpoint"), host, b.replication.country


def state_backend_host(url: str) -> tuple[str | None, str]:
    """The host holding Pulumi state ('' for a local file backend, None for a public cloud), and why not."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return "", ""
    if parts.scheme == "s3":
        endpoints_ = parse_qs(parts.query, keep_blank_values=True).get("endpoint", [])
        if not endpoints_:
            return None, "an s3:// URL without endpoint= stores state in AWS S3"
        if len(endpoints_) > 1:
            return None, "endpoint= is given more than once"
        endpoint = endpoints_[0]
        # gocloud accepts both host[:port] and a URL with a scheme.
        host = urlsplit(endpoint).hostname if "://" in endpoint else endpoint.rsplit(":", 1)[0]
        try:
            return grammar.normal_host(host or ""), ""
        except ValueError:
            return None, f"endpoint= {shown(endpoint)} names no valid host"
    return parts.hostname or None, ""


def _in_ranges(host: str, networks: list[IPv4Network]) -> bool:
    try:
        address = IPv4Address(host)
    except ValueError:
        return False
    return any(address in net for net in networks)


def _under(host: str, suffixes: list[str]) -> bool:
    return any(host == s or host.endswith("." + s) for s in suffixes)


def located(site: Site, host: str) -> bool:
    """Whether a host is proven in-country by the site's own declaration: its name or its address."""
    ic = site.jurisdiction.in_country
    return _in_ranges(host, ic.networks) or _under(host, ic.dns_suffixes)


def _where(site: Site) -> str:
    ic = site.jurisdiction.in_country
    parts = [", ".join(f"*.{s}" for s in ic.dns_suffixes)]
    if ic.networks:
        parts.append(", ".join(map(str, ic.networks)))
    return " or ".join(parts)


def check_residency(site: Site) -> Iterator[Result]:
    pid = "residency.in-country"
    home = site.jurisdiction.data_residency
    ic = site.jurisdiction.in_country
    if site.country != home:
        yield _r(
            pid,
            Severity.ERROR,
            site,
            field_path("jurisdiction", "data_residency"),
            f"site is in {site.country} but its data must reside in {home}",
        )
    else:
        yield _r(
            pid,
            Severity.INFO,
            site,
            field_path("jurisdiction", "data_residency"),
            f"site in {home}, data to stay in {home}",
        )
    for i, suffix in enumerate(ic.dns_suffixes):
        if _public(suffix) or any(_under(p, [suffix]) for p in PUBLIC_SERVICE_SUFFIXES):
            yield _r(
                "residency.suffixes",
                Severity.ERROR,
                site,
                field_path("jurisdiction", "in_country", "dns_suffixes", i),
                f"{suffix} covers global public services: an in-country suffix names only the site's own zone",
            )
    for i, net in enumerate(ic.networks):
        if net.prefixlen < 8:
            yield _r(
                "residency.suffixes",
                Severity.ERROR,
                site,
                field_path("jurisdiction", "in_country", "networks", i),
                f"{net} is wider than a /8: no country operates it",
            )
    for fields, host, country in endpoints(site):
        if country != home:
            where = field_path(*fields[:-1], "country")
            yield _r(pid, Severity.ERROR, site, where, f"{host} is declared in {country}, outside {home}")
        else:
            yield from _located(site, field_path(*fields), host)
    # DNS and NTP servers declare no country: where they run is proven from their address or name alone.
    for i, address in enumerate(site.network.dns):
        yield from _located(site, field_path("network", "dns", i), str(address))
    for i, server in enumerate(site.network.ntp):
        yield from _located(site, field_path("network", "ntp", i), server)
    yield from _check_state_backend(site)


def _located(site: Site, path: str, host: str) -> Iterator[Result]:
    """Whether an endpoint declared in the site's country is proven there from its own name or address."""
    pid = "residency.in-country"
    home = site.jurisdiction.data_residency
    if _public(host):
        yield _r(
            "residency.public-service",
            Severity.ERROR,
            site,
            path,
            f"{host} is a global public service; use the in-country mirror",
        )
    elif not located(site, host):
        yield _r(
            pid,
            Severity.ERROR,
            site,
            path,
            f"{host} is not proven in {home}: it is neither under nor inside {_where(site)} (jurisdiction.in_country)",
        )
    else:
        yield _r(pid, Severity.INFO, site, path, f"{host} in {home}")


def _check_state_backend(site: Site) -> Iterator[Result]:
    pid = "residency.state-backend"
    home = site.jurisdiction.data_residency
    backend = site.state_backend
    host, why = state_backend_host(backend.url)
    if host is None:
        yield _r(
            pid, Severity.ERROR, site, field_path("state_backend", "url"), f"Pulumi state has no in-country host: {why}"
        )
    elif host == "":
        yield _r(
            pid,
            Severity.WARNING,
            site,
            field_path("state_backend", "url"),
            "state on the local disk of whoever runs pulumi: it stays in "
            f"{home} only while that machine does; production sites use the in-country S3 store",
        )
    elif _public(host):
        yield _r(pid, Severity.ERROR, site, field_path("state_backend", "url"), f"{host} is a public service")
    elif backend.country != home:
        yield _r(
            pid,
            Severity.ERROR,
            site,
            field_path("state_backend", "country"),
            f"declared in {backend.country}, outside {home}",
        )
    elif not located(site, host):
        yield _r(
            pid,
            Severity.ERROR,
            site,
            field_path("state_backend", "url"),
            f"{host} is not proven in {home}: it is neither under nor inside {_where(site)}",
        )
    else:
        yield _r(pid, Severity.INFO, site, field_path("state_backend", "url"), f"state kept in {home} ({host})")


def check_versions(site: Site, as_of: date) -> Iterator[Result]:
    g = site.gpu_stack
    minimum = catalog.CUDA_MIN_DRIVER.get(g.cuda)
    if minimum is None:
        yield _r(
            "compat.cuda-driver",
            Severity.ERROR,
            site,
            field_path("gpu_stack", "cuda"),
            f"CUDA {g.cuda} is not in the compatibility table ({', '.join(catalog.CUDA_MIN_DRIVER)}); "
            f"source: {catalog.CUDA_RELEASE_NOTES}",
        )
    elif g.driver_at_least(minimum):
        yield _r(
            "compat.cuda-driver",
            Severity.INFO,
            site,
            field_path("gpu_stack", "driver"),
            f"{g.driver} >= {minimum} for CUDA {g.cuda}",
        )
    else:
        floor = catalog.CUDA_MAJOR_DRIVER_FLOOR.get(g.cuda_major)
        if floor and g.driver_at_least(floor):
            yield _r(
                "compat.cuda-driver",
                Severity.WARNING,
                site,
                field_path("gpu_stack", "driver"),
                f"{g.driver} is below {minimum} (CUDA {g.cuda}); runs only under minor-version "
                f"compatibility, without PTX JIT ({catalog.CUDA_MINOR_COMPAT})",
            )
        else:
            yield _r(
                "compat.cuda-driver",
                Severity.ERROR,
                site,
                field_path("gpu_stack", "driver"),
                f"{g.driver} is below {minimum}, the minimum for CUDA {g.cuda} ({catalog.CUDA_RELEASE_NOTES})",
            )
    for i, pool in enumerate(site.pools):
        sku = pool.spec
        if not g.driver_at_least(sku.min_driver):
            yield _r(
                "compat.sku-driver",
                Severity.ERROR,
                site,
                field_path("pools", i, "sku"),
                f"{sku.name} needs driver >= {sku.min_driver}, site declares {g.driver} ({sku.source})",
            )
        elif Version.parse(g.cuda) < Version.parse(sku.min_cuda):
            yield _r(
                "compat.sku-driver",
                Severity.ERROR,
                site,
                field_path("pools", i, "sku"),
                f"{sku.name} ({sku.architecture}) needs CUDA >= {sku.min_cuda}, site declares {g.cuda}",
            )
        else:
            yield _r(
                "compat.sku-driver",
                Severity.INFO,
                site,
                field_path("pools", i, "sku"),
                f"{sku.name} supported by {g.driver}",
            )
    if int(g.nccl_cuda.split(".")[0]) != g.cuda_major:
        yield _r(
            "compat.nccl-cuda",
            Severity.ERROR,
            site,
            field_path("gpu_stack", "nccl"),
            f"NCCL {g.nccl} is built for CUDA {g.nccl_cuda}, the site runs CUDA {g.cuda}: majors differ",
        )
    else:
        yield _r(
            "compat.nccl-cuda", Severity.INFO, site, field_path("gpu_stack", "nccl"), f"built for CUDA {g.cuda_major}"
        )
    branches = catalog.GPU_OPERATOR_DRIVER_BRANCHES.get(g.operator_release)
    if branches is None:
        yield _r(
            "compat.operator-driver",
            Severity.ERROR,
            site,
            field_path("gpu_stack", "gpu_operator"),
            f"gpu-operator {g.gpu_operator} is not in the support table "
            f"({', '.join(catalog.GPU_OPERATOR_DRIVER_BRANCHES)}); source: {catalog.GPU_OPERATOR_SUPPORT}",
        )
    elif g.driver_branch not in branches:
        yield _r(
            "compat.operator-driver",
            Severity.ERROR,
            site,
            field_path("gpu_stack", "gpu_operator"),
            f"gpu-operator {g.gpu_operator} supports driver branches "
            f"{', '.join(map(str, sorted(branches)))}, not R{g.driver_branch} ({catalog.GPU_OPERATOR_SUPPORT})",
        )
    else:
        yield _r(
            "compat.operator-driver",
            Severity.INFO,
            site,
            field_path("gpu_stack", "gpu_operator"),
            f"{g.gpu_operator} supports R{g.driver_branch}",
        )
    if g.operator_release in catalog.GPU_OPERATOR_END_OF_SUPPORT:
        yield _r(
            "compat.operator-eol",
            Severity.WARNING,
            site,
            field_path("gpu_stack", "gpu_operator"),
            f"gpu-operator {g.operator_release}.x is past its end of support ({catalog.GPU_OPERATOR_LIFECYCLE})",
        )
    eol = catalog.DRIVER_BRANCH_EOL.get(g.driver_branch)
    if eol and eol < as_of:
        yield _r(
            "compat.driver-eol",
            Severity.WARNING,
            site,
            field_path("gpu_stack", "driver"),
            f"driver branch R{g.driver_branch} reached end of support on {eol} ({catalog.DRIVER_LIFECYCLE})",
        )


def check_blackwell(site: Site) -> Iterator[Result]:
    """What NVIDIA requires of Blackwell and rack-scale pools: NCCL, ComputeDomains, DRA, CDMM."""
    g = site.gpu_stack
    dra = catalog.DRA_DRIVER_RELEASES.get(g.dra_driver) if g.dra_driver else None
    for i, pool in enumerate(site.pools):
        sku = pool.spec
        if sku.architecture == "blackwell":
            if Version.parse(g.nccl_version) < Version.parse(catalog.NCCL_BLACKWELL_MIN):
                yield _r(
                    "compat.nccl-sku",
                    Severity.ERROR,
                    site,
                    field_path("gpu_stack", "nccl"),
                    f"NCCL {g.nccl_version} predates Blackwell support (from {catalog.NCCL_BLACKWELL_MIN}, "
                    f"{catalog.NCCL_BLACKWELL}); pools[{i}] is {sku.name}",
                )
            else:
                yield _r(
                    "compat.nccl-sku",
                    Severity.INFO,
                    site,
                    field_path("pools", i, "sku"),
                    f"NCCL {g.nccl_version} has sm_100",
                )
        if not sku.mnnvl:
            continue
        floor = dra or max(catalog.DRA_DRIVER_RELEASES.values(), key=lambda r: Version.parse(r.version))
        if not g.driver_at_least(floor.compute_domain_min_driver):
            yield _r(
                "compat.computedomain-driver",
                Severity.ERROR,
                site,
                field_path("gpu_stack", "driver"),
                f"pools[{i}] ({sku.name}) is a multi-node NVLink pool: ComputeDomains need driver >= "
                f"{floor.compute_domain_min_driver} (DRA driver {floor.version}, "
                "cmd/compute-domain-kubelet-plugin/main.go), the site declares "
                f"{g.driver}",
            )
        else:
            yield _r(
                "compat.computedomain-driver",
                Severity.INFO,
                site,
                field_path("gpu_stack", "driver"),
                f"{g.driver} >= {floor.compute_domain_min_driver} for ComputeDomains",
            )
        if dra is None:
            yield _r(
                "compat.dra-driver",
                Severity.WARNING,
                site,
                field_path("gpu_stack", "dra_driver"),
                f"pools[{i}] ({sku.name}) spans racks of NVLink but the site deploys no DRA driver: IMEX runs on "
                "the hosts for each whole rack and every workload shares channel 0; set gpu_stack.dra_driver for "
                "ComputeDomains (one IMEX domain per workload)",
            )
        mig = pool.mig_config or g.mig.strategy != "none"
        if mig and g.driver_at_least(catalog.CDMM_DEFAULT_DRIVER):
            yield _r(
                "compat.cdmm-mig",
                Severity.ERROR,
                site,
                field_path("pools", i, "mig_config") if pool.mig_config else field_path("gpu_stack", "mig", "strategy"),
                f"{sku.name} on driver {g.driver} runs with Coherent Driver Memory Management, which is not "
                f"compatible with MIG ({catalog.CDMM})",
            )
    if dra is not None:
        yield from _check_dra_kubernetes(site, dra)


def _check_dra_kubernetes(site: Site, dra: catalog.DraDriverRelease) -> Iterator[Result]:
    pid, declared = "compat.dra-kubernetes", site.kubernetes.version
    if declared is None:
        yield _r(
            pid,
            Severity.ERROR,
            site,
            field_path("kubernetes", "version"),
            f"the DRA driver {dra.version} needs Kubernetes >= {dra.kubernetes_min} (its chart's kubeVersion): "
            "declare the cluster's release",
        )
    elif Version.parse(declared) < Version.parse(dra.kubernetes_min):
        yield _r(
            pid,
            Severity.ERROR,
            site,
            field_path("kubernetes", "version"),
            f"Kubernetes {declared} is below {dra.kubernetes_min}, the DRA driver {dra.version} chart's kubeVersion",
        )
    elif Version.parse(declared) < Version.parse(catalog.KUBERNETES_DRA_DEFAULT):
        yield _r(
            pid,
            Severity.WARNING,
            site,
            field_path("kubernetes", "version"),
            f"on Kubernetes {declared} DRA is beta and off by default (on from {catalog.KUBERNETES_DRA_DEFAULT}, "
            f"{catalog.DRA_DEFAULT_ON}): the DynamicResourceAllocation gate and resource.k8s.io/v1beta1 must be on",
        )
    else:
        yield _r(
            pid,
            Severity.INFO,
            site,
            field_path("kubernetes", "version"),
            f"Kubernetes {declared} serves DRA by default",
        )


def check_racks(site: Site) -> Iterator[Result]:
    """Rack-scale pools: every tray in a rack, every rack the SKU's size; the rack is the IMEX domain."""
    for i, pool in enumerate(site.pools):
        spec = pool.spec.rack
        if spec is None:
            if pool.racks:
                yield _r(
                    "topology.racks",
                    Severity.INFO,
                    site,
                    field_path("pools", i, "racks"),
                    f"{len(pool.racks)} rack(s) of {pool.sku}: labels only (its NVLink domain is the node)",
                )
            continue
        loose = [k for k in range(1, pool.count + 1) if k not in pool.rack_of]
        if loose:
            yield _r(
                "topology.racks",
                Severity.ERROR,
                site,
                field_path("pools", i, "racks"),
                f"{len(loose)} of pool {pool.name}'s {pool.sku} trays are in no rack (node(s) "
                f"{', '.join(map(str, loose[:8]))}{' ...' if len(loose) > 8 else ''}): a tray's NVLink and IMEX "
                "domain is its rack",
            )
        else:
            yield _r(
                "topology.racks",
                Severity.INFO,
                site,
                field_path("pools", i, "racks"),
                f"{pool.count} trays in {len(pool.racks)} rack(s)",
            )
        for k, rack in enumerate(pool.racks):
            if len(rack.trays) != spec.compute_trays:
                yield _r(
                    "topology.rack-size",
                    Severity.ERROR,
                    site,
                    field_path("pools", i, "racks", k, "trays"),
                    f"rack {rack.name} holds {len(rack.trays)} compute tray(s); a {pool.sku} rack holds "
                    f"{spec.compute_trays} (and {spec.switch_trays} NVLink switch trays) as one NVLink domain "
                    f"({spec.source})",
                )
            else:
                yield _r(
                    "topology.rack-size",
                    Severity.INFO,
                    site,
                    field_path("pools", i, "racks", k),
                    f"rack {rack.name}: {spec.compute_trays} trays, one NVLink domain",
                )


def site_networks(site: Site) -> list[tuple[str, IPv4Network]]:
    n = site.network
    nets = [
        (field_path("network", "management", "cidr"), n.management.cidr),
        (field_path("network", "bmc", "cidr"), n.bmc.cidr),
        (field_path("network", "storage", "cidr"), n.storage.cidr),
        (field_path("network", "pods"), n.pods),
        (field_path("network", "services"), n.services),
    ]
    nets += [(field_path("network", "fabric", "rails", i, "cidr"), r.cidr) for i, r in enumerate(n.fabric.rails)]
    return nets


def smallest_fit(net: IPv4Network, fits: Callable[[IPv4Network], bool]) -> str:
    """What a capacity error adds: the smallest network around ``net`` that would fit, e.g. 'a /21 (10.48.0.0/21)'."""
    for prefix in range(net.prefixlen - 1, -1, -1):
        wider = net.supernet(new_prefix=prefix)
        if fits(wider):
            return f"; the smallest that fits is a /{prefix} ({wider})"
    return "; no IPv4 network is large enough"


def check_network(site: Site, written: Callable[[str], object] | None = None) -> Iterator[Result]:
    """The network plan; ``written`` gives a field's value as the file wrote it (echoed in messages)."""
    nets = site_networks(site)
    clean = True
    for i, (pa, a) in enumerate(nets):
        for pb, b in nets[i + 1 :]:
            if a.overlaps(b):
                clean = False
                yield _r("net.overlap", Severity.ERROR, site, pb, f"{b} overlaps {pa} ({a})")
    if clean:
        yield _r("net.overlap", Severity.INFO, site, field_path("network"), f"{len(nets)} networks, no overlap")

    n = site.network
    top = max((p.ip_offset + p.count - 1) for p in site.pools)
    for path, net in (
        (field_path("network", "management", "cidr"), n.management.cidr),
        (field_path("network", "storage", "cidr"), n.storage.cidr),
    ):
        if top >= net.num_addresses - 1:
            yield _r(
                "net.capacity",
                Severity.ERROR,
                site,
                path,
                f"{net} has {net.num_addresses - 2} host addresses; the pools need host number {top}"
                + smallest_fit(net, lambda w: top < w.num_addresses - 1),
            )
        else:
            yield _r("net.capacity", Severity.INFO, site, path, f"host numbers up to {top} fit in {net}")
    for subnet_path, subnet in (
        (field_path("network", "management"), n.management),
        (field_path("network", "bmc"), n.bmc),
        (field_path("network", "storage"), n.storage),
    ):
        if subnet.gateway and subnet.gateway not in subnet.cidr:
            yield _r(
                "net.gateway",
                Severity.ERROR,
                site,
                f"{subnet_path}.gateway",
                f"{subnet.gateway} is outside {subnet.cidr}",
            )
    nodes = site.node_total
    for i, rail in enumerate(n.fabric.rails):
        blocks = ipam_blocks(rail.cidr, n.fabric.per_node_block)
        if blocks < nodes:
            yield _r(
                "net.capacity",
                Severity.ERROR,
                site,
                field_path("network", "fabric", "rails", i, "cidr"),
                f"{rail.cidr} holds {blocks} blocks of {n.fabric.per_node_block} for {nodes} nodes: nv-ipam "
                "starts at network+1 and no block may end on the broadcast address "
                "(Mellanox/nvidia-k8s-ipam allocator)"
                + smallest_fit(rail.cidr, lambda w: ipam_blocks(w, n.fabric.per_node_block) >= nodes),
            )
    pod_blocks = 2 ** max(0, 24 - n.pods.prefixlen)
    if pod_blocks < nodes:
        yield _r(
            "net.capacity",
            Severity.ERROR,
            site,
            field_path("network", "pods"),
            f"{n.pods} holds {pod_blocks} node /24 blocks for {nodes} nodes"
            + smallest_fit(n.pods, lambda w: 2 ** max(0, 24 - w.prefixlen) >= nodes),
        )
    rails = len(n.fabric.rails)
    for i, pool in enumerate(site.pools):
        nics = pool.spec.compute_nics
        if nics > rails:
            yield _r(
                "net.rails",
                Severity.ERROR,
                site,
                field_path("network", "fabric", "rails"),
                f"{rails} rails, but {pool.spec.name} (pools[{i}]) has {nics} compute NICs: one rail per NIC",
            )
        elif nics < rails:
            # A GB200 tray (4 NICs) beside 8-NIC DGX systems: its NICs take the first rails.
            yield _r(
                "net.rails",
                Severity.INFO,
                site,
                field_path("pools", i),
                f"{nics} NICs on rails 0-{nics - 1} of {rails}",
            )
        else:
            yield _r("net.rails", Severity.INFO, site, field_path("pools", i), f"{nics} NICs, one rail each")
    widest = max(p.spec.compute_nics for p in site.pools)
    if widest < rails:
        yield _r(
            "net.rails",
            Severity.ERROR,
            site,
            field_path("network", "fabric", "rails"),
            f"{rails} rails, but no pool has more than {widest} compute NICs: rails {widest}-{rails - 1} serve no NIC",
        )
    yield from _check_ports(site)
    if n.fabric.roce_gid_index is not None:
        if n.fabric.type != "roce":
            yield _r(
                "net.gid-index",
                Severity.ERROR,
                site,
                field_path("network", "fabric", "roce_gid_index"),
                "a RoCE GID index on an InfiniBand fabric: NCCL would use it against the IB ports",
            )
        elif Version.parse(catalog.NCCL_GID_AUTODETECT) <= Version.parse(site.gpu_stack.nccl_version):
            yield _r(
                "net.gid-index",
                Severity.WARNING,
                site,
                field_path("network", "fabric", "roce_gid_index"),
                f"NCCL {site.gpu_stack.nccl_version} finds the RoCE v2 GID itself (from "
                f"{catalog.NCCL_GID_AUTODETECT}) and warns about a forced index: leave it unset unless the "
                "fabric needs a specific one",
            )
    for i, pool in enumerate(site.pools):
        lo, hi = pool.ip_offset, pool.ip_offset + pool.count - 1
        for j, other in enumerate(site.pools[:i]):
            olo, ohi = other.ip_offset, other.ip_offset + other.count - 1
            if lo <= ohi and olo <= hi:
                yield _r(
                    "net.pool-ranges",
                    Severity.ERROR,
                    site,
                    field_path("pools", i, "ip_offset"),
                    f"host numbers {lo}-{hi} overlap pools[{j}] ({olo}-{ohi})",
                )
    seen_bmc: dict[str, str] = {}
    seen_mac: dict[str, str] = {}
    for i, pool in enumerate(site.pools):
        for k, node in enumerate(pool.nodes):
            path = field_path("pools", i, "nodes", k)
            if node.bmc not in n.bmc.cidr:
                yield _r(
                    "net.bmc",
                    Severity.ERROR,
                    site,
                    f"{path}.bmc",
                    f"{node.bmc} is outside the BMC network {n.bmc.cidr}",
                )
            for key, seen, value in (("bmc", seen_bmc, str(node.bmc)), ("mac", seen_mac, node.mac)):
                if value in seen:
                    # Compared normalised (a MAC in any case), echoed as the file wrote it.
                    said = written(f"{_P}.{path}.{key}") if written else None
                    echoed = said if isinstance(said, str) else value
                    yield _r("net.unique", Severity.ERROR, site, f"{path}.{key}", f"{echoed} is also {seen[value]}")
                seen[value] = path


def _check_ports(site: Site) -> Iterator[Result]:
    """Rails run over the compute ports the catalog knows for each SKU, with NVIDIA's names."""
    fabric = site.network.fabric.type
    maps: dict[tuple[str, ...], str] = {}
    for i, pool in enumerate(site.pools):
        ports = site.rail_ports(pool.sku)
        if ports is None:
            yield _r(
                "net.port-map",
                Severity.WARNING,
                site,
                field_path("pools", i, "sku"),
                f"nothing names the compute ports of {pool.sku}: NVIDIA publishes no port table for it and no "
                "node's report is recorded, so its nodes get no rail resources and NCCL picks its HCAs itself; "
                f"read them from a node with `aifactory topology {site.code} --node HOST` and record the block "
                f"under pools[{i}].topology",
            )
            continue
        port_map = site.port_map(pool.sku)
        assert port_map is not None  # rail_ports returned ports
        if pool.topology is not None and pool.spec.ports is not None:
            yield _r(
                "net.port-map",
                Severity.WARNING,
                site,
                field_path("pools", i, "topology"),
                f"{pool.sku} has NVIDIA's port table in the catalog; the recorded topology is not used for its "
                "rails (verify compares every node with NVIDIA's table)",
            )
        first = next(p for p in site.pools if p.sku == pool.sku and (p.topology is not None or p.spec.ports))
        if pool.topology is not None and first is not pool and first.topology is not None:
            mine = [(c.rdma, c.netdev) for c in pool.topology.compute]
            theirs = [(c.rdma, c.netdev) for c in first.topology.compute]
            if mine != theirs:
                yield _r(
                    "net.port-map",
                    Severity.ERROR,
                    site,
                    field_path("pools", i, "topology"),
                    f"pool {pool.name} recorded other port names for {pool.sku} than pool {first.name} "
                    f"({', '.join(r for r, _ in mine)} against {', '.join(r for r, _ in theirs)}): one SKU's "
                    "rails run over one set of names; re-read both pools' nodes",
                )
        if pool.topology is not None:
            hosts = {n.hostname for n in site.nodes if n.pool == pool.name}
            if pool.topology.reported_by not in hosts:
                yield _r(
                    "net.port-map",
                    Severity.ERROR,
                    site,
                    field_path("pools", i, "topology", "reported_by"),
                    f"{pool.topology.reported_by} is no node of pool {pool.name}: a pool's ports are read from "
                    "one of its own nodes",
                )
        names = tuple(p.netdev(fabric) for p in ports)
        maps.setdefault(names, pool.sku)
        yield _r(
            "net.port-map",
            Severity.INFO,
            site,
            field_path("pools", i, "sku"),
            f"rails on {', '.join(f'{p.rdma}/{p.netdev(fabric)}' for p in ports)} ({port_map.source})",
        )
    if len(maps) > 1:
        yield _r(
            "net.port-map",
            Severity.ERROR,
            site,
            field_path("pools"),
            f"SKUs {', '.join(maps.values())} name their rail ports differently; one NetworkAttachmentDefinition "
            "per rail cannot serve both: split them into sites or extend the network component",
        )


def check_cross_site(stacks: Iterable[Stack], only: set[str]) -> Iterator[Result]:
    """Sites are interconnected: no CIDR may be used by two sites."""
    sites = [s.site for s in stacks]
    for i, a in enumerate(sites):
        for b in sites[i + 1 :]:
            if a.code not in only and b.code not in only:
                continue
            for pa, na in site_networks(a):
                for pb, nb in site_networks(b):
                    if na.overlaps(nb):
                        subject, other, path, pother = (a, b, pa, pb) if a.code in only else (b, a, pb, pa)
                        yield _r(
                            "net.overlap-sites",
                            Severity.ERROR,
                            subject,
                            path,
                            f"overlaps site {other.code} {pother} ({na if subject is a else nb} / "
                            f"{nb if subject is a else na})",
                        )


def check_claims(stacks: Iterable[Stack], subject: str) -> Iterator[Result]:
    """No two sites claim the same in-country zone or range: a claim proves residency only if it is exclusive."""
    by_name = {s.name: s.site for s in stacks}
    me = by_name[subject]
    mine = me.jurisdiction.in_country
    for name, other in sorted(by_name.items()):
        if name == subject or other.jurisdiction.data_residency == me.jurisdiction.data_residency:
            continue
        theirs = other.jurisdiction.in_country
        for i, suffix in enumerate(mine.dns_suffixes):
            clash = [t for t in theirs.dns_suffixes if _under(suffix, [t]) or _under(t, [suffix])]
            if clash:
                yield _r(
                    "residency.claims-sites",
                    Severity.ERROR,
                    me,
                    field_path("jurisdiction", "in_country", "dns_suffixes", i),
                    f"{suffix} overlaps {clash[0]}, claimed by site {name} ({other.jurisdiction.data_residency})",
                )
        for i, net in enumerate(mine.networks):
            clash_nets = [t for t in theirs.networks if t.overlaps(net)]
            if clash_nets:
                yield _r(
                    "residency.claims-sites",
                    Severity.ERROR,
                    me,
                    field_path("jurisdiction", "in_country", "networks", i),
                    f"{net} overlaps {clash_nets[0]}, claimed by site {name} ({other.jurisdiction.data_residency})",
                )


def check_tenants(site: Site) -> Iterator[Result]:
    total = sum(t.gpu_quota for t in site.tenants)
    if total > site.gpu_total:
        yield _r(
            "tenants.quota",
            Severity.ERROR,
            site,
            field_path("tenants"),
            f"quotas add up to {total} GPUs; the site has {site.gpu_total}",
        )
    else:
        yield _r(
            "tenants.quota", Severity.INFO, site, field_path("tenants"), f"{total} of {site.gpu_total} GPUs allotted"
        )
    largest = max(p.spec.gpu_count for p in site.pools)
    for i, t in enumerate(site.tenants):
        if t.max_gpus_per_pod > largest:
            yield _r(
                "tenants.pod-size",
                Severity.WARNING,
                site,
                field_path("tenants", i, "max_gpus_per_pod"),
                f"{t.max_gpus_per_pod} GPUs per pod, but no node has more than {largest}",
            )


def check_isolation(site: Site, as_of: date) -> Iterator[Result]:
    """What keeps each tenant from every other (tenancy.py): nodes, fabric partition, buckets, principal.

    The data class drives what is required: restricted and confidential tenants hold nodes of their
    own, a partition of their own and encrypted buckets; every tenant has buckets granted to its
    principal alone. Each finding names the tenant (and the other tenant, where two collide).
    """
    fabric = site.network.fabric
    held = tenancy.holders(site)
    shared = tenancy.shared_nodes(site)
    site_buckets = {b.name for b in site.storage.object_store.buckets}
    site_principals = set(site.storage.object_store.principals)
    bucket_owner: dict[str, str] = {}
    principal_owner: dict[str, str] = {}
    partition_owner: dict[int, str] = {}
    for i, t in enumerate(site.tenants):
        where = field_path("tenants", i)
        for k, why in tenancy.node_set_problems(site, t):
            yield _r("tenants.nodes", Severity.ERROR, site, field_path("tenants", i, "nodes", k), f"{t.name}: {why}")
        mine = tenancy.nodes_of(site, t)
        if tenancy.dedicated(t) and not t.nodes:
            yield _r(
                "tenants.nodes",
                Severity.ERROR,
                site,
                field_path("tenants", i, "nodes"),
                f"{t.name} holds {t.data_classification} data and shares every node: give it nodes of its own "
                "(nodes: [{pool: POOL, scalable_units: [...]}] or {pool: POOL, nodes: FIRST-LAST})",
            )
        gpus = tenancy.gpus(mine, site) if t.nodes else tenancy.gpus(shared, site)
        if t.gpu_quota > gpus:
            on = f"its {len(mine)} node(s)" if t.nodes else f"the {len(shared)} node(s) no tenant holds"
            yield _r(
                "tenants.node-quota",
                Severity.ERROR,
                site,
                field_path("tenants", i, "gpu_quota"),
                f"{t.name}'s quota of {t.gpu_quota} GPUs does not fit {on}: {gpus} GPUs",
            )
        part = tenancy.partition(site, t)
        if t.shared_fabric and tenancy.dedicated(t):
            yield _r(
                "tenants.partition",
                Severity.ERROR,
                site,
                field_path("tenants", i, "shared_fabric"),
                f"{t.name} holds {t.data_classification} data: it needs a fabric partition of its own",
            )
        elif t.shared_fabric:
            yield _r(
                "tenants.partition",
                Severity.INFO,
                site,
                field_path("tenants", i, "shared_fabric"),
                f"{t.name} shares the site's default partition with every shared tenant (the site says so)",
            )
        if part is not None:
            if fabric.type == "roce" and part > tenancy.ROCE_MAX_VLAN:
                yield _r(
                    "tenants.partition",
                    Severity.ERROR,
                    site,
                    field_path("tenants", i, "partition"),
                    f"{t.name}: VLAN {part} is past 802.1Q's {tenancy.ROCE_MAX_VLAN}",
                )
            other = partition_owner.setdefault(part, t.name)
            if other != t.name:
                yield _r(
                    "tenants.partition",
                    Severity.ERROR,
                    site,
                    field_path("tenants", i, "partition"),
                    f"{t.name} and {other} would share partition {tenancy.pkey_text(part)}: declare another for one",
                )
        for name in [b.name for b in tenancy.buckets(site, t)]:
            try:
                grammar.bucket_name(name)
            except ValueError as exc:
                yield _r(
                    "tenants.buckets", Severity.ERROR, site, field_path("tenants", i, "buckets"), f"{t.name}: {exc}"
                )
                continue
            other = "the site" if name in site_buckets else bucket_owner.setdefault(name, t.name)
            if other != t.name:
                yield _r(
                    "tenants.buckets",
                    Severity.ERROR,
                    site,
                    field_path("tenants", i, "buckets"),
                    f"bucket {name} of {t.name} is also {other}'s",
                )
        who = tenancy.principal(t)
        other = "the site's" if who in site_principals else principal_owner.setdefault(who, t.name)
        if other != t.name:
            yield _r(
                "tenants.buckets",
                Severity.ERROR,
                site,
                field_path("tenants", i, "principal"),
                f"store user {who} of {t.name} is also {other}: each tenant reads its buckets as its own user",
            )
        if t.data_classification in tenancy.ENCRYPTED and site.storage.object_store.encryption == "none":
            yield _r(
                "tenants.encryption",
                Severity.WARNING,
                site,
                where,
                f"{t.name} holds {t.data_classification} data and the store declares no server-side encryption "
                "(storage.object_store.encryption: none): its objects rest unencrypted",
            )
    for host, names in held.items():
        if len(names) > 1:
            first = next(i for i, t in enumerate(site.tenants) if t.name == names[1])
            yield _r(
                "tenants.shared-nodes",
                Severity.ERROR,
                site,
                field_path("tenants", first, "nodes"),
                f"{host} is held by {' and '.join(names)}: a node is one tenant's or shared by all",
            )
    for i, r in enumerate(site.retired_tenants):
        for name in r.buckets:
            other = "the site" if name in site_buckets else bucket_owner.get(name)
            if other:
                yield _r(
                    "tenants.buckets",
                    Severity.ERROR,
                    site,
                    field_path("retired_tenants", i, "buckets"),
                    f"bucket {name} kept for retired tenant {r.name} is also {other}'s",
                )
        over = as_of > r.retain_until
        yield _r(
            "tenants.retired",
            Severity.WARNING if over else Severity.INFO,
            site,
            field_path("retired_tenants", i),
            f"{r.name}'s {len(r.buckets)} bucket(s) kept until {r.retain_until}"
            + ("; that day has passed: they may be deleted by hand" if over else ""),
        )


def check_supply(site: Site) -> Iterator[Result]:
    """Every artifact the site's versions name has a digest in the catalog (catalog/supply.py), or a named gap.

    A version whose artifact the catalog has no digest for is an error: the nccl role refuses the
    download, and nothing reaches a node unverified. An artifact no upstream file publishes a digest
    for is taken by tag: a warning, naming each, until a source for it is found.
    """
    g = site.gpu_stack
    major = int(g.nccl_cuda.split(".")[0])
    nccl = field_path("gpu_stack", "nccl")
    for arch in sorted({p.spec.cpu_arch for p in site.pools}):
        wheel = supply.nccl_wheel(g.nccl_version, major, arch)
        if wheel is None:
            yield _r(
                "supply.digests",
                Severity.ERROR,
                site,
                nccl,
                f"NCCL {g.nccl_version} for CUDA {major} on {arch} has no known digest (PyPI's nvidia-nccl-cu{major}): "
                "add its file's sha256 to catalog/supply.py, or pin a catalogued version; the nccl role refuses "
                "a download it cannot check",
            )
        else:
            yield _r("supply.digests", Severity.INFO, site, nccl, f"{wheel.filename} sha256:{wheel.sha256[:12]}...")
    gaps: list[str] = []
    tables = [
        (field_path("gpu_stack", "gpu_operator"), supply.GPU_OPERATOR_IMAGES[g.gpu_operator]),
        (field_path("gpu_stack", "network_operator"), supply.NETWORK_OPERATOR_IMAGES[g.network_operator]),
    ]
    if g.dra_driver:
        tables.append((field_path("gpu_stack", "dra_driver"), {"driver": supply.DRA_DRIVER_IMAGES[g.dra_driver]}))
    for path, images in tables:
        for component, image in images.items():
            digest = supply.image_digest(image)
            if digest is None:
                yield _r(
                    "supply.digests",
                    Severity.ERROR,
                    site,
                    path,
                    f"{component} image {image.reference} has no catalogued digest: add it to catalog/supply.py",
                )
            elif isinstance(digest, supply.Unpublished):
                gaps.append(image.reference)
    charts = [supply.GPU_OPERATOR_CHARTS[g.gpu_operator]]
    if g.dra_driver:
        charts.append(supply.DRA_DRIVER_CHARTS[g.dra_driver])
    for chart in charts:
        if isinstance(chart.digest, supply.Unpublished):
            gaps.append(f"chart {chart.name} {chart.version}")
    if gaps:
        yield _r(
            "supply.digests",
            Severity.WARNING,
            site,
            field_path("gpu_stack"),
            f"taken by tag, no upstream file publishing a digest was found: {', '.join(sorted(set(gaps)))} "
            f"(why, for each: `aifactory mirror manifest {site.code}`)",
        )
    declared = site.mirrors.cuda.signing_key_fingerprint
    key = field_path("mirrors", "cuda", "signing_key_fingerprint")
    if declared != supply.CUDA_REPO_KEY_FINGERPRINT:
        yield _r(
            "supply.cuda-key",
            Severity.ERROR,
            site,
            key,
            f"{declared or 'no fingerprint'} is not NVIDIA's CUDA repository key {supply.CUDA_REPO_KEY_FINGERPRINT} "
            f"({supply.CUDA_REPO_KEY_SOURCE}): the roles pin the key apt trusts for NVIDIA's packages",
        )
    else:
        yield _r("supply.cuda-key", Severity.INFO, site, key, "NVIDIA's CUDA repository key")


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


def check_scalable_units(site: Site) -> Iterator[Result]:
    """No scalable unit in two pools: a unit is one rail leaf set, and its label is how workloads and drains find it."""
    owner: dict[str, int] = {}
    for i, pool in enumerate(site.pools):
        for k, unit in enumerate(pool.scalable_units):
            first = owner.setdefault(unit.name, i)
            if first != i:
                yield _r(
                    "net.scalable-units",
                    Severity.ERROR,
                    site,
                    field_path("pools", i, "scalable_units", k, "name"),
                    f"{unit.name} is also a unit of pool {site.pools[first].name}: two pools' nodes would carry one "
                    "aifactory.io/scalable-unit label; name the units uniquely in the site",
                )
    units = ", ".join(f"{p.name}: {'+'.join(u.name for u in p.scalable_units)}" for p in site.pools)
    yield _r("net.scalable-units", Severity.INFO, site, field_path("pools"), f"units {units}")


LAB_SITE = "lab"
LAB_PASSPHRASE = "lab.passphrase"  # noqa: S105 - the name of the lab's public passphrase file


def _lab_passphrase(path: Path) -> str | None:
    try:
        return read_passphrase_file(path)
    except (OSError, ValueError, SecretsError):  # absent or unreadable: nothing to compare with
        return None


# -- the registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """What a policy judges: one stack, the other sites it is interconnected with, and the date."""

    stack: Stack
    others: tuple[Stack, ...]
    as_of: date


SCOPES = ("site", "cross-site")


class UndeclaredCheck(RuntimeError):
    """A policy reported a check id it does not declare: a bug in the policy, never a passing check."""


@dataclass(frozen=True)
class Policy:
    """A validator in the manner of Cluster Toolkit's: a name, a scope and the check ids it reports.

    The scope decides what the policy sees: a "site" policy judges one stack alone (its subject has
    no other sites), a "cross-site" policy also sees every other stack it is compared with.
    """

    name: str
    title: str
    scope: str
    checks: tuple[str, ...]
    run: Callable[[Subject], Iterable[Result]]
    skippable: bool = True

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"policy {self.name}: scope {self.scope!r} is none of {', '.join(SCOPES)}")

    def results(self, subject: Subject) -> Iterator[Result]:
        """What the policy finds on the subject its scope allows; an id it does not declare is a bug."""
        if self.scope == "site":
            subject = replace(subject, others=())
        for r in self.run(subject):
            if r.id not in self.checks:
                raise UndeclaredCheck(
                    f"policy {self.name} reported {r.id!r}, which it does not declare ({', '.join(self.checks)})"
                )
            yield r


REGISTRY: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy(
            "residency",
            "Data, mirrors, state, DNS and NTP proven in the site's country",
            "site",
            ("residency.in-country", "residency.public-service", "residency.state-backend", "residency.suffixes"),
            lambda s: check_residency(s.stack.site),
            skippable=False,
        ),
        Policy(
            "residency-sites",
            "No two countries claim the same in-country zone or address range",
            "cross-site",
            ("residency.claims-sites",),
            lambda s: check_claims([s.stack, *s.others], s.stack.name),
            skippable=False,
        ),
        Policy(
            "compat",
            "Driver, CUDA, NCCL, GPU operator and DRA driver versions are compatible, with each SKU and each other",
            "site",
            (
                "compat.cuda-driver",
                "compat.sku-driver",
                "compat.nccl-cuda",
                "compat.operator-driver",
                "compat.driver-eol",
                "compat.operator-eol",
                "compat.nccl-sku",
                "compat.computedomain-driver",
                "compat.dra-driver",
                "compat.dra-kubernetes",
                "compat.cdmm-mig",
            ),
            lambda s: [*check_versions(s.stack.site, s.as_of), *check_blackwell(s.stack.site)],
        ),
        Policy(
            "topology",
            "Rack-scale pools: every tray in one rack of the SKU's size (the NVLink and IMEX domain)",
            "site",
            ("topology.racks", "topology.rack-size"),
            lambda s: check_racks(s.stack.site),
        ),
        Policy(
            "net",
            "Network plan: no overlaps, enough addresses, one rail per NIC, unique BMCs and MACs",
            "site",
            (
                "net.overlap",
                "net.capacity",
                "net.gateway",
                "net.rails",
                "net.port-map",
                "net.gid-index",
                "net.pool-ranges",
                "net.bmc",
                "net.unique",
            ),
            lambda s: check_network(s.stack.site, s.stack.written),
        ),
        Policy(
            "scalable-units",
            "Each scalable unit belongs to one pool",
            "site",
            ("net.scalable-units",),
            lambda s: check_scalable_units(s.stack.site),
        ),
        Policy(
            "net-sites",
            "No CIDR used by two interconnected sites",
            "cross-site",
            ("net.overlap-sites",),
            lambda s: check_cross_site([s.stack, *s.others], {s.stack.name}),
        ),
        Policy(
            "secrets",
            "Every credential is a Pulumi secret, under the site's own passphrase",
            "site",
            ("secrets.bmc", "secrets.lab-passphrase"),
            lambda s: check_secrets(s.stack),
            skippable=False,
        ),
        Policy(
            "supply",
            "Every artifact the site takes is pinned by a digest with its source",
            "site",
            ("supply.digests", "supply.cuda-key"),
            lambda s: check_supply(s.stack.site),
        ),
        Policy(
            "tenants",
            "Tenant quotas fit the site's GPUs",
            "site",
            ("tenants.quota", "tenants.pod-size"),
            lambda s: check_tenants(s.stack.site),
        ),
        Policy(
            "tenant-isolation",
            "Each tenant's nodes, fabric partition, buckets and store user are its own, as its data class requires",
            "site",
            (
                "tenants.nodes",
                "tenants.shared-nodes",
                "tenants.node-quota",
                "tenants.partition",
                "tenants.buckets",
                "tenants.encryption",
                "tenants.retired",
            ),
            lambda s: check_isolation(s.stack.site, s.as_of),
        ),
    )
}
SKIP_CHECK = "policies.skip"
CHECK_IDS: tuple[str, ...] = (*(c for p in REGISTRY.values() for c in p.checks), SKIP_CHECK)
FAMILIES: tuple[str, ...] = tuple(sorted({c.split(".")[0] for c in CHECK_IDS}))
_UNSKIPPABLE = {c for p in REGISTRY.values() if not p.skippable for c in p.checks} | {SKIP_CHECK}


def _matches(check: str, selector: str) -> bool:
    return check == selector or check.startswith(selector + ".")


def select(only: Iterable[str] | None) -> frozenset[str]:
    """The check ids that --only names (families or ids); an unknown name is bad input."""
    if not only:
        return frozenset(CHECK_IDS)
    chosen: set[str] = set()
    for selector in only:
        hits = {c for c in CHECK_IDS if _matches(c, selector)}
        if not hits:
            raise ConfigError(
                [
                    Problem(
                        "--only", "", f"{shown(selector)} is no policy; known: {', '.join(FAMILIES)} and their checks"
                    )
                ]
            )
        chosen |= hits
    return frozenset(chosen)


def _skips(stack: Stack) -> tuple[dict[str, str], list[Result]]:
    """The site's declared skips (check id -> reason), and errors for skips that are not allowed."""
    skips: dict[str, str] = {}
    problems: list[Result] = []
    for i, skip in enumerate(stack.site.policies.skip):
        path = f"{_P}.policies.skip[{i}].id"
        hits = [c for c in CHECK_IDS if _matches(c, skip.id)]
        if not hits:
            problems.append(Result(SKIP_CHECK, Severity.ERROR, stack.name, path, f"{skip.id} is no policy check"))
            continue
        barred = sorted(set(hits) & _UNSKIPPABLE)
        if barred:
            problems.append(
                Result(
                    SKIP_CHECK,
                    Severity.ERROR,
                    stack.name,
                    path,
                    f"{', '.join(barred)} cannot be skipped: residency and secrets hold for every site",
                )
            )
            continue
        for c in hits:
            skips[c] = skip.reason
    return skips, problems


def evaluate(
    stack: Stack,
    as_of: date | None = None,
    others: Iterable[Stack] = (),
    checks: frozenset[str] | None = None,
) -> list[Result]:
    """Every selected check on one stack, with the site's skips applied; passing checks leave an INFO line."""
    subject = Subject(stack, tuple(o for o in others if o.name != stack.name), as_of or date.today())
    checks = checks if checks is not None else frozenset(CHECK_IDS)
    skips, results = _skips(stack)
    for policy in REGISTRY.values():
        if checks.isdisjoint(policy.checks):
            continue
        results.extend(r for r in policy.results(subject) if r.id in checks)
    seen = {r.id for r in results}
    for check in checks:
        if check not in seen:
            results.append(Result(check, Severity.INFO, stack.name, _P, "checked: no finding"))
    out = []
    for r in results:
        reason = skips.get(r.id)
        if reason is not None and r.severity in (Severity.ERROR, Severity.WARNING):
            out.append(
                replace(
                    r,
                    severity=Severity.SKIPPED,
                    message=f"{r.message} [skipped by the site: {reason}]",
                    file=stack.shown,
                )
            )
        else:
            out.append(replace(r, file=stack.shown))
    return out


_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.SKIPPED: 2, Severity.INFO: 3}


def evaluate_sites(
    stacks: list[Stack],
    only: set[str] | None = None,
    as_of: date | None = None,
    checks: frozenset[str] | None = None,
) -> list[Result]:
    """The policies on the stacks named in ``only`` (default: all), comparing with every stack given."""
    only = only if only is not None else {s.name for s in stacks}
    results: list[Result] = []
    for s in stacks:
        if s.name in only:
            results.extend(evaluate(s, as_of, stacks, checks))
    return sorted(results, key=lambda r: (r.site, _ORDER[r.severity], r.id, natural(r.path)))


def gate(
    stacks: list[Stack], root: Path, as_of: date | None = None, warn: Callable[[str], None] | None = None
) -> list[Result]:
    """The policy gate of every command that acts on a site: errors stop it (exit 2), warnings print and go on.

    Warnings are folded (one line for a finding many stacks or nodes share) and printed once per command.
    """
    names = [s.name for s in stacks]
    everyone = [*stacks, *load_neighbours(root, names)]
    results = evaluate_sites(everyone, only=set(names), as_of=as_of)
    found = findings.of_results(results, everyone)
    say = warn or findings.warn
    for line in findings.fold(p for severity, p in found if severity == Severity.WARNING.value):
        say(f"warning: {line}")
    errors = [p for severity, p in found if severity == Severity.ERROR.value]
    if errors:
        raise ConfigError(errors)
    return results
