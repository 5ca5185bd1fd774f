"""Tenant pods meet the real admission chain: za's own objects on a real kube-apiserver.

The Namespaces, the ValidatingAdmissionPolicy and its binding are taken from za's plan (a site
whose restricted and confidential tenants hold nodes of their own), created on a control plane of
this module's own, and pods are sent as dry-run creates: kube-apiserver compiles the policy's CEL,
runs it for each pod and answers. No kubelet is needed for a pod to be admitted or refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from aifactory import labels
from aifactory.components.tenants import ADMISSION_POLICY
from aifactory.manifests import objects
from aifactory.stackfile import load_stack
from aifactory.testhosts import kube

from .conftest import ROOT, plan_of

pytestmark = pytest.mark.cli
SITE = "za"
KINDS = {"Namespace", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


@pytest.fixture(scope="module")
def api(engines, tmp_path_factory) -> Iterator[Any]:
    directory = tmp_path_factory.mktemp("kube-tenants")
    cp = kube.start(directory, engines, contexts=[load_stack(ROOT, SITE).site.kubernetes.context])
    try:
        api = cp.client()
        dyn = DynamicClient(api)
        for doc in objects(plan_of(SITE)):
            if doc["kind"] in KINDS:
                resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
                resource.create(body=doc)
        yield api
    finally:
        kube.stop(directory)


def tenants() -> dict[str, Any]:
    return {t.name: t for t in load_stack(ROOT, SITE).site.tenants}


def pod(name: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "c", "image": "registry.za.aifactory.internal/pause:3.10", **spec.pop("container", {})}
    annotations = spec.pop("annotations", None)
    metadata: dict[str, Any] = {"name": name, **({"annotations": annotations} if annotations else {})}
    return {"metadata": metadata, "spec": {"containers": [container], "automountServiceAccountToken": False, **spec}}


def own_nodes(tenant: str) -> dict[str, Any]:
    return {
        "nodeSelector": {labels.TENANT: tenant},
        "tolerations": [{"key": labels.TENANT, "operator": "Equal", "value": tenant, "effect": "NoSchedule"}],
    }


def send(api: Any, namespace: str, body: dict[str, Any]) -> str | None:
    """None when admitted; the refusal's message when the API server refuses the pod."""
    try:
        client.CoreV1Api(api).create_namespaced_pod(namespace, body, dry_run="All")
    except ApiException as exc:
        assert exc.status in (403, 422), exc.body
        return exc.body
    return None


@pytest.fixture(scope="module")
def enforced(api) -> Any:
    """The policy takes effect once the API server has type-checked it: wait for its first refusal."""
    deadline = time.monotonic() + 60
    while send(api, "sa-genomics", pod("probe")) is None:
        assert time.monotonic() < deadline, f"{ADMISSION_POLICY} never refused a pod"
        time.sleep(0.5)
    return api


def test_za_has_tenants_with_nodes_and_one_without():
    held = {name for name, t in tenants().items() if t.nodes}
    assert {"sa-genomics", "fin-consortium", "gov-llm"} <= held and "wits-ai" not in held


@pytest.mark.parametrize(
    ("namespace", "body", "message"),
    [
        # A restricted tenant's pod that does not ask for its nodes.
        ("sa-genomics", pod("no-selector"), "this tenant's pods run on its own nodes"),
        # ... or asks for another tenant's nodes, by label or by tolerating their taint.
        (
            "sa-genomics",
            pod("other-nodes", **own_nodes("fin-consortium")),
            "this tenant's pods run on its own nodes",
        ),
        (
            "wits-ai",
            pod("selects-genomics", nodeSelector={labels.TENANT: "sa-genomics"}),
            "a tenant's pods may select only its own nodes",
        ),
        (
            "wits-ai",
            pod(
                "tolerates-genomics",
                tolerations=[{"key": labels.TENANT, "operator": "Equal", "value": "sa-genomics"}],
            ),
            "a tenant's pods may tolerate only its own nodes' taint",
        ),
        (
            "sa-genomics",
            pod("no-toleration", nodeSelector={labels.TENANT: "sa-genomics"}),
            "must tolerate its nodes' taint",
        ),
        ("wits-ai", pod("tolerates-all", tolerations=[{"operator": "Exists"}]), "never every taint"),
        ("sa-genomics", pod("by-name", nodeName="za-h100a-01", **own_nodes("sa-genomics")), "may not name a node"),
        # Host namespaces, each one.
        *[
            ("sa-genomics", pod(f"host-{k.lower()}", **{k: True}, **own_nodes("sa-genomics")), "host's network, PID or IPC")
            for k in ("hostNetwork", "hostPID", "hostIPC")
        ],
        ("wits-ai", pod("host-net-shared", hostNetwork=True), "host's network, PID or IPC"),
        ("wits-ai", pod("privileged", container={"securityContext": {"privileged": True}}), "may not run privileged"),
        (
            "wits-ai",
            pod("sys-admin", container={"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}),
            "baseline's capabilities and IPC_LOCK",
        ),
        # Another tenant's fabric partition: its attachment, named with its namespace.
        (
            "sa-genomics",
            pod("other-rail", annotations={"k8s.v1.cni.cncf.io/networks": "fin-consortium/rail0"}, **own_nodes("sa-genomics")),
            "attach only to its own namespace's networks",
        ),
    ],
    ids=lambda v: v["metadata"]["name"] if isinstance(v, dict) else None,
)
def test_the_api_server_refuses(enforced, namespace, body, message):
    refusal = send(enforced, namespace, body)
    assert refusal is not None, f"{namespace}/{body['metadata']['name']} was admitted"
    assert message in refusal, refusal


@pytest.mark.parametrize(
    ("namespace", "body"),
    [
        ("sa-genomics", pod("on-own-nodes", **own_nodes("sa-genomics"))),
        ("fin-consortium", pod("on-own-nodes", **own_nodes("fin-consortium"))),
        ("wits-ai", pod("shared-pool")),
        (
            "sa-genomics",
            pod(
                "rdma",
                container={"securityContext": {"capabilities": {"add": ["IPC_LOCK"]}}},
                annotations={"k8s.v1.cni.cncf.io/networks": "sa-genomics/rail0, rail1"},
                **own_nodes("sa-genomics"),
            ),
        ),
    ],
    ids=lambda v: f"{v['metadata']['name']}" if isinstance(v, dict) else None,
)
def test_the_api_server_admits(enforced, namespace, body):
    assert send(enforced, namespace, body) is None


def test_outside_tenant_namespaces_the_policy_does_not_apply(enforced):
    client.CoreV1Api(enforced).create_namespace({"metadata": {"name": "platform"}})
    assert send(enforced, "platform", pod("host-net", hostNetwork=True)) is None
