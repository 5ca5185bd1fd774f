"""The catalog's digests against the upstream files that publish them, and every site's manifest against the catalog.

Each expected value is read from a vendored upstream file (tests/fixtures/schemas: NVIDIA's OLM
bundles at the pinned tags and as certified for each release; tests/fixtures/supply: PyPI's
published file digests), never from the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aifactory.catalog import supply
from aifactory.catalog.supply import Digest, Unpublished
from aifactory.components.gpu_operator import gpu_operator_values, release_skipped
from aifactory.mirror.manifest import manifest, pinned
from aifactory.stackfile import load_stack

from .conftest import ROOT, SITES, plan_of

FIX = Path(__file__).parent / "fixtures"
PLACEHOLDER_TAG = ":main-latest"  # what NVIDIA's bundle at a git tag holds until the release is certified


def related_images(path: Path) -> dict[str, str]:
    csv = yaml.safe_load(path.read_text())
    return {r["name"]: r["image"] for r in csv["spec"]["relatedImages"]}


def split(ref: str) -> tuple[str, str | None]:
    """(repository/name, sha256 hex or None) of a bundle's image reference."""
    if "@sha256:" in ref:
        name, digest = ref.split("@sha256:")
        return name, digest
    return ref.rsplit(":", 1)[0], None


@pytest.mark.parametrize("release", sorted(supply.GPU_OPERATOR_IMAGES))
def test_gpu_operator_digests_are_the_certified_bundles(release):
    certified = related_images(FIX / "schemas" / "gpu-operator" / release / "certified.csv.yaml")
    images = supply.GPU_OPERATOR_IMAGES[release]
    for component, bundle_name in supply.GPU_OPERATOR_BUNDLE_NAMES.items():
        image = images[component]
        name, digest = split(certified[bundle_name])
        assert name == f"{image.repository}/{image.name}", (release, component)
        pinned_digest = supply.image_digest(image)
        assert isinstance(pinned_digest, Digest), (release, component)
        assert pinned_digest.sha256 == digest, (release, component)


@pytest.mark.parametrize("release", sorted(supply.GPU_OPERATOR_IMAGES))
def test_the_bundle_at_the_git_tag_agrees_but_for_the_operator_placeholders(release):
    """NVIDIA's bundle at the tag has every operand digest the certified one has; only its own images are tags."""
    at_tag = related_images(FIX / "schemas" / "gpu-operator" / release / "bundle.csv.yaml")
    certified = related_images(FIX / "schemas" / "gpu-operator" / release / "certified.csv.yaml")
    assert set(at_tag) == set(certified)
    placeholders = {n for n, ref in at_tag.items() if ref.endswith(PLACEHOLDER_TAG)}
    assert placeholders == {"gpu-operator-image", "gpu-operator-validator-image"}
    assert {n: at_tag[n] for n in at_tag if n not in placeholders} == {
        n: certified[n] for n in certified if n not in placeholders
    }
    assert not any(ref.endswith(PLACEHOLDER_TAG) for ref in certified.values())


@pytest.mark.parametrize("release", sorted(supply.GPU_OPERATOR_IMAGES))
def test_gpu_operator_tags_are_the_charts(release):
    base = FIX / "schemas" / "gpu-operator" / release
    values = yaml.safe_load((base / "values.yaml").read_text())
    images = supply.GPU_OPERATOR_IMAGES[release]
    csv = yaml.safe_load((base / "certified.csv.yaml").read_text())
    assert csv["metadata"]["name"] == f"gpu-operator-certified.{release}"
    for component, image in images.items():
        if component == "node-feature-discovery.image":
            assert image.tag == yaml.safe_load((base / "nfd-Chart.yaml").read_text())["appVersion"]
            continue
        node = values
        for part in component.split("."):
            node = node[part]
        # No version in values.yaml: the chart defaults to its appVersion, the release itself.
        assert image.tag == node.get("version", release), (release, component)


@pytest.mark.parametrize("release", sorted(supply.NETWORK_OPERATOR_IMAGES))
def test_network_operator_digests_are_the_certified_bundles(release):
    certified = related_images(FIX / "schemas" / "network-operator" / f"v{release}" / "certified.csv.yaml")
    images = supply.NETWORK_OPERATOR_IMAGES[release]
    for component, image in images.items():
        pinned_digest = supply.image_digest(image)
        if component not in supply.NETWORK_OPERATOR_BUNDLE_NAMES:
            # Multus and the CNI plugins: the bundle has nothing of their names, and the catalog says so.
            assert isinstance(pinned_digest, Unpublished), (release, component)
            assert not [ref for ref in certified.values() if f"/{image.name}@" in ref], (release, component)
            continue
        name, digest = split(certified[supply.NETWORK_OPERATOR_BUNDLE_NAMES[component]])
        assert name == f"{image.repository}/{image.name}", (release, component)
        assert isinstance(pinned_digest, Digest) and pinned_digest.sha256 == digest, (release, component)


def test_nccl_digests_are_pypis():
    published = json.loads((FIX / "supply" / "pypi-nvidia-nccl.json").read_text())
    files = {f["filename"]: f["hashes"]["sha256"] for entries in published.values() for f in entries}
    assert {w.filename: w.sha256 for w in supply.NCCL_REDISTRIBUTABLES} == files


def test_every_catalogued_image_has_an_entry_and_no_entry_is_orphaned():
    used = {i.reference for table in (supply.GPU_OPERATOR_IMAGES, supply.NETWORK_OPERATOR_IMAGES) for i in
            (img for images in table.values() for img in images.values())}  # fmt: skip
    used |= {i.reference for i in supply.DRA_DRIVER_IMAGES.values()}
    assert used == set(supply.IMAGE_DIGESTS)


def test_a_digest_that_is_not_one_is_refused():
    with pytest.raises(ValueError, match="not a sha256"):
        Digest("ABC", supply.NETWORK_OPERATOR_RELEASE)


# Artifacts no upstream file gives a digest for: each named, with what was searched (catalog/supply.py).
UNPUBLISHED = {
    "registry.k8s.io/nfd/node-feature-discovery:v0.17.3",
    "registry.k8s.io/nfd/node-feature-discovery:v0.18.2",
    "ghcr.io/k8snetworkplumbingwg/plugins:v1.6.2-update.1",
    "ghcr.io/k8snetworkplumbingwg/multus-cni:v4.1.0",
    "nvcr.io/nvidia/mellanox/plugins:network-operator-v25.7.0",
    "nvcr.io/nvidia/mellanox/multus-cni:network-operator-v25.7.0",
    "gpu-operator",  # the chart: its digest is in NVIDIA's chart index, which no stored copy has
    "nvcr.io/nvidia/k8s-dra-driver-gpu:v25.12.0",  # given by tag only; no bundle held here lists it
    "nvidia-dra-driver-gpu",  # the chart, as gpu-operator's
}


@pytest.mark.parametrize("site", SITES)
def test_no_artifact_of_a_site_is_taken_without_a_digest_but_the_named_upstream_gaps(site):
    items = pinned(load_stack(ROOT, site).site)
    assert items
    without = {i.name for i in items if i.digest is None}
    assert without <= UNPUBLISHED, without - UNPUBLISHED
    for item in items:
        if item.digest is not None:
            assert item.source, item
            if item.kind in ("file", "image"):
                assert item.digest.startswith("sha256:") and len(item.digest) == 71, item
        else:
            assert item.note, item


@pytest.mark.parametrize("site", SITES)
def test_every_image_the_plan_pulls_is_in_the_manifest_by_digest(site):
    """The plan's own image fields, read back: each pinned image is pulled as repo:tag@sha256 of the manifest's."""
    stack = load_stack(ROOT, site)
    registry = stack.site.mirrors.containers.host
    wanted = {i.location: i for i in pinned(stack.site) if i.kind == "image"}
    plan = plan_of(site)
    releases = [
        r for r in plan.resources if r.type == "kubernetes:helm.sh/v3:Release" and r.inputs["chart"] == "gpu-operator"
    ]
    (policy,) = [r for r in plan.resources if r.type.endswith(":NicClusterPolicy")]
    pulled = set()

    def walk(node, image_name=None):
        if isinstance(node, dict):
            if "repository" in node and "version" in node:
                name = node.get("image", image_name)
                pulled.add(f"{node['repository']}/{name}:{node['version']}")
            for v in node.values():
                walk(v)

    # The lab plans no release (its Nodes have no kubelet); the values it would send are the ones read.
    values = releases[0].inputs["values"] if releases else gpu_operator_values(stack.site)
    assert len(releases) == (0 if release_skipped(stack.site) else 1), site
    for component, image in supply.GPU_OPERATOR_IMAGES[stack.site.gpu_stack.gpu_operator].items():
        node = values
        for part in component.split("."):
            node = node.get(part, {})
        if "version" in node and values.get(component.split(".")[0], {}).get("enabled", True):
            pulled.add(f"{node['repository']}/{image.name}:{node['version']}")
    walk(policy.inputs["spec"])
    assert pulled, site
    for ref in pulled:
        assert ref.startswith(registry + "/"), ref
        assert ref in wanted, ref
        assert ("@sha256:" in ref) or wanted[ref].name in UNPUBLISHED, ref
    assert sum("@sha256:" in ref for ref in pulled) >= 6, pulled


def test_the_manifest_text_and_json_say_the_same(tmp_path):
    m = manifest(ROOT, load_stack(ROOT, "za").site)
    doc = json.loads(m.to_json())
    lines = m.to_text().splitlines()
    assert len(doc["items"]) == len(lines) - 1 == len(m.items)
    for item, line in zip(doc["items"], lines[1:], strict=True):
        assert line.split()[:3] == [item["kind"], item["mirror"], item["name"]]
