"""What real DGX hardware and NVIDIA's operators need, checked against NVIDIA's own facts.

The expected values below are copied from the cited NVIDIA documents, not from this project's
catalog, so a wrong catalog entry fails here.
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Network

import yaml

from aifactory import inventory, labels
from aifactory.manifests import helm_releases, objects
from aifactory.model import ipam_blocks
from aifactory.policies import Severity, evaluate
from aifactory.stackfile import load_stack
from aifactory.verify.expectations import expectations

from .conftest import ROOT, plan_of

# NVIDIA DGX H100/H200 User Guide, Table 5 (Network Port Mapping) and Table 6 (Network Modules),
# ordered by the GPU each OSFP port sits beside.
DGX_H100_COMPUTE_RDMA = ["mlx5_0", "mlx5_3", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_9", "mlx5_10", "mlx5_11"]
DGX_H100_COMPUTE_IB = ["ibp24s0", "ibp64s0", "ibp79s0", "ibp94s0", "ibp154s0", "ibp192s0", "ibp206s0", "ibp220s0"]
DGX_H100_COMPUTE_ETH = [n.replace("ibp", "enp") + "np0" for n in DGX_H100_COMPUTE_IB]


def _objs(site: str, kind: str) -> list[dict]:
    return [o for o in objects(plan_of(site)) if o["kind"] == kind]


def _kubernetes_limit_defaults(item: dict) -> dict:
    """Kubernetes' SetDefaults_LimitRangeItem (pkg/apis/core/v1/defaults.go) for a Container item."""
    out = {k: dict(v) for k, v in item.items() if isinstance(v, dict)}
    default = out.setdefault("default", {})
    for res, qty in out.get("max", {}).items():
        default.setdefault(res, qty)
    request = out.setdefault("defaultRequest", {})
    for res, qty in default.items():
        request.setdefault(res, qty)
    return out


def test_a_container_that_asks_for_no_gpu_gets_none():
    for site in ("za", "lab"):
        for limits in _objs(site, "LimitRange"):
            (item,) = limits["spec"]["limits"]
            applied = _kubernetes_limit_defaults(item)
            assert applied["default"]["nvidia.com/gpu"] == "0"
            assert applied["defaultRequest"]["nvidia.com/gpu"] == "0"


def _platform_nads(site: str) -> list[dict]:
    """The rails' attachments in the operator's namespace (each tenant has its own: test_tenancy.py)."""
    return [n for n in _objs(site, "NetworkAttachmentDefinition") if n["metadata"]["namespace"] == "nvidia-network-operator"]


def test_rails_run_over_the_dgx_compute_ports():
    za = load_stack(ROOT, "za").site
    gv = inventory.group_vars_sku(za, "dgx-h100")
    assert gv["nccl_ib_hca"] == DGX_H100_COMPUTE_RDMA
    masters = [yaml.safe_load(n["spec"]["config"])["master"] for n in _platform_nads("za")]
    assert masters == DGX_H100_COMPUTE_IB
    (policy,) = _objs("za", "NicClusterPolicy")
    config = yaml.safe_load(policy["spec"]["rdmaSharedDevicePlugin"]["config"])
    assert [c["selectors"]["ifNames"] for c in config["configList"]] == [[n] for n in DGX_H100_COMPUTE_IB]
    # RoCE (NG, DGX H100 in Ethernet mode): the guide's optional names.
    ng = [yaml.safe_load(n["spec"]["config"])["master"] for n in _platform_nads("ng")]
    assert ng == DGX_H100_COMPUTE_ETH
    conf = expectations(ROOT, za, za.nodes[0]).nccl_conf
    assert conf["NCCL_IB_HCA"] == "=" + ",".join(DGX_H100_COMPUTE_RDMA)


def test_a_sku_without_a_known_port_map_gets_no_invented_rails():
    eg = load_stack(ROOT, "eg")
    assert _objs("eg", "NetworkAttachmentDefinition") == []
    assert inventory.group_vars_sku(eg.site, "dgx-b200")["nccl_ib_hca"] == []
    found = [r for r in evaluate(eg) if r.id == "net.port-map"]
    assert [r.severity for r in found] == [Severity.WARNING]


def test_rail_capacity_follows_the_nv_ipam_allocator(workdir):
    assert ipam_blocks(IPv4Network("10.17.0.0/23"), 16) == 31
    assert ipam_blocks(IPv4Network("10.17.0.0/24"), 16) == 15
    path = workdir / "stacks" / "Pulumi.za.yaml"
    path.write_text(path.read_text().replace("        per_node_block: 8\n", ""))
    stack = load_stack(workdir, "za")
    errors = [r for r in evaluate(stack) if r.id == "net.capacity" and r.severity is Severity.ERROR]
    assert len(errors) == 8 and "31 blocks" in errors[0].message


def test_every_label_a_selector_uses_is_on_the_nodes_it_selects():
    for site_name in ("za", "ke", "lab"):
        site = load_stack(ROOT, site_name).site
        hosts = inventory.hosts(site)["all"]["hosts"]
        for pool in _objs(site_name, "IPPool"):
            (term,) = pool["spec"]["nodeSelector"]["nodeSelectorTerms"]
            selected = [
                h
                for h, v in hosts.items()
                if all(v["node_labels"].get(e["key"]) in e["values"] for e in term["matchExpressions"])
            ]
            assert selected and len(selected) == len(hosts), (site_name, pool["metadata"]["name"])


def test_mig_profiles_are_node_labels_and_the_clusterpolicy_default_is_off():
    ke = load_stack(ROOT, "ke").site
    hosts = inventory.hosts(ke)["all"]["hosts"]
    assert {v["node_labels"][labels.MIG_CONFIG] for v in hosts.values()} == {"all-1g.18gb"}
    (release,) = helm_releases(plan_of("ke"))
    assert release.values["migManager"]["config"]["default"] == "all-disabled"
    za_hosts = inventory.hosts(load_stack(ROOT, "za").site)["all"]["hosts"]
    assert all(labels.MIG_CONFIG not in v["node_labels"] for v in za_hosts.values())


def test_dcgm_exporter_does_not_need_the_prometheus_operator():
    for site in ("za", "ng"):
        (release,) = helm_releases(plan_of(site))
        assert release.values["dcgmExporter"]["serviceMonitor"]["enabled"] is False


def test_fabric_manager_packages_are_named_as_nvidias_repository_names_them():
    za = load_stack(ROOT, "za").site  # R580
    ng = load_stack(ROOT, "ng").site  # R570
    r580 = expectations(ROOT, za, za.nodes[0]).driver_packages["ubuntu/x86_64"]
    r570 = expectations(ROOT, ng, ng.nodes[0]).driver_packages["ubuntu/x86_64"]
    assert {"nvidia-fabricmanager", "libnvidia-nscq"} <= set(r580)
    assert not any(p.startswith("nvidia-fabricmanager-") for p in r580)
    assert {"nvidia-fabricmanager-570", "libnvidia-nscq-570"} <= set(r570)


def test_b200_nodes_get_the_nvlink5_stack_and_need_570_133_20():
    eg = load_stack(ROOT, "eg")
    pkgs = expectations(ROOT, eg.site, eg.site.nodes[0]).driver_packages["ubuntu/x86_64"]
    assert {"nvlsm", "libnvsdm", "infiniband-diags"} <= set(pkgs)
    za = load_stack(ROOT, "za").site
    assert "nvlsm" not in expectations(ROOT, za, za.nodes[0]).driver_packages["ubuntu/x86_64"]
    ma = load_stack(ROOT, "ma")
    old = ma.site.model_copy(
        update={"gpu_stack": ma.site.gpu_stack.model_copy(update={"driver": "570.124.06", "cuda": "12.8"})}
    )
    found = [r for r in evaluate(dataclasses.replace(ma, site=old)) if r.id == "compat.sku-driver"]
    assert any(r.severity is Severity.ERROR and "570.133.20" in r.message for r in found)


def test_rdma_pods_are_admitted_with_ipc_lock_and_tenants_reach_their_object_store():
    (ns,) = [n for n in _objs("lab", "Namespace") if n["metadata"]["name"] == "research"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] != "baseline"
    (vap,) = _objs("lab", "ValidatingAdmissionPolicy")
    (caps,) = [v["expression"] for v in vap["spec"]["validations"] if "'IPC_LOCK'" in v["expression"]]
    assert "'IPC_LOCK'" in caps and "'SYS_ADMIN'" not in caps and "'NET_RAW'" not in caps
    (binding,) = _objs("lab", "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["validationActions"] == ["Deny"]
    policies = [p for p in _objs("lab", "NetworkPolicy") if p["metadata"]["namespace"] == "research"]
    egress = [e for p in policies for e in p["spec"].get("egress", [])]
    assert {"to": [{"ipBlock": {"cidr": "172.29.0.1/32"}}], "ports": [{"protocol": "TCP", "port": 9000}]} in egress


def test_lifecycle_dates_come_from_nvidia():
    ke = load_stack(ROOT, "ke")  # R570, gpu-operator 25.10
    found = {r.id: r for r in evaluate(ke) if r.severity is Severity.WARNING}
    assert "R570" in found["compat.driver-eol"].message
    assert "25.10" in found["compat.operator-eol"].message


def test_a_forced_roce_gid_index_is_questioned(workdir):
    path = workdir / "stacks" / "Pulumi.ng.yaml"
    path.write_text(path.read_text().replace("        rails:\n", "        roce_gid_index: 3\n        rails:\n", 1))
    found = [r for r in evaluate(load_stack(workdir, "ng")) if r.id == "net.gid-index"]
    assert [r.severity for r in found] == [Severity.WARNING]


def test_an_operator_release_without_vendored_upstream_files_is_refused(workdir, cli):
    path = workdir / "stacks" / "Pulumi.ke.yaml"
    path.write_text(path.read_text().replace("gpu_operator: v25.10.1", "gpu_operator: v24.9.2"))
    code, _, err = cli("validate", "ke", root=workdir)
    assert code != 0
    assert "gpu_stack.gpu_operator" in err and "not one this project has checked" in err
