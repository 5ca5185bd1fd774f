"""What a site takes from outside, pinned: every artifact's version and its digest, with where each was read.

A sovereign site takes everything through in-country mirrors, so it must know, before it goes dark,
the exact bytes each mirror has to serve. Each entry here names the upstream file that publishes
the digest; tests/test_supply.py checks every entry against that file, vendored at the pinned
release (tests/fixtures/schemas, tests/fixtures/supply). Where no upstream file publishes a
digest, the entry says so (``Unpublished``) and policy ``supply.digests`` reports it: no digest
is ever made up here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .source import Source

# -- container images ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """An upstream image: registry path, name and tag. Mirrors keep the path below the registry host."""

    repository: str
    name: str
    tag: str

    @property
    def reference(self) -> str:
        return f"{self.repository}/{self.name}:{self.tag}"

    def mirrored(self, registry: str) -> tuple[str, str]:
        """(repository, tag) of this image in an in-country mirror registry."""
        return f"{registry}/{self.repository.split('/', 1)[1]}", self.tag


@dataclass(frozen=True)
class Digest:
    """The sha256 of an artifact (for an image: of its manifest, as a registry addresses it)."""

    sha256: str
    source: Source

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"not a sha256 digest: {self.sha256!r}")


@dataclass(frozen=True)
class Unpublished:
    """No upstream file publishes this artifact's digest: it is taken by tag, and policy supply.digests says so."""

    why: str


NETWORK_OPERATOR_RELEASE = Source(
    "Mellanox/network-operator hack/release.yaml at each release tag (vendored in tests/fixtures/schemas)",
    "https://github.com/Mellanox/network-operator",
)

# NicClusterPolicy components this project deploys, per network operator release, as each
# release's hack/release.yaml names them (tests/test_schemas.py checks every entry against it).
NETWORK_OPERATOR_IMAGES: dict[str, dict[str, Image]] = {
    "25.4.0": {
        "rdmaSharedDevicePlugin": Image("ghcr.io/mellanox", "k8s-rdma-shared-dev-plugin", "v1.5.3"),
        "cniPlugins": Image("ghcr.io/k8snetworkplumbingwg", "plugins", "v1.6.2-update.1"),
        "multus": Image("ghcr.io/k8snetworkplumbingwg", "multus-cni", "v4.1.0"),
        "ipoib": Image("ghcr.io/mellanox", "ipoib-cni", "v1.2.2"),
        "nvIpam": Image("ghcr.io/mellanox", "nvidia-k8s-ipam", "v0.3.7"),
        # Tenant partitions (tenancy.py): VFs of each rail as device-plugin resources, and the
        # InfiniBand partition keys programmed into the subnet manager for each pod's VF.
        "sriovDevicePlugin": Image("ghcr.io/k8snetworkplumbingwg", "sriov-network-device-plugin", "v3.9.0"),
        "ibKubernetes": Image("ghcr.io/mellanox", "ib-kubernetes", "v1.1.1"),
    },
    "25.7.0": {
        "rdmaSharedDevicePlugin": Image(
            "nvcr.io/nvidia/mellanox", "k8s-rdma-shared-dev-plugin", "network-operator-v25.7.0"
        ),
        "cniPlugins": Image("nvcr.io/nvidia/mellanox", "plugins", "network-operator-v25.7.0"),
        "multus": Image("nvcr.io/nvidia/mellanox", "multus-cni", "network-operator-v25.7.0"),
        "ipoib": Image("nvcr.io/nvidia/mellanox", "ipoib-cni", "network-operator-v25.7.0"),
        "nvIpam": Image("nvcr.io/nvidia/mellanox", "nvidia-k8s-ipam", "network-operator-v25.7.0"),
        "sriovDevicePlugin": Image(
            "nvcr.io/nvidia/mellanox", "sriov-network-device-plugin", "network-operator-v25.7.0"
        ),
        "ibKubernetes": Image("nvcr.io/nvidia/mellanox", "ib-kubernetes", "network-operator-v25.7.0"),
    },
}
# hack/release.yaml key of each NicClusterPolicy component above.
NETWORK_OPERATOR_RELEASE_KEYS: dict[str, str] = {
    "rdmaSharedDevicePlugin": "RdmaSharedDevicePlugin",
    "cniPlugins": "CniPlugins",
    "multus": "Multus",
    "ipoib": "Ipoib",
    "nvIpam": "nvIpam",
    "sriovDevicePlugin": "SriovDevicePlugin",
    "ibKubernetes": "IbKubernetes",
}

GPU_OPERATOR_VALUES = Source(
    "NVIDIA/gpu-operator deployments/gpu-operator/values.yaml at each chart tag (vendored in tests/fixtures/schemas)",
    "https://github.com/NVIDIA/gpu-operator",
)
# The gpu-operator components this project configures, per chart release: repository and image as
# the chart's values.yaml names them, the tag it defaults to (the operator's and, in 25.3, the
# validator's default to the chart's appVersion, which NVIDIA sets to the release at publication;
# node-feature-discovery's to its subchart's appVersion). tests/test_supply.py checks each.
GPU_OPERATOR_IMAGES: dict[str, dict[str, Image]] = {
    "v25.3.4": {
        "operator": Image("nvcr.io/nvidia", "gpu-operator", "v25.3.4"),
        "operator.initContainer": Image("nvcr.io/nvidia", "cuda", "13.0.1-base-ubi9"),
        "validator": Image("nvcr.io/nvidia/cloud-native", "gpu-operator-validator", "v25.3.4"),
        "toolkit": Image("nvcr.io/nvidia/k8s", "container-toolkit", "v1.17.8-ubuntu20.04"),
        "devicePlugin": Image("nvcr.io/nvidia", "k8s-device-plugin", "v0.17.4"),
        "dcgmExporter": Image("nvcr.io/nvidia/k8s", "dcgm-exporter", "4.3.1-4.4.0-ubuntu22.04"),
        "gfd": Image("nvcr.io/nvidia", "k8s-device-plugin", "v0.17.4"),
        "migManager": Image("nvcr.io/nvidia/cloud-native", "k8s-mig-manager", "v0.12.3-ubuntu20.04"),
        "node-feature-discovery.image": Image("registry.k8s.io/nfd", "node-feature-discovery", "v0.17.3"),
    },
    "v25.10.1": {
        "operator": Image("nvcr.io/nvidia", "gpu-operator", "v25.10.1"),
        "operator.initContainer": Image("nvcr.io/nvidia", "cuda", "13.0.1-base-ubi9"),
        # 25.10 ships the validator in the operator image.
        "validator": Image("nvcr.io/nvidia", "gpu-operator", "v25.10.1"),
        "toolkit": Image("nvcr.io/nvidia/k8s", "container-toolkit", "v1.18.1"),
        "devicePlugin": Image("nvcr.io/nvidia", "k8s-device-plugin", "v0.18.1"),
        "dcgmExporter": Image("nvcr.io/nvidia/k8s", "dcgm-exporter", "4.4.2-4.7.0-distroless"),
        "gfd": Image("nvcr.io/nvidia", "k8s-device-plugin", "v0.18.1"),
        "migManager": Image("nvcr.io/nvidia/cloud-native", "k8s-mig-manager", "v0.13.1"),
        "node-feature-discovery.image": Image("registry.k8s.io/nfd", "node-feature-discovery", "v0.18.2"),
    },
}


def _certified(operator: str, release: str) -> Source:
    return Source(
        f"relatedImages of the {operator} {release} bundle NVIDIA certified (redhat-openshift-ecosystem/"
        f"certified-operators operators/{operator}/{release}/manifests/{operator}.clusterserviceversion.yaml; "
        f"vendored as tests/fixtures/schemas/.../certified.csv.yaml)",
        "https://github.com/redhat-openshift-ecosystem/certified-operators",
    )


def _bundle(release: str) -> Source:
    return Source(
        f"relatedImages of NVIDIA/gpu-operator bundle/manifests/gpu-operator-certified.clusterserviceversion.yaml "
        f"at tag {release} (vendored as tests/fixtures/schemas/gpu-operator/{release}/bundle.csv.yaml), the same "
        "digests as the certified bundle of the release",
        "https://github.com/NVIDIA/gpu-operator",
    )


_G34, _G101 = _bundle("v25.3.4"), _bundle("v25.10.1")
_C34, _C101 = _certified("gpu-operator-certified", "v25.3.4"), _certified("gpu-operator-certified", "v25.10.1")
_N40, _N70 = _certified("nvidia-network-operator", "25.4.0"), _certified("nvidia-network-operator", "25.7.0")
_NFD = Unpublished(
    "node-feature-discovery is a subchart (kubernetes-sigs/node-feature-discovery): NVIDIA's bundles do not "
    "list it, and the registry.k8s.io promoter manifest stored here (kubernetes/k8s.io registry.k8s.io/images/"
    "k8s-staging-nfd/images.yaml) stops at v0.17.0"
)
_CNI = Unpublished(
    "the network operator's certified bundle lists no digest for Multus or the CNI plugins (OpenShift brings its "
    "own), and its hack/release.yaml gives tags only"
)

# NVIDIA's DRA driver for GPUs: one image per chart release, as its values.yaml names it (repository
# nvcr.io/nvidia/k8s-dra-driver-gpu) with the tag "v" + the chart's appVersion (templates/_helpers.tpl
# fullimage); tests/test_blackwell.py checks both against the chart vendored at the tag.
DRA_DRIVER_IMAGES: dict[str, Image] = {"25.12.0": Image("nvcr.io/nvidia", "k8s-dra-driver-gpu", "v25.12.0")}
_DRA = Unpublished(
    "the DRA driver's chart gives its image by tag only (values.yaml image.tag from appVersion); no NVIDIA bundle "
    "held here lists v25.12.0 (gpu-operator's v26.7.0 bundle lists the renamed dra-driver-nvidia-gpu v0.5.0, "
    "with a digest, for the operator-managed DRA driver)"
)

# The manifest digest of each image, keyed by its upstream reference (repository/name:tag).
IMAGE_DIGESTS: dict[str, Digest | Unpublished] = {
    # NVIDIA's DRA driver for GPUs 25.12.0
    "nvcr.io/nvidia/k8s-dra-driver-gpu:v25.12.0": _DRA,
    # gpu-operator v25.3.4
    "nvcr.io/nvidia/gpu-operator:v25.3.4": Digest(
        "2e86875d61c030a9bd348a18bde8c4caa3d0c430a1aac642086b9cb1b3e3b015", _C34
    ),
    "nvcr.io/nvidia/cloud-native/gpu-operator-validator:v25.3.4": Digest(
        "619e7bf48168d76a7e087c3bf6190fda9b10449c9839309fa4f9ed5b8a9e8804", _C34
    ),
    "nvcr.io/nvidia/cuda:13.0.1-base-ubi9": Digest(
        "d19fe621624c4eb6ac931b8558daa3ecc0c3f07f1e2a52e0267e083d22dceade", _G101
    ),
    "nvcr.io/nvidia/k8s/container-toolkit:v1.17.8-ubuntu20.04": Digest(
        "51c8f71d3b3c08ae4eb4853697e3f8e6f11e435e666e08210178e6a1faf8028f", _G34
    ),
    "nvcr.io/nvidia/k8s-device-plugin:v0.17.4": Digest(
        "3c54348fe5a57e5700e7d8068e7531d2ef2d5f3ccb70c8f6bac0953432527abd", _G34
    ),
    "nvcr.io/nvidia/k8s/dcgm-exporter:4.3.1-4.4.0-ubuntu22.04": Digest(
        "6bb786c41fa7b1a6238c023566fdeaeeea3ba842a8daec015a7bd85a8037b249", _G34
    ),
    "nvcr.io/nvidia/cloud-native/k8s-mig-manager:v0.12.3-ubuntu20.04": Digest(
        "3191cc0684e92d655e72fe9faf3da95fe6b8a6c2eb4ad396f75ba9b98c021aaf", _G34
    ),
    "registry.k8s.io/nfd/node-feature-discovery:v0.17.3": _NFD,
    # gpu-operator v25.10.1
    "nvcr.io/nvidia/gpu-operator:v25.10.1": Digest(
        "634471cdfedcc3bd6b4412a905a9fbc9a9bf91df7f436aa00454b088d087c60a", _C101
    ),
    "nvcr.io/nvidia/k8s/container-toolkit:v1.18.1": Digest(
        "ef2a0ef6bbf9c43529da3730974de9d51b8436c2314a68e718d437e6ab7c4b58", _G101
    ),
    "nvcr.io/nvidia/k8s-device-plugin:v0.18.1": Digest(
        "50ac011ab941ab0140d52f56aa0e2fdc553bca96836ab3b26be394fc823fd9e7", _G101
    ),
    "nvcr.io/nvidia/k8s/dcgm-exporter:4.4.2-4.7.0-distroless": Digest(
        "7c0ac4430bb0a5868b7404a0e06c47e02b0375b61aadd614385ad0bc2d43815a", _G101
    ),
    "nvcr.io/nvidia/cloud-native/k8s-mig-manager:v0.13.1": Digest(
        "8e0803d2f29776cd4cc0501381a20a0b04b2da507a794d66a15894c57beaadb5", _G101
    ),
    "registry.k8s.io/nfd/node-feature-discovery:v0.18.2": _NFD,
    # network operator 25.4.0
    "ghcr.io/mellanox/k8s-rdma-shared-dev-plugin:v1.5.3": Digest(
        "1eb5ab7f4b6f0cf89c954cf7ac8eb2e6fb2290a4f5f57417136a5302f20b12c8", _N40
    ),
    "ghcr.io/mellanox/ipoib-cni:v1.2.2": Digest(
        "513d88d639a01ef98b65365f711cee7fbaa166137a56245b7ab32818f745418e", _N40
    ),
    "ghcr.io/mellanox/nvidia-k8s-ipam:v0.3.7": Digest(
        "1b20b78f889339834ed74e0da621fc5da582719b2537b36d8967ddc6a04679b8", _N40
    ),
    "ghcr.io/k8snetworkplumbingwg/sriov-network-device-plugin:v3.9.0": Digest(
        "cabce074d10a0f1d62135e2cc5442d65b49094b95b8297fdd024a1a5f461319f", _N40
    ),
    "ghcr.io/mellanox/ib-kubernetes:v1.1.1": Digest(
        "9774f774df6ede9ddf780b9193ca9d919618056e682d985e6b41e477b13c3432", _N40
    ),
    "ghcr.io/k8snetworkplumbingwg/plugins:v1.6.2-update.1": _CNI,
    "ghcr.io/k8snetworkplumbingwg/multus-cni:v4.1.0": _CNI,
    # network operator 25.7.0
    "nvcr.io/nvidia/mellanox/k8s-rdma-shared-dev-plugin:network-operator-v25.7.0": Digest(
        "a87096761d155eeb6f470e042d2d167bb466d57e63b4aba957f57d745e15a9b2", _N70
    ),
    "nvcr.io/nvidia/mellanox/ipoib-cni:network-operator-v25.7.0": Digest(
        "7564ad1142c863e61f1dd84f5714deba9a7c6f6d85efb383ac3a2566eb4f4b71", _N70
    ),
    "nvcr.io/nvidia/mellanox/nvidia-k8s-ipam:network-operator-v25.7.0": Digest(
        "3f692273c1598525b9c698c9d9cd463e5ddc55b638c6c031639f38786fc67475", _N70
    ),
    "nvcr.io/nvidia/mellanox/sriov-network-device-plugin:network-operator-v25.7.0": Digest(
        "7508a160f3f124e0b78d2b4d5a52deca6b9f56e226fee957c4d156e425eb101a", _N70
    ),
    "nvcr.io/nvidia/mellanox/ib-kubernetes:network-operator-v25.7.0": Digest(
        "1fa251979b5f5201af50bc7aa6936829103d742f42bfbf752f20852f5fe44dfb", _N70
    ),
    "nvcr.io/nvidia/mellanox/plugins:network-operator-v25.7.0": _CNI,
    "nvcr.io/nvidia/mellanox/multus-cni:network-operator-v25.7.0": _CNI,
}
# relatedImages name, in NVIDIA's bundles, of each component above (tests/test_supply.py reads them).
GPU_OPERATOR_BUNDLE_NAMES: dict[str, str] = {
    "operator": "gpu-operator-image",
    "operator.initContainer": "init-container-image",
    "validator": "gpu-operator-validator-image",
    "toolkit": "container-toolkit-image",
    "devicePlugin": "device-plugin-image",
    "dcgmExporter": "dcgm-exporter-image",
    "gfd": "gpu-feature-discovery-image",
    "migManager": "mig-manager-image",
}
NETWORK_OPERATOR_BUNDLE_NAMES: dict[str, str] = {
    "rdmaSharedDevicePlugin": "rdma-shared-device-plugin",
    "ipoib": "ipoib-cni",
    "nvIpam": "nv-ipam",
    "sriovDevicePlugin": "sriov-network-device-plugin",
    "ibKubernetes": "ib-kubernetes",
}


def image_digest(image: Image) -> Digest | Unpublished | None:
    """The digest of an image, an upstream gap, or None where the catalog has no entry (an error)."""
    return IMAGE_DIGESTS.get(image.reference)


def pinned_version(image: Image) -> str:
    """The image's version as the operators take it: ``tag@sha256:...`` where the digest is known.

    Both operators build ``repository/image:version`` (gpu-operator api/nvidia/v1 ImagePath and its
    chart's fullimage helper, network-operator pkg/render imagePath), so the image is pulled as
    ``repo/name:tag@sha256:...``: the registry serves it by digest, and the tag only names it.
    """
    digest = image_digest(image)
    if digest is None:
        raise KeyError(f"the catalog has no digest entry for {image.reference}")
    return f"{image.tag}@sha256:{digest.sha256}" if isinstance(digest, Digest) else image.tag


# -- Helm charts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    name: str
    version: str
    # The chart repository's index.yaml lists each version's `digest` (the sha256 of its .tgz).
    digest: Digest | Unpublished


_NGC_INDEX = Unpublished(
    "the digest is in NVIDIA's chart repository index (helm.ngc.nvidia.com/nvidia/index.yaml), which no stored "
    "copy holds and these machines cannot reach; the chart's git tag carries version v1.0.0-devel, not the "
    "published chart"
)
GPU_OPERATOR_CHARTS: dict[str, Chart] = {v: Chart("gpu-operator", v, _NGC_INDEX) for v in GPU_OPERATOR_IMAGES}
DRA_DRIVER_CHARTS: dict[str, Chart] = {v: Chart("nvidia-dra-driver-gpu", v, _NGC_INDEX) for v in DRA_DRIVER_IMAGES}

# -- NCCL redistributables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Wheel:
    """An NCCL redistributable as NVIDIA publishes it on PyPI (nvidia-nccl-cu<major>)."""

    project: str
    version: str
    arch: str  # x86_64 | aarch64 (platform.machine() of the node)
    filename: str  # PyPI's file name
    sha256: str

    @property
    def source(self) -> Source:
        return Source(
            f"PyPI's simple index for {self.project} (PEP 691 JSON, hashes.sha256 of {self.filename}; "
            "vendored as tests/fixtures/supply/pypi-nvidia-nccl.json)",
            f"https://pypi.org/project/{self.project}/{self.version}/#files",
        )

    @property
    def cuda_major(self) -> int:
        return int(self.project.rsplit("-cu", 1)[1])


def _wheels(project: str, version: str, tag: str, digests: dict[str, str]) -> list[Wheel]:
    dist = project.replace("-", "_")
    return [
        Wheel(project, version, arch, f"{dist}-{version}-py3-none-{tag.format(arch=arch)}.whl", sha)
        for arch, sha in digests.items()
    ]


NCCL_REDISTRIBUTABLES: tuple[Wheel, ...] = (
    *_wheels(
        "nvidia-nccl-cu11",
        "2.20.5",
        "manylinux2014_{arch}",
        {"x86_64": "3619e25dfb0c8f4c554561c3459ee7dfe1250eed05e9aa4d147a75c45cc6ae0d"},
    ),
    *_wheels(
        "nvidia-nccl-cu11",
        "2.21.5",
        "manylinux2014_{arch}",
        {"x86_64": "49d8350629c7888701d1fd200934942671cb5c728f49acc5a0b3a768820bed29"},
    ),
    *_wheels(
        "nvidia-nccl-cu12",
        "2.26.5",
        "manylinux2014_{arch}.manylinux_2_17_{arch}",
        {
            "x86_64": "ea5ed3e053c735f16809bee7111deac62ac35b10128a8c102960a0462ce16cbe",
            "aarch64": "adb1bf4adcc5a47f597738a0700da6aef61f8ea4251b375540ae138c7d239588",
        },
    ),
    *_wheels(
        "nvidia-nccl-cu12",
        "2.27.7",
        "manylinux2014_{arch}.manylinux_2_17_{arch}",
        {
            "x86_64": "de5ba5562f08029a19cb1cd659404b18411ed0d6c90ac5f52f30bf99ad5809aa",
            "aarch64": "4617839f3bb730c3845bf9adf92dbe0e009bc53ca5022ed941f2e23fb76e6f17",
        },
    ),
    *_wheels(
        "nvidia-nccl-cu13",
        "2.28.7",
        "manylinux_2_18_{arch}",
        {
            "x86_64": "f9988ff615aa2e21dffc606a8e5861fe41f4140b4540856a780009c4b1c3626f",
            "aarch64": "7b386e887830666e6fce17287a00173cc78a7e9abf158138b99a45f59e9904e2",
        },
    ),
)


def nccl_wheel(version: str, cuda_major: int, arch: str) -> Wheel | None:
    """The redistributable of an NCCL version for a CUDA major and CPU architecture, or None (policy error)."""
    project = f"nvidia-nccl-cu{cuda_major}"
    return next((w for w in NCCL_REDISTRIBUTABLES if (w.project, w.version, w.arch) == (project, version, arch)), None)


# -- signing keys ------------------------------------------------------------------------------------

CUDA_REPO_KEY_SOURCE = Source(
    "NVIDIA's CUDA repository signing key 3bf863cc.pub, the key of every CUDA apt repository since April 2022 "
    "(NVIDIA technical blog 'Updating the CUDA Linux GPG Repository Key'); fingerprint as gpg prints it",
    "https://developer.nvidia.com/blog/updating-the-cuda-linux-gpg-repository-key/",
)
CUDA_REPO_KEY_FINGERPRINT = "EB693B3035CD5710E231E123A4B469963BF863CC"

# -- nccl-tests ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceTree:
    """A source release the nodes build: the upstream tag's commit, and the tar the artifact mirror serves.

    NVIDIA publishes no digest of its GitHub archives, so the tar is the project's own recipe from
    the tag's commit (``git archive --format=tar --prefix=NAME-VERSION/ COMMIT``, deterministic for
    a commit): a site's mirror team makes the same bytes from its own clone, and the role refuses
    any other.
    """

    name: str
    version: str
    commit: str
    sha256: str
    source: Source

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.tar"


NCCL_TESTS = SourceTree(
    "nccl-tests",
    "2.19.6",
    "a0b82b2260cf5152b9f8c061bbf7eaf0ba096432",
    "a82a292302e0cb762b437910fb9b68301d1981104bd5fd8fea454e19deef38d1",
    Source(
        "NVIDIA/nccl-tests tag v2.19.6 (commit a0b82b22); sha256 of `git archive --format=tar "
        "--prefix=nccl-tests-2.19.6/ a0b82b22` (git 2.39)",
        "https://github.com/NVIDIA/nccl-tests/tree/v2.19.6",
    ),
)
