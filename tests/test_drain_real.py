"""Cordon and drain against a real API server: the rollout's Cluster, real Nodes, pods and a PodDisruptionBudget.

The control plane is the lab's (etcd, kube-apiserver, kube-controller-manager: its disruption
controller keeps the budget's status, and the Eviction API enforces it). No kubelet runs, so the
test plays the parts a cluster's other components would: it binds pods to Nodes (spec.nodeName, as
the scheduler does), reports them Ready (as their kubelet would) and, once an evicted pod has gone,
starts its replacement on another Node (as its ReplicaSet and the scheduler would). Pods carry
``terminationGracePeriodSeconds: 0``, so an eviction deletes them at once, as it would after a
kubelet confirmed the shutdown. The stand-in server in test_rollout.py stays for what needs a
kubelet to exist (static mirror pods) and for the client-side filters.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from aifactory.rollout import cluster
from aifactory.testhosts import kube

pytestmark = pytest.mark.cli


@pytest.fixture
def lab(control_plane):
    api = control_plane.client()
    core, policy = client.CoreV1Api(api), client.PolicyV1Api(api)
    tag = uuid.uuid4().hex[:6]
    ns = f"drain-{tag}"
    core.create_namespace({"metadata": {"name": ns}})
    nodes = [f"gpu-{tag}-a", f"gpu-{tag}-b"]
    kube.register_nodes(control_plane, [kube.NodeSpec(n, {"aifactory.io/site": "lab"}, "192.0.2.1") for n in nodes])

    def account() -> bool:
        try:
            core.read_namespaced_service_account("default", ns)
        except ApiException:
            return False
        return True

    _until(account, "the namespace's default service account (kube-controller-manager)")
    yield core, policy, ns, nodes, control_plane
    core.delete_namespace(ns)
    for n in nodes:
        core.delete_node(n)


def _until(ok, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _pod(core, ns: str, name: str, node: str, app: str = "train") -> None:
    core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {
                "nodeName": node,
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": False,
                "containers": [{"name": "c", "image": "registry.lab.aifactory.internal/pause:3.10"}],
            },
        },
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = [
        {"type": t, "status": "True", "lastTransitionTime": now}
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    core.patch_namespaced_pod_status(name, ns, {"status": {"phase": "Running", "conditions": ready}})


def _pdb(policy, ns: str, min_available: int) -> None:
    policy.create_namespaced_pod_disruption_budget(
        ns,
        {
            "metadata": {"name": "train"},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "train"}}},
        },
    )


def _allowed(policy, ns: str) -> int | None:
    st = policy.read_namespaced_pod_disruption_budget("train", ns).status
    return None if st is None or st.observed_generation is None else st.disruptions_allowed


def _on(core, ns: str, node: str) -> list[str]:
    return sorted(p.metadata.name for p in core.list_namespaced_pod(ns, field_selector=f"spec.nodeName={node}").items)


def _cluster(cp, context: str, timeout: float, said: list[str]) -> cluster.Cluster:
    return cluster.Cluster.for_context(context, timeout=timeout, say=said.append, config_file=str(cp.kubeconfig))


def test_drain_evicts_through_a_real_pdb_and_the_node_comes_back(lab, monkeypatch):
    core, policy, ns, (a, b), cp = lab
    monkeypatch.setattr(cluster, "RETRY_SECONDS", 1.0)
    for name, node in (("train-0", a), ("train-1", a), ("train-2", b)):
        _pod(core, ns, name, node)
    _pdb(policy, ns, 2)
    _until(lambda: _allowed(policy, ns) == 1, "the disruption controller to allow one disruption")
    said: list[str] = []
    c = _cluster(cp, cp.contexts[0], 120, said)
    result: dict[str, str] = {}
    worker = threading.Thread(target=lambda: result.update(out=c.take_out(a)))
    worker.start()
    # One pod goes; the budget then holds the other until a replacement is Ready elsewhere.
    _until(lambda: len(_on(core, ns, a)) == 1, "the first eviction")
    _until(lambda: any("PodDisruptionBudget" in m for m in said), "the budget to refuse the second eviction")
    assert core.read_node(a).spec.unschedulable is True
    assert worker.is_alive()
    _pod(core, ns, "train-3", b)
    worker.join(90)
    assert result.get("out") == "cordoned; drained: 2 pod(s) evicted", said
    assert _on(core, ns, a) == [] and _on(core, ns, b) == ["train-2", "train-3"]
    assert c.put_back(a) == "uncordoned"
    assert not core.read_node(a).spec.unschedulable


def test_a_node_an_operator_cordoned_stays_cordoned(lab):
    core, _policy, _ns, (a, _b), cp = lab
    core.patch_node(a, {"spec": {"unschedulable": True}})
    c = _cluster(cp, cp.contexts[0], 30, [])
    assert c.take_out(a) == "was cordoned by an operator; drained: 0 pod(s) evicted"
    assert c.put_back(a).startswith("left cordoned")
    assert core.read_node(a).spec.unschedulable is True
    # A resumed rollout knows the nodes it cordoned itself (its record says so): those it uncordons.
    again = _cluster(cp, cp.contexts[0], 30, [])
    again.cordoned_by_rollout = {a}
    assert again.take_out(a).startswith("cordoned;") and again.put_back(a) == "uncordoned"
    assert not core.read_node(a).spec.unschedulable


def test_a_budget_that_never_allows_times_the_drain_out_and_the_node_stays_cordoned(lab, monkeypatch):
    core, policy, ns, (a, _b), cp = lab
    monkeypatch.setattr(cluster, "RETRY_SECONDS", 1.0)
    _pod(core, ns, "train-0", a)
    _pdb(policy, ns, 1)
    _until(lambda: _allowed(policy, ns) == 0, "the disruption controller's status")
    c = _cluster(cp, cp.contexts[0], 4, [])
    with pytest.raises(cluster.DrainError, match=rf"timed out .* \(PodDisruptionBudget\): {ns}/train-0"):
        c.take_out(a)
    assert core.read_node(a).spec.unschedulable is True and _on(core, ns, a) == ["train-0"]


def test_a_node_the_cluster_does_not_know_fails_its_drain(control_plane):
    c = _cluster(control_plane, control_plane.contexts[0], 5, [])
    with pytest.raises(cluster.DrainError, match="404"):
        c.take_out("nowhere-01")
