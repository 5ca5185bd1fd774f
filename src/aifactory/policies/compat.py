"""Compatibility: driver, CUDA, NCCL, GPU operator and DRA driver versions (family ``compat``).

Every fact is NVIDIA's or the upstream project's, held in the catalog with its source and cited in
the message that uses it: the CUDA release notes' minimum drivers and minor-version compatibility
(catalog.CUDA_RELEASE_NOTES, CUDA_MINOR_COMPAT), each SKU's minimum driver and CUDA (its catalog
entry's source), the GPU operator's driver branches and life cycle (GPU_OPERATOR_SUPPORT,
GPU_OPERATOR_LIFECYCLE), driver branch end of life (DRIVER_LIFECYCLE), NCCL's Blackwell support
(NCCL_BLACKWELL), the DRA driver's ComputeDomain driver floor and chart kubeVersion
(DRA_DRIVER_RELEASES), DRA on by default (DRA_DEFAULT_ON) and CDMM against MIG (CDMM).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from .. import catalog
from ..catalog import Version
from ..model import Site, field_path
from .base import Policy, Result, Severity, report


def check_versions(site: Site, as_of: date) -> Iterator[Result]:
    g = site.gpu_stack
    minimum = catalog.CUDA_MIN_DRIVER.get(g.cuda)
    if minimum is None:
        yield report(
            "compat.cuda-driver",
            Severity.ERROR,
            site,
            field_path("gpu_stack", "cuda"),
            f"CUDA {g.cuda} is not in the compatibility table ({', '.join(catalog.CUDA_MIN_DRIVER)}); "
            f"source: {catalog.CUDA_RELEASE_NOTES}",
        )
    elif g.driver_at_least(minimum):
        yield report(
            "compat.cuda-driver",
            Severity.INFO,
            site,
            field_path("gpu_stack", "driver"),
            f"{g.driver} >= {minimum} for CUDA {g.cuda}",
        )
    else:
        floor = catalog.CUDA_MAJOR_DRIVER_FLOOR.get(g.cuda_major)
        if floor and g.driver_at_least(floor):
            yield report(
                "compat.cuda-driver",
                Severity.WARNING,
                site,
                field_path("gpu_stack", "driver"),
                f"{g.driver} is below {minimum} (CUDA {g.cuda}); runs only under minor-version "
                f"compatibility, without PTX JIT ({catalog.CUDA_MINOR_COMPAT})",
            )
        else:
            yield report(
                "compat.cuda-driver",
                Severity.ERROR,
                site,
                field_path("gpu_stack", "driver"),
                f"{g.driver} is below {minimum}, the minimum for CUDA {g.cuda} ({catalog.CUDA_RELEASE_NOTES})",
            )
    for i, pool in enumerate(site.pools):
        sku = pool.spec
        if not g.driver_at_least(sku.min_driver):
            yield report(
                "compat.sku-driver",
                Severity.ERROR,
                site,
                field_path("pools", i, "sku"),
                f"{sku.name} needs driver >= {sku.min_driver}, site declares {g.driver} ({sku.source})",
            )
        elif Version.parse(g.cuda) < Version.parse(sku.min_cuda):
            yield report(
                "compat.sku-driver",
                Severity.ERROR,
                site,
                field_path("pools", i, "sku"),
                f"{sku.name} ({sku.architecture}) needs CUDA >= {sku.min_cuda}, site declares {g.cuda}",
            )
        else:
            yield report(
                "compat.sku-driver",
                Severity.INFO,
                site,
                field_path("pools", i, "sku"),
                f"{sku.name} supported by {g.driver}",
            )
    if int(g.nccl_cuda.split(".")[0]) != g.cuda_major:
        yield report(
            "compat.nccl-cuda",
            Severity.ERROR,
            site,
            field_path("gpu_stack", "nccl"),
            f"NCCL {g.nccl} is built for CUDA {g.nccl_cuda}, the site runs CUDA {g.cuda}: majors differ",
        )
    else:
        yield report(
            "compat.nccl-cuda", Severity.INFO, site, field_path("gpu_stack", "nccl"), f"built for CUDA {g.cuda_major}"
        )
    branches = catalog.GPU_OPERATOR_DRIVER_BRANCHES.get(g.operator_release)
    if branches is None:
        yield report(
            "compat.operator-driver",
            Severity.ERROR,
            site,
            field_path("gpu_stack", "gpu_operator"),
            f"gpu-operator {g.gpu_operator} is not in the support table "
            f"({', '.join(catalog.GPU_OPERATOR_DRIVER_BRANCHES)}); source: {catalog.GPU_OPERATOR_SUPPORT}",
        )
    elif g.driver_branch not in branches:
        yield report(
            "compat.operator-driver",
            Severity.ERROR,
            site,
            field_path("gpu_stack", "gpu_operator"),
            f"gpu-operator {g.gpu_operator} supports driver branches "
            f"{', '.join(map(str, sorted(branches)))}, not R{g.driver_branch} ({catalog.GPU_OPERATOR_SUPPORT})",
        )
    else:
        yield report(
            "compat.operator-driver",
            Severity.INFO,
            site,
            field_path("gpu_stack", "gpu_operator"),
            f"{g.gpu_operator} supports R{g.driver_branch}",
        )
    if g.operator_release in catalog.GPU_OPERATOR_END_OF_SUPPORT:
        yield report(
            "compat.operator-eol",
            Severity.WARNING,
            site,
            field_path("gpu_stack", "gpu_operator"),
            f"gpu-operator {g.operator_release}.x is past its end of support ({catalog.GPU_OPERATOR_LIFECYCLE})",
        )
    eol = catalog.DRIVER_BRANCH_EOL.get(g.driver_branch)
    if eol and eol < as_of:
        yield report(
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
                yield report(
                    "compat.nccl-sku",
                    Severity.ERROR,
                    site,
                    field_path("gpu_stack", "nccl"),
                    f"NCCL {g.nccl_version} predates Blackwell support (from {catalog.NCCL_BLACKWELL_MIN}, "
                    f"{catalog.NCCL_BLACKWELL}); pools[{i}] is {sku.name}",
                )
            else:
                yield report(
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
            yield report(
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
            yield report(
                "compat.computedomain-driver",
                Severity.INFO,
                site,
                field_path("gpu_stack", "driver"),
                f"{g.driver} >= {floor.compute_domain_min_driver} for ComputeDomains",
            )
        if dra is None:
            yield report(
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
            yield report(
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
        yield report(
            pid,
            Severity.ERROR,
            site,
            field_path("kubernetes", "version"),
            f"the DRA driver {dra.version} needs Kubernetes >= {dra.kubernetes_min} (its chart's kubeVersion): "
            "declare the cluster's release",
        )
    elif Version.parse(declared) < Version.parse(dra.kubernetes_min):
        yield report(
            pid,
            Severity.ERROR,
            site,
            field_path("kubernetes", "version"),
            f"Kubernetes {declared} is below {dra.kubernetes_min}, the DRA driver {dra.version} chart's kubeVersion",
        )
    elif Version.parse(declared) < Version.parse(catalog.KUBERNETES_DRA_DEFAULT):
        yield report(
            pid,
            Severity.WARNING,
            site,
            field_path("kubernetes", "version"),
            f"on Kubernetes {declared} DRA is beta and off by default (on from {catalog.KUBERNETES_DRA_DEFAULT}, "
            f"{catalog.DRA_DEFAULT_ON}): the DynamicResourceAllocation gate and resource.k8s.io/v1beta1 must be on",
        )
    else:
        yield report(
            pid,
            Severity.INFO,
            site,
            field_path("kubernetes", "version"),
            f"Kubernetes {declared} serves DRA by default",
        )


POLICIES = (
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
)
