"""Policies over site models: residency, version compatibility, network plan, secrets, tenants.

Each check has an id, a severity and a message naming the field, like Google Cluster Toolkit's
validators. They are plain functions over the typed model, so the same code serves
`aifactory validate`, the audit report, and (later) a CrossGuard policy pack under the real CLI.
A passing check yields an INFO result, so an audit can show what was checked, not only what failed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from ipaddress import IPv4Network
from urllib.parse import parse_qs, urlsplit

from . import catalog
from .catalog import Version
from .model import Endpoint, Site
from .stackfile import CREDENTIALS_KEY, SITE_KEY, Stack


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "ok"


@dataclass(frozen=True)
class Result:
    id: str
    severity: Severity
    site: str
    path: str
    message: str

    def line(self) -> str:
        return f"{self.severity.value:7s} [{self.id}] {self.site}: {self.path}: {self.message}"


@dataclass(frozen=True)
class PolicyInfo:
    id: str
    title: str
    check: Callable[..., Iterator[Result]]


# Hosts of global public services: a site configured to pull from or write to them sends
# traffic, and possibly data, out of its jurisdiction.
PUBLIC_SERVICE_SUFFIXES = (
    "nvcr.io",
    "ngc.nvidia.com",
    "download.nvidia.com",
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
    "deb.debian.org",
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


def endpoints(site: Site) -> Iterator[tuple[str, str, str]]:
    """(field path, host, declared country) of every service the site talks to."""
    m = site.mirrors
    for name in ("debian", "ubuntu", "cuda", "artifacts", "charts"):
        ep: Endpoint = getattr(m, name)
        yield f"mirrors.{name}", ep.host, ep.country
    yield "mirrors.containers", m.containers.host.split("/")[0].split(":")[0], m.containers.country
    store = site.storage.object_store
    yield "storage.object_store", store.host, store.country
    for i, b in enumerate(store.buckets):
        if b.replication:
            host = urlsplit(b.replication.endpoint).hostname or ""
            yield f"storage.object_store.buckets[{i}].replication", host, b.replication.country


def state_backend_host(url: str) -> str | None:
    """The host holding Pulumi state, '' for a local file backend, None when it is a public cloud."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return ""
    if parts.scheme == "s3":
        endpoint = parse_qs(parts.query).get("endpoint", [""])[0]
        return endpoint.split(":")[0] if endpoint else None  # no endpoint= means AWS S3
    return parts.hostname or None


def check_residency(site: Site) -> Iterator[Result]:
    pid = "residency.in-country"
    home = site.jurisdiction.data_residency
    if site.country != home:
        yield _r(
            pid,
            Severity.ERROR,
            site,
            "jurisdiction.data_residency",
            f"site is in {site.country} but its data must reside in {home}",
        )
    else:
        yield _r(pid, Severity.INFO, site, "jurisdiction.data_residency", f"site in {home}, data to stay in {home}")
    for path, host, country in endpoints(site):
        if country != home:
            yield _r(pid, Severity.ERROR, site, f"{path}.country", f"{host} is declared in {country}, outside {home}")
        elif _public(host):
            yield _r(
                "residency.public-service",
                Severity.ERROR,
                site,
                path,
                f"{host} is a global public service; use the in-country mirror",
            )
        else:
            yield _r(pid, Severity.INFO, site, path, f"{host} in {home}")
    backend = site.state_backend
    host = state_backend_host(backend.url)
    if host is None:
        yield _r(
            "residency.state-backend",
            Severity.ERROR,
            site,
            "state_backend.url",
            "Pulumi state would go to a public cloud service (an s3:// URL needs endpoint=<in-country host>)",
        )
    elif host and _public(host):
        yield _r("residency.state-backend", Severity.ERROR, site, "state_backend.url", f"{host} is a public service")
    elif backend.country != home:
        yield _r(
            "residency.state-backend",
            Severity.ERROR,
            site,
            "state_backend.country",
            f"state backend declared in {backend.country}, outside {home}",
        )
    else:
        yield _r("residency.state-backend", Severity.INFO, site, "state_backend.url", f"state kept in {home}")


def check_versions(site: Site, as_of: date) -> Iterator[Result]:
    g = site.gpu_stack
    minimum = catalog.CUDA_MIN_DRIVER.get(g.cuda)
    if minimum is None:
        yield _r(
            "compat.cuda-driver",
            Severity.ERROR,
            site,
            "gpu_stack.cuda",
            f"CUDA {g.cuda} is not in the compatibility table ({', '.join(catalog.CUDA_MIN_DRIVER)}); "
            f"source: {catalog.CUDA_RELEASE_NOTES}",
        )
    elif g.driver_at_least(minimum):
        yield _r(
            "compat.cuda-driver", Severity.INFO, site, "gpu_stack.driver", f"{g.driver} >= {minimum} for CUDA {g.cuda}"
        )
    else:
        floor = catalog.CUDA_MAJOR_DRIVER_FLOOR.get(g.cuda_major)
        if floor and g.driver_at_least(floor):
            yield _r(
                "compat.cuda-driver",
                Severity.WARNING,
                site,
                "gpu_stack.driver",
                f"{g.driver} is below {minimum} (CUDA {g.cuda}); runs only under minor-version "
                f"compatibility, without PTX JIT ({catalog.CUDA_MINOR_COMPAT})",
            )
        else:
            yield _r(
                "compat.cuda-driver",
                Severity.ERROR,
                site,
                "gpu_stack.driver",
                f"{g.driver} is below {minimum}, the minimum for CUDA {g.cuda} ({catalog.CUDA_RELEASE_NOTES})",
            )
    for i, pool in enumerate(site.pools):
        sku = pool.spec
        if not g.driver_at_least(sku.min_driver):
            yield _r(
                "compat.sku-driver",
                Severity.ERROR,
                site,
                f"pools[{i}].sku",
                f"{sku.name} needs driver >= {sku.min_driver}, site declares {g.driver} ({sku.source})",
            )
        elif Version.parse(g.cuda) < Version.parse(sku.min_cuda):
            yield _r(
                "compat.sku-driver",
                Severity.ERROR,
                site,
                f"pools[{i}].sku",
                f"{sku.name} ({sku.architecture}) needs CUDA >= {sku.min_cuda}, site declares {g.cuda}",
            )
        else:
            yield _r("compat.sku-driver", Severity.INFO, site, f"pools[{i}].sku", f"{sku.name} supported by {g.driver}")
    if int(g.nccl_cuda.split(".")[0]) != g.cuda_major:
        yield _r(
            "compat.nccl-cuda",
            Severity.ERROR,
            site,
            "gpu_stack.nccl",
            f"NCCL {g.nccl} is built for CUDA {g.nccl_cuda}, the site runs CUDA {g.cuda}: majors differ",
        )
    else:
        yield _r("compat.nccl-cuda", Severity.INFO, site, "gpu_stack.nccl", f"built for CUDA {g.cuda_major}")
    branches = catalog.GPU_OPERATOR_DRIVER_BRANCHES.get(g.operator_release)
    if branches is None:
        yield _r(
            "compat.operator-driver",
            Severity.ERROR,
            site,
            "gpu_stack.gpu_operator",
            f"gpu-operator {g.gpu_operator} is not in the support table "
            f"({', '.join(catalog.GPU_OPERATOR_DRIVER_BRANCHES)}); source: {catalog.GPU_OPERATOR_SUPPORT}",
        )
    elif g.driver_branch not in branches:
        yield _r(
            "compat.operator-driver",
            Severity.ERROR,
            site,
            "gpu_stack.gpu_operator",
            f"gpu-operator {g.gpu_operator} supports driver branches "
            f"{', '.join(map(str, sorted(branches)))}, not R{g.driver_branch} ({catalog.GPU_OPERATOR_SUPPORT})",
        )
    else:
        yield _r(
            "compat.operator-driver",
            Severity.INFO,
            site,
            "gpu_stack.gpu_operator",
            f"{g.gpu_operator} supports R{g.driver_branch}",
        )
    eol = catalog.DRIVER_BRANCH_EOL.get(g.driver_branch)
    if eol and eol < as_of:
        yield _r(
            "compat.driver-eol",
            Severity.WARNING,
            site,
            "gpu_stack.driver",
            f"driver branch R{g.driver_branch} reached end of support on {eol} ({catalog.DRIVER_LIFECYCLE})",
        )


def site_networks(site: Site) -> list[tuple[str, IPv4Network]]:
    n = site.network
    nets = [
        ("network.management.cidr", n.management.cidr),
        ("network.bmc.cidr", n.bmc.cidr),
        ("network.storage.cidr", n.storage.cidr),
        ("network.pods", n.pods),
        ("network.services", n.services),
    ]
    nets += [(f"network.fabric.rails[{i}].cidr", r.cidr) for i, r in enumerate(n.fabric.rails)]
    return nets


def check_network(site: Site) -> Iterator[Result]:
    nets = site_networks(site)
    clean = True
    for i, (pa, a) in enumerate(nets):
        for pb, b in nets[i + 1 :]:
            if a.overlaps(b):
                clean = False
                yield _r("net.overlap", Severity.ERROR, site, pb, f"{b} overlaps {pa} ({a})")
    if clean:
        yield _r("net.overlap", Severity.INFO, site, "network", f"{len(nets)} networks, no overlap")

    n = site.network
    top = max((p.ip_offset + p.count - 1) for p in site.pools)
    for path, net in (("network.management.cidr", n.management.cidr), ("network.storage.cidr", n.storage.cidr)):
        if top >= net.num_addresses - 1:
            yield _r(
                "net.capacity",
                Severity.ERROR,
                site,
                path,
                f"{net} has {net.num_addresses - 2} host addresses; the pools need host number {top}",
            )
        else:
            yield _r("net.capacity", Severity.INFO, site, path, f"host numbers up to {top} fit in {net}")
    for subnet_path, subnet in (
        ("network.management", n.management),
        ("network.bmc", n.bmc),
        ("network.storage", n.storage),
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
        need = nodes * n.fabric.per_node_block
        if rail.cidr.num_addresses < need:
            yield _r(
                "net.capacity",
                Severity.ERROR,
                site,
                f"network.fabric.rails[{i}].cidr",
                f"{rail.cidr} has {rail.cidr.num_addresses} addresses; {nodes} nodes x "
                f"{n.fabric.per_node_block} per node need {need}",
            )
    pod_blocks = 2 ** max(0, 24 - n.pods.prefixlen)
    if pod_blocks < nodes:
        yield _r(
            "net.capacity",
            Severity.ERROR,
            site,
            "network.pods",
            f"{n.pods} holds {pod_blocks} node /24 blocks for {nodes} nodes",
        )
    for i, pool in enumerate(site.pools):
        if len(n.fabric.rails) != pool.spec.compute_nics:
            yield _r(
                "net.rails",
                Severity.ERROR,
                site,
                "network.fabric.rails",
                f"{len(n.fabric.rails)} rails, but {pool.spec.name} (pools[{i}]) has "
                f"{pool.spec.compute_nics} compute NICs: one rail per NIC",
            )
        else:
            yield _r("net.rails", Severity.INFO, site, f"pools[{i}]", f"{pool.spec.compute_nics} NICs, one rail each")
    for i, pool in enumerate(site.pools):
        lo, hi = pool.ip_offset, pool.ip_offset + pool.count - 1
        for j, other in enumerate(site.pools[:i]):
            olo, ohi = other.ip_offset, other.ip_offset + other.count - 1
            if lo <= ohi and olo <= hi:
                yield _r(
                    "net.pool-ranges",
                    Severity.ERROR,
                    site,
                    f"pools[{i}].ip_offset",
                    f"host numbers {lo}-{hi} overlap pools[{j}] ({olo}-{ohi})",
                )
    seen_bmc: dict[str, str] = {}
    seen_mac: dict[str, str] = {}
    for i, pool in enumerate(site.pools):
        for k, node in enumerate(pool.nodes):
            path = f"pools[{i}].nodes[{k}]"
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
                    yield _r("net.unique", Severity.ERROR, site, f"{path}.{key}", f"{value} is also {seen[value]}")
                seen[value] = path


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


def check_tenants(site: Site) -> Iterator[Result]:
    total = sum(t.gpu_quota for t in site.tenants)
    if total > site.gpu_total:
        yield _r(
            "tenants.quota",
            Severity.ERROR,
            site,
            "tenants",
            f"quotas add up to {total} GPUs; the site has {site.gpu_total}",
        )
    else:
        yield _r("tenants.quota", Severity.INFO, site, "tenants", f"{total} of {site.gpu_total} GPUs allotted")
    largest = max(p.spec.gpu_count for p in site.pools)
    for i, t in enumerate(site.tenants):
        if t.max_gpus_per_pod > largest:
            yield _r(
                "tenants.pod-size",
                Severity.WARNING,
                site,
                f"tenants[{i}].max_gpus_per_pod",
                f"{t.max_gpus_per_pod} GPUs per pod, but no node has more than {largest}",
            )


def check_secrets(stack: Stack) -> Iterator[Result]:
    """The loader already refuses plaintext credentials; this records, per pool, what was checked."""
    for pool in stack.site.pools:
        if pool.name in stack.credentials:
            yield Result(
                "secrets.bmc", Severity.INFO, stack.name, f"{CREDENTIALS_KEY}.{pool.name}.password", "Pulumi secret"
            )


POLICIES: list[PolicyInfo] = [
    PolicyInfo("residency", "Data, mirrors and state stay in the site's country", check_residency),
    PolicyInfo("compat", "Driver, CUDA, NCCL and GPU operator versions are compatible", check_versions),
    PolicyInfo("net", "Network plan: no overlaps, enough addresses, one rail per NIC", check_network),
    PolicyInfo("secrets", "Every credential is a Pulumi secret", check_secrets),
    PolicyInfo("tenants", "Tenant quotas fit the site's GPUs", check_tenants),
]


def evaluate(stack: Stack, as_of: date | None = None) -> list[Result]:
    as_of = as_of or date.today()
    site = stack.site
    results = [
        *check_residency(site),
        *check_versions(site, as_of),
        *check_network(site),
        *check_secrets(stack),
        *check_tenants(site),
    ]
    return results


def evaluate_sites(stacks: list[Stack], only: set[str] | None = None, as_of: date | None = None) -> list[Result]:
    only = only if only is not None else {s.name for s in stacks}
    results: list[Result] = []
    for s in stacks:
        if s.name in only:
            results.extend(evaluate(s, as_of))
    results.extend(check_cross_site(stacks, only))
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return sorted(results, key=lambda r: (r.site, order[r.severity], r.id, r.path))
