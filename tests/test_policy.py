"""Every policy fails on a crafted bad site and passes on the real stacks."""

from __future__ import annotations

from datetime import date

import pytest

from aifactory.policy import Severity, evaluate, evaluate_sites
from aifactory.stackfile import load_stack

from .conftest import ROOT, SITES
from .helpers import crafted

AS_OF = date(2026, 11, 23)


def findings(stack, severity=Severity.ERROR, others=()):
    results = evaluate_sites([stack, *others], only={stack.name}, as_of=AS_OF)
    return [(r.id, r.path.removeprefix("aifactory:site."), r.message) for r in results if r.severity is severity]


def test_real_stacks_pass_every_policy():
    stacks = [load_stack(ROOT, s) for s in SITES]
    errors = [r.line() for r in evaluate_sites(stacks, as_of=AS_OF) if r.severity is Severity.ERROR]
    assert errors == []


def test_real_stacks_warnings_are_the_expected_ones():
    stacks = [load_stack(ROOT, s) for s in SITES]
    warnings = [(r.site, r.id) for r in evaluate_sites(stacks, as_of=AS_OF) if r.severity is Severity.WARNING]
    assert warnings == [("lab", "compat.driver-eol")]  # Debian 12 ships R535, past its end of support


def _set(path, value):
    def change(site):
        node = site
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        node[keys[-1]] = value

    return change


CASES = [
    # (site, change, policy id, field, words in the message)
    ("eg", _set("mirrors.charts.country", "KE"), "residency.in-country", "mirrors.charts.country", "outside EG"),
    (
        "eg",
        _set("mirrors.charts.url", "https://helm.ngc.nvidia.com/nvidia"),
        "residency.public-service",
        "mirrors.charts",
        "global public service",
    ),
    ("eg", _set("mirrors.containers.host", "nvcr.io"), "residency.public-service", "mirrors.containers", "nvcr.io"),
    (
        "eg",
        _set("state_backend.url", "s3://eg-state/aifactory"),
        "residency.state-backend",
        "state_backend.url",
        "public cloud",
    ),
    (
        "eg",
        _set("state_backend.url", "https://api.pulumi.com"),
        "residency.state-backend",
        "state_backend.url",
        "public service",
    ),
    (
        "eg",
        _set("storage.object_store.buckets.1.replication.country", "SA"),
        "residency.in-country",
        "storage.object_store.buckets[1].replication.country",
        "outside EG",
    ),
    (
        "eg",
        _set("jurisdiction.data_residency", "FR"),
        "residency.in-country",
        "jurisdiction.data_residency",
        "must reside in FR",
    ),
    ("ke", _set("gpu_stack.driver", "520.61.05"), "compat.cuda-driver", "gpu_stack.driver", "below 570.26"),
    ("ke", _set("gpu_stack.cuda", "12.7"), "compat.cuda-driver", "gpu_stack.cuda", "not in the compatibility table"),
    (
        "eg",
        _set("gpu_stack.driver", "550.163.01"),
        "compat.sku-driver",
        "pools[0].sku",
        "dgx-b200 needs driver >= 570.26",
    ),
    ("za", _set("gpu_stack.nccl", "2.28.7-1+cuda12.9"), "compat.nccl-cuda", "gpu_stack.nccl", "majors differ"),
    ("ke", _set("gpu_stack.gpu_operator", "v24.9.2"), "compat.operator-driver", "gpu_stack.gpu_operator", "not R570"),
    (
        "ke",
        _set("gpu_stack.gpu_operator", "v23.9.1"),
        "compat.operator-driver",
        "gpu_stack.gpu_operator",
        "not in the support table",
    ),
    (
        "za",
        _set("network.storage.cidr", "10.16.0.0/22"),
        "net.overlap",
        "network.storage.cidr",
        "overlaps network.management.cidr",
    ),
    (
        "za",
        _set("network.management.cidr", "10.16.0.0/27"),
        "net.capacity",
        "network.management.cidr",
        "the pools need host number 52",
    ),
    (
        "za",
        _set("network.fabric.rails.0.cidr", "10.17.0.0/26"),
        "net.capacity",
        "network.fabric.rails[0].cidr",
        "32 nodes x 16 per node need 512",
    ),
    ("za", _set("network.pods", "10.18.0.0/20"), "net.capacity", "network.pods", "16 node /24 blocks for 32 nodes"),
    ("za", _set("network.management.gateway", "10.99.0.1"), "net.gateway", "network.management.gateway", "outside"),
    ("za", _set("pools.0.nodes.3.bmc", "10.99.4.24"), "net.bmc", "pools[0].nodes[3].bmc", "outside the BMC network"),
    (
        "za",
        _set("pools.0.nodes.3.mac", "b8:3f:d2:10:00:01"),
        "net.unique",
        "pools[0].nodes[3].mac",
        "is also pools[0].nodes[0]",
    ),
    ("ma", _set("pools.1.ip_offset", "30"), "net.pool-ranges", "pools[1].ip_offset", "overlap pools[0]"),
    (
        "za",
        _set("tenants.0.gpu_quota", "200"),
        "tenants.quota",
        "tenants",
        "quotas add up to 392 GPUs; the site has 256",
    ),
]


@pytest.mark.parametrize(("site", "change", "pid", "field", "words"), CASES, ids=[f"{c[2]}:{c[3]}" for c in CASES])
def test_policy_fails_on_crafted_site(site, change, pid, field, words):
    stack = crafted(site, change)
    found = findings(stack)
    assert any(f[0] == pid and f[1] == field and words in f[2] for f in found), found


def test_one_rail_per_nic():
    stack = crafted("za", lambda s: s["network"]["fabric"]["rails"].pop())
    assert (
        "net.rails",
        "network.fabric.rails",
        "7 rails, but dgx-h100 (pools[0]) has 8 compute NICs: one rail per NIC",
    ) in findings(stack)


def test_cidrs_may_not_overlap_between_sites():
    za = load_stack(ROOT, "za")
    ng = crafted("ng", _set("network.storage.cidr", "10.16.8.0/22"))
    found = findings(ng, others=[za])
    assert (
        "net.overlap-sites",
        "network.storage.cidr",
        "overlaps site za network.storage.cidr (10.16.8.0/22 / 10.16.8.0/22)",
    ) in found


def test_driver_below_the_toolkit_minimum_but_above_the_floor_is_a_warning():
    stack = crafted("ke", _set("gpu_stack.driver", "550.163.01"))
    warnings = findings(stack, Severity.WARNING)
    assert any(f[0] == "compat.cuda-driver" and "minor-version compatibility" in f[2] for f in warnings), warnings


def test_end_of_life_branch_is_a_warning_dated_by_as_of():
    lab = load_stack(ROOT, "lab")
    assert [r.id for r in evaluate(lab, as_of=date(2026, 7, 1)) if r.severity is Severity.WARNING] == [
        "compat.driver-eol"
    ]
    assert [r.id for r in evaluate(lab, as_of=date(2026, 6, 1)) if r.severity is Severity.WARNING] == []


def test_pod_size_larger_than_any_node_is_a_warning():
    stack = crafted("ng", _set("tenants.0.max_gpus_per_pod", "16"))
    assert (
        "tenants.pod-size",
        "tenants[0].max_gpus_per_pod",
        "16 GPUs per pod, but no node has more than 8",
    ) in findings(stack, Severity.WARNING)


def test_validate_exits_2_on_a_policy_error(workdir, cli):
    path = workdir / "stacks" / "Pulumi.eg.yaml"
    path.write_text(
        path.read_text().replace(
            'charts: {url: "https://charts.cai1.eg.aifactory.internal/nvidia"',
            'charts: {url: "https://helm.ngc.nvidia.com/nvidia"',
        )
    )
    code, out, _ = cli("validate", "eg", root=workdir)
    assert code == 2
    assert (
        "error   [residency.public-service] eg: aifactory:site.mirrors.charts: helm.ngc.nvidia.com is a global" in out
    )
    assert out.strip().endswith("eg: FAIL")


def test_residency_answer_for_one_site(cli):
    code, out, _ = cli("validate", "eg", "--only", "residency", "-v")
    assert code == 0
    lines = out.strip().splitlines()
    assert all("[residency." in line for line in lines[:-1])
    assert "s3.cai1.eg.aifactory.internal in EG" in out
    assert "state kept in EG" in out
