"""Facts about hardware and NVIDIA software that sites refer to by name.

Every fact lives here once, with its source, so that the Pulumi program, the Ansible
inventories, the testinfra expectations and the policies all read the same value.
Stacks name a SKU (``dgx-h100``); they never restate how many GPUs it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class Source:
    """Where a fact comes from, so an auditor can check it."""

    title: str
    url: str = ""

    def __str__(self) -> str:
        return f"{self.title} ({self.url})" if self.url else self.title


@dataclass(frozen=True)
class Threshold:
    value: float
    unit: str
    source: Source


@dataclass(frozen=True)
class Sku:
    name: str
    gpu_model: str
    # What `nvidia-smi -q -x` reports as <product_name>; verify compares against it.
    gpu_product_prefix: str
    gpu_count: int
    gpu_memory_gb: int
    architecture: str
    compute_nics: int
    compute_nic_model: str
    compute_nic_gbps: int
    nvlink_gbps_per_gpu: int
    nvlinks_per_gpu: int
    power_kw: float
    nvswitch: bool
    min_cuda: str
    min_driver: str
    source: Source
    # Single-node all_reduce_perf bus bandwidth an 8-GPU node must reach; None where no
    # public threshold exists (the check is then skipped with that reason).
    allreduce_busbw: Threshold | None = None


_DGX_H100_GUIDE = Source(
    "NVIDIA DGX H100/H200 User Guide, hardware overview",
    "https://docs.nvidia.com/dgx/dgxh100-user-guide/introduction-to-dgxh100.html",
)
_DGX_B200_GUIDE = Source(
    "NVIDIA DGX B200 User Guide, hardware overview",
    "https://docs.nvidia.com/dgx/dgxb200-user-guide/introduction-to-dgxb200.html",
)
_AZ_H100 = Source(
    "Azure/azurehpc-health-checks conf/nd96isr_h100_v5.conf (check_nccl_allreduce 460 GB/s at 16 GB)",
    "https://github.com/Azure/azurehpc-health-checks",
)
_AZ_H200 = Source(
    "Azure/azurehpc-health-checks conf/nd96isr_h200_v5.conf (check_nccl_allreduce 431 GB/s at 16 GB)",
    "https://github.com/Azure/azurehpc-health-checks",
)

SKUS: dict[str, Sku] = {
    "dgx-h100": Sku(
        name="dgx-h100",
        gpu_model="H100 SXM5 80GB",
        gpu_product_prefix="NVIDIA H100",
        gpu_count=8,
        gpu_memory_gb=80,
        architecture="hopper",
        compute_nics=8,
        compute_nic_model="ConnectX-7",
        compute_nic_gbps=400,
        nvlink_gbps_per_gpu=900,
        nvlinks_per_gpu=18,
        power_kw=10.2,
        nvswitch=True,
        min_cuda="11.8",
        min_driver="520.61.05",
        source=_DGX_H100_GUIDE,
        allreduce_busbw=Threshold(460, "GB/s", _AZ_H100),
    ),
    "dgx-h200": Sku(
        name="dgx-h200",
        gpu_model="H200 SXM 141GB",
        gpu_product_prefix="NVIDIA H200",
        gpu_count=8,
        gpu_memory_gb=141,
        architecture="hopper",
        compute_nics=8,
        compute_nic_model="ConnectX-7",
        compute_nic_gbps=400,
        nvlink_gbps_per_gpu=900,
        nvlinks_per_gpu=18,
        power_kw=10.2,
        nvswitch=True,
        # DGX H200 ships with DGX OS 6 and the R550 driver; CUDA 12.4 is that branch's toolkit.
        min_cuda="12.4",
        min_driver="550.54.14",
        source=_DGX_H100_GUIDE,
        allreduce_busbw=Threshold(431, "GB/s", _AZ_H200),
    ),
    "dgx-b200": Sku(
        name="dgx-b200",
        gpu_model="B200 180GB",
        gpu_product_prefix="NVIDIA B200",
        gpu_count=8,
        gpu_memory_gb=180,
        architecture="blackwell",
        compute_nics=8,
        compute_nic_model="ConnectX-7",
        compute_nic_gbps=400,
        nvlink_gbps_per_gpu=1800,
        nvlinks_per_gpu=18,
        power_kw=14.3,
        nvswitch=True,
        # Blackwell (sm_100) first appears in CUDA 12.8, whose minimum driver is 570.26.
        min_cuda="12.8",
        min_driver="570.26",
        source=_DGX_B200_GUIDE,
        allreduce_busbw=None,
    ),
}

CUDA_RELEASE_NOTES = Source(
    "NVIDIA CUDA Toolkit Release Notes, Table 3: toolkit and minimum required driver version",
    "https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html",
)
CUDA_MINOR_COMPAT = Source(
    "NVIDIA CUDA Toolkit Release Notes, Table 2: minor version compatibility",
    "https://docs.nvidia.com/deploy/cuda-compatibility/",
)

# Minimum Linux driver for each CUDA toolkit release (GA of that minor release).
CUDA_MIN_DRIVER: dict[str, str] = {
    "11.8": "520.61.05",
    "12.0": "525.60.13",
    "12.1": "530.30.02",
    "12.2": "535.54.03",
    "12.3": "545.23.06",
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
}

# Minor-version compatibility: a toolkit of this major runs, with limitations (no PTX JIT of
# newer code), on any driver at or above this floor.
CUDA_MAJOR_DRIVER_FLOOR: dict[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}

GPU_OPERATOR_SUPPORT = Source(
    "NVIDIA GPU Operator documentation, Platform Support: GPU Operator Component Matrix "
    "(NVIDIA/cloud-native-docs gpu-operator/life-cycle-policy.rst)",
    "https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/platform-support.html",
)

# Driver branches each GPU operator major release lists as supported.
GPU_OPERATOR_DRIVER_BRANCHES: dict[str, frozenset[int]] = {
    "24.6": frozenset({560, 550, 535}),
    "24.9": frozenset({560, 550, 535}),
    "25.3": frozenset({580, 575, 570, 550, 535}),
    "25.10": frozenset({580, 575, 570, 535}),
}

DRIVER_LIFECYCLE = Source(
    "NVIDIA Data Center Drivers, supported drivers and branch end of life",
    "https://docs.nvidia.com/datacenter/tesla/drivers/index.html",
)
# Long-term support branches and the month their support ends.
DRIVER_BRANCH_EOL: dict[int, date] = {535: date(2026, 6, 30), 580: date(2028, 6, 30)}

NETWORK_OPERATOR_RELEASE = Source(
    "Mellanox/network-operator hack/release.yaml: component images tagged network-operator-v<release>",
    "https://github.com/Mellanox/network-operator",
)

# gpu-operator chart value keys this project sets, checked against
# NVIDIA/gpu-operator deployments/gpu-operator/values.yaml at v25.3.4 and v25.10.1
# (node-feature-discovery.* against its subchart, charts/node-feature-discovery/values.yaml).
GPU_OPERATOR_VALUE_KEYS: frozenset[str] = frozenset(
    {
        "cdi.enabled",
        "nfd.enabled",
        "operator.repository",
        "operator.initContainer.repository",
        "validator.repository",
        "driver.enabled",
        "toolkit.enabled",
        "toolkit.repository",
        "devicePlugin.enabled",
        "devicePlugin.repository",
        "dcgmExporter.enabled",
        "dcgmExporter.repository",
        "dcgmExporter.serviceMonitor.enabled",
        "gfd.enabled",
        "gfd.repository",
        "migManager.enabled",
        "migManager.repository",
        "migManager.config.default",
        "mig.strategy",
        "gdrcopy.enabled",
        "gdrcopy.repository",
        "daemonsets.tolerations",
        "node-feature-discovery.image.repository",
    }
)


@dataclass(frozen=True)
class Version:
    """A dotted numeric version such as 580.95.05 or 12.8."""

    parts: tuple[int, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, text: str) -> Version:
        return cls(tuple(int(p) for p in text.split(".")))

    def __lt__(self, other: Version) -> bool:
        return self.parts < other.parts

    def __le__(self, other: Version) -> bool:
        return self.parts <= other.parts

    def __str__(self) -> str:
        return ".".join(str(p) for p in self.parts)


def known_skus() -> str:
    return ", ".join(sorted(SKUS))
