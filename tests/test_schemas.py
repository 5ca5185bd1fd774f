"""Every resource of every site's plan, checked against the upstream artefacts at the pinned versions.

The files under tests/fixtures/schemas are the upstream CRDs, chart values, chart templates and
release manifests (SOURCES.md). Nothing here compares the program with itself: each check reads
what NVIDIA, Mellanox or Metal3 publish and what the plan would send to the API server.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifactory import catalog
from aifactory.manifests import helm_releases, objects
from aifactory.stackfile import load_stack
from aifactory.testhosts.services import crd_paths

from .conftest import COUNTRY_SITES, ROOT, SITES, plan_of
from .schema_check import FIXTURES, core_problems, crd_schema, custom_resource_problems, partial_problems

CUSTOM_KINDS = {"NicClusterPolicy", "IPPool", "NetworkAttachmentDefinition", "BareMetalHost"}
# Fields each CNI plugin reads from its configuration (besides cniVersion, name, type):
# containernetworking/plugins plugins/main/macvlan (NetConf), Mellanox/ipoib-cni README
# "Configuration reference", Mellanox/nvidia-k8s-ipam README "IPAM configuration".
CNI_FIELDS = {
    "macvlan": {"master", "mode", "mtu", "linkInContainer", "ipam"},
    "ipoib": {"master", "ipam"},
}
CNI_SOURCES = FIXTURES.parent / "cni"  # each SR-IOV CNI's NetConf at its pinned tag (SOURCES.md there)


def go_json_fields(path: Path, struct: str) -> set[str]:
    """The JSON keys a Go struct reads: its fields' json tags (untagged and "-" fields are not config)."""
    text = path.read_text()
    body = text[text.index(f"type {struct} struct {{") :]
    body = body[: body.index("\n}\n")]
    return {m for m in re.findall(r'json:"([^",]+)', body) if m != "-"}


# Tenant partitions (components/network.tenant_attachment): ib-sriov-cni's pkey, sriov-cni's vlan.
CNI_FIELDS["ib-sriov"] = go_json_fields(CNI_SOURCES / "ib-sriov-cni-v1.3.0-types.go", "IbSriovNetConf") | {"ipam"}
CNI_FIELDS["sriov"] = go_json_fields(CNI_SOURCES / "sriov-cni-v2.10.0-types.go", "SriovNetConf") | {"ipam"}
CNI_COMMON = {"cniVersion", "name", "type"}
MACVLAN_MODES = {"bridge", "private", "vepa", "passthru"}
NV_IPAM_FIELDS = {"type", "poolName", "poolType", "daemonSocket", "daemonCallTimeoutSeconds", "confDir", "logFile"}


def crd_file(site, kind: str) -> str:
    # The same files the lab's real API server is given (testhosts/services.py).
    return crd_paths(site)[kind]


def object_problems(site, obj: dict[str, Any]) -> list[str]:
    if obj["kind"] in CUSTOM_KINDS:
        return custom_resource_problems(obj, crd_file(site, obj["kind"]))
    return [p for v in catalog.KUBERNETES_VERSIONS for p in core_problems(obj, v)]


def cni_problems(site, obj: dict[str, Any], pools: set[str]) -> list[str]:
    """The CNI config a NetworkAttachmentDefinition carries, against the fields its plugins read."""
    name = obj["metadata"]["name"]
    conf = json.loads(obj["spec"]["config"])
    out = []
    plugin = conf.get("type")
    if plugin not in CNI_FIELDS:
        return [f"NAD/{name}: plugin {plugin!r} is not one this site's fabric uses"]
    unknown = set(conf) - CNI_FIELDS[plugin] - CNI_COMMON
    if unknown:
        out.append(f"NAD/{name}: {plugin} does not read {sorted(unknown)}")
    if plugin == "macvlan" and conf.get("mode") not in MACVLAN_MODES:
        out.append(f"NAD/{name}: macvlan mode {conf.get('mode')!r}")
    ipam = conf.get("ipam", {})
    if ipam.get("type") != "nv-ipam" or set(ipam) - NV_IPAM_FIELDS:
        out.append(f"NAD/{name}: ipam {ipam}")
    if ipam.get("poolName") not in pools:
        out.append(f"NAD/{name}: pool {ipam.get('poolName')!r} is not an IPPool of the plan")
    fabric = site.network.fabric.type
    netdevs = {p.netdev(fabric) for sku in site.rail_skus for p in (site.rail_ports(sku) or ())}
    if plugin in ("ib-sriov", "sriov"):  # a VF the device plugin hands out: no master, a partition instead
        if plugin == "ib-sriov" and not re.fullmatch(r"0x[0-9a-f]{4}", conf.get("pkey", "")):
            out.append(f"NAD/{name}: pkey {conf.get('pkey')!r}")
        if plugin == "sriov" and not 1 <= conf.get("vlan", 0) <= 4094:
            out.append(f"NAD/{name}: vlan {conf.get('vlan')!r}")
    elif conf.get("master") not in netdevs:
        out.append(f"NAD/{name}: master {conf.get('master')!r} is no compute port of the site's SKUs")
    return out


def release_images(version: str) -> dict[str, dict[str, str]]:
    return yaml.safe_load((FIXTURES / "network-operator" / f"v{version}" / "release.yaml").read_text())


def below_host(repository: str) -> str:
    return repository.split("/", 1)[1] if "/" in repository else ""


def nic_image_problems(site, spec: dict[str, Any]) -> list[str]:
    """Each NicClusterPolicy image is the release's own: name, path below the registry, tag."""
    release = release_images(site.gpu_stack.network_operator)
    out = []
    blocks = {k: v for k, v in spec.items() if isinstance(v, dict) and "image" in v}
    blocks.update({k: v for k, v in spec.get("secondaryNetwork", {}).items() if isinstance(v, dict)})
    for key, block in blocks.items():
        upstream = release[catalog.NETWORK_OPERATOR_RELEASE_KEYS[key]]
        want = (upstream["image"], below_host(upstream["repository"]), upstream["version"])
        # version is tag@sha256:<digest> where the release's bundle publishes one (tests/test_supply.py).
        got = (block["image"], below_host(block["repository"]), block["version"].split("@")[0])
        if got != want:
            out.append(f"NicClusterPolicy {key}: {got} is not release {site.gpu_stack.network_operator}'s {want}")
        if not block["repository"].startswith(site.mirrors.containers.host + "/"):
            out.append(f"NicClusterPolicy {key}: {block['repository']} is not the site's registry mirror")
    return out


def leaves(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, dict) and values:
        out: dict[str, Any] = {}
        for k, v in values.items():
            out.update(leaves(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: values}


def chart_file(version: str, name: str) -> str:
    return (FIXTURES / "gpu-operator" / version / name).read_text()


def has_path(tree: Any, path: str) -> bool:
    for part in path.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def reads(text: str, path: str) -> bool:
    """The chart reads the value at `path`, or hands a whole parent block on (toYaml)."""
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        if re.search(r"\.Values\." + re.escape(".".join(parts[:n])) + r"(?![\w-])", text):
            return True
    return False


def documented(text: str, path: str) -> bool:
    """values.yaml documents `block.key` as a comment inside the block (`#version: ""`: default appVersion)."""
    block, _, key = path.partition(".")
    body = re.search(rf"^{re.escape(block)}:\n((?:[ #].*\n|\n)*)", text, re.M)
    return bool(key) and "." not in key and body is not None and re.search(rf"^\s+#\s*{re.escape(key)}:", body[1], re.M)


def chart_value_problems(version: str, values: dict[str, Any]) -> list[str]:
    chart = yaml.safe_load(chart_file(version, "values.yaml"))
    nfd = yaml.safe_load(chart_file(version, "nfd-values.yaml"))
    templates = "".join(chart_file(version, f) for f in ("clusterpolicy.tpl.yaml", "operator.tpl.yaml", "helpers.tpl"))
    conditions = chart_file(version, "Chart.yaml")
    out = []
    for path in leaves(values):
        if path.startswith("node-feature-discovery."):
            if not has_path(nfd, path.split(".", 1)[1]):
                out.append(f"values {path}: not in the node-feature-discovery subchart")
            continue
        if not (has_path(chart, path) or documented(chart_file(version, "values.yaml"), path)):
            out.append(f"values {path}: not a key of gpu-operator {version}'s values.yaml")
        elif not (reads(templates, path) or f"condition: {path}" in conditions):
            out.append(f"values {path}: gpu-operator {version} never reads it")
    return out


def clusterpolicy_problems(version: str, values: dict[str, Any]) -> list[str]:
    """Values the chart copies into ClusterPolicy (spec.X = .Values.X), against the ClusterPolicy CRD."""
    template = chart_file(version, "clusterpolicy.tpl.yaml")
    spec: dict[str, Any] = {}
    for path, value in leaves(values).items():
        if re.search(r"\.Values\." + re.escape(path) + r"(?![\w-])", template) or (
            "." in path
            and re.search(r"toYaml \.Values\." + re.escape(path.rsplit(".", 1)[0]) + r"(?=\s|\||\})", template)
        ):
            node = spec
            parts = path.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
    schema = crd_schema(f"gpu-operator/{version}/clusterpolicies.crd.yaml", "ClusterPolicy", "v1")
    return partial_problems(spec, schema["properties"]["spec"], f"ClusterPolicy (gpu-operator {version})")


def repository_problems(site, version: str, values: dict[str, Any]) -> list[str]:
    """Every image repository the values override keeps the upstream path below the registry host."""
    chart = yaml.safe_load(chart_file(version, "values.yaml"))
    chart["node-feature-discovery"] = yaml.safe_load(chart_file(version, "nfd-values.yaml"))
    out = []
    for path, value in leaves(values).items():
        if not path.endswith("repository"):
            continue
        upstream = chart
        for part in path.split("."):
            upstream = upstream[part]
        if value != f"{site.mirrors.containers.host}/{below_host(upstream)}":
            out.append(f"values {path}: {value} does not mirror upstream {upstream}")
    return out


# --- the plans of all six sites -----------------------------------------------------------------


@pytest.mark.parametrize("site_name", SITES)
def test_every_object_conforms_to_its_schema(site_name):
    site = load_stack(ROOT, site_name).site
    objs = objects(plan_of(site_name))
    problems = [p for obj in objs for p in object_problems(site, obj)]
    assert problems == []
    kinds = {o["kind"] for o in objs}
    assert {"BareMetalHost", "NicClusterPolicy", "LimitRange", "ValidatingAdmissionPolicy"} <= kinds


@pytest.mark.parametrize("site_name", SITES)
def test_cni_configs_use_only_fields_their_plugins_read(site_name):
    site = load_stack(ROOT, site_name).site
    objs = objects(plan_of(site_name))
    pools = {o["metadata"]["name"] for o in objs if o["kind"] == "IPPool"}
    nads = [o for o in objs if o["kind"] == "NetworkAttachmentDefinition"]
    assert [p for o in nads for p in cni_problems(site, o, pools)] == []
    # Rails exist wherever the catalog knows the SKU's ports: one attachment each for the platform,
    # and one each in every tenant's namespace (its own partition, or the shared one).
    rails = len(site.network.fabric.rails) if site.rail_skus else 0
    assert len(nads) == rails * (1 + len(site.tenants))
    for t in site.tenants:
        mine = [o for o in nads if o["metadata"]["namespace"] == t.name]
        assert len(mine) == rails and all(o["metadata"]["labels"]["aifactory.io/tenant"] == t.name for o in mine)


@pytest.mark.parametrize("site_name", SITES)
def test_network_operator_images_are_the_releases_own(site_name):
    site = load_stack(ROOT, site_name).site
    (policy,) = [o for o in objects(plan_of(site_name)) if o["kind"] == "NicClusterPolicy"]
    assert nic_image_problems(site, policy["spec"]) == []


@pytest.mark.parametrize("site_name", COUNTRY_SITES)  # the lab skips the release (no kubelet)
def test_gpu_operator_values_exist_are_read_and_fit_clusterpolicy(site_name):
    site = load_stack(ROOT, site_name).site
    (release,) = [r for r in helm_releases(plan_of(site_name)) if r.chart == "gpu-operator"]
    assert release.version == site.gpu_stack.gpu_operator
    assert chart_value_problems(release.version, release.values) == []
    assert clusterpolicy_problems(release.version, release.values) == []
    assert repository_problems(site, release.version, release.values) == []


def test_catalogued_releases_match_the_vendored_manifests():
    for version, images in catalog.NETWORK_OPERATOR_IMAGES.items():
        release = release_images(version)
        for key, image in images.items():
            upstream = release[catalog.NETWORK_OPERATOR_RELEASE_KEYS[key]]
            assert (image.repository, image.name, image.tag) == (
                upstream["repository"],
                upstream["image"],
                upstream["version"],
            ), (version, key)
    for version, images in catalog.GPU_OPERATOR_IMAGES.items():
        chart = yaml.safe_load(chart_file(version, "values.yaml"))
        chart["node-feature-discovery"] = yaml.safe_load(chart_file(version, "nfd-values.yaml"))
        for component, image in images.items():
            node = chart
            for part in component.split("."):
                node = node[part]
            repository = node["repository"]
            if component == "node-feature-discovery.image":  # the subchart names repository/name in one
                repository, _, name = repository.rpartition("/")
                assert name == image.name, (version, component)
            else:
                assert node["image"] == image.name, (version, component)
            assert repository == image.repository, (version, component)


# --- the checks catch what the real API would reject or prune ------------------------------------


def _lab():
    return load_stack(ROOT, "lab").site, objects(plan_of("lab"))


def test_an_unknown_field_in_a_custom_resource_is_caught():
    site, objs = _lab()
    pool = copy.deepcopy(next(o for o in objs if o["kind"] == "IPPool"))
    pool["spec"]["perNodeBlocksize"] = 16  # a typo the API server would prune
    assert any("perNodeBlocksize" in p for p in object_problems(site, pool))


def test_an_unknown_field_in_a_core_object_is_caught():
    site, objs = _lab()
    limits = copy.deepcopy(next(o for o in objs if o["kind"] == "LimitRange"))
    limits["spec"]["limits"][0]["defaults"] = {"nvidia.com/gpu": "0"}
    assert any("defaults" in p for p in object_problems(site, limits))


def test_a_wrong_enum_is_caught():
    site, objs = _lab()
    (release,) = helm_releases(plan_of("za"))
    values = copy.deepcopy(release.values)
    values["migManager"]["config"]["default"] = "all-1g.18gb"
    assert any("all-1g.18gb" in p for p in clusterpolicy_problems(release.version, values))
    host = copy.deepcopy(next(o for o in objs if o["kind"] == "BareMetalHost"))
    host["spec"]["bootMode"] = "BIOS"
    assert any("bootMode" in p for p in object_problems(site, host))


def test_a_wrong_image_tag_is_caught():
    site, objs = _lab()
    policy = copy.deepcopy(next(o for o in objs if o["kind"] == "NicClusterPolicy"))
    policy["spec"]["nvIpam"]["version"] = "network-operator-v25.4.0"
    assert any("nvIpam" in p for p in nic_image_problems(site, policy["spec"]))


def test_a_value_the_chart_does_not_have_or_a_repository_that_drops_the_path_is_caught():
    site = load_stack(ROOT, "za").site
    (release,) = helm_releases(plan_of("za"))
    values = copy.deepcopy(release.values)
    values["dcgmExporter"]["serviceMonitor"]["enable"] = True
    values["validator"]["repository"] = f"{site.mirrors.containers.host}/nvidia/cloud-native"
    assert any("serviceMonitor.enable" in p for p in chart_value_problems(release.version, values))
    assert any("validator.repository" in p for p in repository_problems(site, release.version, values))


def test_a_cni_field_no_plugin_reads_is_caught():
    site, objs = _lab()
    nads = [o for o in objs if o["kind"] == "NetworkAttachmentDefinition"]
    nad = copy.deepcopy(next(o for o in nads if o["metadata"]["namespace"] == "nvidia-network-operator"))
    conf = json.loads(nad["spec"]["config"])
    conf["mtu"] = 9000  # ipoib takes no mtu
    conf["master"] = "ibp0s0"
    nad["spec"]["config"] = json.dumps(conf)
    problems = cni_problems(site, nad, {"rail0"})
    assert any("mtu" in p for p in problems)
    assert any("ibp0s0" in p for p in problems)
    # A tenant's attachment: ib-sriov-cni reads no vlan, and a partition key is four hex digits.
    nad = copy.deepcopy(next(o for o in nads if o["metadata"]["namespace"] == "research"))
    conf = json.loads(nad["spec"]["config"])
    assert cni_problems(site, nad, {conf["ipam"]["poolName"]}) == []
    conf["vlan"], conf["pkey"] = 100, "0x8001f"
    nad["spec"]["config"] = json.dumps(conf)
    problems = cni_problems(site, nad, {conf["ipam"]["poolName"]})
    assert any("vlan" in p for p in problems) and any("pkey" in p for p in problems)
