"""Facts about hardware and NVIDIA software that sites refer to by name.

Every fact lives here once, with its source, so that the Pulumi program, the Ansible
inventories, the testinfra expectations and the policies all read the same value.
Stacks name a SKU (``dgx-h100``); they never restate how many GPUs it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from .source import Source as Source
from .supply import DRA_DRIVER_IMAGES as DRA_DRIVER_IMAGES
from .supply import GPU_OPERATOR_IMAGES as GPU_OPERATOR_IMAGES
from .supply import NETWORK_OPERATOR_IMAGES as NETWORK_OPERATOR_IMAGES
from .supply import NETWORK_OPERATOR_RELEASE_KEYS as NETWORK_OPERATOR_RELEASE_KEYS
from .supply import Image as Image


@dataclass(frozen=True)
class Threshold:
    value: float
    unit: str
    source: Source


@dataclass(frozen=True)
class Port:
    """One network port of a system, as the system's user guide names it."""

    label: str  # the port's name on the chassis (OSFP4P2)
    pci: str  # PCI bus address (0000:18:00.0)
    rdma: str  # RDMA device (NCCL_IB_HCA, the RDMA device plugin)
    netdev_ib: str  # netdev name with the port in InfiniBand mode
    netdev_eth: str  # netdev name with the port in Ethernet (RoCE) mode
    role: str  # compute | storage | in-band
    gpu: int | None = None  # the GPU this compute port sits beside (rail order)

    def netdev(self, fabric: str) -> str:
        return self.netdev_ib if fabric == "infiniband" else self.netdev_eth


@dataclass(frozen=True)
class PortMap:
    ports: tuple[Port, ...]
    source: Source

    @property
    def compute(self) -> tuple[Port, ...]:
        """Compute ports in rail order: rail N is the port beside GPU N."""
        return tuple(sorted((p for p in self.ports if p.role == "compute"), key=lambda p: p.gpu or 0))


_DGX_H100_PORTS_SOURCE = Source(
    "NVIDIA DGX H100/H200 User Guide, Network Connections: Table 5 (Network Port Mapping: port, PCI bus, "
    "default and optional netdev, RDMA device) and Table 6 (Network Modules: GPU beside each OSFP port)",
    "https://docs.nvidia.com/dgx/dgxh100-user-guide/introduction-to-dgxh100.html#network-ports",
)


def _port(label: str, bus: str, rdma: str, names: tuple[str, str], role: str, *, gpu: int | None = None) -> Port:
    return Port(label, f"0000:{bus}", rdma, names[0], names[1], role, gpu)


# DGX H100 and DGX H200 share the chassis, the ports and the guide. The slot ports are dual-port
# cards whose default personality differs per port (P1 InfiniBand, P2 Ethernet); both names are listed.
DGX_H100_PORTS = PortMap(
    (
        _port("OSFP4P2", "18:00.0", "mlx5_0", ("ibp24s0", "enp24s0np0"), "compute", gpu=0),
        _port("OSFP3P2", "40:00.0", "mlx5_3", ("ibp64s0", "enp64s0np0"), "compute", gpu=1),
        _port("OSFP3P1", "4f:00.0", "mlx5_4", ("ibp79s0", "enp79s0np0"), "compute", gpu=2),
        _port("OSFP4P1", "5e:00.0", "mlx5_5", ("ibp94s0", "enp94s0np0"), "compute", gpu=3),
        _port("OSFP1P2", "9a:00.0", "mlx5_6", ("ibp154s0", "enp154s0np0"), "compute", gpu=4),
        _port("OSFP2P2", "c0:00.0", "mlx5_9", ("ibp192s0", "enp192s0np0"), "compute", gpu=5),
        _port("OSFP2P1", "ce:00.0", "mlx5_10", ("ibp206s0", "enp206s0np0"), "compute", gpu=6),
        _port("OSFP1P1", "dc:00.0", "mlx5_11", ("ibp220s0", "enp220s0np0"), "compute", gpu=7),
        _port("Slot1 P1", "aa:00.0", "mlx5_7", ("ibp170s0f0", "enp170s0f0np0"), "storage"),
        _port("Slot1 P2", "aa:00.1", "mlx5_8", ("ibp170s0f1", "enp170s0f1np1"), "storage"),
        _port("Slot2 P1", "29:00.0", "mlx5_1", ("ibp41s0f0", "enp41s0f0np0"), "storage"),
        _port("Slot2 P2", "29:00.1", "mlx5_2", ("ibp41s0f1", "enp41s0f1np1"), "storage"),
        _port("Slot3 P1", "82:00.0", "irdma0", ("", "ens6f0"), "in-band"),
        _port("Slot3 P2", "82:00.1", "irdma1", ("", "ens6f1"), "in-band"),
    ),
    _DGX_H100_PORTS_SOURCE,
)


@dataclass(frozen=True)
class Sku:
    name: str
    gpu_model: str
    # What `nvidia-smi -q -x` reports as <product_name>; verify compares against it.
    gpu_product_prefix: str
    gpu_count: int
    # None where no NVIDIA source this project holds states it (the GB200 tray): never guessed.
    gpu_memory_gb: int | None
    architecture: str
    compute_nics: int
    compute_nic_model: str
    compute_nic_gbps: int
    nvlink_gbps_per_gpu: int | None
    nvlinks_per_gpu: int | None
    power_kw: float | None
    nvswitch: bool
    min_cuda: str
    min_driver: str
    source: Source
    # Single-node all_reduce_perf bus bandwidth an 8-GPU node must reach; None where no
    # public threshold exists (the check is then skipped with that reason).
    allreduce_busbw: Threshold | None = None
    # NVLink generation: 5 (Blackwell) adds the NVLink subnet manager beside Fabric Manager.
    nvlink_generation: int = 4
    # The system's network ports; None where no NVIDIA source for them was available: such
    # nodes get no rail resources and NCCL picks its HCAs itself (policy net.port-map says so).
    ports: PortMap | None = None
    # GPUDirect RDMA write bandwidth each compute HCA must reach (ib_write_bw --use_cuda).
    gdr_write_gbps: Threshold | None = None
    # The node's CPU architecture, as Python's platform.machine() and PyPI's wheel tags name it: it
    # picks the redistributable a node takes. DGX H100/H200 (2 x Intel Xeon Platinum 8480C) and DGX
    # B200 (2 x Intel Xeon Platinum 8570) are x86_64 (each system's user guide, hardware overview).
    cpu_arch: str = "x86_64"
    # NVSwitch chips in the node (DGX B200: 2); None where the source does not count them.
    nvswitch_chips: int | None = None
    # All-reduce bus bandwidth a whole rack must reach (rack-scale SKUs): measured across the rack's
    # NVLink domain, never a single tray's threshold.
    rack_allreduce_busbw: Threshold | None = None
    # Rack-scale systems (GB200 NVL72): a node is one compute tray, and a rack of trays is one
    # multi-node NVLink domain, run by IMEX. None for systems whose NVLink domain is the node.
    rack: RackSpec | None = None

    @property
    def mnnvl(self) -> bool:
        """Whether the node's NVLink domain spans other nodes (multi-node NVLink, IMEX)."""
        return self.rack is not None


@dataclass(frozen=True)
class RackSpec:
    """What one rack of a rack-scale system holds (its NVLink domain)."""

    compute_trays: int
    switch_trays: int
    source: Source


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
_HGX_B200_SUPPORT = Source(
    "NVIDIA GPU Operator documentation, Platform Support (NVIDIA/cloud-native-docs gpu-operator/"
    "platform-support.rst): HGX B200 supported from driver 570.133.20",
    "https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/platform-support.html",
)
_AZ_H100_GDR = Source(
    "Azure/azurehpc-health-checks README, checks table: check_ib_bw_gdr 380 Gb/s per HCA on ND H100 v5 "
    "(ib_write_bw with GPU memory, 400G NDR)",
    "https://github.com/Azure/azurehpc-health-checks",
)
_AZ_H200 = Source(
    "Azure/azurehpc-health-checks conf/nd96isr_h200_v5.conf (check_nccl_allreduce 431 GB/s at 16 GB)",
    "https://github.com/Azure/azurehpc-health-checks",
)

_DGX_GB200_GUIDE = Source(
    "NVIDIA DGX GB Rack Scale Systems User Guide, Hardware: rack configuration and compute tray",
    "https://docs.nvidia.com/dgx/dgxgb200-user-guide/hardware.html",
)
_CW_NVL72 = Source(
    "coreweave/nccl-tests pull request 43, a full NVL72 rack (72 GPUs, one NVLink domain): all_reduce_perf "
    "out-of-place busbw 839.16 GB/s at 4 GiB; one rack, one measurement by a cloud operator, not an NVIDIA "
    "figure, and a rack's, not a tray's",
    "https://github.com/coreweave/nccl-tests/pull/43",
)
# CUDA 12.8's minimum driver (CUDA_MIN_DRIVER below states it; named here for the SKU table).
CUDA_MIN_DRIVER_12_8 = "570.26"

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
        ports=DGX_H100_PORTS,
        gdr_write_gbps=Threshold(380, "Gb/s", _AZ_H100_GDR),
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
        ports=DGX_H100_PORTS,
    ),
    # DGX B200 User Guide, "DGX B200 Component Descriptions": "8 x NVIDIA B200 GPUs that provide
    # 1,440 GB total GPU memory" (180 GB each; the BasePOD reference architecture: "eight 180 GB B200
    # GPUs"); "2 x 5th generation NVLink switches that provide 14.4 TB/s aggregate bandwidth"
    # (1.8 TB/s per GPU); "4 x OSFP ports for 8 x NVIDIA ConnectX-7 Single Port Cards ... InfiniBand
    # (default): Up to 400Gbps" for the cluster; "2 x NVIDIA BlueField-3 DPU Dual Port Cards" for
    # storage and in-band management; power "14.3 kW max." from 6 x 3.3 kW supplies (5+1). No NVIDIA
    # source gives its port table (PCI address, netdev, RDMA device): `aifactory topology` reads it
    # from a node and the pool records it (pools[].topology).
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
        nvswitch_chips=2,
        # Blackwell (sm_100) first appears in CUDA 12.8; NVIDIA supports HGX B200 from driver
        # 570.133.20 on (GPU operator platform support), above CUDA 12.8's own floor of 570.26.
        min_cuda="12.8",
        min_driver="570.133.20",
        source=_HGX_B200_SUPPORT,
        # NVIDIA publishes no all-reduce figure for 8 x B200 and no health checker this project
        # draws on has one: verify skips the check with that reason rather than invent one.
        allreduce_busbw=None,
        nvlink_generation=5,
    ),
    # DGX GB200 User Guide, "Hardware": a rack of "18x 1RU compute trays, each with 2 Grace CPUs and
    # 4 Blackwell GPUs" and "9x 1RU NVLink switch trays"; per tray "4x NVIDIA ConnectX-7 single port
    # 400G OSFP NIC" for the cluster network and 2 BlueField-3 for storage and management. A node of
    # this SKU is one compute tray; its NVLink domain is the rack. The GPU operator lists HGX GB200
    # NVL72 among its ARM-based platforms (platform-support.rst, vendored). The NVSwitches are in the
    # rack's switch trays: a compute tray runs no Fabric Manager (NVIDIA's driver container starts one
    # only where NVSwitch devices or NVLink5 switch management are local, ubuntu22.04/nvidia-driver).
    # Not in any NVIDIA source held here, so not stated: per-GPU memory, NVLinks per GPU, tray power.
    "gb200-nvl72": Sku(
        name="gb200-nvl72",
        gpu_model="GB200 NVL72 compute tray (4 Blackwell GPUs, 2 Grace CPUs)",
        # NVIDIA's CUDA Programming Guide names it so (compute capability 10.0: "NVIDIA GB200, NVIDIA B200").
        gpu_product_prefix="NVIDIA GB200",
        gpu_count=4,
        gpu_memory_gb=None,
        architecture="blackwell",
        compute_nics=4,
        compute_nic_model="ConnectX-7",
        compute_nic_gbps=400,
        nvlink_gbps_per_gpu=None,
        nvlinks_per_gpu=None,
        power_kw=None,
        nvswitch=False,
        # Blackwell's first toolkit, and its driver floor (CUDA release notes, table 3): the
        # ComputeDomain floor of the DRA driver (policy compat.computedomain-driver) is above it.
        min_cuda="12.8",
        min_driver=CUDA_MIN_DRIVER_12_8,
        source=_DGX_GB200_GUIDE,
        allreduce_busbw=None,
        rack_allreduce_busbw=Threshold(839, "GB/s", _CW_NVL72),
        nvlink_generation=5,
        cpu_arch="aarch64",
        rack=RackSpec(compute_trays=18, switch_trays=9, source=_DGX_GB200_GUIDE),
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
    "12.8": CUDA_MIN_DRIVER_12_8,
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
# Branches and the month their support ends. R535 and R580 are long-term support branches (dates
# from the table). R570 was a production branch: one year of support from its first production
# release (570.86.15, January 2025); the table of the R615 release no longer lists it.
DRIVER_BRANCH_EOL: dict[int, date] = {535: date(2026, 6, 30), 570: date(2026, 1, 31), 580: date(2028, 6, 30)}

GPU_OPERATOR_LIFECYCLE = Source(
    "NVIDIA GPU Operator life cycle policy (NVIDIA/cloud-native-docs gpu-operator/life-cycle-policy.rst): "
    "a major release is generally available, then in maintenance, then end of life; the table lists "
    "25.10.x and older as end of support",
    "https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/life-cycle-policy.html",
)
# GPU operator major releases past their end of support.
GPU_OPERATOR_END_OF_SUPPORT: frozenset[str] = frozenset({"24.6", "24.9", "25.3", "25.10"})

# NCCL detects the RoCE v2 GID itself from 2.21 on and warns when an index is forced
# (NCCL 2.21 release notes, "Add support for IB_GID_INDEX auto-detection").
NCCL_GID_AUTODETECT = "2.21.0"


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


# BareMetalHosts are written for this release of Metal3's baremetal-operator; its CRD schema is
# vendored under tests/fixtures/schemas and every planned host is validated against it.
METAL3_BAREMETAL_OPERATOR = "v0.9.3"
# Kubernetes minor releases the core objects are validated against (kubernetes-validate, strict):
# ValidatingAdmissionPolicy is GA from 1.30; the GPU operator's 25.x platform support runs to 1.34.
KUBERNETES_VERSIONS: tuple[str, ...] = ("1.30.0", "1.34.0")


# -- NVIDIA's DRA driver for GPUs (ComputeDomains, for multi-node NVLink) ---------------------------

DRA_DRIVER_CHART = Source(
    "kubernetes-sigs/dra-driver-nvidia-gpu (formerly NVIDIA/k8s-dra-driver-gpu) at each release tag: "
    "deployments/helm/nvidia-dra-driver-gpu (Chart.yaml kubeVersion, values.yaml image, the CRDs) and "
    "cmd/compute-domain-kubelet-plugin/main.go (vendored in tests/fixtures/schemas/dra-driver-nvidia-gpu)",
    "https://github.com/kubernetes-sigs/dra-driver-nvidia-gpu",
)


@dataclass(frozen=True)
class DraDriverRelease:
    """A release of the DRA driver's Helm chart and what it requires, as its own files state."""

    chart: str
    version: str
    image: Image
    # Chart.yaml's kubeVersion (">=1.32.0-0").
    kubernetes_min: str
    # IMEXDaemonsWithDNSNamesMinDriverVersion: the feature gate is on by default (beta from 25.8,
    # pkg/featuregates), so ComputeDomains need this driver or the kubelet plugin refuses to start.
    compute_domain_min_driver: str
    source: Source = DRA_DRIVER_CHART


DRA_DRIVER_RELEASES: dict[str, DraDriverRelease] = {
    "25.12.0": DraDriverRelease(
        chart="nvidia-dra-driver-gpu",
        version="25.12.0",
        image=DRA_DRIVER_IMAGES["25.12.0"],
        kubernetes_min="1.32.0",
        compute_domain_min_driver="570.158.01",
    ),
}

# Kubernetes serves DRA's resource.k8s.io/v1 and enables it by default from 1.34 (Kubernetes docs,
# "Dynamic Resource Allocation": "FEATURE STATE: Kubernetes v1.34 [stable] (enabled by default)");
# on 1.32 and 1.33 DRA is beta and off until the DynamicResourceAllocation gate and the
# resource.k8s.io/v1beta1 API are turned on.
DRA_DEFAULT_ON = Source(
    "Kubernetes documentation, Dynamic Resource Allocation: stable and enabled by default from v1.34",
    "https://kubernetes.io/docs/concepts/scheduling-eviction/dynamic-resource-allocation/",
)
KUBERNETES_DRA_DEFAULT = "1.34.0"

# NCCL supports Blackwell (sm_100) from 2.25.1: the release's commit "NCCL 2.25.1-1: Add
# Blackwell/SM100 support ... Add extra checks for IMEX setup, needed for MNNVL" (NVIDIA/nccl tag
# v2.25.1-1, vendored in tests/fixtures/schemas/nccl).
NCCL_BLACKWELL = Source(
    "NVIDIA/nccl tag v2.25.1-1, release commit: Add Blackwell/SM100 support",
    "https://github.com/NVIDIA/nccl/releases/tag/v2.25.1-1",
)
NCCL_BLACKWELL_MIN = "2.25.1"

# Coherent Driver Memory Management: on by default for GB200 on Kubernetes from driver 580.65.06,
# and "not compatible with the Multi-Instance GPUs (MIG) sharing" (NVIDIA recommends keeping it on).
CDMM = Source(
    "NVIDIA GPU Operator release notes 25.3.2 (NVIDIA/cloud-native-docs gpu-operator/release-notes.rst, vendored): "
    "from 580.65.06 CDMM is enabled by default to support GB200 on Kubernetes; CDMM is not compatible with MIG "
    "or GPUDirect Storage; it applies only to Grace-based systems",
    "https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/release-notes.html",
)
CDMM_DEFAULT_DRIVER = "580.65.06"
# With a pre-installed driver and the DRA driver: the nvidia-imex packages installed, the host
# service disabled and masked on every GPU node (roles/nvidia_imex does both).
IMEX_WITH_DRA = Source(
    "NVIDIA GPU Operator documentation, DRA Driver for NVIDIA GPUs, ComputeDomain prerequisites "
    "(NVIDIA/cloud-native-docs gpu-operator/dra-intro-install.rst, vendored)",
    "https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/dra-intro-install.html",
)
