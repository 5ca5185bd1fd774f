"""Tenants isolated for real in the plan: nodes, fabric partitions, buckets, and the pod network.

The NetworkPolicies cannot be enforced here (no CNI runs), so they are evaluated: a small
evaluator of Kubernetes NetworkPolicy semantics (kubernetes.io, "Network Policies": a pod is
isolated for a direction once a policy selects it for that direction; a connection needs the
source's egress and the destination's ingress; peers by podSelector in the policy's namespace,
namespaceSelector, or both) runs over the real planned objects, for every pair of tenants. The
store-side denials run against a real Ceph RGW (test_storage.py) and the admission rules against
a real API server where one is up (test_tenant_admission.py).
"""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import pytest
import yaml

from aifactory import inventory, tenancy
from aifactory.components.storage import bucket_options
from aifactory.manifests import objects
from aifactory.plan import run_plan
from aifactory.policies import Severity
from aifactory.stackfile import load_stack
from aifactory.storage import spec

from .conftest import ROOT, plan_of

# -- nodes -------------------------------------------------------------------------------


def test_za_tenants_hold_the_nodes_their_class_requires():
    site = load_stack(ROOT, "za").site
    held = {t.name: [n.hostname for n in tenancy.nodes_of(site, t)] for t in site.tenants}
    assert held["sa-genomics"] == [f"za-jnb1-h100-{i:03d}" for i in range(1, 9)]
    assert len(held["fin-consortium"]) == 12 and len(held["gov-llm"]) == 4 and held["wits-ai"] == []
    assert [n.hostname for n in tenancy.shared_nodes(site)] == [f"za-jnb1-h100-{i:03d}" for i in range(25, 33)]
    hosts = inventory.hosts(site)["all"]["hosts"]
    assert hosts["za-jnb1-h100-001"]["node_labels"]["aifactory.io/tenant"] == "sa-genomics"
    assert hosts["za-jnb1-h100-001"]["node_taints"] == ["aifactory.io/tenant=sa-genomics:NoSchedule"]
    assert "node_taints" not in hosts["za-jnb1-h100-025"]
    assert "aifactory.io/tenant" not in hosts["za-jnb1-h100-025"]["node_labels"]
    bmh = {o["metadata"]["name"]: o for o in objects(plan_of("za")) if o["kind"] == "BareMetalHost"}
    assert bmh["za-jnb1-h100-009"]["metadata"]["labels"]["aifactory.io/tenant"] == "fin-consortium"


def test_node_sets_by_scalable_unit_and_by_range():
    site = load_stack(ROOT, "ma").site
    base = site.tenants[1].model_dump()
    t = type(site.tenants[1]).model_validate({**base, "nodes": [{"pool": "b200a", "scalable_units": ["su2"]}]})
    assert [n.pool for n in tenancy.nodes_of(site, t)] == ["b200a"] * 8
    t = type(t).model_validate({**t.model_dump(), "nodes": [{"pool": "h100a", "nodes": "16"}]})
    assert [n.index for n in tenancy.nodes_of(site, t)] == [16]


# -- policies: each planted fault is an error naming the tenants ----------------------------


def _site(change) -> Any:
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.za.yaml").read_text())
    change(doc["config"]["aifactory:site"])
    from aifactory.model import Site

    return Site.model_validate(doc["config"]["aifactory:site"])


def _findings(site, check: str) -> list[str]:
    from aifactory.policies.tenants import check_isolation

    return [f"{r.severity.value} {r.message}" for r in check_isolation(site, date(2026, 12, 1)) if r.id == check]


def _tenant(s: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in s["tenants"] if t["name"] == name)


def test_two_restricted_tenants_on_one_node_is_an_error_naming_both():
    def change(s):
        _tenant(s, "gov-llm").update(nodes=[{"pool": "h100a", "nodes": "8-11"}], data_classification="restricted")

    found = _findings(_site(change), "tenants.shared-nodes")
    assert any("za-jnb1-h100-008 is held by sa-genomics and gov-llm" in f for f in found), found
    assert all(f.startswith("error") for f in found)


def test_a_restricted_tenant_without_nodes_of_its_own_is_an_error():
    found = _findings(_site(lambda s: _tenant(s, "sa-genomics").pop("nodes")), "tenants.nodes")
    assert found and "sa-genomics holds restricted data and shares every node" in found[0]


def test_a_quota_its_nodes_cannot_hold_names_the_tenant_and_its_nodes():
    found = _findings(_site(lambda s: _tenant(s, "gov-llm").update(gpu_quota=40)), "tenants.node-quota")
    assert found == ["error gov-llm's quota of 40 GPUs does not fit its 4 node(s): 32 GPUs"]
    found = _findings(_site(lambda s: _tenant(s, "wits-ai").update(gpu_quota=72)), "tenants.node-quota")
    assert found == ["error wits-ai's quota of 72 GPUs does not fit the 8 node(s) no tenant holds: 64 GPUs"]


def test_partitions_are_a_tenants_own_unless_the_site_says_so_and_only_for_shareable_data():
    site = load_stack(ROOT, "za").site
    keys = {t.name: tenancy.partition(site, t) for t in site.tenants}
    assert len(set(keys.values())) == len(keys) and all(0x1000 <= k < 0x7000 for k in keys.values())
    # Stable: a tenant added before another does not move the other's key (a position would).
    later = _site(lambda s: s["tenants"].insert(0, {**s["tenants"][0], "name": "new-lab"}))
    assert {t.name: tenancy.partition(later, t) for t in later.tenants if t.name != "new-lab"} == keys
    found = _findings(_site(lambda s: _tenant(s, "sa-genomics").update(shared_fabric=True)), "tenants.partition")
    assert any(f.startswith("error sa-genomics holds restricted data: it needs a fabric partition") for f in found)
    found = _findings(_site(lambda s: _tenant(s, "wits-ai").update(shared_fabric=True)), "tenants.partition")
    assert any(f.startswith("ok wits-ai shares the site's default partition") for f in found)
    clash = keys["sa-genomics"]
    found = _findings(_site(lambda s: _tenant(s, "gov-llm").update(partition=clash)), "tenants.partition")
    assert any(f"sa-genomics would share partition {tenancy.pkey_text(clash)}" in f for f in found), found


def test_buckets_and_store_users_are_each_tenants_own():
    found = _findings(
        _site(lambda s: _tenant(s, "gov-llm").update(buckets=[{"name": "za-datasets", "purpose": "x"}])),
        "tenants.buckets",
    )
    assert found == ["error bucket za-datasets of gov-llm is also the site's"]
    found = _findings(_site(lambda s: _tenant(s, "gov-llm").update(principal="sa-genomics")), "tenants.buckets")
    assert found == [
        "error store user sa-genomics of gov-llm is also sa-genomics: each tenant reads its buckets as its own user"
    ]


def test_encryption_at_rest_is_required_of_the_store_or_said_to_be_missing():
    assert _findings(load_stack(ROOT, "za").site, "tenants.encryption") == []
    found = _findings(_site(lambda s: s["storage"]["object_store"].update(encryption="none")), "tenants.encryption")
    assert len(found) == 3 and all(f.startswith("warning") for f in found)  # sa-genomics, fin, gov: not wits


def test_a_retired_tenants_buckets_are_kept_and_reported_until_their_day():
    def retire(s):
        s["retired_tenants"] = [{"name": "old-lab", "buckets": ["za-old-lab"], "retain_until": "2027-06-30"}]

    site = _site(retire)
    assert _findings(site, "tenants.retired") == ["ok old-lab's 1 bucket(s) kept until 2027-06-30"]
    specs = {s["bucket"]: s for s in spec.site_specs(site)}
    kept = specs["za-old-lab"]
    assert kept["tags"]["aifactory.io/tenant"] == "old-lab" and kept["versioning"]
    assert kept["policy"] is None or "TenantOnly" not in kept["policy"]  # granted to no one but the owner
    from aifactory.policies.tenants import check_isolation

    late = [r for r in check_isolation(site, date(2027, 7, 1)) if r.id == "tenants.retired"]
    assert late[0].severity == Severity.WARNING and "may be deleted by hand" in late[0].message


# -- storage: a bucket policy per tenant, granting its principal alone ------------------------


def test_each_tenant_bucket_grants_its_principal_alone_with_its_class_settings():
    site = load_stack(ROOT, "za").site
    specs = {s["bucket"]: s for s in spec.site_specs(site)}
    for t in site.tenants:
        (bucket,) = tenancy.buckets(site, t)
        assert bucket.name == f"za-{t.name}"
        doc = json.loads(specs[bucket.name]["policy"])
        grants = [st for st in doc["Statement"] if st["Effect"] == "Allow"]
        assert [g["Principal"]["AWS"] for g in grants] == [[f"arn:aws:iam:::user/{t.name}"]]
        assert "s3:PutBucketPolicy" not in grants[0]["Action"] and "s3:DeleteBucket" not in grants[0]["Action"]
    genomics = specs["za-sa-genomics"]
    assert genomics["objectLock"] == {"mode": "GOVERNANCE", "days": 30} and genomics["versioning"]
    assert genomics["encryption"] == "AES256" and "encryption" not in specs["za-wits-ai"]
    assert genomics["tags"]["aifactory.io/data-classification"] == "restricted"
    # The site's own principals (platform jobs) reach the site's buckets, never a tenant's.
    site_bucket = json.loads(specs["za-datasets"]["policy"]) if specs["za-datasets"]["policy"] else {"Statement": []}
    assert all(s["Sid"] != "TenantOnly" for s in site_bucket["Statement"])


def test_a_tenants_bucket_is_retained_when_the_tenant_leaves_the_program():
    import pulumi

    site = load_stack(ROOT, "za").site
    specs = {s["bucket"]: s for s in spec.site_specs(site)}
    parent = pulumi.ComponentResource.__new__(pulumi.ComponentResource)
    assert bucket_options(parent, specs["za-sa-genomics"]).retain_on_delete is True
    assert not bucket_options(parent, specs["za-datasets"]).retain_on_delete


# -- the pod network: every tenant pair, over the real NetworkPolicies -----------------------


def _match(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        has, value = e["key"] in labels, labels.get(e["key"])
        op = e["operator"]
        if (
            (op == "In" and value not in e["values"])
            or (op == "NotIn" and has and value in e["values"])
            or (op == "Exists" and not has)
            or (op == "DoesNotExist" and has)
        ):
            return False
    return True


def _peer(peer: dict[str, Any], policy_ns: str, pod: dict[str, Any], namespaces: dict[str, dict[str, str]]) -> bool:
    if "ipBlock" in peer:
        return False  # pods here have no addresses; ipBlocks name the store and the outside
    ns_ok = (
        _match(peer["namespaceSelector"], namespaces[pod["ns"]]) if "namespaceSelector" in peer else pod["ns"] == policy_ns
    )
    pod_ok = _match(peer["podSelector"], pod["labels"]) if "podSelector" in peer else True
    return ns_ok and pod_ok


def _ports(rule: dict[str, Any], port: int, proto: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("protocol", "TCP") == proto and p.get("port") in (None, port) for p in ports)


def _allowed(policies, namespaces, src, dst, port=8080, proto="TCP") -> bool:
    def side(pod, other, direction, key):
        mine = [
            p
            for p in policies
            if p["metadata"]["namespace"] == pod["ns"]
            and _match(p["spec"]["podSelector"], pod["labels"])
            and direction in p["spec"].get("policyTypes", ["Ingress"])
        ]
        if not mine:
            return True  # not isolated in this direction
        for p in mine:
            for rule in p["spec"].get(direction.lower(), []):
                peers = rule.get(key)
                if (not peers or any(_peer(x, p["metadata"]["namespace"], other, namespaces) for x in peers)) and _ports(
                    rule, port, proto
                ):
                    return True
        return False

    return side(src, dst, "Egress", "to") and side(dst, src, "Ingress", "from")


def _network(site_name: str, extra: list[dict[str, Any]] | None = None):
    objs = objects(plan_of(site_name)) + (extra or [])
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    namespaces = {
        o["metadata"]["name"]: {**o["metadata"].get("labels", {}), "kubernetes.io/metadata.name": o["metadata"]["name"]}
        for o in objs
        if o["kind"] == "Namespace"
    }
    namespaces["kube-system"] = {"kubernetes.io/metadata.name": "kube-system"}
    return policies, namespaces


def _pairs(site_name: str, extra=None) -> dict[tuple[str, str], bool]:
    site = load_stack(ROOT, site_name).site
    policies, namespaces = _network(site_name, extra)
    pod = {t.name: {"ns": t.name, "labels": {"app": "train"}} for t in site.tenants}
    return {(a, b): _allowed(policies, namespaces, pod[a], pod[b]) for a in pod for b in pod}


@pytest.mark.parametrize("site_name", ["za", "ke", "lab"])
def test_no_tenant_reaches_another_on_the_pod_network_and_each_reaches_itself_and_dns(site_name):
    table = _pairs(site_name)
    assert table and all(allowed == (a == b) for (a, b), allowed in table.items()), table
    policies, namespaces = _network(site_name)
    t = load_stack(ROOT, site_name).site.tenants[0].name
    dns = {"ns": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    assert _allowed(policies, namespaces, {"ns": t, "labels": {}}, dns, 53, "UDP")
    assert not _allowed(policies, namespaces, {"ns": t, "labels": {}}, dns, 443, "TCP")
    operator = {"ns": "gpu-operator", "labels": {"app": "nvidia-dcgm-exporter"}}
    assert not _allowed(policies, namespaces, {"ns": t, "labels": {}}, operator, 9400)


def test_a_network_policy_that_lets_one_tenant_reach_another_is_caught():
    leak = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "leak", "namespace": "fin-consortium"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"aifactory.io/tenant": "sa-genomics"}}}]}],
            "egress": [{"to": [{"namespaceSelector": {}}]}],
        },
    }
    genomics_egress = copy.deepcopy(leak)
    genomics_egress["metadata"] = {"name": "leak-out", "namespace": "sa-genomics"}
    table = _pairs("za", [leak, genomics_egress])
    assert table[("sa-genomics", "fin-consortium")] is True  # the evaluator sees the leak
    assert table[("fin-consortium", "sa-genomics")] is False


def test_the_plan_of_a_tenant_site_is_whole():
    plan = run_plan(load_stack(ROOT, "za"))
    kinds = [r.inputs.get("kind") for r in plan.resources if r.type.startswith("kubernetes:")]
    assert kinds.count("NetworkPolicy") == 2 * 4 and kinds.count("Namespace") >= 4
