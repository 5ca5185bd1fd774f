"""Supply chain: every artifact the site takes is pinned by a digest with its source (family ``supply``).

The digests live in catalog/supply.py, each with the upstream file it was read from: the NCCL
wheels' sha256 from PyPI (nvidia-nccl-cuN), the images and charts of the GPU operator, network
operator and DRA driver releases, and NVIDIA's CUDA repository signing key
(supply.CUDA_REPO_KEY_SOURCE). An artifact no upstream file publishes a digest for is a named gap.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..catalog import supply
from ..model import Site, field_path
from .base import Policy, Result, Severity, report


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
            yield report(
                "supply.digests",
                Severity.ERROR,
                site,
                nccl,
                f"NCCL {g.nccl_version} for CUDA {major} on {arch} has no known digest (PyPI's nvidia-nccl-cu{major}): "
                "add its file's sha256 to catalog/supply.py, or pin a catalogued version; the nccl role refuses "
                "a download it cannot check",
            )
        else:
            yield report("supply.digests", Severity.INFO, site, nccl, f"{wheel.filename} sha256:{wheel.sha256[:12]}...")
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
                yield report(
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
        yield report(
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
        yield report(
            "supply.cuda-key",
            Severity.ERROR,
            site,
            key,
            f"{declared or 'no fingerprint'} is not NVIDIA's CUDA repository key {supply.CUDA_REPO_KEY_FINGERPRINT} "
            f"({supply.CUDA_REPO_KEY_SOURCE}): the roles pin the key apt trusts for NVIDIA's packages",
        )
    else:
        yield report("supply.cuda-key", Severity.INFO, site, key, "NVIDIA's CUDA repository key")


POLICIES = (
    Policy(
        "supply",
        "Every artifact the site takes is pinned by a digest with its source",
        "site",
        ("supply.digests", "supply.cuda-key"),
        lambda s: check_supply(s.stack.site),
    ),
)
