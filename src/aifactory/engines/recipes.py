"""What each engine is built from: its Go module under ``engines/``, the packages, the version stamp.

Every version comes from the engine's own go.mod (the pin, hash-verified by its go.sum); the
stamps below only say where the upstream build puts that version (its Makefile's ``-X`` flags),
so ``pulumi version`` or ``kube-apiserver --version`` report what was built. Why each wrapper
module exists, and its upstream source: ``engines/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Output:
    """One main package built to one file in the engine's bin/ (``.`` is the wrapper's own main).

    ``module`` is the folder under engines/ whose go.mod builds it, when not the engine's own:
    one engine may ship binaries of two modules whose dependency graphs cannot be one.
    """

    package: str
    file: str
    module: str = ""
    version_module: str = ""  # whose version its stamps carry, when it is another module's binary


@dataclass(frozen=True)
class Embed:
    """A file the main package go:embeds, written before the build from a file of a required module.

    ``set_version`` writes the engine's version into the JSON's top-level "version", as the
    upstream ``go generate`` step does; otherwise the JSON is copied minified.
    """

    module: str
    path: str
    to: str
    set_version: bool


@dataclass(frozen=True)
class Companion:
    """A script of a required module that ships beside the binaries in the upstream distribution."""

    module: str
    path: str
    file: str


@dataclass(frozen=True)
class Engine:
    name: str  # its folder under engines/ and its cache entry
    summary: str
    outputs: tuple[Output, ...]
    version_module: str  # the requirement of engines/NAME/go.mod that is this engine's version
    stamps: tuple[str, ...] = ()  # -X flags; {version} is v1.2.3, {bare} 1.2.3, {major} {minor}
    embeds: tuple[Embed, ...] = ()
    companions: tuple[Companion, ...] = ()
    version_args: tuple[str, ...] = ()  # how the built binary reports its version (first output)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(o.file for o in self.outputs) + tuple(c.file for c in self.companions)

    @property
    def modules(self) -> tuple[str, ...]:
        """The folders under engines/ it is built from: its own first."""
        return tuple(dict.fromkeys([self.name, *(o.module for o in self.outputs if o.module)]))


PULUMI_SDK = "github.com/pulumi/pulumi/sdk/v3"
PROVIDER = "github.com/pulumi/pulumi-kubernetes/provider/v4"

ENGINES: tuple[Engine, ...] = (
    Engine(
        "pulumi",
        "the Pulumi CLI with its Python language host and the Python SDK's exec shim and dynamic-provider host, "
        "side by side as in Pulumi's release archive",
        (
            Output("github.com/pulumi/pulumi/pkg/v3/cmd/pulumi", "pulumi"),
            # The newest language host published as a Go package (engines/README.md says why).
            Output(
                "github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python",
                "pulumi-language-python",
                module="pulumi-language-python",
                version_module=PULUMI_SDK,
            ),
        ),
        "github.com/pulumi/pulumi/pkg/v3",
        stamps=("-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={version}",),
        companions=(
            Companion(PULUMI_SDK, "python/cmd/pulumi-language-python-exec", "pulumi-language-python-exec"),
            Companion(PULUMI_SDK, "python/dist/pulumi-resource-pulumi-python", "pulumi-resource-pulumi-python"),
        ),
        version_args=("version",),
    ),
    Engine(
        "pulumi-kubernetes",
        "the Kubernetes resource provider plugin",
        (Output(".", "pulumi-resource-kubernetes"),),
        "github.com/pulumi/pulumi-kubernetes/sdk/v4",
        stamps=("-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version={bare}",),
        embeds=(
            Embed(PROVIDER, "cmd/pulumi-resource-kubernetes/schema.json", "schema-embed.json", set_version=True),
            Embed(
                PROVIDER,
                "cmd/pulumi-resource-kubernetes/terraform-mapping.json",
                "terraform-mapping-embed.json",
                set_version=False,
            ),
        ),
    ),
    Engine(
        "kube",
        "kube-apiserver and kube-controller-manager",
        (
            Output("k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
            Output("k8s.io/kubernetes/cmd/kube-controller-manager", "kube-controller-manager"),
        ),
        "k8s.io/kubernetes",
        stamps=(
            "-X k8s.io/component-base/version.gitVersion={version}",
            "-X k8s.io/component-base/version.gitMajor={major}",
            "-X k8s.io/component-base/version.gitMinor={minor}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
        ),
        version_args=("--version",),
    ),
    Engine(
        "etcd",
        "etcd, the API server's store",
        (Output(".", "etcd"),),
        "go.etcd.io/etcd/server/v3",
        version_args=("--version",),
    ),
    Engine(
        "helm",
        "helm, to render the charts a site installs",
        (Output("helm.sh/helm/v3/cmd/helm", "helm"),),
        "helm.sh/helm/v3",
        stamps=("-X helm.sh/helm/v3/internal/version.version={version}",),
        version_args=("version", "--short"),
    ),
)

BY_NAME = {e.name: e for e in ENGINES}
