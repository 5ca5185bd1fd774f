"""The Pulumi program, run offline under Pulumi's mock runtime, for every stack."""

from __future__ import annotations

import json

import pytest

from aifactory.components.gpu_operator import gpu_operator_values
from aifactory.plan import PLACEHOLDER, SECRET, run_plan
from aifactory.stackfile import load_stack

from .conftest import COUNTRY_SITES, ROOT, SITES, plan_of

BMH = "kubernetes:metal3.io/v1alpha1:BareMetalHost"
NAD = "kubernetes:k8s.cni.cncf.io/v1:NetworkAttachmentDefinition"
RELEASE = "kubernetes:helm.sh/v3:Release"
QUOTA = "kubernetes:core/v1:ResourceQuota"
SECRET_T = "kubernetes:core/v1:Secret"


def test_seven_sites_are_declared():
    assert set(SITES) == {"za", "ng", "ke", "eg", "ma", "de", "lab"}


@pytest.mark.parametrize("site", SITES)
def test_one_baremetalhost_per_declared_node(site):
    stack = load_stack(ROOT, site)
    plan = plan_of(site)
    hosts = {r.name: r.inputs for r in plan.of_type(BMH)}
    assert sorted(hosts) == sorted(n.hostname for n in stack.site.nodes)
    for node in stack.site.nodes:
        spec = hosts[node.hostname]["spec"]
        assert spec["bootMACAddress"] == node.mac
        assert spec["bmc"]["address"].startswith(f"redfish://{node.bmc_ip}/")
        assert spec["bmc"]["credentialsName"] == f"{stack.site.code}-{node.pool}-bmc"  # the pool's one Secret
        labels = hosts[node.hostname]["metadata"]["labels"]
        assert labels["aifactory.io/sku"] == node.sku
        assert labels["aifactory.io/jurisdiction"] == stack.site.jurisdiction.data_residency
        assert labels["aifactory.io/rail-count"] == str(len(stack.site.network.fabric.rails))
    secrets = {r.name: r.inputs for r in plan.of_type(SECRET_T)}
    assert set(secrets) == {f"{stack.site.code}-{p.name}-bmc" for p in stack.site.pools}
    for pool in stack.site.pools:
        secret = secrets[f"{stack.site.code}-{pool.name}-bmc"]
        assert secret["metadata"]["labels"]["aifactory.io/pool"] == pool.name
        assert set(secret["stringData"]) == {"username", "password"}


@pytest.mark.parametrize("site", COUNTRY_SITES)
def test_gpu_operator_release_is_pinned_and_derived(site):
    stack = load_stack(ROOT, site)
    (release,) = [r for r in plan_of(site).of_type(RELEASE) if r.inputs["chart"] == "gpu-operator"]
    inputs = release.inputs
    # The DRA driver is the only other release, on sites that declare it (tests/test_blackwell.py).
    others = {r.inputs["chart"] for r in plan_of(site).of_type(RELEASE)} - {"gpu-operator"}
    assert others == ({"nvidia-dra-driver-gpu"} if stack.site.gpu_stack.dra_driver else set())
    assert inputs["version"] == stack.site.gpu_stack.gpu_operator
    assert inputs["repositoryOpts"]["repo"] == stack.site.mirrors.charts.url
    values = inputs["values"]
    assert values["driver"]["enabled"] is False  # the host driver belongs to Ansible
    assert values["mig"]["strategy"] == stack.site.gpu_stack.mig.strategy
    assert values["migManager"]["enabled"] is (stack.site.gpu_stack.mig.strategy != "none")
    registry = stack.site.mirrors.containers.host
    for component in ("toolkit", "devicePlugin", "dcgmExporter", "validator", "operator", "migManager", "gfd"):
        assert values[component]["repository"].startswith(registry + "/"), component
    assert values["cdi"] == {"enabled": True} and values["nfd"] == {"enabled": True}
    assert values["dcgmExporter"]["serviceMonitor"] == {"enabled": False}  # no Prometheus Operator CRDs assumed
    assert values["migManager"]["config"] == {"default": "all-disabled"}  # the only value the CRD admits besides ""


# What the lab's plan must send, typed out: the registry mirror's path below the host, the chart's tag and
# NVIDIA's digest from the certified v25.10.1 bundle (tests/fixtures/schemas/gpu-operator/v25.10.1).
LAB_IMAGES = {
    "operator": ("172.29.0.1:5000/nvidia", "v25.10.1@sha256:634471cdfedcc3bd6b4412a905a9fbc9a9bf91df7f436aa00454b088d087c60a"),
    "validator": ("172.29.0.1:5000/nvidia", "v25.10.1@sha256:634471cdfedcc3bd6b4412a905a9fbc9a9bf91df7f436aa00454b088d087c60a"),
    "toolkit": ("172.29.0.1:5000/nvidia/k8s", "v1.18.1@sha256:ef2a0ef6bbf9c43529da3730974de9d51b8436c2314a68e718d437e6ab7c4b58"),
    "devicePlugin": ("172.29.0.1:5000/nvidia", "v0.18.1@sha256:50ac011ab941ab0140d52f56aa0e2fdc553bca96836ab3b26be394fc823fd9e7"),
    "gfd": ("172.29.0.1:5000/nvidia", "v0.18.1@sha256:50ac011ab941ab0140d52f56aa0e2fdc553bca96836ab3b26be394fc823fd9e7"),
    "dcgmExporter": (
        "172.29.0.1:5000/nvidia/k8s",
        "4.4.2-4.7.0-distroless@sha256:7c0ac4430bb0a5868b7404a0e06c47e02b0375b61aadd614385ad0bc2d43815a",
    ),
}  # fmt: skip


def test_the_lab_pulls_each_gpu_operator_image_from_its_mirror_by_digest():
    # The lab plans no release (no kubelet: the next test); the values it would send, against literals.
    values = gpu_operator_values(load_stack(ROOT, "lab").site)
    got = {c: (values[c]["repository"], values[c]["version"]) for c in LAB_IMAGES}
    assert got == LAB_IMAGES
    assert values["node-feature-discovery"]["image"] == {"repository": "172.29.0.1:5000/nfd/node-feature-discovery"}
    assert values["operator"]["initContainer"] == {
        "repository": "172.29.0.1:5000/nvidia",
        "version": "13.0.1-base-ubi9@sha256:d19fe621624c4eb6ac931b8558daa3ecc0c3f07f1e2a52e0267e083d22dceade",
    }


def test_the_lab_skips_the_gpu_operator_release_and_says_why(caplog):
    # No kubelet runs on the lab's test hosts: the chart's pods could never run.
    plan = run_plan(load_stack(ROOT, "lab"))
    assert plan.of_type(RELEASE) == []
    assert "skipped: the gpu-operator Helm release v25.10.1: no kubelet runs on the nodes of lab" in caplog.text
    assert [r.name for r in plan_of("lab").resources if r.type == "kubernetes:core/v1:Namespace" and "gpu" in r.name]


@pytest.mark.parametrize("site", SITES)
def test_one_network_attachment_per_rail(site):
    model = load_stack(ROOT, site).site
    # Rails exist on SKUs whose port map the catalog has (tests/test_fidelity.py checks the names).
    rails = model.network.fabric.rails if model.rail_skus else []
    nads = {r.inputs["metadata"]["name"]: json.loads(r.inputs["spec"]["config"]) for r in plan_of(site).of_type(NAD)}
    assert sorted(nads) == sorted(r.name for r in rails)
    for rail in rails:
        assert nads[rail.name]["ipam"] == {"type": "nv-ipam", "poolName": rail.name}
    pools = {
        r.inputs["metadata"]["name"]: r.inputs["spec"]["subnet"]
        for r in plan_of(site).of_type("kubernetes:nv-ipam.nvidia.com/v1alpha1:IPPool")
    }
    assert pools == {r.name: str(r.cidr) for r in rails}


@pytest.mark.parametrize("site", SITES)
def test_quotas_match_tenants(site):
    tenants = load_stack(ROOT, site).site.tenants
    quotas = {r.inputs["metadata"]["namespace"]: r.inputs["spec"]["hard"] for r in plan_of(site).of_type(QUOTA)}
    assert quotas == {t.name: {"requests.nvidia.com/gpu": str(t.gpu_quota)} for t in tenants}
    policies = [
        r
        for r in plan_of(site).of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if r.inputs["metadata"]["name"] == "default-deny"
    ]
    assert sorted(p.inputs["metadata"]["namespace"] for p in policies) == sorted(t.name for t in tenants)


@pytest.mark.parametrize("site", SITES)
def test_no_secret_value_in_plan_output(site, cli):
    stack = load_stack(ROOT, site)
    code, out_json, _ = cli("plan", site, "--json")
    assert code == 0
    code, out_text, _ = cli("plan", site, "--inputs")
    assert code == 0
    for text in (out_json, out_text):
        assert PLACEHOLDER not in text
        for cred in stack.credentials.values():
            assert cred.password_ciphertext not in text
            assert cred.password_ciphertext.split(":")[2] not in text
    for secret in json.loads(out_json)["resources"]:
        if secret["type"] == SECRET_T:
            assert secret["inputs"]["stringData"] == {"username": SECRET, "password": SECRET}


# Each site's GPUs, counted by hand from its stack file (nodes listed per pool, 8 GPUs per DGX).
# ma: 16 DGX H100 and 8 DGX B200 (8 GPUs each), 36 GB200 trays (4 each); de: 1,248 DGX B200.
GPUS = {"za": 256, "ng": 64, "ke": 128, "eg": 96, "ma": 336, "de": 9984, "lab": 16}


@pytest.mark.parametrize("site", SITES)
def test_outputs(site):
    stack = load_stack(ROOT, site)
    out = plan_of(site).outputs
    assert out["gpus"]["total"] == GPUS[site]
    assert [n["hostname"] for n in out["nodes"]] == [n.hostname for n in stack.site.nodes]
    assert out["versions"]["driver"] == stack.site.gpu_stack.driver


def test_plan_is_byte_identical_across_runs(cli):
    first = cli("plan", "ma", "--json")
    second = cli("plan", "ma", "--json")
    assert first == second
    assert cli("plan", "ma")[1] == cli("plan", "ma")[1]


def test_json_shape(cli):
    code, out, _ = cli("plan", "lab", "--json")
    doc = json.loads(out)
    assert set(doc) == {"site", "resources", "outputs"}
    assert doc["site"] == "lab"
    for r in doc["resources"]:
        assert set(r) == {"type", "name", "parent", "inputs"}
    children = [r for r in doc["resources"] if r["type"] == BMH]
    assert {r["parent"] for r in children} == {"aifactory:site:Nodes::nodes"}


def test_text_plan_counts_types(cli):
    code, out, _ = cli("plan", "za")
    assert code == 0
    assert "    32  kubernetes:metal3.io/v1alpha1:BareMetalHost" in out
    # 8 rails: the platform's attachments and one set in each of za's 4 tenants' namespaces.
    assert "    40  kubernetes:k8s.cni.cncf.io/v1:NetworkAttachmentDefinition" in out


def test_program_refuses_other_cluster_contexts():
    plan = run_plan(load_stack(ROOT, "ke"))
    (provider,) = plan.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["context"] == "aifactory-ke-nbo1"
    # every Kubernetes resource goes through that provider, not an ambient default one
    assert not [r for r in plan.resources if r.type == "pulumi:providers:kubernetes" and r.name == "default"]


def test_the_one_reach_into_the_pulumi_sdk_still_fits_it():
    """plan._no_source_positions swaps the SDK's per-registration stack capture: fail loudly if the SDK moves it."""
    import inspect

    from pulumi.runtime import resource as sdk_resource
    from pulumi.runtime.proto import source_pb2

    from aifactory import plan

    original = sdk_resource._get_stack_trace
    assert inspect.signature(original).parameters == {}, "pulumi.runtime.resource._get_stack_trace changed shape"
    assert "_get_stack_trace()" in inspect.getsource(sdk_resource.register_resource), "the SDK no longer calls it"
    assert isinstance(plan._empty_stack_trace(), source_pb2.StackTrace)
    seen = []
    with plan._no_source_positions():
        seen.append(sdk_resource._get_stack_trace)
    assert seen == [plan._empty_stack_trace] and sdk_resource._get_stack_trace is original


def test_plan_all_plans_every_site_in_its_own_process_and_matches_each_plan(cli):
    code, out, err = cli("plan", "--all", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert sorted(doc) == sorted(SITES)
    for site in SITES:
        code, one, _ = cli("plan", site, "--json")
        assert json.loads(one) == doc[site]
    for args in (("plan",), ("plan", "lab", "--all")):
        code, out, err = cli(*args)
        assert code == 2 and "give one SITE or --all" in err and out == ""
