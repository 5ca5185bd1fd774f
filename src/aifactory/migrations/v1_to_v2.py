"""Format 1 -> 2: the site states the zones and ranges that prove an endpoint in-country.

Reads the shape of c620c59 (the first stacks), where an endpoint was in-country because it said so
(its declared ``country``); eb7cdc4 made residency a proof from the site's own
``jurisdiction.in_country`` (DNS suffixes and address ranges). The step writes down what the old
rule trusted: the nodes' own domain and every endpoint the revision declared in its country.
"""

from __future__ import annotations

from ipaddress import AddressValueError, IPv4Address
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .common import MigrationError, get, mappings

SOURCE = 1
INTRODUCED = "c620c597a8ea4a49fb2f5343098068c9e6d213f3"  # c620c59: the commit whose shape this step reads
WHAT = "jurisdiction.in_country stated"
HOW = (
    "add jurisdiction.in_country: {dns_suffixes: [the site's own zones], networks: [its address ranges]} "
    "(every endpoint must lie under or inside them)"
)


def carries(site: dict[str, Any]) -> bool:
    return isinstance(site.get("jurisdiction"), dict) and "in_country" not in site["jurisdiction"]


def _host(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _state_host(url: Any) -> str | None:
    """The host of a Pulumi state URL as the old residency rule read it (s3:// needs endpoint=)."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    if parts.scheme == "s3":
        endpoint = parse_qs(parts.query).get("endpoint", [""])[0]
        return (urlsplit(endpoint).hostname if "://" in endpoint else endpoint.rsplit(":", 1)[0]) or None
    return None if parts.scheme == "file" else parts.hostname


def _declared_hosts(site: dict[str, Any], home: str) -> list[str]:
    """Every endpoint host the revision declared in ``home``, in file order."""
    out: list[tuple[Any, Any]] = []
    mirrors = site.get("mirrors")
    if isinstance(mirrors, dict):
        for name in ("debian", "ubuntu", "cuda", "artifacts", "charts"):
            out.append((_host(get(mirrors, name, "url")), get(mirrors, name, "country")))
        registry = get(mirrors, "containers", "host")
        host = registry.split("/")[0].rsplit(":", 1)[0] if isinstance(registry, str) else None
        out.append((host, get(mirrors, "containers", "country")))
    store = get(site, "storage", "object_store")
    out.append((_host(get(store, "url")), get(store, "country")))
    for bucket in mappings(get(store, "buckets")):
        replication = bucket.get("replication")
        out.append((_host(get(replication, "endpoint")), get(replication, "country")))
    backend = site.get("state_backend")
    out.append((_state_host(get(backend, "url")), get(backend, "country")))
    return [h.lower() for h, country in out if isinstance(h, str) and h and country == home]


def upgrade(site: dict[str, Any]) -> list[str]:
    jurisdiction = site["jurisdiction"]
    if "in_country" in jurisdiction:
        return []
    home = jurisdiction.get("data_residency")
    if not isinstance(home, str):
        raise MigrationError("jurisdiction.data_residency is missing: no country to derive in_country for")
    domain = get(site, "network", "domain")
    suffixes: list[str] = [domain.lower()] if isinstance(domain, str) and domain else []
    networks: list[str] = []
    for host in _declared_hosts(site, home):
        try:
            address = f"{IPv4Address(host)}/32"
        except AddressValueError:
            if not any(host == s or host.endswith("." + s) for s in suffixes):
                suffixes.append(host)
            continue
        if address not in networks:
            networks.append(address)
    if not suffixes:
        raise MigrationError("no network.domain and no endpoint host named in the country: nothing proves residency")
    jurisdiction["in_country"] = {"dns_suffixes": suffixes, "networks": networks}
    return [
        f"jurisdiction.in_country was not stated: read as network.domain and every endpoint declared in {home} "
        f"(dns_suffixes {', '.join(suffixes)}; networks {', '.join(networks) or 'none'}), what residency "
        "trusted before eb7cdc4 (an endpoint's declared country)"
    ]
