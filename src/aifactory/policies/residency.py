"""Residency: the site's data, mirrors, state, DNS and NTP stay in its country (family ``residency``).

Where a host runs is proven only from the site's own declaration (``jurisdiction.in_country``: the
DNS zones and address ranges it operates) and each endpoint's declared ``country``; the hosts of
global public services below are refused outright. Across sites, no two countries may claim the
same zone or range, or a claim would prove nothing. These checks cannot be skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from ipaddress import IPv4Address, IPv4Network
from urllib.parse import parse_qs, urlsplit

from .. import grammar
from ..grammar import shown
from ..model import Site, field_path
from ..stackfile import Stack
from .base import Policy, Result, Severity, report

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
        yield report(
            pid,
            Severity.ERROR,
            site,
            field_path("jurisdiction", "data_residency"),
            f"site is in {site.country} but its data must reside in {home}",
        )
    else:
        yield report(
            pid,
            Severity.INFO,
            site,
            field_path("jurisdiction", "data_residency"),
            f"site in {home}, data to stay in {home}",
        )
    for i, suffix in enumerate(ic.dns_suffixes):
        if _public(suffix) or any(_under(p, [suffix]) for p in PUBLIC_SERVICE_SUFFIXES):
            yield report(
                "residency.suffixes",
                Severity.ERROR,
                site,
                field_path("jurisdiction", "in_country", "dns_suffixes", i),
                f"{suffix} covers global public services: an in-country suffix names only the site's own zone",
            )
    for i, net in enumerate(ic.networks):
        if net.prefixlen < 8:
            yield report(
                "residency.suffixes",
                Severity.ERROR,
                site,
                field_path("jurisdiction", "in_country", "networks", i),
                f"{net} is wider than a /8: no country operates it",
            )
    for fields, host, country in endpoints(site):
        if country != home:
            where = field_path(*fields[:-1], "country")
            yield report(pid, Severity.ERROR, site, where, f"{host} is declared in {country}, outside {home}")
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
        yield report(
            "residency.public-service",
            Severity.ERROR,
            site,
            path,
            f"{host} is a global public service; use the in-country mirror",
        )
    elif not located(site, host):
        yield report(
            pid,
            Severity.ERROR,
            site,
            path,
            f"{host} is not proven in {home}: it is neither under nor inside {_where(site)} (jurisdiction.in_country)",
        )
    else:
        yield report(pid, Severity.INFO, site, path, f"{host} in {home}")


def _check_state_backend(site: Site) -> Iterator[Result]:
    pid = "residency.state-backend"
    home = site.jurisdiction.data_residency
    backend = site.state_backend
    host, why = state_backend_host(backend.url)
    if host is None:
        yield report(
            pid, Severity.ERROR, site, field_path("state_backend", "url"), f"Pulumi state has no in-country host: {why}"
        )
    elif host == "":
        yield report(
            pid,
            Severity.WARNING,
            site,
            field_path("state_backend", "url"),
            "state on the local disk of whoever runs pulumi: it stays in "
            f"{home} only while that machine does; production sites use the in-country S3 store",
        )
    elif _public(host):
        yield report(pid, Severity.ERROR, site, field_path("state_backend", "url"), f"{host} is a public service")
    elif backend.country != home:
        yield report(
            pid,
            Severity.ERROR,
            site,
            field_path("state_backend", "country"),
            f"declared in {backend.country}, outside {home}",
        )
    elif not located(site, host):
        yield report(
            pid,
            Severity.ERROR,
            site,
            field_path("state_backend", "url"),
            f"{host} is not proven in {home}: it is neither under nor inside {_where(site)}",
        )
    else:
        yield report(pid, Severity.INFO, site, field_path("state_backend", "url"), f"state kept in {home} ({host})")


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
                yield report(
                    "residency.claims-sites",
                    Severity.ERROR,
                    me,
                    field_path("jurisdiction", "in_country", "dns_suffixes", i),
                    f"{suffix} overlaps {clash[0]}, claimed by site {name} ({other.jurisdiction.data_residency})",
                )
        for i, net in enumerate(mine.networks):
            clash_nets = [t for t in theirs.networks if t.overlaps(net)]
            if clash_nets:
                yield report(
                    "residency.claims-sites",
                    Severity.ERROR,
                    me,
                    field_path("jurisdiction", "in_country", "networks", i),
                    f"{net} overlaps {clash_nets[0]}, claimed by site {name} ({other.jurisdiction.data_residency})",
                )


POLICIES = (
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
)
