"""Everything a site's in-country mirrors must serve, derived from its stack alone.

The manifest is what a site must have mirrored before it goes dark to the outside: the apt packages
the roles install (per OS, with the versions the roles pin), the redistributables the nodes fetch
(with their digests), the images the operators pull and the charts Pulumi installs (with their
digests), and the repository keys (with their fingerprints). Digests come from the catalog
(catalog/supply.py), never from a mirror; an item whose digest no upstream file publishes carries
``digest: None`` and the reason, and policy supply.digests reports it.

Kubespray generates the same kind of list for its offline installs (contrib/offline/generate_list.sh).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..catalog import SKUS, supply
from ..catalog.supply import Digest, Image, Unpublished
from ..components.gpu_operator import enabled_components
from ..components.network import nic_components
from ..model import Site
from ..verify.expectations import expectations

# Debian's suite on the nodes the roles run on (roles/nvidia_base: Debian 12); Ubuntu's CUDA
# repository path per release is ubuntu<YYMM>/<arch> (roles/nvidia_base/tasks/sources_ubuntu.yml).
DEBIAN_SUITE = "bookworm"
UBUNTU_CUDA_RELEASES = ("ubuntu2204", "ubuntu2404")
# dpkg's name of each CPU architecture (Debian's archive layout: binary-<arch>).
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


PINNED_BY_ROLES = "the version the role pins (roles/*/vars, roles/*/defaults)"
SIGNED_INDEX = "apt checks it against the archive's signed index"


@dataclass(frozen=True)
class Item:
    """One thing a mirror must serve."""

    kind: str  # apt | file | image | chart | key
    mirror: str  # the field under mirrors: debian, ubuntu, cuda, artifacts, charts, containers
    name: str  # package, file name, image reference upstream, chart, key file
    version: str  # exact version, or the pattern the role pins (apt: 535.261.03-*); "" where unpinned
    arch: str  # amd64 / arm64 for apt, x86_64 / aarch64 for files; "" where it does not apply
    location: str  # where on the site's mirror (URL, image reference in the mirror)
    digest: str | None  # sha256:<hex> or a key fingerprint; None where unknown (see note)
    source: str  # where the digest or version comes from
    note: str = ""

    @property
    def key(self) -> tuple[str, ...]:
        return (self.kind, self.mirror, self.name, self.arch, self.version, self.location)


@dataclass(frozen=True)
class Manifest:
    site: str
    items: tuple[Item, ...]

    def to_json(self) -> str:
        return (
            json.dumps({"site": self.site, "items": [asdict(i) for i in self.items]}, indent=2, sort_keys=True) + "\n"
        )

    def to_text(self) -> str:
        """One line per item, in a stable order: two revisions' manifests diff line by line."""
        head = f"# mirror manifest of {self.site}: {len(self.items)} items"
        lines = [f"{head} (kind mirror name version arch digest location)"]
        for i in self.items:
            digest = i.digest or ("(apt: signed index)" if i.kind == "apt" else f"NO DIGEST ({i.note})")
            where = "" if i.kind == "apt" else f" at {i.location}"
            lines.append(f"{i.kind:5s} {i.mirror:10s} {i.name} {i.version or '-'} {i.arch or '-'} {digest}{where}")
        return "\n".join(lines) + "\n"

    def missing_digests(self) -> list[Item]:
        return [i for i in self.items if i.kind != "apt" and i.digest is None]


def site_arches(site: Site) -> list[str]:
    """CPU architectures of the site's nodes, from their SKUs (catalog)."""
    return sorted({SKUS[p.sku].cpu_arch for p in site.pools})


def _image_item(site: Site, what: str, image: Image) -> Item:
    repository, _ = image.mirrored(site.mirrors.containers.host)
    digest = supply.image_digest(image)
    location = f"{repository}/{image.name}:{image.tag}"
    if isinstance(digest, Digest):
        return Item(
            "image", "containers", image.reference, image.tag, "", f"{location}@sha256:{digest.sha256}",
            f"sha256:{digest.sha256}", str(digest.source), what,
        )  # fmt: skip
    note = digest.why if isinstance(digest, Unpublished) else "the catalog has no entry for this image"
    return Item("image", "containers", image.reference, image.tag, "", location, None, "", f"{what}: {note}")


def images(site: Site) -> list[Item]:
    """Each image the operators pull, once (two components may share one: the 25.10 validator is the operator)."""
    g = site.gpu_stack
    wanted = [(f"gpu-operator {g.gpu_operator} {c}", supply.GPU_OPERATOR_IMAGES[g.gpu_operator][c]) for c in
              enabled_components(site)]  # fmt: skip
    wanted += [
        (f"network operator {g.network_operator} {c}", supply.NETWORK_OPERATOR_IMAGES[g.network_operator][c])
        for c in nic_components(site)
    ]
    if g.dra_driver:
        wanted.append((f"DRA driver {g.dra_driver}", supply.DRA_DRIVER_IMAGES[g.dra_driver]))
    users: dict[Image, list[str]] = {}
    for what, image in wanted:
        users.setdefault(image, []).append(what)
    return [_image_item(site, ", ".join(whats), image) for image, whats in users.items()]


def charts(site: Site) -> list[Item]:
    g = site.gpu_stack
    wanted = [supply.GPU_OPERATOR_CHARTS[g.gpu_operator]]
    if g.dra_driver:
        wanted.append(supply.DRA_DRIVER_CHARTS[g.dra_driver])
    location = f"{site.mirrors.charts.url}/index.yaml"
    out = []
    for chart in wanted:
        if isinstance(chart.digest, Digest):
            out.append(Item("chart", "charts", chart.name, chart.version, "", location,
                            f"sha256:{chart.digest.sha256}", str(chart.digest.source)))  # fmt: skip
        else:
            out.append(Item("chart", "charts", chart.name, chart.version, "", location, None, "", chart.digest.why))
    return out


def nccl_name(site: Site, arch: str = "x86_64") -> str:
    """The redistributable's name on the artifact mirror (roles/nccl/vars/main.yml: nccl_redist_name): the
    x86_64 wheel under the name it always had, another CPU's with its architecture after the version."""
    g = site.gpu_stack
    suffix = "" if arch == "x86_64" else f"-{arch}"
    return f"nvidia-nccl-cu{g.nccl_cuda.split('.')[0]}-{g.nccl_version}{suffix}.whl"


def redistributables(site: Site) -> list[Item]:
    g = site.gpu_stack
    major = int(g.nccl_cuda.split(".")[0])
    out = []
    for arch in site_arches(site):
        wheel = supply.nccl_wheel(g.nccl_version, major, arch)
        # One file per CPU: a site of x86_64 DGX nodes and aarch64 GB200 trays serves both wheels.
        location = f"{site.mirrors.artifacts.url}/nccl/{nccl_name(site, arch)}"
        if wheel is None:
            note = f"NCCL {g.nccl_version} for CUDA {major} on {arch}: no PyPI digest in the catalog"
            out.append(
                Item("file", "artifacts", f"nvidia-nccl-cu{major}", g.nccl_version, arch, location, None, "", note)
            )
        else:
            digest, why = f"sha256:{wheel.sha256}", f"PyPI file {wheel.filename}"
            item = Item(
                "file", "artifacts", wheel.project, wheel.version, arch, location, digest, str(wheel.source), why
            )
            out.append(item)
    tree = supply.NCCL_TESTS
    location = f"{site.mirrors.artifacts.url}/nccl-tests/{tree.filename}"
    out.append(Item("file", "artifacts", tree.name, tree.version, "", location, f"sha256:{tree.sha256}",
                    str(tree.source), f"source built on GPU nodes (commit {tree.commit})"))  # fmt: skip
    return out


def keys(site: Site) -> list[Item]:
    fp = supply.CUDA_REPO_KEY_FINGERPRINT
    name = f"{fp[-8:].lower()}.pub"
    return [
        Item("key", "cuda", name, "", "", f"{site.mirrors.cuda.url}/{release}/x86_64/{name}", fp,
             str(supply.CUDA_REPO_KEY_SOURCE))
        for release in UBUNTU_CUDA_RELEASES
    ]  # fmt: skip


def pinned(site: Site) -> list[Item]:
    """The items whose digest the catalog holds (everything but apt, which apt checks from signed indexes)."""
    return [*redistributables(site), *images(site), *charts(site), *keys(site)]


def apt(root: Path, site: Site) -> list[Item]:
    """The packages the roles install, per OS, with the version each role pins.

    apt verifies each package against the archive's signed index (Debian's keyring, the CUDA key above),
    so the manifest carries no digest for them; `mirror check` reads the exact version and its SHA256
    from the mirror's own index.
    """
    seen: dict[tuple[str, ...], Item] = {}
    g = site.gpu_stack
    for pool in site.pools:
        node = next(n for n in site.nodes if n.pool == pool.name)
        e = expectations(root, site, node)
        # Each pool's packages for its own CPU (a GB200 tray is arm64: no NVSDM there, IMEX instead).
        machine = pool.spec.cpu_arch
        debian = [(p, f"{g.driver}-*") for p in e.driver_packages[f"debian/{machine}"]]
        debian += [(e.persistenced_package["debian"], "")] if e.persistenced_package["debian"] else []
        debian += [(p, f"{g.cuda}.*") for p in e.cuda_packages["debian"]]
        debian += [(p, "") for p in e.rdma_packages["debian"]]
        ubuntu_cuda = [(p, f"{g.driver}-*") for p in e.driver_packages[f"ubuntu/{machine}"]]
        ubuntu_cuda += [(p, f"{g.driver}-*") for p in e.imex_packages.get("ubuntu", [])]
        ubuntu_cuda += [(p, "") for p in e.cuda_packages["ubuntu"]]
        ubuntu_cuda += [(p, g.nccl) for p in ("libnccl2", "libnccl-dev")]
        for arch in [DEB_ARCH[machine]]:
            for mirror, packages in (
                ("debian", debian),
                ("cuda", ubuntu_cuda),
                ("ubuntu", [(p, "") for p in e.rdma_packages["ubuntu"]]),
            ):
                base = getattr(site.mirrors, mirror).url
                for name, version in packages:
                    item = Item("apt", mirror, name, version, arch, base, None, PINNED_BY_ROLES, SIGNED_INDEX)
                    seen.setdefault(item.key, item)
    return list(seen.values())


def manifest(root: Path, site: Site) -> Manifest:
    items = [*apt(root, site), *pinned(site)]
    return Manifest(site.code, tuple(sorted(items, key=lambda i: i.key)))


def host_of(item: Item) -> str:
    return urlsplit(item.location if "://" in item.location else f"//{item.location}").hostname or ""
